// The HTTP decisions of one request (detail/http_semantics.hpp), as plain
// functions on headers.
#include <custom_cache_page/detail/http_semantics.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
namespace d = custom_cache_page::detail;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

http::response_header<> ok_response() {
  http::response_header<> res;
  res.result(http::status::ok);
  res.version(11);
  return res;
}

http::request_header<> get_request() {
  http::request_header<> req;
  req.method(http::verb::get);
  req.target("/x");
  req.version(11);
  return req;
}

ccp::cache_options options(std::size_t max_body = 1000) {
  ccp::cache_options o;
  o.max_body_size = max_body;
  return o;
}

// 784111777 s after the epoch is RFC 9110's example date.
auto const rfc_example = std::chrono::system_clock::from_time_t(784111777);

} // namespace

TEST_CASE("cache_directive finds directives case-insensitively", "[http]") {
  CHECK(d::cache_directive("no-store", "no-store") == std::optional<std::string_view>(""));
  CHECK(d::cache_directive("public, No-Store", "no-store").has_value());
  CHECK(d::cache_directive("NO-STORE", "no-store").has_value());
  CHECK(d::cache_directive("max-age=60", "MAX-AGE") == std::optional<std::string_view>("60"));
  CHECK_FALSE(d::cache_directive("public", "no-store").has_value());
  CHECK_FALSE(d::cache_directive("", "no-store").has_value());
}

TEST_CASE("cache_directive does not match on a prefix", "[http]") {
  CHECK_FALSE(d::cache_directive("no-store-x", "no-store").has_value());
  CHECK_FALSE(d::cache_directive("x-no-store", "no-store").has_value());
  CHECK_FALSE(d::cache_directive("privately=1", "private").has_value());
}

TEST_CASE("cache_directive trims spaces and removes quotes", "[http]") {
  CHECK(d::cache_directive("  public ,  max-age = 60 , private", "max-age") == std::optional<std::string_view>("60"));
  CHECK(d::cache_directive("max-age=\"60\"", "max-age") == std::optional<std::string_view>("60"));
  CHECK(d::cache_directive("private=\"Set-Cookie\"", "private") == std::optional<std::string_view>("Set-Cookie"));
  CHECK(d::cache_directive("s-maxage=\"\"", "s-maxage") == std::optional<std::string_view>(""));
  // The first occurrence wins.
  CHECK(d::cache_directive("max-age=1, max-age=2", "max-age") == std::optional<std::string_view>("1"));
  CHECK(d::cache_directive(",,, ,max-age=5,", "max-age") == std::optional<std::string_view>("5"));
}

TEST_CASE("cache_directive reads a quoted argument that contains commas", "[http]") {
  // RFC 9111 §5.2.2.4: no-cache="field-name, field-name" is a quoted list.
  // Splitting it at every comma returns half an argument and reads its
  // inside as directives.
  CHECK(d::cache_directive("no-cache=\"Set-Cookie, X-Foo\", max-age=5", "no-cache") ==
        std::optional<std::string_view>("Set-Cookie, X-Foo"));
  CHECK_FALSE(d::cache_directive("ext=\"a, no-store, b\"", "no-store").has_value());
}

TEST_CASE("not_storable gives each reason", "[http]") {
  auto o = options(100);

  SECTION("a plain 200 is storable") {
    auto res = ok_response();
    res.set(http::field::cache_control, "public, max-age=60");
    res.set(http::field::vary, "Accept-Encoding");
    CHECK_FALSE(d::not_storable(res, 100, o).has_value());
  }
  SECTION("status not cacheable") {
    auto res = ok_response();
    res.result(http::status::not_found);
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::status);
    auto with_404 = o;
    with_404.cacheable_statuses.push_back(http::status::not_found);
    CHECK_FALSE(d::not_storable(res, 0, with_404).has_value());
  }
  SECTION("Set-Cookie") {
    auto res = ok_response();
    res.set(http::field::set_cookie, "session=1");
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::set_cookie);
  }
  SECTION("Cache-Control: no-store, in any of several fields") {
    auto res = ok_response();
    res.insert(http::field::cache_control, "public");
    res.insert(http::field::cache_control, "max-age=5, No-Store");
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::no_store);
  }
  SECTION("no-store-x is not no-store") {
    auto res = ok_response();
    res.set(http::field::cache_control, "no-store-x");
    CHECK_FALSE(d::not_storable(res, 0, o).has_value());
  }
  SECTION("Cache-Control: private") {
    auto res = ok_response();
    res.set(http::field::cache_control, "private, max-age=60");
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::private_response);
    res.set(http::field::cache_control, "private=\"Set-Cookie\"");
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::private_response);
  }
  SECTION("Vary: *") {
    auto res = ok_response();
    res.insert(http::field::vary, "Accept");
    res.insert(http::field::vary, "Accept-Language, *");
    CHECK(d::not_storable(res, 0, o) == ccp::not_stored_reason::vary_star);
  }
  SECTION("too large") {
    auto res = ok_response();
    CHECK(d::not_storable(res, 101, o) == ccp::not_stored_reason::too_large);
    CHECK_FALSE(d::not_storable(res, 100, o).has_value());
  }
}

