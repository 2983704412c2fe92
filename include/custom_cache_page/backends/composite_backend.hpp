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
    return under_counters(std::move(found), members_[versions_].backend.lookup(key, tags), tags);
  }
  boost::asio::awaitable<lookup_result> async_lookup(std::string key, std::span<resolved_tag const> tags) {
    lookup_result found = co_await members_[read_].backend.async_lookup(key, tags);
    if (versions_ == read_) co_return found;
    lookup_result counters = co_await members_[versions_].backend.async_lookup(key, tags);
    co_return under_counters(std::move(found), std::move(counters), tags);
  }

  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    return members_[versions_].backend.tag_versions(tags);
  }
  boost::asio::awaitable<std::vector<std::uint64_t>> async_tag_versions(std::span<resolved_tag const> tags) {
    return members_[versions_].backend.async_tag_versions(tags);
  }

  // Every member is asked, even after one throws. The answer is the read
  // member's (it is the one later lookups see): its exception is rethrown,
  // its refusal returned. Another member's failure does not cost the page
  // its local copy: it is counted (store_failures(i), and as an error in
  // global_stats()) and the CDN simply caches the page on its next miss.
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    store_tally tally{*this};
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (!members_[i].backend.keeps_entries()) continue;
      try {
        tally.stored(i, members_[i].backend.store(key, entry));
      } catch (...) {
        tally.failed(i, std::current_exception());
      }
    }
    return tally.answer();
  }
  boost::asio::awaitable<bool> async_store(std::string key, std::shared_ptr<cached_response const> entry) {
    store_tally tally{*this};
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (!members_[i].backend.keeps_entries()) continue;
      try {
        bool const stored = co_await members_[i].backend.async_store(key, entry);
        tally.stored(i, stored);
      } catch (...) {
        tally.failed(i, std::current_exception());
      }
    }
    co_return tally.answer();
  }

  // Every member is asked; the first exception is rethrown afterwards.
  bool erase(std::string const& key) {
    erase_tally tally;
    for (auto& m : members_) {
      try {
        tally.erased(m.backend.erase(key));
      } catch (...) {
        tally.failed(std::current_exception());
      }
    }
    return tally.answer();
  }
  boost::asio::awaitable<bool> async_erase(std::string key) {
    erase_tally tally;
    for (auto& m : members_) {
      try {
        bool const erased = co_await m.backend.async_erase(key);
        tally.erased(erased);
      } catch (...) {
        tally.failed(std::current_exception());
      }
    }
    co_return tally.answer();
  }

  // One result per member in `members` (backend: the member's name; error:
  // set when it failed). version is the versions member's, entries_removed
  // the sum. When any member failed, throws composite_invalidation_error
  // naming the tag and the failed members, after all were attempted.
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    invalidation_tally tally{*this, tag, mode};
    for (std::size_t i = 0; i < members_.size(); ++i) {
      try {
        tally.done(i, members_[i].backend.invalidate_tag(tag, mode));
      } catch (...) {
        tally.failed(i, std::current_exception());
      }
    }
    return tally.answer();
  }
  // The same on the caller's executor: a CDN member's purge waits on the
  // network without holding a thread.
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, purge_mode mode = purge_mode::hard) {
    invalidation_tally tally{*this, tag, mode};
    for (std::size_t i = 0; i < members_.size(); ++i) {
      try {
        invalidation_result r = co_await members_[i].backend.async_invalidate_tag(tag, mode);
        tally.done(i, std::move(r));
      } catch (...) {
        tally.failed(i, std::current_exception());
      }
    }
    co_return tally.answer();
  }

  // A guard is bumped in the stores alone: CDN members never see it.
  void invalidate_internal_tag(std::string const& tag) {
    for (auto& m : members_) m.backend.invalidate_internal_tag(tag);
  }
  boost::asio::awaitable<void> async_invalidate_internal_tag(std::string tag) {
    for (auto& m : members_) co_await m.backend.async_invalidate_internal_tag(tag);
  }

  // Fill locks are the read member's: it is where the fill's entry appears.
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    return members_[read_].backend.try_fill_lock(key, ttl);
  }
  void release_fill_lock(std::string const& key, std::string const& token) {
    members_[read_].backend.release_fill_lock(key, token);
  }
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) { members_[read_].backend.mark_pass(key, ttl); }
  boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const& key,
                                                                         std::chrono::milliseconds ttl) {
    return members_[read_].backend.async_try_fill_lock(key, ttl);
  }
  boost::asio::awaitable<void> async_release_fill_lock(std::string const& key, std::string const& token) {
    return members_[read_].backend.async_release_fill_lock(key, token);
  }
  boost::asio::awaitable<void> async_mark_pass(std::string const& key, std::chrono::milliseconds ttl) {
    return members_[read_].backend.async_mark_pass(key, ttl);
  }

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

  // The read member's find, judged by the versions member's counters: they
  // are the ones fills are built under.
  static lookup_result under_counters(lookup_result found, lookup_result counters, std::span<resolved_tag const> tags) {
    if (found.entry && !recorded_under(*found.entry, tags, counters.versions)) found.entry = nullptr;
    found.versions = std::move(counters.versions);
    return found;
  }

  // What store() answers, member by member (see store()).
  struct store_tally {
    composite_backend& self;
    bool stored_by_read = false;
    std::exception_ptr read_failure;

    void stored(std::size_t i, bool ok) {
      if (i == self.read_) stored_by_read = ok;
    }
    void failed(std::size_t i, std::exception_ptr e) {
      if (i == self.read_) {
        read_failure = std::move(e);
        return;
      }
      self.store_failures_[i].fetch_add(1, std::memory_order_relaxed);
      global_stats().error();
    }
    bool answer() const {
      if (read_failure) std::rethrow_exception(read_failure);
      return stored_by_read;
    }
  };

  struct erase_tally {
    bool any = false;
    std::exception_ptr failure;

    void erased(bool e) { any = any || e; }
    void failed(std::exception_ptr e) {
      if (!failure) failure = std::move(e);
    }
    bool answer() const {
      if (failure) std::rethrow_exception(failure);
      return any;
    }
  };

  // What invalidate_tag() answers, member by member (see invalidate_tag()).
  struct invalidation_tally {
    composite_backend& self;
    std::string const& tag;
    purge_mode mode;
    invalidation_result out{.tag = tag, .backend = "composite", .mode = mode};
    std::string failures;

    void done(std::size_t i, invalidation_result r) {
      r.tag = tag;
      r.backend = self.members_[i].name;
      out.entries_removed += r.entries_removed;
      if (i == self.versions_) out.version = r.version;
      out.members.push_back(std::move(r));
    }
    void failed(std::size_t i, std::exception_ptr e) {
      invalidation_result r;
      r.tag = tag;
      r.mode = mode;
      r.backend = self.members_[i].name;
      r.error = message_of(e);
      if (!failures.empty()) failures += "; ";
      failures += "member " + std::to_string(i) + " '" + r.backend + "': " + r.error;
      out.members.push_back(std::move(r));
    }
    invalidation_result answer() {
      if (!failures.empty()) throw composite_invalidation_error(tag, failures, std::move(out));
      return std::move(out);
    }
  };

  static std::string message_of(std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (invalidation_error const& x) {
      return without_prefix(x.what(), "invalidating tag '" + x.tag() + "' failed: ");
    } catch (std::exception const& x) {
      return x.what();
    } catch (...) {
      return "unknown exception";
    }
  }

  std::vector<composite_member> members_;
  std::size_t read_;
  std::size_t versions_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> store_failures_;
};

static_assert(store_backend<composite_backend> && backend<composite_backend>);
static_assert(fill_locking<composite_backend>);

} // namespace custom_cache_page
