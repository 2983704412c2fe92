// A backend's fill lock held by one request, released when the fill is
// over (or left to expire when releasing fails). Held by the awaitable
// front end, it is released in the background on that executor: neither
// the answer nor a cancelled request waits for the store.
#pragma once

#include <custom_cache_page/backend.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <optional>
#include <string>
#include <utility>

namespace custom_cache_page::detail {

class fill_lock {
public:
  fill_lock() = default;
  fill_lock(any_backend backend, std::string key, std::string token,
            std::optional<boost::asio::any_io_executor> release_on = std::nullopt)
      : backend_(std::move(backend)), key_(std::move(key)), token_(std::move(token)), release_on_(std::move(release_on)) {}
  fill_lock(fill_lock&& o) noexcept = default;
  fill_lock& operator=(fill_lock&& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(key_, o.key_);
    std::swap(token_, o.token_);
    std::swap(release_on_, o.release_on_);
    return *this;
  }
  ~fill_lock() {
    if (token_.empty()) return;
    if (release_on_) {
      boost::asio::co_spawn(*release_on_, release(backend_, std::move(key_), std::move(token_)), boost::asio::detached);
      return;
    }
    try {
      backend_.release_fill_lock(key_, token_);
    } catch (...) {
      // It expires by itself.
    }
  }

  // Empty when none is held.
  std::string const& token() const { return token_; }
  // Released already (with the store): nothing left to do.
  void released() { token_.clear(); }

private:
  static boost::asio::awaitable<void> release(any_backend backend, std::string key, std::string token) {
    try {
      co_await backend.async_release_fill_lock(key, token);
    } catch (...) {
      // It expires by itself.
    }
  }

  any_backend backend_;
  std::string key_, token_;
  std::optional<boost::asio::any_io_executor> release_on_;
};

} // namespace custom_cache_page::detail
