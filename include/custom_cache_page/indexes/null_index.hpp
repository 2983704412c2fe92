// null_surrogate_index: keeps nothing. For setups where a CDN purges by tag
// and the local store relies on tag counters alone: invalidation still
// makes every entry of the tag a miss (the counter check), it just does not
// free their memory before they expire or are evicted.
#pragma once

#include <custom_cache_page/surrogate_index.hpp>

#include <string>
#include <vector>

namespace custom_cache_page {

class null_surrogate_index {
public:
  void add(std::string const&, std::string const&, std::chrono::system_clock::time_point) {}
  void remove(std::string const&, std::string const&) {}
  std::vector<std::string> take(std::string const&) { return {}; }
  std::size_t size() const { return 0; }
};

static_assert(surrogate_index<null_surrogate_index>);

} // namespace custom_cache_page
