// freshness_lifetime (freshness.hpp): a shared cache's freshness lifetime
// from the response's header, RFC 9111 §4.2.1 and §4.2.2.
#include <custom_cache_page/freshness.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <initializer_list>
#include <string>
#include <utility>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// A response of `status` with the fields given, in order (repeats kept).
http::response_header<> freshness_response(std::initializer_list<std::pair<char const*, char const*>> fields,
                                           unsigned status = 200) {
  http::response_header<> res;
  res.result(status);
  res.version(11);
  for (auto const& [name, value] : fields) res.insert(name, value);
  return res;
}

// RFC 9110's example date, Sun, 06 Nov 1994 08:49:37 GMT, and a "now"
// a day later, for responses without Date.
auto const freshness_epoch = std::chrono::system_clock::from_time_t(784111777);
char const* const example_date = "Sun, 06 Nov 1994 08:49:37 GMT";

std::chrono::seconds fresh_for(http::response_header<> const& res, ccp::freshness_options const& o = {}) {
  return ccp::freshness_lifetime(res, o, freshness_epoch + 24h);
}

} // namespace

TEST_CASE("RFC 9111 §4.2.1: s-maxage takes precedence over max-age and Expires in a shared cache", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=60, s-maxage=600"}})) == 600s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=60"}, {"Cache-Control", "s-maxage=5"}})) == 5s);
  CHECK(fresh_for(freshness_response({{"Date", example_date},
                                     {"Expires", "Sun, 06 Nov 1994 09:49:37 GMT"},
                                     {"Cache-Control", "s-maxage=7"}})) == 7s);
}

TEST_CASE("RFC 9111 §4.2.1: max-age takes precedence over Expires", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "public, max-age=60"}})) == 60s);
  CHECK(fresh_for(freshness_response({{"Date", example_date},
                                     {"Expires", "Sun, 06 Nov 1994 09:49:37 GMT"},
                                     {"Cache-Control", "max-age=30"}})) == 30s);
}

TEST_CASE("RFC 9111 §5.2: directive names are case-insensitive and quoted arguments accepted", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "MAX-AGE=60"}})) == 60s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "S-MaxAge=90, max-age=60"}})) == 90s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=\"45\""}})) == 45s);
}

TEST_CASE("RFC 9111 §4.2.1: the first of a repeated directive counts", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=10, max-age=100"}})) == 10s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=10"}, {"Cache-Control", "max-age=100"}})) == 10s);
}

TEST_CASE("RFC 9111 §4.2.1: an invalid max-age or s-maxage makes the response stale", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=abc"}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=-5"}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age"}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=6O"}})) == 0s);
  // Stale, not the next source: Expires would give an hour.
  CHECK(fresh_for(freshness_response({{"Date", example_date},
                                     {"Expires", "Sun, 06 Nov 1994 09:49:37 GMT"},
                                     {"Cache-Control", "s-maxage=x, max-age=60"}})) == 0s);
}

TEST_CASE("RFC 9111 §1.2.2: delta-seconds too large count as 2147483648", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=2147483648"}})) == 2147483648s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=2147483649"}})) == 2147483648s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=99999999999999999999999"}})) == 2147483648s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=000000000000060"}})) == 60s);
}

TEST_CASE("RFC 9111 §4.2.1: without directives, Expires minus Date", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Expires", "Sun, 06 Nov 1994 09:49:37 GMT"}})) == 3600s);
  // Expires at or before Date: already expired.
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Expires", example_date}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Expires", "Sun, 06 Nov 1994 07:49:37 GMT"}})) == 0s);
  // The other two HTTP-date forms (RFC 9110 §5.6.7).
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Expires", "Sun Nov  6 08:50:37 1994"}})) == 60s);
  // Directives other than max-age and s-maxage do not hide Expires.
  CHECK(fresh_for(freshness_response(
            {{"Date", example_date}, {"Expires", "Sun, 06 Nov 1994 08:50:37 GMT"}, {"Cache-Control", "public"}})) == 60s);
}

