// memory_backend: pages, tag counters and the surrogate index in process
// memory: the store primitives (store_primitives.hpp) of
// basic_memory_store, split into shards (a power of two) each with its own
// lock, byte budget, CLOCK queue, index and counters, under the protocol
// that protocol_store writes once for every store.
//
// Entries and their index members live in the shard of their key, so
// eviction and expiry remove index members in the same critical section:
// the index never holds a key the store has dropped. A tag's counter lives
// in the shard of the tag's name; a conditional write locks the shards of
// its counters and its key together, in index order.
//
// Eviction is CLOCK: a hit only sets a flag (and only when it is clear), so
// hits stay under the shared lock and scale across threads, where LRU would
// take the exclusive lock to move the entry on every hit.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/generations.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/store_primitives.hpp>
#include <custom_cache_page/indexes/memory_index.hpp>
#include <custom_cache_page/indexes/null_index.hpp>
#include <custom_cache_page/surrogate_index.hpp>

#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace custom_cache_page {

struct memory_backend_options {
  std::size_t max_bytes = std::size_t{256} << 20; // budget for entries, keys and index, all shards together
  std::size_t max_entry = std::size_t{8} << 20;   // larger entries are not stored
  std::size_t shards = 0;                         // a power of two; 0: from the hardware, see shard_count()
};


// The store primitives (store_primitives.hpp) in process memory.
template <surrogate_index Index = memory_surrogate_index>
class basic_memory_store {
public:
  using clock = cached_response::clock;

  explicit basic_memory_store(memory_backend_options options = {})
      : options_(options), shard_count_(shard_count(options)), shards_(std::make_unique<shard[]>(shard_count_)) {
    options_.shards = shard_count_;
  }

  // Four shards per hardware thread (at least 8), but never so many that a
  // shard's budget holds fewer than four of the largest entries.
  static std::size_t shard_count(memory_backend_options const& o) {
    std::size_t n = o.shards != 0 ? std::bit_ceil(o.shards)
                                  : std::bit_ceil(std::max<std::size_t>(8, 4 * std::thread::hardware_concurrency()));
    if (o.shards == 0)
      while (n > 1 && o.max_bytes / n < 4 * o.max_entry) n /= 2;
    return std::min<std::size_t>(n, 1024);
  }

  stored_read read(std::string const& key, std::span<std::string_view const> names) {
    auto const now = clock::now();
    stored_read out{nullptr, read_counters(names)};
    {
      auto& s = shard_of(key);
      std::shared_lock lock(s.mutex);
      auto it = s.entries.find(key);
      if (it == s.entries.end() || it->second.entry->retain_until() <= now) return out;
      if (!it->second.referenced.load(std::memory_order_relaxed))
        it->second.referenced.store(true, std::memory_order_relaxed);
      out.entry = it->second.entry;
    }
    for (auto const& t : out.entry->tags) out.counters.push_back(counter_of(t.name, now));
    return out;
  }

  std::vector<counter_reading> read_counters(std::span<std::string_view const> names) {
    auto const now = clock::now();
    std::vector<counter_reading> out;
    out.reserve(names.size());
    for (auto const name : names) out.push_back(counter_of(name, now));
    return out;
  }

  // Atomic over every shard involved: those of the counters and the key's,
  // locked in index order.
  bool write_if(std::string const& key, std::shared_ptr<cached_response const> entry,
                std::span<write_condition const> conditions) {
    auto const now = clock::now();
    std::size_t const bytes = footprint(key, *entry);
    if (bytes > options_.max_entry || bytes > shard_budget())
      throw cache_error(error::entry_too_large, "entry of " + std::to_string(bytes) + " bytes exceeds the memory backend's limit");
    auto locks = lock_shards(key, conditions);
    for (auto const& c : conditions) {
      auto const v = counter_locked(shard_of(c.name), c.name, now).value;
      if (v != c.expected && !(v == 0 && c.create)) return false;
    }
    for (auto const& c : conditions) hold_counter_locked(c, entry->retain_until(), now);
    insert_locked(shard_of(key), key, std::move(entry), bytes, conditions, now);
    return true;
  }

  bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    auto const now = clock::now();
    auto& s = shard_of(name);
    std::unique_lock lock(s.mutex);
    auto [it, inserted] = s.counters.try_emplace(name);
    auto& c = it->second;
    if (inserted) s.bytes += counter_footprint(name);
    if (inserted || c.expires <= now) c = {start, start, now};
    else c.value = detail::bumped(c.value);
    if (hard) c.floor = c.value;
    c.expires = std::max(c.expires, now + ttl);
    return {c.value, {}};
  }

  // Every shard in one step, each under its own lock.
  drain_step drain(std::string const& name) {
    drain_step step{0, false};
    for (std::size_t i = 0; i < shard_count_; ++i) {
      auto& s = shards_[i];
      std::unique_lock lock(s.mutex);
      for (auto const& key : s.index.take(name)) step.entries_removed += erase_locked(s, key) ? 1 : 0;
    }
    return step;
  }

  bool erase(std::string const& key) {
    auto& s = shard_of(key);
    std::unique_lock lock(s.mutex);
    return erase_locked(s, key);
  }

  // Introspection for tests and metrics.
  std::size_t size() const { return sum([](shard const& s) { return s.entries.size(); }); }
  std::size_t bytes() const { return sum([](shard const& s) { return s.bytes; }); }
  std::size_t index_size() const { return sum([](shard const& s) { return s.index.size(); }); }
  std::size_t counter_count() const { return sum([](shard const& s) { return s.counters.size(); }); }
  memory_backend_options const& options() const { return options_; }