TEST_CASE("stored_field drops hop-by-hop and per-answer fields", "[http]") {
  auto res = ok_response();
  res.set(http::field::connection, "close, X-Hop");
  auto stored = [&](std::string_view name) {
    return d::stored_field(res, http::string_to_field(boost::beast::string_view(name.data(), name.size())), name);
  };
  for (std::string_view name :
       {"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Set-Cookie", "Age", "Content-Length", "X-Hop",
        "x-hop"}) {
    INFO(name);
    CHECK_FALSE(stored(name));
  }
  for (std::string_view name :
       {"Content-Type", "ETag", "Last-Modified", "Cache-Control", "Expires", "Vary", "Content-Encoding",
        "Surrogate-Key", "X-Custom",
        // The response's Date is replayed with Age beside it (RFC 9110 6.6.1, RFC 9111 4.2.3).
        "Date",
        // Obsolete (RFC 6265), but nothing makes it hop-by-hop.
        "Set-Cookie2",
        // An upstream Cache-Status is replayed; ours is appended per answer.
        "Cache-Status"}) {
    INFO(name);
    CHECK(stored(name));
  }
  // Without the Connection field, X-Hop is an ordinary field.
  auto plain = ok_response();
  CHECK(d::stored_field(plain, http::field::unknown, "X-Hop"));
}

TEST_CASE("vary_fields lists lower-case names once", "[http]") {
  auto res = ok_response();
  res.insert(http::field::vary, "Accept-Encoding, Accept-Language");
  res.insert(http::field::vary, "accept-encoding ,X-Store");
  CHECK(d::vary_fields(res) == std::vector<std::string>{"accept-encoding", "accept-language", "x-store"});
  CHECK(d::vary_fields(ok_response()).empty());
}

TEST_CASE("vary_values joins every occurrence and gives empty for absent fields", "[http]") {
  auto req = get_request();
  req.insert(http::field::accept_language, "fr");
  req.insert(http::field::accept_language, "en;q=0.5");
  req.set("X-Store", "7");
  auto values = d::vary_values(req, {"accept-language", "x-store", "accept-encoding"});
  CHECK(values == std::vector<std::pair<std::string, std::string>>{
                      {"accept-language", "fr, en;q=0.5"}, {"x-store", "7"}, {"accept-encoding", ""}});
}

TEST_CASE("entry_answers checks tag versions and varying fields", "[http]") {
  ccp::cached_response e;
  e.tags = {{"products", 10, true}, {"plain", 20, false}};
  e.vary = {{"accept-language", "fr"}};
  std::vector<ccp::resolved_tag> tags{{"products", true}, {"plain", false}};
  auto req = get_request();
  req.set(http::field::accept_language, "fr");

  std::vector<std::uint64_t> current{10, 20};
  CHECK(d::entry_answers(e, tags, current, req));

  SECTION("a tag version differs") {
    std::vector<std::uint64_t> bumped{11, 20};
    CHECK_FALSE(d::entry_answers(e, tags, bumped, req));
  }
  SECTION("a requested tag is missing from the entry") {
    std::vector<ccp::resolved_tag> more{{"products", true}, {"plain", false}, {"new", false}};
    std::vector<std::uint64_t> v{10, 20, 1};
    CHECK_FALSE(d::entry_answers(e, more, v, req));
  }
  SECTION("fewer versions than tags") {
    std::vector<std::uint64_t> short_versions{10};
    CHECK_FALSE(d::entry_answers(e, tags, short_versions, req));
  }
  SECTION("a varying field differs or is absent") {
    auto other = get_request();
    other.set(http::field::accept_language, "en");
    CHECK_FALSE(d::entry_answers(e, tags, current, other));
    CHECK_FALSE(d::entry_answers(e, tags, current, get_request()));
  }
  SECTION("an entry built without the field answers only requests without it") {
    ccp::cached_response none = e;
    none.vary = {{"accept-language", ""}};
    CHECK(d::entry_answers(none, tags, current, get_request()));
    CHECK_FALSE(d::entry_answers(none, tags, current, req));
  }
}

