// The registry: backends by name, a default backend, and invalidate_tag(s).
//
// The default backend is the one set_default() named, else the one added
// as "default", else an in-memory one named "memory" created on first use.
// The environment variable CUSTOM_CACHE_PAGE_BACKEND, when set, configures
// the default backend from a URL (see make_backend()).
//
// Backends are held by shared ownership: get() and get_default() hand out
// copies, so a backend replaced by add() or dropped by clear() is freed
// once the last request using it is done.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/backends/composite_backend.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/stats.hpp>

#include <boost/url/parse.hpp>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

namespace detail {

// "256MiB", "64k", "1048576" -> bytes.
inline std::size_t parse_size(std::string_view text, std::string_view what) {
  std::size_t i = 0;
  std::uint64_t n = 0;
  auto bad = [&] {
    return cache_error(error::bad_configuration, "bad size for " + std::string(what) + ": '" + std::string(text) + "'");
  };
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (n > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) throw bad();
    n = n * 10 + static_cast<unsigned>(text[i++] - '0');
  }
  std::string unit(text.substr(i));
  for (auto& c : unit) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mul = 1ull << 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") mul = 1ull << 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") mul = 1ull << 30;
  if (i == 0 || mul == 0 || n > std::numeric_limits<std::size_t>::max() / mul) throw bad();
  return static_cast<std::size_t>(n * mul);
}

// "2" -> 2, for a member index of composite://.
inline std::size_t parse_index(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    throw cache_error(error::bad_configuration, "bad " + std::string(what) + ": '" + std::string(text) + "'");
  return n;
}

// The member list of "composite://a,b://host:port": set when a member URL
// stands in the list (before any '?', so that ?member=URL is not one).
inline std::optional<std::string_view> composite_list(std::string_view url) {
  constexpr std::string_view scheme = "composite://";
  if (!url.starts_with(scheme)) return std::nullopt;
  auto const list = url.substr(scheme.size());
  if (list.substr(0, list.find('?')).find("://") == std::string_view::npos) return std::nullopt;
  return list;
}

} // namespace detail

// Builds a backend from a URL. The core knows:
//
//   memory://?max_bytes=256MiB&shards=16&max_entry=8MiB
//   composite://memory,varnish        members by name: a backend registered
//                                     under that name (shared, not copied),
//                                     else a new one from "<name>://"
//   composite://memory,varnish://127.0.0.1:6081
//                                     names and member URLs in one list
//                                     (options then take the form below)
//   composite://?member=memory://&member=varnish://127.0.0.1:6081&read=0&versions=0
//                                     members by URL, in order (percent-encode
//                                     '%', '&' and '#' inside a member URL);
//                                     both forms may be combined, names first.
//                                     read: the member lookups read from;
//                                     versions: the one keeping tag versions
//                                     (see composite_backend.hpp)
//
// other schemes are added with registry::add_scheme (the Redis component
// registers "redis" and "unix", the CDN component "fastly", "cloudflare" and
// "varnish"). Errors name the member and its scheme, never a member's URL
// (it may hold a password).
using backend_factory = std::function<any_backend(boost::urls::url_view const&)>;

class registry {
public:
  // `from_environment`: the first time the default backend is needed and
  // none was chosen, build it from CUSTOM_CACHE_PAGE_BACKEND if that is set
  // (late, so that schemes added at start-up, such as redis, are known).
  explicit registry(bool from_environment = false) : from_environment_(from_environment) {
    add_scheme("memory", [](boost::urls::url_view const& u) {
      memory_backend_options o;
      for (auto const& p : u.params()) {
        if (p.key == "max_bytes") o.max_bytes = detail::parse_size(p.value, "max_bytes");
        else if (p.key == "max_entry") o.max_entry = detail::parse_size(p.value, "max_entry");
        else if (p.key == "shards") o.shards = detail::parse_size(p.value, "shards");
        else throw cache_error(error::bad_configuration, "unknown memory:// option '" + std::string(p.key) + "'");
      }
      return any_backend(std::make_shared<memory_backend>(o));
    });
    add_scheme("composite", [this](boost::urls::url_view const& u) { return make_composite(u); });
  }

  registry(registry const&) = delete; // the composite scheme refers to this registry
  registry& operator=(registry const&) = delete;

