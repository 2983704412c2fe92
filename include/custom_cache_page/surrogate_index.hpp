// The surrogate index concept: which storage keys carry a plain tag, so that
// invalidating the tag can remove them eagerly (and free their memory).
//
// | expression             | meaning                                                        |
// |------------------------|----------------------------------------------------------------|
// | i.add(tag, key, exp)   | `key` carries `tag` until `exp` (members never outlive entries) |
// | i.remove(tag, key)     | `key` no longer carries `tag` (its entry was evicted or erased) |
// | i.take(tag)            | removes and returns the live members of `tag`                   |
// | i.size()               | members held in all, for bounds checks                          |
//
// The backend serialises calls; an index need not lock on its own.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <string>
#include <vector>

namespace custom_cache_page {

template <class I>
concept surrogate_index = requires(I& i, I const& ci, std::string const& tag, std::string const& key,
                                   std::chrono::system_clock::time_point exp) {
  i.add(tag, key, exp);
  i.remove(tag, key);
  { i.take(tag) } -> std::same_as<std::vector<std::string>>;
  { ci.size() } -> std::convertible_to<std::size_t>;
};

} // namespace custom_cache_page
