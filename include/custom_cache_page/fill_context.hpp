// fill_context: what a handler may tell the cache about its own response.
// A handler that takes `(request, ccp::fill_context&)` receives one on every
// call through cache_page (it is inert on bypassed requests):
//
//   ctx.do_not_cache();          // this response must not be stored
//   ctx.add_tag("product-42");   // a tag learned while computing it
//
// Nothing of this travels in the response, so no internal marker can reach
// a client. Call add_tag BEFORE reading the data the tag stands for: the
// tag's version is taken at that moment, and an invalidation after it keeps
// the response from being stored.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/tags.hpp>

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

  // Tags added so far, each with the counter version read when it was added.
  std::vector<resolved_tag> const& added_tags() const { return tags_; }
  std::vector<std::uint64_t> const& added_versions() const { return versions_; }
  // A tag whose version could not be read: the response is not stored.
  bool snapshot_failed() const { return snapshot_failed_; }

private:
  void add(std::string_view raw, bool versioned) {
    std::string name = normalize_surrogate(raw);
    if (name.empty()) return;
    for (auto& t : tags_)
      if (t.name == name) {
        t.versioned = t.versioned || versioned;
        return;
      }
    resolved_tag t{std::move(name), versioned, default_version_ttl};
    if (backend_) {
      try {
        versions_.push_back(backend_.tag_versions(std::span<resolved_tag const>(&t, 1)).at(0));
      } catch (...) {
        snapshot_failed_ = true;
        versions_.push_back(0);
      }
    } else {
      versions_.push_back(0);
    }
    tags_.push_back(std::move(t));
  }

  any_backend backend_;
  std::vector<resolved_tag> tags_;
  std::vector<std::uint64_t> versions_;
  bool declined_ = false;
  bool snapshot_failed_ = false;
};

} // namespace custom_cache_page