TEST_CASE("etag_matches uses the weak comparison", "[http]") {
  CHECK(d::etag_matches("\"abc\"", "\"abc\""));
  CHECK(d::etag_matches("W/\"abc\"", "\"abc\""));
  CHECK(d::etag_matches("\"abc\"", "W/\"abc\""));
  CHECK(d::etag_matches("W/\"abc\"", "W/\"abc\""));
  CHECK(d::etag_matches("\"x\", \"y\" ,  W/\"abc\"", "\"abc\""));
  CHECK(d::etag_matches("*", "\"abc\""));
  CHECK(d::etag_matches("*", "")); // any current representation, ETag or not (RFC 9110 §13.1.2)
  CHECK_FALSE(d::etag_matches("\"abd\"", "\"abc\""));
  CHECK_FALSE(d::etag_matches("\"x\", \"y\"", "\"abc\""));
  CHECK_FALSE(d::etag_matches("\"abc\"", ""));
  CHECK_FALSE(d::etag_matches("", "\"abc\""));
}

TEST_CASE("not_modified: If-None-Match wins over If-Modified-Since", "[http]") {
  ccp::cached_response e;
  e.headers = {{"ETag", "\"v1\""}, {"Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"}};

  auto req = get_request();
  CHECK_FALSE(d::not_modified(req, e)); // no validators

  req.set(http::field::if_none_match, "\"v1\"");
  CHECK(d::not_modified(req, e));

  // A later If-Modified-Since would say 304, but the ETag does not match.
  req.set(http::field::if_none_match, "\"v2\"");
  req.set(http::field::if_modified_since, "Mon, 07 Nov 1994 08:49:37 GMT");
  CHECK_FALSE(d::not_modified(req, e));

  req.erase(http::field::if_none_match);
  CHECK(d::not_modified(req, e));
}

TEST_CASE("not_modified compares If-Modified-Since with Last-Modified", "[http]") {
  ccp::cached_response e;
  e.headers = {{"Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"}};
  auto with_since = [](std::string_view since) {
    auto req = get_request();
    req.set(http::field::if_modified_since, boost::beast::string_view(since.data(), since.size()));
    return req;
  };
  CHECK(d::not_modified(with_since("Sun, 06 Nov 1994 08:49:37 GMT"), e));  // equal
  CHECK(d::not_modified(with_since("Sun, 06 Nov 1994 08:49:38 GMT"), e));  // later
  CHECK_FALSE(d::not_modified(with_since("Sun, 06 Nov 1994 08:49:36 GMT"), e)); // earlier
  CHECK_FALSE(d::not_modified(with_since("yesterday"), e));
  // The obsolete forms a recipient must accept (RFC 9110 §5.6.7).
  CHECK(d::not_modified(with_since("Sunday, 06-Nov-94 08:49:37 GMT"), e));
  CHECK(d::not_modified(with_since("Sun Nov  6 08:49:37 1994"), e));
  CHECK_FALSE(d::not_modified(with_since("Sun Nov  6 08:49:36 1994"), e));
  ccp::cached_response undated;
  CHECK_FALSE(d::not_modified(with_since("Sun, 06 Nov 1994 08:49:37 GMT"), undated));
}

