// fill_context: what a handler may tell the cache about its own response.
// A handler that takes `(request, ccp::fill_context&)` receives one on every
// call through cache_page (it is inert on bypassed requests):
//
//   ctx.do_not_cache();          // this response must not be stored
//   ctx.add_tag("product-42");   // a tag learned while computing it
//   co_await ctx.async_add_tag("product-42"); // the same in a coroutine handler
//
// Nothing of this travels in the response, so no internal marker can reach
// a client. Call add_tag BEFORE reading the data the tag stands for: the
// tag's version is taken at that moment, and an invalidation after it keeps
// the response from being stored.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/tags.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

class fill_context {
public:
  fill_context() = default;
  explicit fill_context(any_backend backend) : backend_(std::move(backend)) {}

  void do_not_cache() { declined_ = true; }
  bool declined() const { return declined_; }

  void add_tag(std::string_view name) { add(name, false); }
  void add_versioned_tag(std::string_view name) { add(name, true); }

  // The same from a coroutine handler: the version is read without
  // blocking the thread (add_tag would wait for the store on it).
  boost::asio::awaitable<void> async_add_tag(std::string name) { return async_add(std::move(name), false); }
  boost::asio::awaitable<void> async_add_versioned_tag(std::string name) { return async_add(std::move(name), true); }

  // Tags added so far, each with the counter version read when it was added.
  std::vector<resolved_tag> const& added_tags() const { return tags_; }
  std::vector<std::uint64_t> const& added_versions() const { return versions_; }
  // A tag whose version could not be read: the response is not stored.
  bool snapshot_failed() const { return snapshot_failed_; }

private:
  void add(std::string_view raw, bool versioned) {
    auto t = fresh(raw, versioned);
    if (!t) return;
    std::optional<std::uint64_t> version;
    try {
      version = backend_ ? backend_.tag_versions(std::span<resolved_tag const>(&*t, 1)).at(0) : 0;
    } catch (...) {
      // Recorded as a failed snapshot: the response is not stored.
    }
    record(std::move(*t), version);
  }

  boost::asio::awaitable<void> async_add(std::string raw, bool versioned) {
    auto t = fresh(raw, versioned);
    if (!t) co_return;
    std::optional<std::uint64_t> version;
    try {
      version = backend_ ? (co_await backend_.async_tag_versions(std::span<resolved_tag const>(&*t, 1))).at(0) : 0;
    } catch (...) {
      // As above.
    }
    record(std::move(*t), version);
  }

  // A tag not added before, or nothing (a repeat only widens `versioned`).
  std::optional<resolved_tag> fresh(std::string_view raw, bool versioned) {
    std::string name = normalize_surrogate(raw);
    if (name.empty()) return std::nullopt;
    for (auto& t : tags_)
      if (t.name == name) {
        t.versioned = t.versioned || versioned;
        return std::nullopt;
      }
    return resolved_tag{std::move(name), versioned, default_version_ttl};
  }

  void record(resolved_tag t, std::optional<std::uint64_t> version) {
    snapshot_failed_ = snapshot_failed_ || !version;
    versions_.push_back(version.value_or(0));
    tags_.push_back(std::move(t));
  }

  any_backend backend_;
  std::vector<resolved_tag> tags_;
  std::vector<std::uint64_t> versions_;
  bool declined_ = false;
  bool snapshot_failed_ = false;
};

} // namespace custom_cache_page
