// versioned(name): a tag invalidated in O(1). Entries record the version of
// each of their versioned tags; invalidation bumps the counter and every
// entry that recorded an older version is a miss from then on, whatever
// the number of entries. Nothing is scanned or deleted.
#pragma once

#include <custom_cache_page/tags.hpp>

namespace custom_cache_page {

namespace detail {
struct versioned_access {
  static tag make(tag t, std::chrono::seconds ttl) {
    t.versioned_ = true;
    t.version_ttl_ = ttl;
    return t;
  }
};
} // namespace detail

// `name_or_callable`: a tag name, or a tag callable (see tags.hpp).
// `version_ttl`: how long the counter lives unless bumped again.
template <class NameOrCallable>
tag versioned(NameOrCallable name_or_callable, std::chrono::seconds version_ttl = default_version_ttl) {
  return detail::versioned_access::make(tag(std::move(name_or_callable)), version_ttl);
}

} // namespace custom_cache_page