private:
  // Per-entry bookkeeping besides key and entry: map node, CLOCK queue slot;
  // and per index member: the key again and the member's node.
  static constexpr std::size_t slot_overhead = 128;
  static constexpr std::size_t index_overhead = 64;
  static constexpr std::size_t counter_overhead = 64; // map slot, value, floor, expiry

  struct slot {
    std::shared_ptr<cached_response const> entry;
    std::size_t bytes = 0;
    std::uint64_t generation = 0; // tells this entry's CLOCK slot from a replaced one's
    mutable std::atomic<bool> referenced{false};
  };
  struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct counter {
    std::uint64_t value = 0;
    std::uint64_t floor = 0; // the value at the last hard invalidation
    clock::time_point expires{};
  };
  struct clock_slot {
    std::string key;
    std::uint64_t generation;
  };
  struct alignas(64) shard {
    mutable std::shared_mutex mutex;
    std::unordered_map<std::string, slot> entries;
    std::deque<clock_slot> clock;
    Index index;
    boost::unordered_flat_map<std::string, counter, name_hash, std::equal_to<>> counters;
    std::size_t bytes = 0;
    std::uint64_t generation = 0;
    std::size_t counters_high_water = 1024;
  };

  // Versioned tags and the target guard need no index: their counter alone
  // invalidates, in O(1).
  static bool indexed(tag_version const& t) { return !t.versioned && !t.guard; }

  std::size_t shard_index(std::string_view name) const { return std::hash<std::string_view>{}(name) & (shard_count_ - 1); }
  shard& shard_of(std::string_view name) const { return shards_[shard_index(name)]; }
  std::size_t shard_budget() const { return options_.max_bytes / shard_count_; }

  static std::size_t footprint(std::string const& key, cached_response const& e) {
    auto plain = static_cast<std::size_t>(std::count_if(e.tags.begin(), e.tags.end(), indexed));
    // The key is held twice (map and CLOCK queue) and once per index member.
    return e.footprint() + 2 * key.capacity() + slot_overhead + plain * (key.capacity() + index_overhead);
  }

  template <class F>
  std::size_t sum(F f) const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      std::shared_lock lock(shards_[i].mutex);
      n += f(shards_[i]);
    }
    return n;
  }

  // A counter's reading; the caller holds its shard's lock.
  static counter_reading counter_locked(shard const& s, std::string_view name, clock::time_point now) {
    auto it = s.counters.find(name);
    if (it == s.counters.end() || it->second.expires <= now) return {};
    return {it->second.value, it->second.floor};
  }

  counter_reading counter_of(std::string_view name, clock::time_point now) const {
    auto& s = shard_of(name);
    std::shared_lock lock(s.mutex);
    return counter_locked(s, name, now);
  }

  // Unique locks on the key's shard and the shards of the conditions'
  // counters, taken in index order so that writers never deadlock.
  std::vector<std::unique_lock<std::shared_mutex>> lock_shards(std::string const& key,
                                                               std::span<write_condition const> conditions) const {
    std::vector<std::size_t> order{shard_index(key)};
    for (auto const& c : conditions) order.push_back(shard_index(c.name));
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    std::vector<std::unique_lock<std::shared_mutex>> locks;
    for (auto i : order) locks.emplace_back(shards_[i].mutex);
    return locks;
  }

  // Creates the counter a condition asks for and keeps it alive at least
  // as long as the entry; a missing guard stays missing.
  void hold_counter_locked(write_condition const& c, clock::time_point retain, clock::time_point now) {
    auto& s = shard_of(c.name);
    auto it = s.counters.find(c.name);
    if (it == s.counters.end() || it->second.expires <= now) {
      if (!c.create) return;
      if (it == s.counters.end()) {
        it = s.counters.try_emplace(std::string(c.name)).first;
        s.bytes += counter_footprint(it->first);
      }
      it->second = {c.expected, c.expected, now};
    }
    it->second.expires = std::max(it->second.expires, retain);
  }

  void insert_locked(shard& s, std::string const& key, std::shared_ptr<cached_response const> entry, std::size_t bytes,
                     std::span<write_condition const> conditions, clock::time_point now) {
    erase_locked(s, key);
    sweep_locked(s, now, 8);
    while (s.bytes + bytes > shard_budget() && evict_one_locked(s)) {
    }
    auto& slot = s.entries[key];
    slot.bytes = bytes;
    slot.generation = ++s.generation;
    slot.referenced.store(false, std::memory_order_relaxed);
    s.bytes += bytes;
    s.clock.push_back({key, slot.generation});
    for (auto const& c : conditions)
      if (c.indexed) s.index.add(std::string(c.name), key, entry->retain_until());
    slot.entry = std::move(entry);
  }

  static std::size_t counter_footprint(std::string const& tag) { return tag.size() + counter_overhead; }

  static bool erase_locked(shard& s, std::string const& key) {
    auto it = s.entries.find(key);
    if (it == s.entries.end()) return false;
    for (auto const& t : it->second.entry->tags)
      if (indexed(t)) s.index.remove(t.name, key);
    s.bytes -= it->second.bytes;
    s.entries.erase(it);
    return true; // its CLOCK slot is skipped when reached
  }

  static auto live(shard& s, clock_slot const& c) {
    auto it = s.entries.find(c.key);
    return it != s.entries.end() && it->second.generation == c.generation ? it : s.entries.end();
  }

  // CLOCK: the oldest slot goes unless it was read since it last came round.
  static bool evict_one_locked(shard& s) {
    while (!s.clock.empty()) {
      clock_slot c = std::move(s.clock.front());
      s.clock.pop_front();
      auto it = live(s, c);
      if (it == s.entries.end()) continue;
      if (it->second.referenced.exchange(false, std::memory_order_relaxed)) {
        s.clock.push_back(std::move(c));
        continue;
      }
      erase_locked(s, c.key);
      return true;
    }
    return false;
  }

  // Drops up to `budget` expired entries or dead slots from the front of the
  // CLOCK queue; compacts the queue and the counters when dead items
  // outnumber live ones (amortised O(1) per store).
  static void sweep_locked(shard& s, clock::time_point now, int budget) {
    for (; budget > 0 && !s.clock.empty(); --budget) {
      auto it = live(s, s.clock.front());
      if (it != s.entries.end() && it->second.entry->retain_until() > now) break;
      if (it != s.entries.end()) erase_locked(s, s.clock.front().key);
      s.clock.pop_front();
    }
    if (s.clock.size() > 2 * s.entries.size() + 64)
      std::erase_if(s.clock, [&](clock_slot const& c) { return live(s, c) == s.entries.end(); });
    if (s.counters.size() > s.counters_high_water) {
      boost::unordered::erase_if(s.counters, [&](auto const& kv) {
        if (kv.second.expires > now) return false;
        s.bytes -= counter_footprint(kv.first);
        return true;
      });
      s.counters_high_water = std::max<std::size_t>(1024, 2 * s.counters.size());
    }
  }

  memory_backend_options options_;
  std::size_t shard_count_;
  std::unique_ptr<shard[]> shards_;
};

// The memory backend: the invalidation protocol (protocol_store) over the
// primitives above.
template <surrogate_index Index = memory_surrogate_index>
class basic_memory_backend : public protocol_store<basic_memory_store<Index>> {
public:
  explicit basic_memory_backend(memory_backend_options options = {})
      : protocol_store<basic_memory_store<Index>>(std::make_shared<basic_memory_store<Index>>(options)) {}

  static std::size_t shard_count(memory_backend_options const& o) { return basic_memory_store<Index>::shard_count(o); }
  std::size_t size() const { return this->primitives().size(); }
  std::size_t bytes() const { return this->primitives().bytes(); }
  std::size_t index_size() const { return this->primitives().index_size(); }
  std::size_t counter_count() const { return this->primitives().counter_count(); }
  memory_backend_options const& options() const { return this->primitives().options(); }
};

using memory_backend = basic_memory_backend<memory_surrogate_index>;

static_assert(store_primitives<basic_memory_store<>>);
static_assert(store_backend<memory_backend>);
static_assert(store_backend<basic_memory_backend<null_surrogate_index>>);

} // namespace custom_cache_page