TEST_CASE("RFC 9111 §4.2.1: without Date, Expires counts from the time the response came", "[freshness]") {
  // `now` is a day after the example date.
  CHECK(fresh_for(freshness_response({{"Expires", "Mon, 07 Nov 1994 08:59:37 GMT"}})) == 600s);
  CHECK(fresh_for(freshness_response({{"Expires", example_date}})) == 0s);
  // An invalid Date is no Date.
  CHECK(fresh_for(freshness_response({{"Date", "yesterday"}, {"Expires", "Mon, 07 Nov 1994 08:59:37 GMT"}})) == 600s);
  // With the default `now`, the clock's.
  auto const in_an_hour = ccp::detail::http_date(std::chrono::system_clock::now() + 1h);
  auto res = freshness_response({});
  res.set(http::field::expires, in_an_hour);
  auto const got = ccp::freshness_lifetime(res);
  CHECK(got > 3590s);
  CHECK(got <= 3600s);
}

TEST_CASE("RFC 9111 §5.3: an invalid Expires such as 0 means already expired", "[freshness]") {
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Expires", "0"}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Expires", "-1"}})) == 0s);
  // Even with a Last-Modified that would allow a heuristic (§4.2.2: only
  // without explicit expiration).
  CHECK(fresh_for(freshness_response(
            {{"Date", example_date}, {"Expires", "0"}, {"Last-Modified", "Sun, 30 Oct 1994 08:49:37 GMT"}})) == 0s);
}

TEST_CASE("RFC 9111 §4.2.2: heuristic freshness is a fraction of the time since Last-Modified", "[freshness]") {
  // Ten days before Date: 10% is a day, at the 24 h cap.
  auto const ten_days = freshness_response({{"Date", example_date}, {"Last-Modified", "Thu, 27 Oct 1994 08:49:37 GMT"}});
  CHECK(fresh_for(ten_days) == 24h);
  // Five days: 12 hours.
  auto const five_days = freshness_response({{"Date", example_date}, {"Last-Modified", "Tue, 01 Nov 1994 08:49:37 GMT"}});
  CHECK(fresh_for(five_days) == 12h);
  CHECK(fresh_for(five_days, {.heuristic_fraction = 0.2}) == 24h);
  CHECK(fresh_for(five_days, {.heuristic_fraction = 0.2, .max_heuristic = 48h}) == 24h);
  CHECK(fresh_for(ten_days, {.heuristic_fraction = 0.1, .max_heuristic = 1h}) == 1h);
  CHECK(fresh_for(five_days, {.heuristic_fraction = 0.0}) == 0s);
  // Without Date, from the time the response came (a day after the example date).
  CHECK(fresh_for(freshness_response({{"Last-Modified", example_date}})) == 8640s);
  // Last-Modified after Date: nothing to go on.
  CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Last-Modified", "Mon, 07 Nov 1994 08:49:37 GMT"}})) == 0s);
}

TEST_CASE("RFC 9111 §4.2.2: heuristics only for heuristically cacheable statuses (RFC 9110 §15.1)", "[freshness]") {
  for (unsigned status : {200u, 203u, 204u, 206u, 300u, 301u, 308u, 404u, 405u, 410u, 414u, 501u}) {
    INFO("status " << status);
    CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Last-Modified", "Tue, 01 Nov 1994 08:49:37 GMT"}},
                                      status)) == 12h);
  }
  for (unsigned status : {201u, 302u, 303u, 307u, 400u, 403u, 500u, 502u, 503u}) {
    INFO("status " << status);
    CHECK(fresh_for(freshness_response({{"Date", example_date}, {"Last-Modified", "Tue, 01 Nov 1994 08:49:37 GMT"}},
                                      status)) == 0s);
    // Explicit freshness applies to any status.
    CHECK(fresh_for(freshness_response({{"Cache-Control", "max-age=60"}}, status)) == 60s);
  }
}

TEST_CASE("RFC 9111 §4.2.1: a response with nothing to go on has no freshness", "[freshness]") {
  CHECK(fresh_for(freshness_response({})) == 0s);
  CHECK(fresh_for(freshness_response({{"Date", example_date}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Cache-Control", "public, must-revalidate"}})) == 0s);
  CHECK(fresh_for(freshness_response({{"Last-Modified", "not a date"}})) == 0s);
}
