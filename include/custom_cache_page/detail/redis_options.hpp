// redis_options: where the Redis store is and how to talk to it, and its
// URL form:
//
//   redis://[[user]:password@]host[:port][/db][?option=value&...]
//   unix:///path/to/redis.sock[?db=N&option=value&...]
//
// Options: prefix, db, password, timeout_ms (command timeout),
// connect_timeout_ms, pool, max_entry (a size: 8MiB), breaker_threshold,
// breaker_cooldown_ms. Any other option is a configuration error that names it.
#pragma once

#include <custom_cache_page/error.hpp>

#include <hiredis.h>
#include <custom_cache_page/registry.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>

namespace custom_cache_page {

struct redis_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string unix_socket;   // when set, connect to this socket instead of host:port
  std::string username;      // an ACL user (Redis 6+); empty: AUTH with the password only
  std::string password;      // empty: no AUTH
  int db = 0;                // SELECTed on every new connection
  std::string prefix = "ccp:"; // every key this library reads or writes starts with it
  std::chrono::milliseconds connect_timeout{250};
  std::chrono::milliseconds command_timeout{100};
  std::size_t pool_size = 4;
  // Encoded entries larger than this are not stored (cache_error
  // entry_too_large): large values stall Redis for every client while they
  // are written and read.
  std::size_t max_entry = std::size_t{8} << 20;
  // After this many consecutive failures every operation fails at once for
  // `breaker_cooldown`, then one probe decides; 0 disables the breaker.
  unsigned breaker_threshold = 5;
  std::chrono::milliseconds breaker_cooldown{1000};
  // Index members deleted per server-side step of a plain-tag invalidation:
  // each step blocks Redis for about a millisecond per thousand.
  std::size_t drain_batch = 1000;
  // When set, every entry is stored with an HMAC-SHA256 over its key and
  // bytes (detail/entry_signature.hpp) and an entry without a valid one is
  // a miss: whoever can write to the Redis but lacks this secret cannot
  // answer for the site. At least 16 bytes; in a URL, ?hmac_key_env=NAME
  // reads it from the environment variable NAME.
  std::string hmac_key;
  // When set, new connections come from here instead of host/port or the
  // socket (TLS through hiredis_ssl, a connection made by the application,
  // a test double of the network). The library owns what it returns (it is
  // freed with redisFree); nullptr or a context with err set is a failed
  // connect. Timeouts, AUTH and SELECT above still apply.
  std::function<redisContext*()> connect;
};

namespace detail {

[[noreturn]] inline void bad_redis_option(std::string_view name, std::string_view value, std::string_view why) {
  throw cache_error(error::bad_configuration,
                    "bad redis option '" + std::string(name) + "'='" + std::string(value) + "': " + std::string(why));
}

template <class Int>
Int parse_redis_number(std::string_view name, std::string_view text, Int min, Int max) {
  Int v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) bad_redis_option(name, text, "not a number");
  if (v < min || v > max) bad_redis_option(name, text, "out of range");
  return v;
}

// Where a redis:// or unix:// URL points: host, port and db, or the socket.
inline void parse_redis_endpoint(boost::urls::url_view const& u, redis_options& o) {
  std::string const scheme(u.scheme());
  if (scheme == "redis") {
    if (u.host_type() == boost::urls::host_type::ipv6) o.host = u.host_ipv6_address().to_string();
    else o.host = u.host();
    if (o.host.empty()) throw cache_error(error::bad_configuration, "redis:// URL without a host");
    if (u.has_port()) {
      if (u.port_number() == 0) detail::bad_redis_option("port", u.port(), "not a port number");
      o.port = u.port_number();
    }
    auto path = std::string(u.path());
    if (!path.empty() && path != "/") {
      o.db = parse_redis_number<int>("db", std::string_view(path).substr(1), 0, std::numeric_limits<int>::max());
    }
  } else if (scheme == "unix") {
    if (!u.host().empty() && u.host() != "localhost")
      throw cache_error(error::bad_configuration, "unix:// URL with a host ('" + u.host() + "'): use unix:///path.sock");
    o.unix_socket = std::string(u.path());
    if (o.unix_socket.empty() || o.unix_socket == "/")
      throw cache_error(error::bad_configuration, "unix:// URL without a socket path");
  } else {
    throw cache_error(error::bad_configuration, "not a Redis URL scheme: '" + scheme + "'");
  }
}

// The value of the environment variable `name`; never echoed in errors.
inline std::string secret_from_environment(std::string_view option, std::string_view name) {
  char const* value = std::getenv(std::string(name).c_str());
  if (value == nullptr || *value == '\0') bad_redis_option(option, name, "that environment variable is not set or is empty");
  return value;
}

} // namespace detail

// The options a redis:// or unix:// URL describes; throws cache_error
// (bad_configuration) naming what it cannot use.
inline redis_options parse_redis_url(boost::urls::url_view const& u) {
  using detail::parse_redis_number;
  redis_options o;
  std::string const scheme(u.scheme());
  detail::parse_redis_endpoint(u, o);
  if (u.has_userinfo()) {
    o.username = u.user();
    if (u.has_password()) o.password = u.password();
    else {
      // "redis://secret@host": a lone userinfo is the password (as redis-cli reads it).
      o.password = std::move(o.username);
      o.username.clear();
    }
  }

  for (auto const& p : u.params()) {
    std::string_view const key = p.key;
    std::string_view const value = p.value;
    if (key == "prefix") o.prefix = value;
    else if (key == "db") o.db = parse_redis_number<int>(key, value, 0, std::numeric_limits<int>::max());
    else if (key == "password") o.password = value;
    else if (key == "timeout_ms") o.command_timeout = std::chrono::milliseconds(parse_redis_number<long>(key, value, 1, 3'600'000));
    else if (key == "connect_timeout_ms")
      o.connect_timeout = std::chrono::milliseconds(parse_redis_number<long>(key, value, 1, 3'600'000));
    else if (key == "hmac_key_env") o.hmac_key = detail::secret_from_environment(key, value);
    else if (key == "pool") o.pool_size = parse_redis_number<std::size_t>(key, value, 1, 1024);
    else if (key == "max_entry") o.max_entry = detail::parse_size(value, "max_entry");
    else if (key == "breaker_threshold") o.breaker_threshold = parse_redis_number<unsigned>(key, value, 0, 1'000'000);
    else if (key == "breaker_cooldown_ms")
      o.breaker_cooldown = std::chrono::milliseconds(parse_redis_number<long>(key, value, 1, 3'600'000));
    else
      throw cache_error(error::bad_configuration, "unknown " + scheme + ":// option '" + std::string(key) + "'");
  }
  return o;
}

inline redis_options parse_redis_url(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  // Not echoed: the URL may carry a password.
  if (!parsed) throw cache_error(error::bad_configuration, "bad Redis URL: " + parsed.error().message());
  return parse_redis_url(*parsed);
}

} // namespace custom_cache_page