  void add_scheme(std::string scheme, backend_factory factory) {
    std::unique_lock lock(mutex_);
    schemes_[std::move(scheme)] = std::move(factory);
  }

  // A new backend from its URL; an unknown scheme throws naming it.
  any_backend make_backend(std::string_view url) const {
    if (auto list = detail::composite_list(url)) return make_composite_list(*list);
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed)
      throw cache_error(error::bad_configuration, "bad backend URL '" + std::string(url) + "'");
    std::string scheme(parsed->scheme());
    backend_factory factory;
    {
      std::shared_lock lock(mutex_);
      auto it = schemes_.find(scheme);
      if (it == schemes_.end()) throw unknown_backend_error(scheme);
      factory = it->second;
    }
    return factory(*parsed);
  }

  // Registers `b` as `name`. A backend named "default" is the default
  // unless set_default() chose another.
  void add(std::string name, any_backend b) {
    any_backend replaced; // freed after the lock is released, if nothing else holds it
    std::unique_lock lock(mutex_);
    if (default_name_.empty() && name == "default") default_name_ = name;
    replaced = std::exchange(backends_[std::move(name)], std::move(b));
    generation_.fetch_add(1, std::memory_order_release);
  }
  void add(std::string name, std::string_view url) { add(std::move(name), make_backend(url)); }

  void set_default(std::string name) {
    std::unique_lock lock(mutex_);
    if (!backends_.contains(name)) throw unknown_backend_error(name);
    default_name_ = std::move(name);
    generation_.fetch_add(1, std::memory_order_release);
  }

  // The backend registered as `name`; throws unknown_backend_error naming it.
  any_backend get(std::string_view name) const {
    std::shared_lock lock(mutex_);
    auto it = backends_.find(name);
    if (it == backends_.end()) throw unknown_backend_error(std::string(name));
    return it->second;
  }

  // The default backend; an in-memory "memory" backend when none was added.
  // Throws when CUSTOM_CACHE_PAGE_BACKEND holds a URL that cannot be built,
  // every time it is asked, never falling back to memory.
  any_backend get_default() {
    if (auto b = chosen_default()) return b;
    std::lock_guard deciding(default_mutex_); // one thread builds it; the others then find it
    if (auto b = chosen_default()) return b;
    char const* url = from_environment_ ? std::getenv("CUSTOM_CACHE_PAGE_BACKEND") : nullptr;
    bool const configured = url != nullptr && *url != '\0';
    any_backend b = configured ? make_backend(url) : any_backend(std::make_shared<memory_backend>());
    std::unique_lock lock(mutex_);
    if (default_name_.empty()) {
      default_name_ = configured ? "default" : "memory";
      backends_[default_name_] = b;
      generation_.fetch_add(1, std::memory_order_release);
    }
    return backends_.at(default_name_);
  }
  std::string default_name() {
    get_default();
    std::shared_lock lock(mutex_);
    return default_name_;
  }

  // Changes whenever what a name or the default resolves to may have changed.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  std::vector<std::string> names() const {
    std::shared_lock lock(mutex_);
    std::vector<std::string> out;
    for (auto const& [name, b] : backends_) out.push_back(name);
    return out;
  }

  // Drops every backend from the names (tests; reconfiguration at start-up).
  void clear() {
    decltype(backends_) dropped; // freed after the lock is released, once no request holds them
    std::unique_lock lock(mutex_);
    dropped.swap(backends_);
    default_name_.clear();
    generation_.fetch_add(1, std::memory_order_release);
  }

  // Invalidates both the versioned and the plain entries of `tag` in the
  // named backend (the default when `backend_name` is empty). Throws when the
  // backend is unknown or the invalidation failed: it never reports success
  // for an invalidation that did not happen. One that failed is also kept
  // and retried until it succeeds (see pending()). purge_mode::soft marks them
  // stale instead (see purge_mode).
  invalidation_result invalidate_tag(std::string_view tag, std::string_view backend_name = {},
                                     purge_mode mode = purge_mode::hard) {
    auto target = invalidation_target(tag, backend_name);
    invalidation_result r;
    try {
      r = target.backend.invalidate_tag(target.tag, mode);
    } catch (...) {
      return invalidated(std::move(target), std::move(r), std::current_exception());
    }
    return invalidated(std::move(target), std::move(r), nullptr);
  }

  // The same without blocking the calling thread on a backend that waits
  // on the network (see backend.hpp): what request handlers call.
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, std::string backend_name = {},
                                                                   purge_mode mode = purge_mode::hard) {
    auto target = invalidation_target(tag, backend_name);
    invalidation_result r;
    std::exception_ptr failed;
    try {
      r = co_await target.backend.async_invalidate_tag(target.tag, mode);
    } catch (...) {
      failed = std::current_exception();
    }
    co_return invalidated(std::move(target), std::move(r), failed);
  }

  // The same without blocking (see async_invalidate_tag).
  boost::asio::awaitable<std::vector<invalidation_result>> async_invalidate_tags(std::vector<std::string> tags,
                                                                                std::string backend_name = {},
                                                                                purge_mode mode = purge_mode::hard) {
    std::vector<invalidation_result> results;
    std::exception_ptr first_failure;
    for (auto& t : tags) {
      try {
        results.push_back(co_await async_invalidate_tag(std::move(t), backend_name, mode));
      } catch (...) {
        if (!first_failure) first_failure = std::current_exception();
      }
    }
    if (first_failure) std::rethrow_exception(first_failure);
    co_return results;
  }

  // The invalidations of the named backend (the default when empty) that
  // failed and are being retried: list(), size(), wait_until_empty() (say,
  // before a graceful shutdown).
  std::shared_ptr<pending_invalidations const> pending(std::string_view backend_name = {}) {
    return (backend_name.empty() ? get_default() : get(backend_name)).pending();
  }

  // Invalidates each tag; every tag is attempted even when one fails, then
  // the first failure is rethrown.
  std::vector<invalidation_result> invalidate_tags(std::vector<std::string> const& tags, std::string_view backend_name = {},
                                                  purge_mode mode = purge_mode::hard) {
    std::vector<invalidation_result> results;
    std::exception_ptr first_failure;
    for (auto const& t : tags) {
      try {
        results.push_back(invalidate_tag(t, backend_name, mode));
      } catch (...) {
        if (!first_failure) first_failure = std::current_exception();
      }
    }
    if (first_failure) std::rethrow_exception(first_failure);
    return results;
  }

