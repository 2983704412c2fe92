// Invalidations that failed, kept and retried until they succeed.
//
// An invalidation that throws (a store down or paused, a CDN unreachable or
// answering 5xx/429) is still reported to its caller; any_backend also
// records it here, and a background thread retries it with backoff (first
// after `first_retry`, doubling to `max_retry`) until it succeeds. Until
// then this process serves no entry carrying the tag: its lookups are
// misses that run the handler (and store the new response, which repairs
// the entry for every process sharing the store).
//
// The set is bounded (`max_pending`). A failure that finds it full is not
// recorded: its caller learns it from the exception as always, the failure
// is counted (invalidations_unqueued), and the set is `overflowed` until it
// drains: meanwhile this process serves no entry from that backend at all.
#pragma once

#include <custom_cache_page/detail/pending_census.hpp>
#include <custom_cache_page/entry.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace custom_cache_page {

// Hard removes what a tag covers; soft (as Fastly's soft purge) marks it
// stale: it may then be served only inside the stale-while-revalidate and
// stale-if-error windows, and the first request after refreshes it.
enum class purge_mode { hard, soft };

struct pending_invalidation {
  std::string tag;
  purge_mode mode = purge_mode::hard;
  bool internal = false; // a target guard (cache_page's unsafe methods): stores only, never a CDN
  std::chrono::steady_clock::time_point since; // the first failure
  unsigned attempts = 0;                       // failed retries since
  std::string last_error;
};

struct pending_invalidations_options {
  std::size_t max_pending = 10000;
  std::chrono::milliseconds first_retry{100};
  std::chrono::milliseconds max_retry{1000};
};

class pending_invalidations : public std::enable_shared_from_this<pending_invalidations> {
public:
  using clock = std::chrono::steady_clock;
  // Performs one invalidation again; throws when it failed again.
  using retry_function = std::function<void(pending_invalidation const&)>;

  explicit pending_invalidations(retry_function retry, pending_invalidations_options options = {})
      : retry_(std::move(retry)), options_(options) {}
  pending_invalidations(pending_invalidations const&) = delete;
  pending_invalidations& operator=(pending_invalidations const&) = delete;
  ~pending_invalidations() {
    for (auto const& [id, p] : items_) detail::pending_census::get().done(p.item.since, false);
  }

  // Records a failed invalidation (a hard one covers a soft one of the
  // same tag) and makes sure the retrier runs; false when the set is full.
  bool add(std::string tag, purge_mode mode, bool internal, std::string why) {
    std::unique_lock lock(mutex_);
    auto [it, inserted] = items_.try_emplace({tag, internal});
    if (!inserted) {
      if (mode == purge_mode::hard) it->second.item.mode = mode;
      it->second.item.last_error = std::move(why);
      return true;
    }
    if (items_.size() > options_.max_pending) {
      items_.erase(it);
      overflowed_ = true;
      overflowed_flag_.store(true, std::memory_order_release);
      detail::pending_census::get().unqueued();
      return false;
    }
    auto const now = clock::now();
    it->second = {{std::move(tag), mode, internal, now, 0, std::move(why)}, now + options_.first_retry};
    detail::pending_census::get().queued(now);
    count_.store(items_.size(), std::memory_order_release);
    start_retrier(lock);
    return true;
  }

  // An invalidation of `tag` that succeeded, sent at `started`, covers a
  // pending one as hard as itself that had failed before it was sent (one
  // sent earlier may have landed before the data changed).
  void succeeded(std::string_view tag, purge_mode mode, bool internal, clock::time_point started) {
    if (empty()) return;
    std::lock_guard lock(mutex_);
    auto it = items_.find(id{std::string(tag), internal});
    if (it == items_.end() || it->second.item.since > started) return;
    if (mode == purge_mode::soft && it->second.item.mode == purge_mode::hard) return;
    remove(it, false);
  }

  // Whether an entry carrying `tags` must not be served.
  bool covers(std::span<tag_version const> tags) const {
    if (empty()) return false;
    std::lock_guard lock(mutex_);
    if (overflowed_) return true;
    return std::any_of(tags.begin(), tags.end(), [&](tag_version const& t) { return items_.contains(id{t.name, t.guard}); });
  }

  bool empty() const { return count_.load(std::memory_order_acquire) == 0 && !overflowed_flag_.load(std::memory_order_acquire); }
  std::size_t size() const { return count_.load(std::memory_order_acquire); }
  bool overflowed() const { return overflowed_flag_.load(std::memory_order_acquire); }

  std::vector<pending_invalidation> list() const {
    std::lock_guard lock(mutex_);
    std::vector<pending_invalidation> out;
    for (auto const& [id, p] : items_) out.push_back(p.item);
    return out;
  }

  // Waits at most `timeout` for the set to drain; true when it did.
  bool wait_until_empty(std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return drained_.wait_for(lock, timeout, [&] { return items_.empty(); });
  }

  // Stops retrying (the backend is going away).
  void stop() {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    wake_.notify_all();
  }

private:
  struct entry {
    pending_invalidation item;
    clock::time_point next;
  };
  using id = std::pair<std::string, bool>; // tag, internal

  void remove(std::map<id, entry>::iterator it, bool by_retry) {
    detail::pending_census::get().done(it->second.item.since, by_retry);
    items_.erase(it);
    count_.store(items_.size(), std::memory_order_release);
    if (!items_.empty()) return;
    overflowed_ = false;
    overflowed_flag_.store(false, std::memory_order_release);
    drained_.notify_all();
  }

  void start_retrier(std::unique_lock<std::mutex> const&) {
    wake_.notify_all();
    if (running_ || stopped_) return;
    running_ = true;
    std::thread([self = shared_from_this()] { self->retry_loop(); }).detach();
  }

  // Retries the earliest due until the set drains or stop().
  void retry_loop() {
    std::unique_lock lock(mutex_);
    while (!stopped_ && !items_.empty()) {
      auto due = std::min_element(items_.begin(), items_.end(), [](auto const& a, auto const& b) { return a.second.next < b.second.next; });
      if (auto const next = due->second.next; next > clock::now()) {
        wake_.wait_until(lock, next); // a copy: the item may be settled meanwhile
        continue;
      }
      auto const key = due->first;
      auto const item = due->second.item;
      lock.unlock();
      std::string failed = retry_once(item);
      lock.lock();
      auto it = items_.find(key);
      if (it == items_.end()) continue; // succeeded meanwhile
      if (failed.empty()) {
        remove(it, true);
        continue;
      }
      auto& e = it->second;
      e.item.last_error = std::move(failed);
      auto const backoff = options_.first_retry * (1u << std::min(++e.item.attempts, 16u));
      e.next = clock::now() + std::min<clock::duration>(backoff, options_.max_retry);
    }
    running_ = false;
  }

  // Empty when it succeeded, else why not.
  std::string retry_once(pending_invalidation const& item) const {
    try {
      retry_(item);
      return {};
    } catch (std::exception const& e) {
      return *e.what() != '\0' ? e.what() : "failed";
    } catch (...) {
      return "failed";
    }
  }

  retry_function retry_;
  pending_invalidations_options const options_;
  mutable std::mutex mutex_;
  mutable std::condition_variable drained_;
  std::condition_variable wake_;
  std::map<id, entry> items_;
  std::atomic<std::size_t> count_{0};
  std::atomic<bool> overflowed_flag_{false};
  bool overflowed_ = false;
  bool running_ = false;
  bool stopped_ = false;
};

} // namespace custom_cache_page
