// freshness_lifetime(res): how long a shared cache may serve a response
// without asking the origin, from the response's own header (RFC 9111
// §4.2.1). Meant for cache_options::timeout, so that a cache in front of
// another server (a reverse proxy) keeps what that server says:
//
//   ccp::cache_page({.timeout = [](auto const& res) { return ccp::freshness_lifetime(res); },
//                    .patch_response_headers = false},
//                   forward);
//
// It is the lifetime, not what is left of it: cache_page subtracts the
// response's initial age (its Age and Date, §4.2.3) itself.
#pragma once

#include <custom_cache_page/detail/http_semantics.hpp>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <string_view>

namespace custom_cache_page {

struct freshness_options {
  // Heuristic freshness (RFC 9111 §4.2.2): this fraction of the time since
  // Last-Modified, at most max_heuristic.
  double heuristic_fraction = 0.1;
  std::chrono::seconds max_heuristic = std::chrono::hours(24);
};

namespace detail::lifetime {

// Statuses heuristically cacheable by default (RFC 9110 §15.1).
inline bool heuristically_cacheable(unsigned status) {
  constexpr unsigned statuses[] = {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501};
  return std::find(std::begin(statuses), std::end(statuses), status) != std::end(statuses);
}

// `later` − `earlier` in whole seconds, at least 0, at most 2^31 (the two
// may be the clock's extremes: no subtraction of nanoseconds overflows).
inline long long seconds_between(std::chrono::system_clock::time_point earlier,
                                 std::chrono::system_clock::time_point later) {
  using namespace std::chrono;
  auto const d = floor<seconds>(later).time_since_epoch().count() - floor<seconds>(earlier).time_since_epoch().count();
  return std::clamp<long long>(d, 0, 2147483648LL); // delta-seconds' cap (RFC 9111 §1.2.2)
}

} // namespace detail::lifetime

// RFC 9111 §4.2.1, for a shared cache: s-maxage, else max-age, else
// Expires − Date, else a heuristic (§4.2.2), else 0. Of a directive
// repeated, the first counts; one whose value is not delta-seconds makes
// the response stale (0), as does an Expires that is not an HTTP-date
// (§5.3). Without a (valid) Date, `now` stands for it: the time the
// response was received.
inline std::chrono::seconds freshness_lifetime(
    http::response_header<> const& res, freshness_options const& o = {},
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
  using std::chrono::seconds;
  namespace lt = detail::lifetime;
  for (std::string_view directive : {"s-maxage", "max-age"})
    if (auto const arg = detail::directive_in(res, "Cache-Control", directive))
      return seconds(detail::delta_seconds(arg).value_or(0));

  auto const date = detail::parse_http_date(detail::trim(res[http::field::date])).value_or(now);
  if (auto const expires = res.find(http::field::expires); expires != res.end()) {
    auto const when = detail::parse_http_date(detail::trim(expires->value()));
    return seconds(when ? lt::seconds_between(date, *when) : 0);
  }

  auto const last_modified = detail::parse_http_date(detail::trim(res[http::field::last_modified]));
  if (!last_modified || !lt::heuristically_cacheable(res.result_int())) return seconds(0);
  auto const since = static_cast<double>(lt::seconds_between(*last_modified, date));
  double const fraction = o.heuristic_fraction > 0 ? std::min(o.heuristic_fraction, 1.0) : 0.0; // NaN: 0
  auto const heuristic = std::floor(fraction * since);
  return std::min(seconds(static_cast<long long>(heuristic)), std::max(seconds(0), o.max_heuristic));
}

} // namespace custom_cache_page