TEST_CASE("http_date writes IMF-fixdate and parse_http_date reads it back", "[http]") {
  CHECK(d::http_date(rfc_example) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(d::http_date(rfc_example + 999ms) == "Sun, 06 Nov 1994 08:49:37 GMT"); // seconds, not rounded
  CHECK(d::http_date(std::chrono::system_clock::from_time_t(0)) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(d::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == rfc_example);

  for (std::time_t t : {std::time_t{0}, std::time_t{951782400} /* 2000-02-29 */, std::time_t{1700000000},
                        std::time_t{4102444799} /* 2099-12-31 */}) {
    auto tp = std::chrono::system_clock::from_time_t(t);
    INFO(d::http_date(tp));
    CHECK(d::parse_http_date(d::http_date(tp)) == tp);
  }
  CHECK_FALSE(d::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT trailing").has_value());
  CHECK_FALSE(d::parse_http_date("").has_value());
  CHECK_FALSE(d::parse_http_date("1994-11-06T08:49:37Z").has_value());
}

TEST_CASE("parse_http_date reads the RFC 850 and asctime forms too (RFC 9110 5.6.7)", "[http][rfc9110]") {
  CHECK(d::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == rfc_example);
  CHECK(d::parse_http_date("Sun Nov  6 08:49:37 1994") == rfc_example);
  CHECK(d::parse_http_date("Sun Nov 16 08:49:37 1994") == rfc_example + std::chrono::days(10));
  // A two-digit year more than 50 years ahead is the last century's.
  using namespace std::chrono;
  int const now = static_cast<int>(year_month_day{floor<days>(system_clock::now())}.year());
  auto const ahead = (now + 49) % 100, behind = (now + 51) % 100;
  auto const year_of = [](std::string const& text) {
    return static_cast<int>(year_month_day{floor<days>(*d::parse_http_date(text))}.year());
  };
  CHECK(year_of(fmt::format("Monday, 01-Jan-{:02} 00:00:00 GMT", ahead)) == now + 49);
  CHECK(year_of(fmt::format("Monday, 01-Jan-{:02} 00:00:00 GMT", behind)) == now + 51 - 100);
  for (auto const* bad : {"Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun,  6 Nov 1994 08:49:37 GMT",
                          "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                          "Sun, 06 Nov 1994 08:4a:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT", "Sundae, 06-Nov-94 08:49:37 GMT",
                          "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94", "Xyz Nov  6 08:49:37 1994",
                          "Sun, 06 Nov -994 08:49:37 GMT"}) {
    INFO(bad);
    CHECK_FALSE(d::parse_http_date(bad).has_value());
  }
}

TEST_CASE("a date past what system_clock holds is clamped, never wrapped (RFC 9110 5.6.7)", "[http][rfc9110]") {
  auto const far = d::parse_http_date("Fri, 01 Jan 2286 00:00:00 GMT");
  REQUIRE(far.has_value());
  CHECK(*far == std::chrono::system_clock::time_point::max());
  CHECK(*far > std::chrono::system_clock::now());
  CHECK(d::parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT") < far);
}

TEST_CASE("with_max_age patches Cache-Control as Django does", "[http]") {
  CHECK(d::with_max_age("", 600, true) == "max-age=600");
  CHECK(d::with_max_age("public", 600, true) == "public, max-age=600");
  // keep_smaller: an existing smaller max-age is kept, a larger one lowered.
  CHECK(d::with_max_age("public, max-age=300", 600, true) == "public, max-age=300");
  // Lowered in place: the other directives keep their order and spelling.
  CHECK(d::with_max_age("max-age=900, must-revalidate", 600, true) == "max-age=600, must-revalidate");
  CHECK(d::with_max_age("MaX-aGe=3600, S-MaxAge=1", 600, true) == "MaX-aGe=600, S-MaxAge=1");
  CHECK(d::with_max_age("max-age=3600,s-maxage=1", 600, true) == "max-age=600,s-maxage=1");
  CHECK(d::with_max_age("max-age=99999999999", 600, true) == "max-age=600");
  CHECK(d::with_max_age("public, max-age=300", 600, false) == "public, max-age=600");
  CHECK(d::with_max_age("Max-Age=300", 600, true) == "Max-Age=300");
  // Other directives are kept as they were, including arguments.
  CHECK(d::with_max_age("no-cache=\"Set-Cookie\", s-maxage=60, stale-while-revalidate=30", 600, true) ==
        "no-cache=\"Set-Cookie\", s-maxage=60, stale-while-revalidate=30, max-age=600");
  CHECK(d::with_max_age("public, max-age=300", 600, false) == "public, max-age=600");
  // A max-age that is not a number does not count; never negative.
  CHECK(d::with_max_age("max-age=abc", 600, true) == "max-age=600");
  CHECK(d::with_max_age("public, max-age=abc", 600, true) == "public, max-age=600");
  CHECK(d::with_max_age("", -5, true) == "max-age=0");
}

TEST_CASE("cache_status appends a member", "[http]") {
  CHECK(d::cache_status("", "ccp", "hit; ttl=10") == "ccp; hit; ttl=10");
  CHECK(d::cache_status("  ", "ccp", "fwd=miss") == "ccp; fwd=miss");
  CHECK(d::cache_status("upstream; fwd=uri-miss", "ccp", "hit") == "upstream; fwd=uri-miss, ccp; hit");
}

TEST_CASE("bypass_reason and is_unsafe", "[http]") {
  auto o = options();
  auto req = get_request();
  CHECK_FALSE(d::bypass_reason(ccp::request_view(req), o).has_value());
  req.set(http::field::authorization, "Bearer x");
  CHECK(d::bypass_reason(ccp::request_view(req), o) == std::optional<std::string_view>("authorization"));
  o.cache_authorized = true;
  CHECK_FALSE(d::bypass_reason(ccp::request_view(req), o).has_value());
  auto bad = get_request();
  bad.target("http://[::1");
  CHECK(d::bypass_reason(ccp::request_view(bad), o) == std::optional<std::string_view>("malformed-target"));

  CHECK_FALSE(d::is_unsafe(http::verb::get));
  CHECK_FALSE(d::is_unsafe(http::verb::head));
  CHECK_FALSE(d::is_unsafe(http::verb::options));
  CHECK(d::is_unsafe(http::verb::post));
  CHECK(d::is_unsafe(http::verb::put));
  CHECK(d::is_unsafe(http::verb::delete_));
  CHECK(d::is_unsafe(http::verb::patch));
}
