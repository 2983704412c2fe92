// redis_client: a thread-safe pool of hiredis connections behind a circuit
// breaker. Shared by redis_backend and redis_surrogate_index. Internal to
// the Redis component.
#pragma once

#include <custom_cache_page/detail/redis_connection.hpp>
#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

namespace custom_cache_page {

// What a Redis client did, for tests and metrics.
struct redis_stats {
  std::uint64_t round_trips = 0;     // network round trips (a pipeline is one)
  std::uint64_t commands = 0;        // commands sent
  std::uint64_t connects = 0;        // connections opened
  std::uint64_t failures = 0;        // operations that failed on the store's side
  std::uint64_t rejected = 0;        // operations refused at once by the open circuit breaker
  std::uint64_t corrupt_entries = 0; // stored values that did not decode (served as misses)
  std::uint64_t unsigned_entries = 0; // values whose signature was missing or wrong (hmac_key_env; served as misses)
  std::uint64_t script_loads = 0;    // scripts sent whole after NOSCRIPT
};

namespace detail {

// Closed: calls go through; `threshold` consecutive failures open it.
// Open: calls fail at once until `cooldown` has passed; then the first
// caller is the probe (half-open) while others still fail at once; the
// probe's outcome closes or re-opens it.
class circuit_breaker {
public:
  using clock = std::chrono::steady_clock;

  circuit_breaker(unsigned threshold, std::chrono::milliseconds cooldown) : threshold_(threshold), cooldown_(cooldown) {}

  // Whether this caller may talk to the store; when not, how long until it may.
  bool admit(std::chrono::milliseconds& retry_in) {
    if (threshold_ == 0) return true;
    std::lock_guard lock(mutex_);
    if (state_ == state::closed) return true;
    auto const now = clock::now();
    if (state_ == state::open && now >= open_until_) {
      state_ = state::probing;
      return true;
    }
    retry_in = std::chrono::duration_cast<std::chrono::milliseconds>(std::max(open_until_ - now, clock::duration::zero()));
    return false;
  }

  void record(bool ok) {
    if (threshold_ == 0) return;
    std::lock_guard lock(mutex_);
    if (ok) {
      failures_ = 0;
      state_ = state::closed;
      return;
    }
    if (state_ == state::probing || ++failures_ >= threshold_) {
      state_ = state::open;
      open_until_ = clock::now() + cooldown_;
    }
  }

  bool is_open() const {
    std::lock_guard lock(mutex_);
    return state_ != state::closed;
  }
  unsigned consecutive_failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }

private:
  enum class state { closed, open, probing };
  unsigned const threshold_;
  std::chrono::milliseconds const cooldown_;
  mutable std::mutex mutex_;
  state state_ = state::closed;
  unsigned failures_ = 0;
  clock::time_point open_until_{};
};

// Up to `pool_size` connections, opened on demand. A broken connection is
// closed rather than returned, and so are the idle ones (a server that
// dropped one has usually dropped all); after a failed connect, new
// attempts wait out a growing backoff, so an outage costs refused connects
// at a bounded rate.
class redis_pool {
public:
  using clock = std::chrono::steady_clock;

  redis_pool(redis_options const& o, redis_counters& counters)
      : options_(o), counters_(counters),
        max_backoff_(std::clamp(o.breaker_cooldown / 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000))) {}

  ~redis_pool() = default;

  // A connection lent to one caller; returned (or closed when broken) on
  // destruction.
  class lease {
  public:
    lease(redis_pool* pool, std::unique_ptr<redis_connection> c) : pool_(pool), c_(std::move(c)) {}
    lease(lease&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)), c_(std::move(o.c_)) {}
    lease& operator=(lease&&) = delete;
    ~lease() {
      if (pool_ != nullptr && c_) pool_->give_back(std::move(c_));
    }
    redis_connection& operator*() const { return *c_; }
    redis_connection* operator->() const { return c_.get(); }

  private:
    redis_pool* pool_;
    std::unique_ptr<redis_connection> c_;
  };

  lease acquire() {
    std::unique_lock lock(mutex_);
    auto const deadline = clock::now() + options_.connect_timeout + options_.command_timeout;
    for (;;) {
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return lease(this, std::move(c));
      }
      if (open_ < options_.pool_size) break;
      if (available_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= options_.pool_size)
        throw cache_error(error::store_unavailable,
                          fmt::format("redis pool: no connection free within {} ms (pool of {})",
                                      std::chrono::duration_cast<std::chrono::milliseconds>(
                                          options_.connect_timeout + options_.command_timeout).count(),
                                      options_.pool_size));
    }
    auto const now = clock::now();
    if (now < next_connect_)
      throw cache_error(error::store_unavailable,
                        fmt::format("redis connect: backing off for {} ms after a failed attempt",
                                    std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_ - now).count()));
    ++open_;
    lock.unlock();
    try {
      auto c = std::make_unique<redis_connection>(options_, counters_);
      lock.lock();
      backoff_ = std::chrono::milliseconds(0);
      next_connect_ = {};
      return lease(this, std::move(c));
    } catch (...) {
      if (!lock.owns_lock()) lock.lock();
      --open_;
      backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds(10), max_backoff_);
      next_connect_ = clock::now() + backoff_;
      available_.notify_one();
      throw;
    }
  }

  std::size_t open_connections() const {
    std::lock_guard lock(mutex_);
    return open_;
  }

