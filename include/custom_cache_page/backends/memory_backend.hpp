// memory_backend: pages, tag counters and the surrogate index in process
// memory, under one reader/writer lock. Bounded by max_bytes (CLOCK
// eviction: a hit only sets a flag, so hits stay under the shared lock);
// expired entries are misses at once and are swept a few at a time on
// every store.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/indexes/memory_index.hpp>
#include <custom_cache_page/indexes/null_index.hpp>
#include <custom_cache_page/surrogate_index.hpp>

#include <unordered_map>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <vector>

namespace custom_cache_page {

struct memory_backend_options {
  std::size_t max_bytes = std::size_t{256} << 20; // budget for entries, keys and index
  std::size_t max_entry = std::size_t{8} << 20;   // larger entries are not stored
};

namespace detail {
// A fresh counter generation: random, in [2^32, 2^62) so that increments
// never overflow a signed 64-bit counter (Redis INCR) and a lost counter
// never restarts where an old entry could match it again.
inline std::uint64_t fresh_generation() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return (rng() >> 2) | (std::uint64_t{1} << 32);
}
} // namespace detail

template <surrogate_index Index = memory_surrogate_index>
class basic_memory_backend {
public:
  using clock = cached_response::clock;

  explicit basic_memory_backend(memory_backend_options options = {}) : options_(options) {}

  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) {
    auto const now = clock::now();
    lookup_result out;
    out.versions.reserve(tags.size());
    std::shared_lock lock(mutex_);
    for (auto const& t : tags) out.versions.push_back(counter_of(t.name, now));
    auto it = entries_.find(key);
    if (it == entries_.end()) return out;
    auto const& slot = it->second;
    if (slot.entry->expires_at <= now) return out;
    // Every tag the entry recorded, including those its handler added, must
    // still have the version it was built under.
    for (auto const& t : slot.entry->tags)
      if (counter_of(t.name, now) != t.version) return out;
    slot.referenced.store(true, std::memory_order_relaxed);
    out.entry = slot.entry;
    return out;
  }

  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    auto const now = clock::now();
    std::vector<std::uint64_t> out;
    out.reserve(tags.size());
    std::unique_lock lock(mutex_);
    for (auto const& t : tags) {
      auto [it, inserted] = counters_.try_emplace(t.name);
      auto& c = it->second;
      if (inserted || c.expires <= now) {
        c.value = detail::fresh_generation();
        c.expires = now + t.version_ttl;
      } else if (c.expires < now + t.version_ttl) {
        c.expires = now + t.version_ttl;
      }
      out.push_back(c.value);
    }
    return out;
  }

  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    auto const now = clock::now();
    std::size_t const bytes = entry->footprint() + key.capacity() + slot_overhead +
                              static_cast<std::size_t>(std::count_if(entry->tags.begin(), entry->tags.end(),
                                                                     [](tag_version const& t) { return !t.versioned; })) *
                                  (key.capacity() + index_overhead);
    std::unique_lock lock(mutex_);
    for (auto const& t : entry->tags)
      if (counter_of(t.name, now) != t.version) return false;
    if (bytes > options_.max_entry || bytes > options_.max_bytes) {
      erase_locked(key);
      return true; // nothing to store, nothing wrong: too large for this store
    }
    erase_locked(key);
    sweep_locked(now, 8);
    while (bytes_ + bytes > options_.max_bytes && evict_one_locked()) {
    }
    auto& slot = entries_[key];
    slot.entry = entry;
    slot.bytes = bytes;
    slot.generation = ++generation_;
    slot.referenced.store(false, std::memory_order_relaxed);
    bytes_ += bytes;
    clock_.push_back({key, slot.generation});
    // Versioned tags need no index: their counter alone invalidates, in O(1).
    for (auto const& t : entry->tags)
      if (!t.versioned) index_.add(t.name, key, entry->expires_at);
    return true;
  }

  bool erase(std::string const& key) {
    std::unique_lock lock(mutex_);
    return erase_locked(key);
  }

  invalidation_result invalidate_tag(std::string const& tag) {
    auto const now = clock::now();
    invalidation_result result;
    result.tag = tag;
    std::unique_lock lock(mutex_);
    auto [it, inserted] = counters_.try_emplace(tag);
    auto& c = it->second;
    // A missing or expired counter restarts at a fresh generation; entries
    // built under any earlier one no longer match.
    c.value = (inserted || c.expires <= now) ? detail::fresh_generation() : c.value + 1;
    c.expires = std::max(c.expires, now + default_version_ttl);
    result.version = c.value;
    for (auto const& key : index_.take(tag)) result.entries_removed += erase_locked(key) ? 1 : 0;
    return result;
  }

  void prepare_response(boost::beast::http::fields&, std::span<tag_version const>) {}

  // Introspection for tests and metrics.
  std::size_t size() const {
    std::shared_lock lock(mutex_);
    return entries_.size();
  }
  std::size_t bytes() const {
    std::shared_lock lock(mutex_);
    return bytes_;
  }
  std::size_t index_size() const {
    std::shared_lock lock(mutex_);
    return index_.size();
  }
  memory_backend_options const& options() const { return options_; }