private:
  struct target {
    std::string name; // the backend's
    any_backend backend;
    std::string tag; // normalised
  };

  target invalidation_target(std::string_view tag, std::string_view backend_name) {
    std::string name = backend_name.empty() ? default_name() : std::string(backend_name);
    any_backend b = get(name);
    std::string normalized = normalize_surrogate(tag);
    if (normalized.empty()) throw invalidation_error(std::string(tag), "the tag is empty once normalised");
    return {std::move(name), std::move(b), std::move(normalized)};
  }

  // The outcome of an invalidation: its result, or why it failed.
  static invalidation_result invalidated(target t, invalidation_result r, std::exception_ptr failed) {
    if (failed) {
      try {
        std::rethrow_exception(failed);
      } catch (invalidation_error const&) {
        throw;
      } catch (std::exception const& e) {
        throw invalidation_error(t.tag, e.what());
      }
    }
    r.backend = std::move(t.name);
    global_stats().invalidation();
    return r;
  }

  // The default if one was chosen or built; empty otherwise.
  any_backend chosen_default() const {
    std::shared_lock lock(mutex_);
    return default_name_.empty() ? any_backend() : backends_.at(default_name_);
  }

  static cache_error member_error(std::size_t i, std::string const& name, std::exception const& e) {
    auto const* ce = dynamic_cast<cache_error const*>(&e);
    return cache_error(ce != nullptr ? static_cast<error>(ce->code().value()) : error::bad_configuration,
                       "composite:// member " + std::to_string(i) + " '" + name + "': " + e.what());
  }

  // Member `i` by name: the backend registered under it (shared, not
  // copied), else a new one from "<name>://".
  composite_member member_named(std::size_t i, std::string const& name) const {
    if (name.empty()) throw cache_error(error::bad_configuration, "composite:// has an empty member name");
    try {
      any_backend b;
      {
        std::shared_lock lock(mutex_);
        if (auto it = backends_.find(name); it != backends_.end()) b = it->second;
      }
      return {name, b ? b : make_backend(name + "://")};
    } catch (std::exception const& e) {
      throw member_error(i, name, e);
    }
  }

  // Member `i` from its URL, named by its scheme in errors (the URL may
  // hold a password).
  composite_member member_at(std::size_t i, std::string_view url) const {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) throw cache_error(error::bad_configuration, "composite:// member " + std::to_string(i) + " is not a URL");
    std::string const scheme(parsed->scheme());
    try {
      return {scheme, make_backend(url)};
    } catch (std::exception const& e) {
      throw member_error(i, scheme, e);
    }
  }

  // composite://memory,varnish://127.0.0.1:6081: names and member URLs
  // separated by commas, as a user writes them (no options: those take
  // the ?member= form).
  any_backend make_composite_list(std::string_view list) const {
    std::vector<composite_member> members;
    for (std::size_t start = 0; start <= list.size();) {
      auto const end = std::min(list.find(',', start), list.size());
      auto const item = list.substr(start, end - start);
      members.push_back(item.find("://") != std::string_view::npos ? member_at(members.size(), item)
                                                                    : member_named(members.size(), std::string(item)));
      start = end + 1;
    }
    return any_backend(std::make_shared<composite_backend>(std::move(members)));
  }

  any_backend make_composite(boost::urls::url_view const& u) const {
    std::vector<composite_member> members;
    composite_backend_options options;
    if (u.has_userinfo() || u.has_port() || (!u.path().empty() && u.path() != "/"))
      throw cache_error(error::bad_configuration, "composite:// takes member names as its host, nothing else before '?'");
    std::string const names = u.host();
    for (std::size_t start = 0; start < names.size();) {
      auto const end = std::min(names.find(',', start), names.size());
      members.push_back(member_named(members.size(), names.substr(start, end - start)));
      start = end + 1;
    }
    // '+' stays '+': it is not a space inside a member URL.
    for (auto const& p : u.params(boost::urls::encoding_opts{})) {
      if (p.key == "member") members.push_back(member_at(members.size(), p.value));
      else if (p.key == "read") options.read = detail::parse_index(p.value, "composite:// read");
      else if (p.key == "versions") options.versions = detail::parse_index(p.value, "composite:// versions");
      else throw cache_error(error::bad_configuration, "unknown composite:// option '" + std::string(p.key) + "'");
    }
    if (members.empty())
      throw cache_error(error::bad_configuration, "composite:// needs members: composite://a,b or ?member=URL");
    return any_backend(std::make_shared<composite_backend>(std::move(members), options));
  }

  mutable std::shared_mutex mutex_;
  std::mutex default_mutex_;
  std::map<std::string, any_backend, std::less<>> backends_;
  std::atomic<std::uint64_t> generation_{0};
  bool const from_environment_;
  std::map<std::string, backend_factory, std::less<>> schemes_;
  std::string default_name_;
};

