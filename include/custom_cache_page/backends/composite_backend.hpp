// composite_backend: a store that serves pages plus CDN backends that are
// told the tags and purged with it, as the Python package's
// CompositeBackend.
//
// | operation               | members                                                |
// |-------------------------|--------------------------------------------------------|
// | lookup                  | the read member (options.read, default 0): a store     |
// | tag_versions            | the versions member (options.versions, default: read)  |
// | store                   | every store; answers what the read member answered     |
// | erase                   | every store; true if any had the entry                 |
// | invalidate_tag          | all, each attempted even when another throws (below)   |
// | invalidate_internal_tag | the stores only: a guard never reaches a CDN backend   |
// | prepare_response        | all, in member order (each CDN adds its own header)    |
// | fill locks, pass marks  | the read member's                                      |
//
// A member that keeps no pages (a CDN backend) is never asked to look up or
// store; the read and versions members must keep pages.
//
// From a URL (registry.hpp): composite://memory,varnish,
// composite://memory,varnish://127.0.0.1:6081 or
// composite://?member=memory://&member=varnish://127.0.0.1:6081&read=0
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/stats.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace custom_cache_page {

struct composite_member {
  std::string name; // reported in invalidation results and errors: a registry name or a URL scheme
  any_backend backend;
};

struct composite_backend_options {
  std::size_t read = 0;                  // the member lookups read from
  std::optional<std::size_t> versions;   // the member that keeps tag versions; unset: the read member
};

// Thrown by composite_backend::invalidate_tag when a member failed, after
// every member was attempted; result() says what each member did.
class composite_invalidation_error : public invalidation_error {
public:
  composite_invalidation_error(std::string const& tag, std::string const& why, invalidation_result result)
      : invalidation_error(tag, why), result_(std::make_shared<invalidation_result const>(std::move(result))) {}
  invalidation_result const& result() const noexcept { return *result_; }

private:
  std::shared_ptr<invalidation_result const> result_; // shared: exceptions are copied
};

class composite_backend {
public:
  explicit composite_backend(std::vector<composite_member> members, composite_backend_options options = {})
      : members_(std::move(members)), read_(options.read), versions_(options.versions.value_or(options.read)),
        store_failures_(std::make_unique<std::atomic<std::uint64_t>[]>(members_.size())) {
    if (members_.empty()) throw cache_error(error::bad_configuration, "a composite backend needs at least one member");
    for (std::size_t i = 0; i < members_.size(); ++i)
      if (!members_[i].backend)
        throw cache_error(error::bad_configuration, "composite member " + std::to_string(i) + " ('" + members_[i].name + "') is empty");
    auto check = [&](std::size_t index, char const* what) {
      if (index >= members_.size())
        throw cache_error(error::bad_configuration, std::string("composite ") + what + "=" + std::to_string(index) +
                                                        " is out of range: there are " + std::to_string(members_.size()) +
                                                        " members");
      if (!members_[index].backend.keeps_entries())
        throw cache_error(error::bad_configuration, std::string("composite ") + what + " member " + std::to_string(index) +
                                                        " ('" + members_[index].name + "') keeps no pages: it must be a store");
    };
    check(read_, "read");
    check(versions_, "versions");
  }

  bool keeps_entries() const { return true; }

  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) {
    lookup_result found = members_[read_].backend.lookup(key, tags);
    if (versions_ == read_) return found;
    // The versions member's counters are the ones fills are built under.
    lookup_result counters = members_[versions_].backend.lookup(key, tags);
    if (found.entry && !recorded_under(*found.entry, tags, counters.versions)) found.entry = nullptr;
    found.versions = std::move(counters.versions);
    return found;
  }

  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    return members_[versions_].backend.tag_versions(tags);
  }

  // Every member is asked, even after one throws. The answer is the read
  // member's (it is the one later lookups see): its exception is rethrown,
  // its refusal returned. Another member's failure does not cost the page
  // its local copy: it is counted (store_failures(i), and as an error in
  // global_stats()) and the CDN simply caches the page on its next miss.
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    bool answer = false;
    std::exception_ptr read_failure;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (!members_[i].backend.keeps_entries()) continue;
      try {
        bool const stored = members_[i].backend.store(key, entry);
        if (i == read_) answer = stored;
      } catch (...) {
        if (i == read_) {
          read_failure = std::current_exception();
        } else {
          store_failures_[i].fetch_add(1, std::memory_order_relaxed);
          global_stats().error();
        }
      }
    }
    if (read_failure) std::rethrow_exception(read_failure);
    return answer;
  }

  // Every member is asked; the first exception is rethrown afterwards.
  bool erase(std::string const& key) {
    bool any = false;
    std::exception_ptr failure;
    for (auto& m : members_) {
      try {
        any = m.backend.erase(key) || any;
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return any;
  }

  // One result per member in `members` (backend: the member's name; error:
  // set when it failed). version is the versions member's, entries_removed
  // the sum. When any member failed, throws composite_invalidation_error
  // naming the tag and the failed members, after all were attempted.
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    invalidation_result out;
    out.tag = tag;
    out.mode = mode;
    out.backend = "composite";
    std::string failures;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      invalidation_result r;
      try {
        r = members_[i].backend.invalidate_tag(tag, mode);
      } catch (invalidation_error const& e) {
        r = {};
        r.error = without_prefix(e.what(), "invalidating tag '" + e.tag() + "' failed: ");
      } catch (std::exception const& e) {
        r = {};
        r.error = e.what();
      } catch (...) {
        r = {};
        r.error = "unknown exception";
      }
      r.tag = tag;
      if (!r.error.empty()) r.mode = mode;
      r.backend = members_[i].name;
      if (r.error.empty()) {
        out.entries_removed += r.entries_removed;
        if (i == versions_) out.version = r.version;
      } else {
        if (!failures.empty()) failures += "; ";
        failures += "member " + std::to_string(i) + " '" + r.backend + "': " + r.error;
      }
      out.members.push_back(std::move(r));
    }
    if (!failures.empty()) throw composite_invalidation_error(tag, failures, std::move(out));
    return out;
  }

  // A guard is bumped in the stores alone: CDN members never see it.
  void invalidate_internal_tag(std::string const& tag) {
    for (auto& m : members_) m.backend.invalidate_internal_tag(tag);
  }

  // Fill locks are the read member's: it is where the fill's entry appears.
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    return members_[read_].backend.try_fill_lock(key, ttl);
  }
  void release_fill_lock(std::string const& key, std::string const& token) {
    members_[read_].backend.release_fill_lock(key, token);
  }
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) { members_[read_].backend.mark_pass(key, ttl); }

  void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> names) {
    for (auto& m : members_) m.backend.prepare_response(f, names);
  }

  std::size_t size() const noexcept { return members_.size(); }
  composite_member const& member(std::size_t i) const { return members_.at(i); }
  std::size_t read_index() const noexcept { return read_; }
  std::size_t versions_index() const noexcept { return versions_; }
  // Stores that member `i` failed while the read member's answer stood.
  std::uint64_t store_failures(std::size_t i) const { return i < members_.size() ? store_failures_[i].load() : 0; }

private:
  // A member's invalidation_error already says "invalidating tag 'T'
  // failed: "; the composite's own message says it once.
  static std::string without_prefix(std::string text, std::string const& prefix) {
    if (text.starts_with(prefix)) text.erase(0, prefix.size());
    return text;
  }

  // Whether every requested tag the entry recorded still has that version.
  static bool recorded_under(cached_response const& e, std::span<resolved_tag const> tags,
                             std::vector<std::uint64_t> const& versions) {
    for (std::size_t i = 0; i < tags.size(); ++i)
      for (auto const& t : e.tags)
        if (t.name == tags[i].name && (i >= versions.size() || t.version != versions[i])) return false;
    return true;
  }

  std::vector<composite_member> members_;
  std::size_t read_;
  std::size_t versions_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> store_failures_;
};

static_assert(store_backend<composite_backend> && backend<composite_backend>);
static_assert(fill_locking<composite_backend>);

} // namespace custom_cache_page
