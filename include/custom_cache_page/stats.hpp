// Counters of what the cache did, readable as a struct and as Prometheus
// text exposition.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include <custom_cache_page/detail/pending_census.hpp>

#include <fmt/format.h>

namespace custom_cache_page {

// Why a response was not stored.
enum class not_stored_reason : std::uint8_t {
  status,           // status not in cacheable_statuses
  set_cookie,       // carries Set-Cookie
  no_store,         // Cache-Control: no-store
  private_response, // Cache-Control: private
  vary_star,        // Vary: *
  too_large,        // body over max_body_size
  handler_declined, // the handler called do_not_cache()
  invalidated,      // a tag was invalidated while the handler ran
  head_request,     // a HEAD miss: no body to store
  zero_timeout,     // timeout of zero or less
  store_failed,     // the backend could not store it
  no_store_backend, // the backend keeps no pages (a CDN backend alone)
  invalid_field,    // a field no entry may replay (a control byte, over 16 KiB, a name that is not a token)
  request_no_store, // the request said Cache-Control: no-store (honour_request_directives)
  count_
};

inline constexpr std::string_view to_string(not_stored_reason r) {
  constexpr std::array<std::string_view, static_cast<std::size_t>(not_stored_reason::count_)> names{
      "status", "set-cookie", "no-store", "private", "vary-star", "too-large",
      "handler-declined", "invalidated", "head", "zero-timeout", "store-failed",
      "no-store-backend", "invalid-field", "request-no-store"};
  return names[static_cast<std::size_t>(r)];
}

struct stats_snapshot {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t stored = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(not_stored_reason::count_)> not_stored{};
  std::uint64_t bypasses = 0;
  std::uint64_t stale = 0;
  std::uint64_t coalesced = 0;
  std::uint64_t errors = 0;
  std::uint64_t invalidations = 0;
  std::uint64_t unknown_backends = 0; // requests bypassed because their backend name is not registered
  // Invalidations that failed (pending_invalidations.hpp), over the whole
  // process whichever stats object is read: kept for retrying now, the age
  // of the oldest, how many were kept, retried until they succeeded, and
  // refused because a backend's pending set was full.
  std::uint64_t pending_invalidations = 0;
  double oldest_pending_invalidation_seconds = 0;
  std::uint64_t invalidations_queued = 0;
  std::uint64_t invalidations_retried = 0;
  std::uint64_t invalidations_unqueued = 0;