// The process-wide registry that cache_page and the free functions use; it
// reads CUSTOM_CACHE_PAGE_BACKEND when the default backend is first needed.
inline registry& default_registry() {
  static registry r(true);
  return r;
}

inline invalidation_result invalidate_tag(std::string_view tag, std::string_view backend_name = {},
                                          purge_mode mode = purge_mode::hard) {
  return default_registry().invalidate_tag(tag, backend_name, mode);
}
inline invalidation_result invalidate_tag(std::string_view tag, purge_mode mode) {
  return default_registry().invalidate_tag(tag, {}, mode);
}

// co_await ccp::async_invalidate_tag("products"): the registry's, on the default registry.
inline boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, std::string backend_name = {},
                                                                        purge_mode mode = purge_mode::hard) {
  return default_registry().async_invalidate_tag(std::move(tag), std::move(backend_name), mode);
}

inline boost::asio::awaitable<std::vector<invalidation_result>> async_invalidate_tags(std::vector<std::string> tags,
                                                                                     std::string backend_name = {},
                                                                                     purge_mode mode = purge_mode::hard) {
  return default_registry().async_invalidate_tags(std::move(tags), std::move(backend_name), mode);
}

inline std::vector<invalidation_result> invalidate_tags(std::vector<std::string> const& tags,
                                                        std::string_view backend_name = {},
                                                        purge_mode mode = purge_mode::hard) {
  return default_registry().invalidate_tags(tags, backend_name, mode);
}

} // namespace custom_cache_page
