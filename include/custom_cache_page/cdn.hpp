// Opt-in umbrella for the CDN backends (link custom_cache_page::cdn, which
// adds OpenSSL's libssl and Debian's compiled Boost.JSON):
//
//   #include <custom_cache_page/cdn.hpp>
//   ccp::enable_cdn();                                     // once, at start-up
//   ccp::default_registry().add("fastly", "fastly://SERVICE_ID?token_env=FASTLY_API_TOKEN");
//
// URLs (API tokens come from the environment variable that token_env names,
// read when the backend is built; they never appear in a URL or an error):
//
//   fastly://SERVICE_ID?token_env=FASTLY_API_TOKEN&soft_purge=false&timeout=5s&api=https://api.fastly.com
//   cloudflare://ZONE_ID?token_env=CLOUDFLARE_API_TOKEN&timeout=5s&api=https://api.cloudflare.com
//   varnish://127.0.0.1:6081?soft_purge=false&timeout=5s&max_header_bytes=8000
//                                     (varnish:// alone: 127.0.0.1:6081)
//
// token_env defaults to the variable named above; `max_retry_wait` (fastly,
// cloudflare) caps the wait a 429's Retry-After asks for; `timeout` bounds
// each step of a purge request and `deadline` (default 15s) the whole purge.
#pragma once

#include <custom_cache_page/custom_cache_page.hpp>

#include <custom_cache_page/backends/cdn/cloudflare_backend.hpp>
#include <custom_cache_page/backends/cdn/fastly_backend.hpp>
#include <custom_cache_page/backends/cdn/varnish_backend.hpp>
#include <custom_cache_page/registry.hpp>

#include <boost/url/url_view.hpp>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace custom_cache_page {

namespace detail {

inline cache_error cdn_option_error(std::string_view scheme, std::string_view key, std::string_view value,
                                    std::string_view why) {
  return cache_error(error::bad_configuration, std::string(scheme) + "://: bad value '" + std::string(value) +
                                                   "' for option '" + std::string(key) + "': " + std::string(why));
}

// "5s", "500ms", "2m", "1500" (milliseconds).
inline std::chrono::milliseconds parse_cdn_duration(std::string_view scheme, std::string_view key, std::string_view v) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  std::string_view unit(end, static_cast<std::size_t>(v.data() + v.size() - end));
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "ms") mul = 1;
  else if (unit == "s") mul = 1000;
  else if (unit == "m") mul = 60'000;
  if (ec != std::errc{} || end == v.data() || mul == 0 || n > 86'400'000 / mul)
    throw cdn_option_error(scheme, key, v, "expected a duration such as 500ms, 5s or 1m");
  return std::chrono::milliseconds(n * mul);
}

inline bool parse_cdn_bool(std::string_view scheme, std::string_view key, std::string_view v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw cdn_option_error(scheme, key, v, "expected true or false");
}

// The token from the environment variable `name`; the error names the
// variable, never a value.
inline std::string cdn_token_from_env(std::string_view scheme, std::string const& name) {
  char const* v = name.empty() ? nullptr : std::getenv(name.c_str());
  if (v == nullptr || *v == '\0')
    throw cache_error(error::bad_configuration, std::string(scheme) + "://: the API token's environment variable '" +
                                                    name + "' is not set (or is empty)");
  return v;
}

inline std::string cdn_id(boost::urls::url_view const& u, std::string_view what) {
  std::string id(u.host());
  if (id.empty()) throw cache_error(error::bad_configuration, std::string(u.scheme()) + "://: no " + std::string(what));
  return id;
}

[[noreturn]] inline void cdn_unknown_option(std::string_view scheme, std::string_view key) {
  if (key == "token" || key == "api_token")
    throw cache_error(error::bad_configuration, std::string(scheme) + "://: the API token does not go in the URL; name "
                                                                      "its environment variable with token_env=NAME");
  throw cache_error(error::bad_configuration, "unknown " + std::string(scheme) + ":// option '" + std::string(key) + "'");
}

// The options fastly:// and cloudflare:// share; false for any other key.
template <class Options>
bool parse_cdn_api_option(std::string_view scheme, boost::urls::param const& p, Options& o, std::string& token_env) {
  if (p.key == "token_env") token_env = p.value;
  else if (p.key == "api") o.api_base = p.value;
  else if (p.key == "timeout") o.timeout = parse_cdn_duration(scheme, p.key, p.value);
  else if (p.key == "max_retry_wait") o.max_retry_wait = parse_cdn_duration(scheme, p.key, p.value);
  else if (p.key == "deadline") o.deadline = parse_cdn_duration(scheme, p.key, p.value);
  else return false;
  return true;
}

inline fastly_backend_options parse_fastly_url(boost::urls::url_view const& u) {
  fastly_backend_options o;
  o.service_id = cdn_id(u, "service id");
  std::string token_env = "FASTLY_API_TOKEN";
  for (auto const& p : u.params()) {
    if (parse_cdn_api_option("fastly", p, o, token_env)) continue;
    if (p.key == "soft_purge") o.soft_purge = parse_cdn_bool("fastly", p.key, p.value);
    else cdn_unknown_option("fastly", p.key);
  }
  o.api_token = cdn_token_from_env("fastly", token_env);
  return o;
}

inline cloudflare_backend_options parse_cloudflare_url(boost::urls::url_view const& u) {
  cloudflare_backend_options o;
  o.zone_id = cdn_id(u, "zone id");
  std::string token_env = "CLOUDFLARE_API_TOKEN";
  for (auto const& p : u.params())
    if (!parse_cdn_api_option("cloudflare", p, o, token_env)) cdn_unknown_option("cloudflare", p.key);
  o.api_token = cdn_token_from_env("cloudflare", token_env);
  return o;
}

inline varnish_backend_options parse_varnish_url(boost::urls::url_view const& u) {
  varnish_backend_options o;
  if (!u.host().empty()) o.host = u.host();
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
  if (u.has_port()) {
    auto const n = u.port_number();
    if (n == 0) throw cdn_option_error("varnish", "port", u.port(), "expected 1 to 65535");
    o.port = n;
  }
  for (auto const& p : u.params()) {
    if (p.key == "soft_purge") o.soft_purge = parse_cdn_bool("varnish", p.key, p.value);
    else if (p.key == "timeout") o.timeout = parse_cdn_duration("varnish", p.key, p.value);
    else if (p.key == "deadline") o.deadline = parse_cdn_duration("varnish", p.key, p.value);
    else if (p.key == "max_header_bytes") o.max_header_bytes = parse_size(p.value, "max_header_bytes");
    else cdn_unknown_option("varnish", p.key);
  }
  return o;
}

} // namespace detail

// Teaches `r` the "fastly", "cloudflare" and "varnish" URL schemes (see
// above). Building a backend checks its options and reads its token; it
// does not connect: purges open their own connections.
inline void enable_cdn(registry& r = default_registry()) {
  r.add_scheme("fastly", [](boost::urls::url_view const& u) {
    return any_backend(std::make_shared<fastly_backend>(detail::parse_fastly_url(u)));
  });
  r.add_scheme("cloudflare", [](boost::urls::url_view const& u) {
    return any_backend(std::make_shared<cloudflare_backend>(detail::parse_cloudflare_url(u)));
  });
  r.add_scheme("varnish", [](boost::urls::url_view const& u) {
    return any_backend(std::make_shared<varnish_backend>(detail::parse_varnish_url(u)));
  });
}

} // namespace custom_cache_page