private:
  // Per-entry bookkeeping besides key and entry: map node, CLOCK queue slot.
  static constexpr std::size_t slot_overhead = 96;
  static constexpr std::size_t index_overhead = 48;

  struct slot {
    std::shared_ptr<cached_response const> entry;
    std::size_t bytes = 0;
    std::uint64_t generation = 0; // tells this entry's CLOCK slot from a replaced one's
    mutable std::atomic<bool> referenced{false};
  };
  struct counter {
    std::uint64_t value = 0;
    clock::time_point expires{};
  };

  std::uint64_t counter_of(std::string const& tag, clock::time_point now) const {
    auto it = counters_.find(tag);
    return it == counters_.end() || it->second.expires <= now ? 0 : it->second.value;
  }

  bool erase_locked(std::string const& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    for (auto const& t : it->second.entry->tags)
      if (!t.versioned) index_.remove(t.name, key);
    bytes_ -= it->second.bytes;
    entries_.erase(it);
    return true; // its CLOCK slot is skipped when reached
  }

  struct clock_slot {
    std::string key;
    std::uint64_t generation;
  };

  auto live(clock_slot const& s) {
    auto it = entries_.find(s.key);
    return it != entries_.end() && it->second.generation == s.generation ? it : entries_.end();
  }

  // CLOCK: the oldest slot goes unless it was read since it last came round.
  bool evict_one_locked() {
    while (!clock_.empty()) {
      clock_slot s = std::move(clock_.front());
      clock_.pop_front();
      auto it = live(s);
      if (it == entries_.end()) continue;
      if (it->second.referenced.exchange(false, std::memory_order_relaxed)) {
        clock_.push_back(std::move(s));
        continue;
      }
      erase_locked(s.key);
      return true;
    }
    return false;
  }

  // Drops up to `budget` expired entries or dead slots from the front of the
  // CLOCK queue; compacts the queue and the counters when dead items
  // outnumber live ones (amortised O(1) per store).
  void sweep_locked(clock::time_point now, int budget) {
    for (; budget > 0 && !clock_.empty(); --budget) {
      auto it = live(clock_.front());
      if (it != entries_.end() && it->second.entry->expires_at > now) break;
      if (it != entries_.end()) erase_locked(clock_.front().key);
      clock_.pop_front();
    }
    if (clock_.size() > 2 * entries_.size() + 64) {
      std::erase_if(clock_, [&](clock_slot const& s) { return live(s) == entries_.end(); });
    }
    if (counters_.size() > counters_high_water_) {
      boost::unordered::erase_if(counters_, [&](auto const& kv) { return kv.second.expires <= now; });
      counters_high_water_ = std::max<std::size_t>(4096, 2 * counters_.size());
    }
  }

  memory_backend_options options_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, slot> entries_;
  boost::unordered_flat_map<std::string, counter> counters_;
  Index index_;
  std::deque<clock_slot> clock_;
  std::size_t bytes_ = 0;
  std::uint64_t generation_ = 0;
  std::size_t counters_high_water_ = 4096;
};

using memory_backend = basic_memory_backend<memory_surrogate_index>;

static_assert(backend<memory_backend>);
static_assert(backend<basic_memory_backend<null_surrogate_index>>);

} // namespace custom_cache_page
