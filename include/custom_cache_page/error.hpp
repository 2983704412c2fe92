// Error codes and exceptions of custom_cache_page.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace custom_cache_page {

enum class error {
  store_unavailable = 1, // the backend's store cannot be reached
  corrupt_entry,         // a stored value failed to decode
  unknown_backend,       // no backend registered under that name
  invalidation_failed,   // an invalidation did not complete
  bad_configuration,     // a backend URL or option that cannot be used
  entry_too_large,       // the store does not take entries that large
};

class error_category_impl : public std::error_category {
public:
  char const* name() const noexcept override { return "custom_cache_page"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
    case error::store_unavailable: return "cache store unavailable";
    case error::corrupt_entry: return "corrupt cache entry";
    case error::unknown_backend: return "unknown cache backend";
    case error::invalidation_failed: return "cache invalidation failed";
    case error::bad_configuration: return "bad cache configuration";
    case error::entry_too_large: return "cache entry too large for the store";
    }
    return "unknown custom_cache_page error";
  }
};

inline std::error_category const& error_category() noexcept {
  static error_category_impl const category;
  return category;
}

inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), error_category()}; }

// Thrown by every custom_cache_page operation that must not fail silently.
// what() is the message as given; code() says which kind of failure.
class cache_error : public std::runtime_error {
public:
  cache_error(error e, std::string const& what) : std::runtime_error(what), code_(make_error_code(e)) {}
  std::error_code const& code() const noexcept { return code_; }

private:
  std::error_code code_;
};

// A backend name that nothing was registered under; what() names it.
class unknown_backend_error : public cache_error {
public:
  explicit unknown_backend_error(std::string name)
      : cache_error(error::unknown_backend, "unknown cache backend '" + name + "'"), name_(std::move(name)) {}
  std::string const& name() const noexcept { return name_; }

private:
  std::string name_;
};

// An invalidation that did not complete: the tag may still be served.
class invalidation_error : public cache_error {
public:
  invalidation_error(std::string tag, std::string const& why)
      : cache_error(error::invalidation_failed, "invalidating tag '" + tag + "' failed: " + why), tag_(std::move(tag)) {}
  std::string const& tag() const noexcept { return tag_; }

private:
  std::string tag_;
};

} // namespace custom_cache_page

template <>
struct std::is_error_code_enum<custom_cache_page::error> : std::true_type {};
