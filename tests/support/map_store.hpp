// map_store: the store primitives (store_primitives.hpp) over std::map under
// one mutex, as a user would write a store of their own. protocol_store
// makes a store backend of it:
//
//   ccp::any_backend b(std::make_shared<ccp::protocol_store<map_store>>(std::make_shared<map_store>()));
//
// An exemplar: it keeps everything until it expires and has no byte budget.
#pragma once

#include <custom_cache_page/indexes/memory_index.hpp>
#include <custom_cache_page/store_primitives.hpp>

#include <map>
#include <mutex>

namespace ccp_test {

namespace ccp = custom_cache_page;

class map_store {
public:
  using clock = ccp::cached_response::clock;

  ccp::stored_read read(std::string const& key, std::span<std::string_view const> names) {
    std::lock_guard lock(mutex_);
    ccp::stored_read out{nullptr, counters_of(names)};
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second->retain_until() <= clock::now()) return out;
    out.entry = it->second;
    for (auto const& t : out.entry->tags) out.counters.push_back(counter_of(t.name));
    return out;
  }

  std::vector<ccp::counter_reading> read_counters(std::span<std::string_view const> names) {
    std::lock_guard lock(mutex_);
    return counters_of(names);
  }

  bool write_if(std::string const& key, std::shared_ptr<ccp::cached_response const> entry,
                std::span<ccp::write_condition const> conditions) {
    std::lock_guard lock(mutex_);
    for (auto const& c : conditions) {
      auto const now = counter_of(c.name).value;
      if (now != c.expected && !(now == 0 && c.create)) return false;
    }
    erase_locked(key);
    for (auto const& c : conditions) {
      if (c.indexed) index_.add(std::string(c.name), key, entry->retain_until());
      auto it = counters_.find(c.name);
      if (it == counters_.end() || !live(it->second)) {
        if (!c.create) continue; // a guard stays missing
        it = counters_.insert_or_assign(std::string(c.name), counter{c.expected, c.expected, {}}).first;
      }
      it->second.expires = std::max(it->second.expires, entry->retain_until());
    }
    entries_[key] = std::move(entry);
    return true;
  }

  ccp::bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    std::lock_guard lock(mutex_);
    auto& c = counters_[name];
    if (live(c)) c.value += c.value % 2 == 0 ? 1 : 2;
    else c = {start, start, {}};
    if (hard) c.floor = c.value;
    c.expires = std::max(c.expires, clock::now() + ttl);
    return {c.value, {}};
  }

  // All at once: one step.
  ccp::drain_step drain(std::string const& name) {
    std::lock_guard lock(mutex_);
    ccp::drain_step step{0, false};
    for (auto const& key : index_.take(name)) step.entries_removed += erase_locked(key) ? 1 : 0;
    return step;
  }

  bool erase(std::string const& key) {
    std::lock_guard lock(mutex_);
    return erase_locked(key);
  }

private:
  bool erase_locked(std::string const& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    for (auto const& t : it->second->tags) index_.remove(t.name, key);
    entries_.erase(it);
    return true;
  }

  struct counter {
    std::uint64_t value = 0;
    std::uint64_t floor = 0;
    clock::time_point expires{};
  };

  static bool live(counter const& c) { return c.value != 0 && c.expires > clock::now(); }

  ccp::counter_reading counter_of(std::string_view name) const {
    auto it = counters_.find(name);
    if (it == counters_.end() || !live(it->second)) return {};
    return {it->second.value, it->second.floor};
  }

  std::vector<ccp::counter_reading> counters_of(std::span<std::string_view const> names) const {
    std::vector<ccp::counter_reading> out;
    for (auto const name : names) out.push_back(counter_of(name));
    return out;
  }

  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<ccp::cached_response const>> entries_;
  std::map<std::string, counter, std::less<>> counters_;
  ccp::memory_surrogate_index index_; // any surrogate_index would do
};

static_assert(ccp::store_primitives<map_store>);
static_assert(ccp::store_backend<ccp::protocol_store<map_store>>);

} // namespace ccp_test
