// memory_backend: pages, tag counters and the surrogate index in process
// memory, split into shards (a power of two) each with its own lock, byte
// budget, CLOCK queue, index and counters.
//
// Entries and their index members live in the shard of their key, so
// eviction and expiry remove index members in the same critical section:
// the index never holds a key the store has dropped. A tag's counter lives
// in the shard of the tag's name; invalidation bumps it, then drains the
// tag from every shard's index.
//
// Eviction is CLOCK: a hit only sets a flag (and only when it is clear), so
// hits stay under the shared lock and scale across threads, where LRU would
// take the exclusive lock to move the entry on every hit.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/generations.hpp>
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


template <surrogate_index Index = memory_surrogate_index>
class basic_memory_backend {
public:
  using clock = cached_response::clock;

  explicit basic_memory_backend(memory_backend_options options = {})
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

  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) {
    auto const now = clock::now();
    lookup_result out;
    out.versions.reserve(tags.size());
    for (auto const& t : tags) out.versions.push_back(counter_of(t.name, now));
    std::shared_ptr<cached_response const> entry;
    {
      auto& s = shard_of(key);
      std::shared_lock lock(s.mutex);
      auto it = s.entries.find(key);
      if (it == s.entries.end() || it->second.entry->retain_until() <= now) return out;
      if (!it->second.referenced.load(std::memory_order_relaxed))
        it->second.referenced.store(true, std::memory_order_relaxed);
      entry = it->second.entry;
    }
    // Every tag the entry recorded, including those its handler added, must
    // still have the version it was built under, or have been bumped by
    // soft purges alone since (then the entry is only stale).
    for (auto const& t : entry->tags) {
      auto requested = std::find_if(tags.begin(), tags.end(), [&](resolved_tag const& r) { return r.name == t.name; });
      auto current = requested != tags.end() ? out.versions[static_cast<std::size_t>(requested - tags.begin())]
                                             : counter_of(t.name, now);
      if (current == t.version) continue;
      if (current == 0 || t.version > current || t.version < floor_of(t.name)) return out;
      out.soft_purged = true;
    }
    out.entry = std::move(entry);
    return out;
  }

  // Reads only: a missing counter gives its proposed generation (or 0 for a
  // guard), created by store() if the entry is kept.
  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    auto const now = clock::now();
    std::vector<std::uint64_t> out;
    out.reserve(tags.size());
    for (auto const& t : tags) {
      auto const v = counter_of(t.name, now);
      out.push_back(v != 0 || t.guard ? v : detail::proposed_generation());
    }
    return out;
  }

  // Checks the entry's tag versions (creating the counters that are still
  // missing at the versions it recorded), inserts, then checks again: an
  // invalidation bumps the counter before it drains the index, so a fill
  // that raced it is either drained with the index or caught by the second
  // check (and lookups compare versions meanwhile).
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    auto const now = clock::now();
    auto const versions = hold_counters(*entry, now);
    if (!versions) return false;
    if (!recorded(*entry, *versions)) entry = detail::with_versions(*entry, *versions); // two first fills raced
    std::size_t const bytes = footprint(key, *entry);
    if (bytes > options_.max_entry || bytes > shard_budget())
      throw cache_error(error::entry_too_large, "entry of " + std::to_string(bytes) + " bytes exceeds the memory backend's limit");
    auto& s = shard_of(key);
    std::uint64_t generation = 0;
    {
      std::unique_lock lock(s.mutex);
      erase_locked(s, key);
      sweep_locked(s, now, 8);
      while (s.bytes + bytes > shard_budget() && evict_one_locked(s)) {
      }
      auto& slot = s.entries[key];
      slot.entry = entry;
      slot.bytes = bytes;
      slot.generation = generation = ++s.generation;
      slot.referenced.store(false, std::memory_order_relaxed);
      s.bytes += bytes;
      s.clock.push_back({key, generation});
      for (auto const& t : entry->tags)
        if (indexed(t)) s.index.add(t.name, key, entry->retain_until());
    }
    if (versions_current(*entry, now)) return true;
    std::unique_lock lock(s.mutex);
    if (auto it = s.entries.find(key); it != s.entries.end() && it->second.generation == generation) erase_locked(s, key);
    return false;
  }

  bool erase(std::string const& key) {
    auto& s = shard_of(key);
    std::unique_lock lock(s.mutex);
    return erase_locked(s, key);
  }

  // Hard: bumps the counter and drains the index. Soft: bumps the counter
  // only; the floor stays, so entries built since it are served as stale.
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    auto const now = clock::now();
    invalidation_result result;
    result.tag = tag;
    result.mode = mode;
    {
      auto& s = shard_of(tag);
      std::unique_lock lock(s.mutex);
      auto [it, inserted] = s.counters.try_emplace(tag);
      auto& c = it->second;
      if (inserted) s.bytes += counter_footprint(tag);
      // A missing or expired counter restarts at a fresh generation; entries
      // built under any earlier one no longer match.
      bool const fresh = inserted || c.expires <= now;
      c.value = fresh ? detail::fresh_generation() : detail::bumped(c.value);
      if (fresh || mode == purge_mode::hard) c.floor = c.value;
      c.expires = std::max(c.expires, now + default_version_ttl);
      result.version = c.value;
    }
    if (mode == purge_mode::soft) return result;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      auto& s = shards_[i];
      std::unique_lock lock(s.mutex);
      for (auto const& key : s.index.take(tag)) result.entries_removed += erase_locked(s, key) ? 1 : 0;
    }
    return result;
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
    boost::unordered_flat_map<std::string, counter> counters;
    std::size_t bytes = 0;
    std::uint64_t generation = 0;
    std::size_t counters_high_water = 1024;
  };

  // Versioned tags and the target guard need no index: their counter alone
  // invalidates, in O(1).
  static bool indexed(tag_version const& t) { return !t.versioned && !t.guard; }

  shard& shard_of(std::string const& name) const { return shards_[std::hash<std::string>{}(name) & (shard_count_ - 1)]; }
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

  std::uint64_t counter_of(std::string const& tag, clock::time_point now) const {
    auto& s = shard_of(tag);
    std::shared_lock lock(s.mutex);
    auto it = s.counters.find(tag);
    return it == s.counters.end() || it->second.expires <= now ? 0 : it->second.value;
  }

  std::uint64_t floor_of(std::string const& tag) const {
    auto& s = shard_of(tag);
    std::shared_lock lock(s.mutex);
    auto it = s.counters.find(tag);
    return it == s.counters.end() ? std::numeric_limits<std::uint64_t>::max() : it->second.floor;
  }

  bool versions_current(cached_response const& e, clock::time_point now) const {
    return std::all_of(e.tags.begin(), e.tags.end(), [&](tag_version const& t) { return counter_of(t.name, now) == t.version; });
  }

  // The versions the entry may be kept under (see detail/generations.hpp):
  // its own, creating missing counters at them, or a counter's value that
  // another first fill created meanwhile. Every counter is kept alive at
  // least as long as the entry. Nothing when a counter moved on.
  std::optional<std::vector<std::uint64_t>> hold_counters(cached_response const& e, clock::time_point now) {
    std::vector<std::uint64_t> versions;
    for (auto const& t : e.tags) {
      versions.push_back(t.version);
      if (t.guard) {
        if (counter_of(t.name, now) != t.version) return std::nullopt;
        continue;
      }
      if (t.version == 0) return std::nullopt;
      auto& s = shard_of(t.name);
      std::unique_lock lock(s.mutex);
      auto [it, inserted] = s.counters.try_emplace(t.name);
      auto& c = it->second;
      if (inserted) s.bytes += counter_footprint(t.name);
      if (inserted || c.expires <= now) c = {t.version, t.version, now};
      if (c.value != t.version && !(detail::never_invalidated(c.value) && detail::never_invalidated(t.version)))
        return std::nullopt;
      versions.back() = c.value;
      c.expires = std::max(c.expires, e.retain_until());
    }
    return versions;
  }

  static bool recorded(cached_response const& e, std::vector<std::uint64_t> const& versions) {
    return std::equal(e.tags.begin(), e.tags.end(), versions.begin(), [](tag_version const& t, std::uint64_t v) { return t.version == v; });
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

using memory_backend = basic_memory_backend<memory_surrogate_index>;

static_assert(store_backend<memory_backend>);
static_assert(store_backend<basic_memory_backend<null_surrogate_index>>);

} // namespace custom_cache_page