private:
  void give_back(std::unique_ptr<redis_connection> c) {
    std::vector<std::unique_ptr<redis_connection>> closing; // freed outside the lock
    {
      std::lock_guard lock(mutex_);
      if (c->broken()) {
        closing.push_back(std::move(c));
        for (auto& i : idle_) closing.push_back(std::move(i));
        idle_.clear();
        open_ -= closing.size();
        available_.notify_all();
      } else {
        idle_.push_back(std::move(c));
        available_.notify_one();
      }
    }
  }

  redis_options const& options_;
  redis_counters& counters_;
  std::chrono::milliseconds const max_backoff_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<redis_connection>> idle_;
  std::size_t open_ = 0; // idle plus lent
  std::chrono::milliseconds backoff_{0};
  clock::time_point next_connect_{};
};

class redis_client {
public:
  explicit redis_client(redis_options options)
      : options_(std::move(options)), breaker_(options_.breaker_threshold, options_.breaker_cooldown), pool_(options_, counters_) {
    if (options_.pool_size == 0) throw cache_error(error::bad_configuration, "redis pool size must be at least 1");
    if (options_.drain_batch == 0) throw cache_error(error::bad_configuration, "redis drain batch must be at least 1");
  }
  redis_client(redis_client const&) = delete;
  redis_client& operator=(redis_client const&) = delete;

  // One call to the store through the circuit breaker: refused at once
  // (cache_error store_unavailable) while it is open; its outcome is
  // recorded when it ends, a failure unless succeeded() was called.
  class attempt {
  public:
    attempt(redis_client& client, std::string_view what) : client_(client) {
      std::chrono::milliseconds retry_in{0};
      if (client.breaker_.admit(retry_in)) return;
      client.counters_.rejected.fetch_add(1, std::memory_order_relaxed);
      admitted_ = false;
      throw cache_error(error::store_unavailable,
                        fmt::format("{}: redis circuit breaker open after {} consecutive failures; next attempt in {} ms",
                                    what, client.options_.breaker_threshold, retry_in.count()));
    }
    attempt(attempt const&) = delete;
    attempt& operator=(attempt const&) = delete;
    ~attempt() {
      if (!admitted_) return;
      if (!ok_) client_.counters_.failures.fetch_add(1, std::memory_order_relaxed);
      client_.breaker_.record(ok_);
    }
    void succeeded(bool store_ok = true) { ok_ = store_ok; }

  private:
    redis_client& client_;
    bool admitted_ = true;
    bool ok_ = false;
  };

  // Runs `f(redis_connection&)` on a pooled connection through the circuit
  // breaker. Failures of the store (connect, I/O, timeout, a server that
  // cannot serve) count towards opening the breaker; other errors (an error
  // reply about one key) do not, since the store answered.
  template <class F>
  std::invoke_result_t<F&, redis_connection&> run(std::string_view what, F&& f) {
    attempt a(*this, what);
    auto c = pool_.acquire();
    try {
      auto result = f(*c);
      a.succeeded();
      return result;
    } catch (...) {
      a.succeeded(!c->broken());
      throw;
    }
  }

  // Tells this client's non-blocking connections (one per io_context,
  // detail/redis_async_connection.hpp) apart from other clients'.
  std::uint64_t id() const { return id_; }

  redis_options const& options() const { return options_; }
  redis_counters& counters() { return counters_; }
  // A command answered on a non-blocking connection (which counts its own
  // connects and failures): one round trip for the request that awaited it.
  void count_round_trip() {
    counters_.round_trips.fetch_add(1, std::memory_order_relaxed);
    counters_.commands.fetch_add(1, std::memory_order_relaxed);
  }
  bool breaker_open() const { return breaker_.is_open(); }
  std::size_t open_connections() const { return pool_.open_connections(); }

  redis_stats stats() const {
    redis_stats s;
    s.round_trips = counters_.round_trips.load(std::memory_order_relaxed);
    s.commands = counters_.commands.load(std::memory_order_relaxed);
    s.connects = counters_.connects.load(std::memory_order_relaxed);
    s.failures = counters_.failures.load(std::memory_order_relaxed);
    s.rejected = counters_.rejected.load(std::memory_order_relaxed);
    s.corrupt_entries = counters_.corrupt_entries.load(std::memory_order_relaxed);
    s.unsigned_entries = counters_.unsigned_entries.load(std::memory_order_relaxed);
    s.script_loads = counters_.script_loads.load(std::memory_order_relaxed);
    return s;
  }

private:
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
  }

  redis_options const options_;
  std::uint64_t const id_ = next_id();
  redis_counters counters_;
  circuit_breaker breaker_;
  redis_pool pool_; // last: its connections go before the counters they point to
};

} // namespace detail
} // namespace custom_cache_page
