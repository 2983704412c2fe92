// Tag counter values, one rule for every store. A counter is created only
// when an entry is stored under it or its tag is invalidated, so that a fill
// whose response is not kept writes nothing:
//
// - a fill that finds no counter records a proposed generation: random and
//   even. The store that keeps its entry creates the counter at that value;
// - invalidation starts a missing counter at a fresh generation, random and
//   odd, and bumps an existing one to the next odd value (+1 from even, +2
//   from odd);
// - so an even counter was created by a store and never invalidated since.
//   When two first fills of pages sharing a tag race, the second store finds
//   the first one's even counter where it proposed another even value: no
//   invalidation came between, and it adopts that counter's value instead of
//   being refused.
//
// All values lie in [2^32, 2^62): increments never overflow a signed 64-bit
// counter (Redis INCRBY), and a lost counter never restarts where an old
// entry could match it again.
#pragma once

#include <cstdint>
#include <random>

namespace custom_cache_page::detail {

inline std::uint64_t random_generation() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return (rng() >> 2) | (std::uint64_t{1} << 32);
}

// Where invalidation starts a missing counter.
inline std::uint64_t fresh_generation() { return random_generation() | 1; }

// What a fill records for a tag without a counter.
inline std::uint64_t proposed_generation() { return random_generation() & ~std::uint64_t{1}; }

// True for a value no invalidation produced.
inline bool never_invalidated(std::uint64_t v) { return v % 2 == 0; }

// The value an invalidation leaves: always odd.
inline std::uint64_t bumped(std::uint64_t v) { return v + (never_invalidated(v) ? 1 : 2); }

} // namespace custom_cache_page::detail
