// Process-wide figures over every backend's pending invalidations (see
// pending_invalidations.hpp), for stats.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>

namespace custom_cache_page::detail {

class pending_census {
public:
  using time_point = std::chrono::steady_clock::time_point;
  struct figures {
    std::uint64_t pending = 0, queued = 0, retried = 0, unqueued = 0;
    std::chrono::steady_clock::duration oldest{0};
  };

  // Never destroyed: retry threads may outlive static destruction.
  static pending_census& get() {
    static auto* census = new pending_census;
    return *census;
  }

  void queued(time_point since) {
    std::lock_guard lock(mutex_);
    since_.insert(since);
    ++queued_;
  }
  void done(time_point since, bool by_retry) {
    std::lock_guard lock(mutex_);
    if (auto it = since_.find(since); it != since_.end()) since_.erase(it);
    if (by_retry) ++retried_;
  }
  void unqueued() {
    std::lock_guard lock(mutex_);
    ++unqueued_;
  }
  figures read() const {
    std::lock_guard lock(mutex_);
    figures f{since_.size(), queued_, retried_, unqueued_, {}};
    if (!since_.empty()) f.oldest = std::chrono::steady_clock::now() - *since_.begin();
    return f;
  }

private:
  mutable std::mutex mutex_;
  std::multiset<time_point> since_;
  std::uint64_t queued_ = 0, retried_ = 0, unqueued_ = 0;
};

} // namespace custom_cache_page::detail
