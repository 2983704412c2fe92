// The demo's data: an in-memory product catalog behind a simulated
// database. Every query costs 20 ms, as a round trip to a real database
// would, so that the difference between a hit and a miss is visible; the
// wait is an Asio timer, so the thread serves other connections meanwhile.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace catalog_demo {

inline constexpr std::array<std::string_view, 5> categories{"books", "games", "tools", "music", "garden"};

inline bool is_category(std::string_view c) {
  return std::find(categories.begin(), categories.end(), c) != categories.end();
}

struct product {
  int id = 0;
  std::string name;
  std::string category; // never changes once the product exists
  int price_cents = 0;
};

struct product_page {
  std::vector<product> products; // the requested page
  std::size_t total = 0;         // products in the whole category
};

class catalog {
public:
  static constexpr std::size_t page_size = 20;

  // Each query waits `query_latency` (a database round trip) on an Asio
  // timer, holding no thread.
  explicit catalog(std::chrono::milliseconds query_latency = std::chrono::milliseconds(20), int initial_products = 300)
      : query_latency_(query_latency) {
    for (int id = 1; id <= initial_products; ++id)
      products_.emplace(id, product{id, "Product " + std::to_string(id),
                                    std::string(categories[static_cast<std::size_t>(id - 1) % categories.size()]),
                                    499 + (id * 37) % 5000});
    next_id_ = initial_products + 1;
  }

  catalog(catalog const&) = delete;
  catalog& operator=(catalog const&) = delete;

  // Not a query: the category index a real application keeps in memory.
  // Categories never change, so this answer cannot go stale.
  std::optional<std::string> category_of(int id) const {
    std::shared_lock lock(mutex_);
    auto it = products_.find(id);
    if (it == products_.end()) return std::nullopt;
    return it->second.category;
  }

  boost::asio::awaitable<std::optional<product>> find(int id) const {
    co_return co_await query([&]() -> std::optional<product> {
      auto it = products_.find(id);
      if (it == products_.end()) return std::nullopt;
      return it->second;
    });
  }

  // Page `page` (from 1) of `category`, in id order; empty past the end or
  // for an unknown category.
  boost::asio::awaitable<product_page> list(std::string category, std::size_t page) const {
    co_return co_await query([&] {
      product_page out;
      std::size_t const first = (page - 1) * page_size;
      for (auto const& [id, p] : products_) {
        if (p.category != category) continue;
        if (out.total >= first && out.products.size() < page_size) out.products.push_back(p);
        ++out.total;
      }
      return out;
    });
  }

  boost::asio::awaitable<std::optional<product>> rename(int id, std::string name) {
    co_return co_await write([&]() -> std::optional<product> {
      auto it = products_.find(id);
      if (it == products_.end()) return std::nullopt;
      it->second.name = std::move(name);
      return it->second;
    });
  }

  boost::asio::awaitable<product> create(std::string name, std::string category) {
    co_return co_await write([&] {
      product p{next_id_++, std::move(name), std::move(category), 999};
      products_.emplace(p.id, p);
      return p;
    });
  }

  std::uint64_t queries() const { return queries_.load(std::memory_order_relaxed); }

private:
  // A read sees the data as it was when the query started, however long it
  // then takes: what a cache filled from it must be invalidated against.
  template <class Read>
  boost::asio::awaitable<std::invoke_result_t<Read&>> query(Read read) const {
    queries_.fetch_add(1, std::memory_order_relaxed);
    auto snapshot = [&] {
      std::shared_lock lock(mutex_);
      return read();
    }();
    co_await latency();
    co_return snapshot;
  }

  // A write is visible once it returns, and not before.
  template <class Change>
  boost::asio::awaitable<std::invoke_result_t<Change&>> write(Change change) {
    queries_.fetch_add(1, std::memory_order_relaxed);
    co_await latency();
    std::unique_lock lock(mutex_);
    co_return change();
  }

  boost::asio::awaitable<void> latency() const {
    boost::asio::steady_timer round_trip(co_await boost::asio::this_coro::executor, query_latency_);
    co_await round_trip.async_wait(boost::asio::use_awaitable);
  }

  std::chrono::milliseconds query_latency_;
  mutable std::shared_mutex mutex_;
  std::map<int, product> products_;
  int next_id_ = 1;
  mutable std::atomic<std::uint64_t> queries_{0};
};

} // namespace catalog_demo
