// A backend's fill lock held by one request, released when the fill is
// over (or left to expire when releasing fails).
#pragma once

#include <custom_cache_page/backend.hpp>

#include <string>
#include <utility>

namespace custom_cache_page::detail {

class fill_lock {
public:
  fill_lock() = default;
  fill_lock(any_backend backend, std::string key, std::string token)
      : backend_(std::move(backend)), key_(std::move(key)), token_(std::move(token)) {}
  fill_lock(fill_lock&& o) noexcept = default;
  fill_lock& operator=(fill_lock&& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(key_, o.key_);
    std::swap(token_, o.token_);
    return *this;
  }
  ~fill_lock() {
    if (token_.empty()) return;
    try {
      backend_.release_fill_lock(key_, token_);
    } catch (...) {
      // It expires by itself.
    }
  }

private:
  any_backend backend_;
  std::string key_, token_;
};

} // namespace custom_cache_page::detail
