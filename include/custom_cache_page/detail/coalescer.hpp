// Request coalescing within a process: of the concurrent misses on one key,
// one (the leader) runs the handler and the others wait for it.
//
// A waiter learns only whether the leader stored its response, never the
// response itself: it then looks the key up again, so what it serves has
// passed the backend's version check after any invalidation that ended
// before the lookup (a response handed over directly could predate an
// invalidation that finished while the waiter was joining).
//
// Waiters of the synchronous front end block on a condition variable; those
// of the awaitable one suspend on a channel of their own, which finish()
// (on any thread) or the waiter's timer fills: nobody blocks a thread.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace custom_cache_page::detail {

class coalescer {
public:
  class flight {
  public:
    // Whether the leader stored a response; false when it did not or when
    // `timeout` passed first (the waiter then runs the handler itself).
    bool wait_stored(std::chrono::milliseconds timeout) {
      std::unique_lock lock(mutex_);
      done_cv_.wait_for(lock, timeout, [&] { return done_; });
      return done_ && stored_;
    }

    // The same, suspending the calling coroutine. Its cancellation ends
    // the wait at once (false; the caller then sees the cancellation).
    boost::asio::awaitable<bool> async_wait_stored(std::chrono::milliseconds timeout) {
      auto const ex = co_await boost::asio::this_coro::executor;
      auto wake = std::make_shared<wake_channel>(ex, 1);
      {
        std::lock_guard lock(mutex_);
        if (done_) co_return stored_;
        wakers_.push_back(wake);
      }
      boost::asio::steady_timer timer(ex, timeout);
      timer.async_wait([wake](boost::system::error_code ec) {
        if (!ec) wake->try_send(ec);
      });
      co_await wake->async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
      timer.cancel();
      std::lock_guard lock(mutex_);
      std::erase(wakers_, wake);
      co_return done_ && stored_;
    }

  private:
    using wake_channel = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;
    friend class coalescer;
    // The channels are woken, and let go, under the mutex: a waiter that
    // has woken takes it before its channel (and then its io_context) may
    // go, so the last reference to a channel is always its waiter's.
    void finish(bool stored) {
      {
        std::lock_guard lock(mutex_);
        if (done_) return;
        done_ = true;
        stored_ = stored;
        for (auto const& w : wakers_) w->try_send(boost::system::error_code{});
        wakers_.clear();
      }
      done_cv_.notify_all();
    }
    std::mutex mutex_;
    std::condition_variable done_cv_;
    bool done_ = false;
    bool stored_ = false;
    std::vector<std::shared_ptr<wake_channel>> wakers_;
  };

  // The leader's hold on a key. finish() (or destruction: a handler that
  // threw, a response that was not stored) releases the waiters, after the
  // key has left the table so that later requests look up afresh.
  class lease {
  public:
    lease() = default;
    lease(lease&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), key_(std::move(o.key_)), flight_(std::move(o.flight_)) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        finish(false);
        owner_ = std::exchange(o.owner_, nullptr);
        key_ = std::move(o.key_);
        flight_ = std::move(o.flight_);
      }
      return *this;
    }
    ~lease() { finish(false); }

    explicit operator bool() const { return owner_ != nullptr; }

    void finish(bool stored) {
      if (owner_ == nullptr) return;
      owner_->leave(key_, flight_);
      flight_->finish(stored);
      owner_ = nullptr;
    }

  private:
    friend class coalescer;
    lease(coalescer* owner, std::string key, std::shared_ptr<flight> f)
        : owner_(owner), key_(std::move(key)), flight_(std::move(f)) {}
    coalescer* owner_ = nullptr;
    std::string key_;
    std::shared_ptr<flight> flight_;
  };

  // Either a lease (this request leads) or the flight to wait on.
  struct joined {
    lease lead;
    std::shared_ptr<flight> follow;
  };

  joined join(std::string const& key) {
    auto& s = stripe_of(key);
    std::lock_guard lock(s.mutex);
    auto [it, inserted] = s.flights.try_emplace(key);
    if (!inserted) return {lease(), it->second};
    it->second = std::make_shared<flight>();
    return {lease(this, key, it->second), nullptr};
  }

  // A lease when nobody leads `key`, else nothing (stale-while-revalidate:
  // the others serve the stale entry instead of waiting).
  lease try_lead(std::string const& key) {
    auto joined = join(key);
    return std::move(joined.lead);
  }

private:
  void leave(std::string const& key, std::shared_ptr<flight> const& f) {
    auto& s = stripe_of(key);
    std::lock_guard lock(s.mutex);
    if (auto it = s.flights.find(key); it != s.flights.end() && it->second == f) s.flights.erase(it);
  }

  struct alignas(64) stripe {
    std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<flight>> flights;
  };
  static constexpr std::size_t stripe_count = 16;
  stripe& stripe_of(std::string const& key) { return stripes_[std::hash<std::string>{}(key) % stripe_count]; }

  stripe stripes_[stripe_count];
};

} // namespace custom_cache_page::detail