  std::uint64_t not_stored_total() const {
    std::uint64_t n = 0;
    for (auto v : not_stored) n += v;
    return n;
  }
};

class stats {
public:
  void hit() { add(&slot::hits); }
  void miss() { add(&slot::misses); }
  void store() { add(&slot::stored); }
  void not_stored(not_stored_reason r) { mine().not_stored[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
  void bypass() { add(&slot::bypasses); }
  void stale() { add(&slot::stale); }
  void coalesced() { add(&slot::coalesced); }
  void error() { add(&slot::errors); }
  void invalidation() { add(&slot::invalidations); }
  void unknown_backend() { add(&slot::unknown_backends); }

  stats_snapshot snapshot() const {
    stats_snapshot s;
    for (auto const& c : slots_) {
      s.hits += c.hits.load(std::memory_order_relaxed);
      s.misses += c.misses.load(std::memory_order_relaxed);
      s.stored += c.stored.load(std::memory_order_relaxed);
      for (std::size_t i = 0; i < s.not_stored.size(); ++i) s.not_stored[i] += c.not_stored[i].load(std::memory_order_relaxed);
      s.bypasses += c.bypasses.load(std::memory_order_relaxed);
      s.stale += c.stale.load(std::memory_order_relaxed);
      s.coalesced += c.coalesced.load(std::memory_order_relaxed);
      s.errors += c.errors.load(std::memory_order_relaxed);
      s.invalidations += c.invalidations.load(std::memory_order_relaxed);
      s.unknown_backends += c.unknown_backends.load(std::memory_order_relaxed);
    }
    auto const p = detail::pending_census::get().read();
    s.pending_invalidations = p.pending;
    s.oldest_pending_invalidation_seconds = std::chrono::duration<double>(p.oldest).count();
    s.invalidations_queued = p.queued;
    s.invalidations_retried = p.retried;
    s.invalidations_unqueued = p.unqueued;
    return s;
  }

  // Prometheus text exposition format, metric names prefixed `prefix`.
  std::string prometheus(std::string_view prefix = "custom_cache_page") const {
    auto s = snapshot();
    std::string out;
    auto counter = [&](std::string_view name, std::string_view help, std::uint64_t v) {
      fmt::format_to(std::back_inserter(out), "# HELP {0}_{1}_total {2}\n# TYPE {0}_{1}_total counter\n{0}_{1}_total {3}\n",
                     prefix, name, help, v);
    };
    counter("hits", "Responses answered from the cache.", s.hits);
    counter("misses", "Cacheable requests answered by the handler.", s.misses);
    counter("stored", "Responses stored.", s.stored);
    fmt::format_to(std::back_inserter(out),
                   "# HELP {0}_not_stored_total Responses not stored, by reason.\n# TYPE {0}_not_stored_total counter\n",
                   prefix);
    for (std::size_t i = 0; i < s.not_stored.size(); ++i)
      fmt::format_to(std::back_inserter(out), "{}_not_stored_total{{reason=\"{}\"}} {}\n", prefix,
                     to_string(static_cast<not_stored_reason>(i)), s.not_stored[i]);
    counter("bypasses", "Requests that bypassed the cache (method, Authorization, only_if).", s.bypasses);
    counter("stale", "Stale responses served.", s.stale);
    counter("coalesced", "Misses that waited for another request's fill instead of running the handler.", s.coalesced);
    counter("errors", "Cache failures absorbed (the handler answered instead).", s.errors);
    counter("invalidations", "Tags invalidated.", s.invalidations);
    counter("unknown_backends", "Requests bypassed because their handler names a backend nobody registered.",
            s.unknown_backends);
    counter("invalidations_queued", "Invalidations that failed and were kept for retrying.", s.invalidations_queued);
    counter("invalidations_retried", "Kept invalidations that a retry completed.", s.invalidations_retried);
    counter("invalidations_unqueued", "Failed invalidations not kept: the backend's pending set was full.",
            s.invalidations_unqueued);
    auto gauge = [&](std::string_view name, std::string_view help, auto v) {
      fmt::format_to(std::back_inserter(out), "# HELP {0}_{1} {2}\n# TYPE {0}_{1} gauge\n{0}_{1} {3}\n", prefix, name, help, v);
    };
    gauge("pending_invalidations", "Failed invalidations being retried.", s.pending_invalidations);
    gauge("oldest_pending_invalidation_seconds", "Age of the oldest failed invalidation being retried.",
          s.oldest_pending_invalidation_seconds);
    return out;
  }

private:
  // Counters striped over cache lines, one stripe per thread (modulo the
  // stripe count), so that threads counting hits do not share a line.
  struct alignas(64) slot {
    std::atomic<std::uint64_t> hits{0}, misses{0}, stored{0}, bypasses{0}, stale{0}, coalesced{0}, errors{0}, invalidations{0}, unknown_backends{0};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(not_stored_reason::count_)> not_stored{};
  };
  static constexpr std::size_t stripes = 16;

  slot& mine() {
    static std::atomic<std::size_t> next{0};
    thread_local std::size_t const index = next.fetch_add(1, std::memory_order_relaxed) % stripes;
    return slots_[index];
  }
  void add(std::atomic<std::uint64_t> slot::*counter) { (mine().*counter).fetch_add(1, std::memory_order_relaxed); }

  std::array<slot, stripes> slots_{};
};

// The counters used when cache_options names none.
inline stats& global_stats() {
  static stats s;
  return s;
}

} // namespace custom_cache_page
