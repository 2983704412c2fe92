// memory_surrogate_index: tag -> {storage key -> expiry}, in process memory.
#pragma once

#include <custom_cache_page/surrogate_index.hpp>

#include <boost/unordered/unordered_flat_map.hpp>

#include <string>
#include <vector>

namespace custom_cache_page {

class memory_surrogate_index {
public:
  using time_point = std::chrono::system_clock::time_point;

  void add(std::string const& tag, std::string const& key, time_point expires) {
    auto& members = tags_[tag];
    auto [it, inserted] = members.try_emplace(key, expires);
    if (inserted) ++size_;
    else it->second = expires;
  }

  void remove(std::string const& tag, std::string const& key) {
    auto t = tags_.find(tag);
    if (t == tags_.end()) return;
    size_ -= t->second.erase(key);
    if (t->second.empty()) tags_.erase(t);
  }

  std::vector<std::string> take(std::string const& tag) {
    std::vector<std::string> keys;
    auto t = tags_.find(tag);
    if (t == tags_.end()) return keys;
    keys.reserve(t->second.size());
    for (auto& [key, expires] : t->second) keys.push_back(key);
    size_ -= t->second.size();
    tags_.erase(t);
    return keys;
  }

  std::size_t size() const { return size_; }
  std::size_t tag_count() const { return tags_.size(); }

private:
  boost::unordered_flat_map<std::string, boost::unordered_flat_map<std::string, time_point>> tags_;
  std::size_t size_ = 0;
};

static_assert(surrogate_index<memory_surrogate_index>);

} // namespace custom_cache_page
