#include <custom_cache_page/cache_page.hpp>

#include "../support/front_ends.hpp"
#include "../support/messages.hpp"

#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/versioned.hpp>
#include <custom_cache_page/backends/composite_backend.hpp>
#include <custom_cache_page/backends/cdn/varnish_backend.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <thread>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using ccp_test::make_request;
using ccp_test::receive;

namespace {

// One cached handler over its own memory backend and counters, through the
// front end `Front`; the handler counts its calls and answers with what
// `respond` builds.
template <class Front>
struct harness {
  std::shared_ptr<ccp::memory_backend> backend = std::make_shared<ccp::memory_backend>();
  std::shared_ptr<ccp::stats> counters = std::make_shared<ccp::stats>();
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  std::function<void(http::request<http::string_body> const&, http::response<http::string_body>&, ccp::fill_context&)>
      respond = [](auto const&, auto&, auto&) {};

  ccp::cache_options options(ccp::cache_options o = {}) const {
    o.backend = backend;
    o.statistics = counters;
    return o;
  }

  auto wrap(ccp::cache_options o = {}) {
    return Front::wrap(options(std::move(o)), [this](http::request<http::string_body> const& req, ccp::fill_context& ctx) {
      int n = ++*calls;
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "text/plain");
      res.body() = "call " + std::to_string(n) + " for " + std::string(req.target());
      respond(req, res, ctx);
      res.prepare_payload();
      return res;
    });
  }
};

using ccp_test::get;

} // namespace

TEMPLATE_TEST_CASE("a second GET is a hit with the same body, Age and RFC 9211 Cache-Status", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.timeout = 600s});
  auto first = get(cached, "/products?b=2&a=1");
  auto second = get(cached, "/products?a=1&b=2"); // same key: parameters are sorted
  CHECK(*h.calls == 1);
  CHECK(first.body() == second.body());
  CHECK(first.cache_status() == "custom_cache_page; fwd=miss; stored");
  CHECK_THAT(second.cache_status(), Catch::StartsWith("custom_cache_page; hit; ttl="));
  CHECK(second.header("Age") == "0");
  CHECK(second.header("Content-Type") == "text/plain");
  // Django's patch_response_headers: max-age equals the timeout, Expires set.
  CHECK(first.header("Cache-Control") == "max-age=600");
  CHECK_FALSE(first.header("Expires").empty());
  CHECK(second.header("Expires") == first.header("Expires"));
  auto snap = h.counters->snapshot();
  CHECK(snap.hits == 1);
  CHECK(snap.misses == 1);
  CHECK(snap.stored == 1);
}

TEMPLATE_TEST_CASE("hits send the stored body bytes without copying them", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.body() = std::string(64 * 1024, 'x'); };
  auto cached = h.wrap();
  get(cached, "/big");
  // Both answers alive at once, so that a copy could not reuse the first
  // one's freed buffer: each sends the stored entry's own bytes.
  auto first = cached(make_request(http::verb::get, "/big"));
  auto second = cached(make_request(http::verb::get, "/big"));
  auto const stored = h.backend->lookup(ccp::storage_key("", "/big", {}, std::string_view{}), {}).entry;
  REQUIRE(stored);
  auto const a = receive(std::move(first));
  auto const b = receive(std::move(second));
  REQUIRE(a.body().size() == 64 * 1024);
  CHECK(a.buffer_addresses.back() == stored->body.data());
  CHECK(b.buffer_addresses.back() == stored->body.data());
}

TEMPLATE_TEST_CASE("a hit with 20 header fields goes out in one write, HEAD and 304 too", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  // Beast's own fields are a buffer each, and message_generator passes at
  // most 12 buffers to a write: the body would follow in a second one.
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) {
    for (int i = 0; i < 17; ++i) res.set("X-Field-" + std::to_string(i), std::to_string(i));
    res.set(http::field::etag, "\"v1\"");
  };
  auto cached = h.wrap();
  auto const fill = get(cached, "/many");
  auto const hit = receive(cached(make_request(http::verb::get, "/many")));
  CHECK(fill.writes == 1);
  CHECK(hit.writes == 1);
  CHECK(std::distance(hit.response.begin(), hit.response.end()) >= 20);
  CHECK(hit.header("X-Field-16") == "16");
  CHECK(hit.body() == fill.body());
  auto const head = receive(cached(make_request(http::verb::head, "/many")), true);
  CHECK(head.writes == 1);
  CHECK(head.header("Content-Length") == std::to_string(fill.body().size()));
  CHECK(head.header("X-Field-3") == "3");
  auto const not_modified = receive(cached(make_request(http::verb::get, "/many", {{"If-None-Match", "\"v1\""}})));
  CHECK(not_modified.writes == 1);
  CHECK(not_modified.response.result() == http::status::not_modified);
  CHECK(not_modified.header("ETag") == "\"v1\"");
  CHECK(not_modified.header("X-Field-3").empty()); // a 304 repeats the validators only
}

TEMPLATE_TEST_CASE("hits carry Age and the stored max-age unchanged (RFC 9111 4.2.3, 5.1)", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  // A downstream cache computes current_age from Age and compares it with
  // max-age: counting max-age down as well would age the copy twice.
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.set(http::field::cache_control, "public, s-maxage=50"); };
  auto cached = h.wrap({.timeout = 100s});
  auto const fill = get(cached, "/p");
  std::this_thread::sleep_for(1100ms);
  auto hit = get(cached, "/p");
  CHECK(hit.header("Age") == "1");
  CHECK(hit.header("Cache-Control") == fill.header("Cache-Control"));
  CHECK(hit.header("Cache-Control") == "public, s-maxage=50, max-age=100");
  CHECK_FALSE(hit.header("Date").empty());
  CHECK_THAT(hit.cache_status(), Catch::EndsWith("hit; ttl=99"));
}

TEMPLATE_TEST_CASE("an existing smaller max-age and other directives are kept, a larger one is lowered", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    res.set(http::field::cache_control, req.target() == "/small" ? "public, max-age=60" : "public, max-age=9999");
  };
  auto cached = h.wrap({.timeout = 600s});
  CHECK(get(cached, "/small").header("Cache-Control") == "public, max-age=60");
  CHECK(get(cached, "/large").header("Cache-Control") == "public, max-age=600");
}

TEMPLATE_TEST_CASE("patch_response_headers = false replays Cache-Control and Expires byte for byte", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.set(http::field::cache_control, "MaX-aGe=3600,  s-maxage=1"); };
  auto cached = h.wrap({.timeout = 600s, .patch_response_headers = false});
  auto const fill = get(cached, "/p");
  auto const hit = get(cached, "/p");
  CHECK_THAT(hit.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
  for (auto const& r : {fill, hit}) {
    CHECK(r.header("Cache-Control") == "MaX-aGe=3600,  s-maxage=1");
    CHECK(r.header("Expires").empty());
  }
  // The default patches as Django does: the larger max-age lowered in place.
  harness<TestType> d;
  d.respond = h.respond;
  auto patched = d.wrap({.timeout = 600s});
  CHECK(get(patched, "/p").header("Cache-Control") == "MaX-aGe=600,  s-maxage=1");
}

TEMPLATE_TEST_CASE("the response's Date is stored and replayed, the fill time when it had none (RFC 9110 6.6.1)", "[cache_page][rfc9110]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto const date = ccp::detail::http_date(std::chrono::system_clock::now() - 5s);
  h.respond = [date](auto const& req, auto& res, auto&) {
    if (req.target() == "/dated") res.set(http::field::date, date);
  };
  auto cached = h.wrap({.timeout = 600s, .patch_response_headers = false});
  get(cached, "/dated");
  auto const dated = get(cached, "/dated");
  CHECK_THAT(dated.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
  CHECK(dated.header("Date") == date);
  auto const fill = get(cached, "/undated");
  CHECK_FALSE(fill.header("Date").empty());
  std::this_thread::sleep_for(1100ms);
  auto const hit = get(cached, "/undated");
  CHECK(hit.header("Date") == fill.header("Date"));
  CHECK(hit.header("Age") == "1");
  // A 304 repeats Date (RFC 9110 15.4.5).
  auto const not_modified = get(cached, "/undated", {{"If-None-Match", "*"}});
  CHECK(not_modified.response.result() == http::status::not_modified);
  CHECK(not_modified.header("Date") == fill.header("Date"));
}

TEMPLATE_TEST_CASE("Age counts the response's own age: its Age field and how late its Date was (RFC 9111 4.2.3)", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    if (req.target() == "/aged") res.set(http::field::age, "30");
    if (req.target() == "/late")
      res.set(http::field::date, ccp::detail::http_date(std::chrono::system_clock::now() - std::chrono::seconds(20)));
  };
  auto cached = h.wrap({.timeout = 600s});
  CHECK(get(cached, "/aged").header("Age") == "30"); // passed on by the fill too
  get(cached, "/late");
  std::this_thread::sleep_for(1100ms);
  auto const aged = get(cached, "/aged");
  CHECK(aged.header("Age") == "31");
  CHECK_THAT(aged.cache_status(), Catch::Contains("hit; ttl=56")); // freshness counts from the response's age
  auto const late = get(cached, "/late");
  CHECK((late.header("Age") == "21" || late.header("Age") == "22"));
  // Older than the timeout already: never stored.
  h.respond = [](auto const&, auto& res, auto&) { res.set(http::field::age, "900"); };
  CHECK_THAT(get(cached, "/old").cache_status(), Catch::Contains("detail=zero-timeout"));
}

TEMPLATE_TEST_CASE("a timeout past what the clock holds is clamped: the entry is stored and hit", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.timeout = std::chrono::hours(24 * 365 * 300)});
  get(cached, "/forever");
  CHECK_THAT(get(cached, "/forever").cache_status(), Catch::StartsWith("custom_cache_page; hit"));
}

TEMPLATE_TEST_CASE("Cache-Status is appended to a member the handler already set", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.set("Cache-Status", "origin-cache; hit"); };
  auto cached = h.wrap();
  CHECK(get(cached, "/x").cache_status() == "origin-cache; hit, custom_cache_page; fwd=miss; stored");
  CHECK_THAT(get(cached, "/x").cache_status(), Catch::StartsWith("origin-cache; hit, custom_cache_page; hit"));
}

TEMPLATE_TEST_CASE("HEAD is answered from the GET entry with headers only", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap();
  SECTION("a HEAD miss runs the handler and stores nothing") {
    auto head = receive(cached(make_request(http::verb::head, "/h")), true);
    CHECK_THAT(head.cache_status(), Catch::Contains("detail=head"));
    CHECK(*h.calls == 1);
    get(cached, "/h");
    CHECK(*h.calls == 2);
  }
  SECTION("a HEAD hit") {
    auto full = get(cached, "/h");
    auto head = receive(cached(make_request(http::verb::head, "/h")), true);
    CHECK(*h.calls == 1);
    CHECK(head.response.result() == http::status::ok);
    CHECK(head.header("Content-Length") == std::to_string(full.body().size()));
    CHECK(head.body().empty());
    CHECK_THAT(head.cache_status(), Catch::Contains("hit"));
  }
}

TEMPLATE_TEST_CASE("unsafe methods are never answered from the cache and invalidate the GET entry", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  for (auto method : {http::verb::post, http::verb::put, http::verb::patch, http::verb::delete_}) {
    harness<TestType> h;
    auto cached = h.wrap();
    get(cached, "/item/1");
    get(cached, "/item/1");
    REQUIRE(*h.calls == 1);
    auto res = receive(cached(make_request(method, "/item/1", {}, "body")));
    CHECK(*h.calls == 2);
    CHECK(res.cache_status() == "custom_cache_page; fwd=method");
    auto after = get(cached, "/item/1");
    CHECK(*h.calls == 3);
    CHECK_THAT(after.cache_status(), Catch::Contains("fwd=miss"));
  }
}

TEMPLATE_TEST_CASE("virtual hosts never share an entry unless key_includes_host is off", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) { res.body() = "for " + std::string(req[http::field::host]); };
  auto cached = h.wrap();
  CHECK(get(cached, "/", {{"Host", "a.example"}}).body() == "for a.example");
  CHECK(get(cached, "/", {{"Host", "b.example"}}).body() == "for b.example");
  auto same = get(cached, "/", {{"Host", "A.Example:80"}}); // the same host, normalised
  CHECK(same.body() == "for a.example");
  CHECK_THAT(same.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
  // A PUT to one host invalidates that host's entry alone.
  receive(cached(make_request(http::verb::put, "/", {{"Host", "b.example"}}, "x")));
  CHECK_THAT(get(cached, "/", {{"Host", "a.example"}}).cache_status(), Catch::StartsWith("custom_cache_page; hit"));
  CHECK_THAT(get(cached, "/", {{"Host", "b.example"}}).cache_status(), Catch::Contains("fwd=miss"));

  harness<TestType> shared;
  shared.respond = h.respond;
  auto one = shared.wrap({.key_includes_host = false});
  get(one, "/", {{"Host", "a.example"}});
  CHECK(get(one, "/", {{"Host", "b.example"}}).body() == "for a.example");
}

TEMPLATE_TEST_CASE("a response with a field no entry may replay is answered, not stored", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.set("X-Control", "a\x01b"); };
  auto cached = h.wrap();
  // (Passed on as the handler wrote it: a strict client's parser refuses it.)
  cached(make_request(http::verb::get, "/ctl"));
  cached(make_request(http::verb::get, "/ctl"));
  CHECK(*h.calls == 2);
  CHECK(h.counters->snapshot().not_stored[static_cast<std::size_t>(ccp::not_stored_reason::invalid_field)] == 2);
}

TEMPLATE_TEST_CASE("a failed unsafe request leaves the entry alone", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    if (req.method() == http::verb::put) res.result(http::status::conflict);
  };
  auto cached = h.wrap();
  get(cached, "/item/1");
  receive(cached(make_request(http::verb::put, "/item/1", {}, "x")));
  CHECK_THAT(get(cached, "/item/1").cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("requests with Authorization and requests failing only_if bypass the cache", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.only_if = [](ccp::request_view r) { return !r.has_query("preview"); }});
  get(cached, "/a");
  auto auth = get(cached, "/a", {{"Authorization", "Bearer secret"}});
  CHECK(auth.cache_status() == "custom_cache_page; fwd=bypass; detail=authorization");
  CHECK(*h.calls == 2);
  auto preview = get(cached, "/a?preview=1");
  auto preview2 = get(cached, "/a?preview=1");
  CHECK(preview2.cache_status() == "custom_cache_page; fwd=bypass; detail=only-if");
  CHECK(*h.calls == 4);
  CHECK(h.counters->snapshot().bypasses == 3);
}

TEMPLATE_TEST_CASE("cache_authorized lets Authorization requests be cached when the application says so", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.cache_authorized = true});
  get(cached, "/a", {{"Authorization", "Bearer x"}});
  CHECK_THAT(get(cached, "/a", {{"Authorization", "Bearer x"}}).cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("responses that must not be shared are not stored", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  struct row {
    char const* name;
    std::function<void(http::response<http::string_body>&)> change;
    char const* detail;
  };
  std::vector<row> rows{
      {"Set-Cookie", [](auto& r) { r.set(http::field::set_cookie, "session=abc"); }, "set-cookie"},
      {"no-store", [](auto& r) { r.set(http::field::cache_control, "no-store"); }, "no-store"},
      {"private", [](auto& r) { r.set(http::field::cache_control, "private, max-age=60"); }, "private"},
      {"Vary: *", [](auto& r) { r.set(http::field::vary, "*"); }, "vary-star"},
      {"404", [](auto& r) { r.result(http::status::not_found); }, "status"},
      {"500", [](auto& r) { r.result(http::status::internal_server_error); }, "status"},
  };
  for (auto const& r : rows) {
    INFO(r.name);
    harness<TestType> h;
    h.respond = [&](auto const&, auto& res, auto&) { r.change(res); };
    auto cached = h.wrap();
    auto first = get(cached, "/x");
    auto second = get(cached, "/x");
    CHECK(*h.calls == 2);
    CHECK(second.cache_status() == std::string("custom_cache_page; fwd=miss; detail=") + r.detail);
    // Each client gets its own response, Set-Cookie included.
    CHECK(first.body() != second.body());
  }
}

TEMPLATE_TEST_CASE("cacheable_statuses and max_body_size are honoured", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    if (req.target() == "/gone") res.result(http::status::not_found);
    if (req.target() == "/big") res.body() = std::string(2000, 'b');
  };
  auto cached = h.wrap({.cacheable_statuses = {http::status::ok, http::status::not_found}, .max_body_size = 1000});
  get(cached, "/gone");
  CHECK_THAT(get(cached, "/gone").cache_status(), Catch::Contains("hit"));
  get(cached, "/big");
  CHECK(get(cached, "/big").cache_status() == "custom_cache_page; fwd=miss; detail=too-large");
}

TEMPLATE_TEST_CASE("a zero timeout, or one computed from the response, decides storage", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) { res.set("X-TTL", req.target() == "/short" ? "0" : "30"); };
  auto cached = h.wrap({.timeout = [](http::response_header<> const& res) {
    return std::chrono::seconds(std::stoi(std::string(res["X-TTL"])));
  }});
  get(cached, "/short");
  CHECK(get(cached, "/short").cache_status() == "custom_cache_page; fwd=miss; detail=zero-timeout");
  CHECK(get(cached, "/long").header("Cache-Control") == "max-age=30");
}

TEMPLATE_TEST_CASE("stored headers are replayed except hop-by-hop fields", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto const date = ccp::detail::http_date(std::chrono::system_clock::now());
  h.respond = [date](auto const&, auto& res, auto&) {
    res.set("X-Custom", "kept");
    res.set(http::field::connection, "X-Hop");
    res.set("X-Hop", "dropped");
    res.set(http::field::date, date);
  };
  auto cached = h.wrap();
  get(cached, "/x");
  auto hit = get(cached, "/x");
  CHECK_THAT(hit.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
  CHECK(hit.header("X-Custom") == "kept");
  CHECK(hit.header("X-Hop").empty());
  CHECK(hit.header("Date") == date); // the response's own (RFC 9110 6.6.1)
}

TEMPLATE_TEST_CASE("the handler can decline caching and add tags through fill_context", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto&, ccp::fill_context& ctx) {
    if (req.target() == "/preview") ctx.do_not_cache();
    if (req.target() == "/item") ctx.add_tag("learned-tag");
  };
  auto cached = h.wrap();
  get(cached, "/preview");
  auto second = get(cached, "/preview");
  CHECK(second.cache_status() == "custom_cache_page; fwd=miss; detail=handler-declined");
  // No internal marker reaches the client.
  for (auto const& f : second.response) CHECK_THAT(std::string(f.name_string()), !Catch::Contains("ccp", Catch::CaseSensitive::No));

  get(cached, "/item");
  CHECK_THAT(get(cached, "/item").cache_status(), Catch::Contains("hit"));
  auto result = h.backend->invalidate_tag("learned-tag");
  CHECK(result.entries_removed == 1);
  CHECK_THAT(get(cached, "/item").cache_status(), Catch::Contains("fwd=miss"));
}

TEMPLATE_TEST_CASE("refresh_if forces a refresh that replaces the entry", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.refresh_if = [](ccp::request_view r) { return r.has("X-Refresh"); }});
  auto a = get(cached, "/r");
  auto refreshed = get(cached, "/r", {{"X-Refresh", "1"}});
  CHECK(refreshed.cache_status() == "custom_cache_page; fwd=request; stored");
  auto b = get(cached, "/r");
  CHECK(b.body() == refreshed.body());
  CHECK(b.body() != a.body());
}

TEMPLATE_TEST_CASE("plain and versioned tags both invalidate (the seed skipped plain tags)", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap({.tags = {"catalog", ccp::versioned("products"),
                                 [](ccp::request_view r) { return "category-" + r.query("cat"); }}});
  get(cached, "/list?cat=books");
  get(cached, "/list?cat=games");
  for (char const* tag : {"catalog", "products", "category-books"}) {
    INFO(tag);
    get(cached, "/list?cat=books");
    REQUIRE_THAT(get(cached, "/list?cat=books").cache_status(), Catch::Contains("hit"));
    h.backend->invalidate_tag(tag);
    CHECK_THAT(get(cached, "/list?cat=books").cache_status(), Catch::Contains("fwd=miss"));
  }
  // category-books did not touch the games page.
  get(cached, "/list?cat=games");
  h.backend->invalidate_tag("category-books");
  CHECK_THAT(get(cached, "/list?cat=games").cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("a versioned tag named from the request gives each name its own entry, as in Python", "[cache_page][python]", ccp_test::sync_front, ccp_test::async_front) {
  // Python: versioned(lambda r: f"store:{r.store.id}") puts the resolved name
  // in the key. The key function sees only the path, so without the name in
  // the key the two stores' pages would replace each other.
  harness<TestType> h;
  auto cached = h.wrap({.key_func = [](ccp::request_view r) { return std::string(r.path()); },
                        .tags = {ccp::versioned([](ccp::request_view r) { return "store:" + std::string(r.header("X-Store")); })}});
  auto const from_store = [&](char const* store) { return get(cached, "/catalog", {{"X-Store", store}}); };
  auto const one = from_store("1");
  auto const two = from_store("2");
  CHECK(from_store("1").body() == one.body());
  CHECK(from_store("2").body() == two.body());
  CHECK(*h.calls == 2);
  CHECK(one.body() != two.body());
  // Invalidating one store's tag leaves the other's entry alone.
  h.backend->invalidate_tag("store:1");
  CHECK_THAT(from_store("2").cache_status(), Catch::Contains("hit"));
  CHECK_THAT(from_store("1").cache_status(), Catch::Contains("fwd=miss"));
  CHECK(*h.calls == 3);
}

TEMPLATE_TEST_CASE("an invalidation while the handler runs keeps its response out of the cache", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [&h](auto const& req, auto&, auto&) {
    if (req.target() == "/racy" && *h.calls == 1) h.backend->invalidate_tag("t");
  };
  auto cached = h.wrap({.tags = {"t"}});
  auto first = get(cached, "/racy");
  CHECK(first.cache_status() == "custom_cache_page; fwd=miss; detail=invalidated");
  CHECK(h.counters->snapshot().not_stored[static_cast<std::size_t>(ccp::not_stored_reason::invalidated)] == 1);
  get(cached, "/racy");
  CHECK_THAT(get(cached, "/racy").cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("Vary: the varying request fields must match, and Vary is sent on hits", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    res.set(http::field::vary, "Accept-Language");
    res.body() = "lang=" + std::string(req[http::field::accept_language]);
  };
  auto cached = h.wrap();
  auto en = get(cached, "/v", {{"Accept-Language", "en"}});
  auto en_hit = get(cached, "/v", {{"Accept-Language", "en"}});
  CHECK_THAT(en_hit.cache_status(), Catch::Contains("hit"));
  CHECK(en_hit.header("Vary") == "Accept-Language");
  auto de = get(cached, "/v", {{"Accept-Language", "de"}});
  CHECK(de.body() == "lang=de");
  CHECK(de.cache_status() == "custom_cache_page; fwd=vary-miss; stored");

  harness<TestType> ignoring;
  ignoring.respond = h.respond;
  auto plain = ignoring.wrap({.honour_vary = false});
  get(plain, "/v", {{"Accept-Language", "en"}});
  CHECK(get(plain, "/v", {{"Accept-Language", "de"}}).body() == "lang=en");
}

TEMPLATE_TEST_CASE("ETag option and conditional requests answer 304 from the entry", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) { res.set(http::field::last_modified, "Sun, 06 Nov 1994 08:49:37 GMT"); };
  auto cached = h.wrap({.add_etag = true});
  auto first = get(cached, "/e");
  auto etag = first.header("ETag");
  REQUIRE(etag.size() == 34);
  CHECK(etag.front() == '"');
  auto not_modified = get(cached, "/e", {{"If-None-Match", etag}});
  CHECK(not_modified.response.result() == http::status::not_modified);
  CHECK(not_modified.body().empty());
  CHECK(not_modified.header("ETag") == etag);
  CHECK(get(cached, "/e", {{"If-None-Match", "\"other\""}}).response.result() == http::status::ok);
  CHECK(get(cached, "/e", {{"If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"}}).response.result() ==
        http::status::not_modified);
  CHECK(get(cached, "/e", {{"If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}).response.result() ==
        http::status::ok);
  CHECK(*h.calls == 1);
}

namespace {
// A backend whose every operation throws: the store is down.
struct broken_backend {
  ccp::lookup_result lookup(std::string const&, std::span<ccp::resolved_tag const>) { throw std::runtime_error("down"); }
  std::vector<std::uint64_t> tag_versions(std::span<ccp::resolved_tag const>) { throw std::runtime_error("down"); }
  bool store(std::string const&, std::shared_ptr<ccp::cached_response const>) { throw std::runtime_error("down"); }
  bool erase(std::string const&) { throw std::runtime_error("down"); }
  ccp::invalidation_result invalidate_tag(std::string const&, ccp::purge_mode) { throw std::runtime_error("down"); }
};
static_assert(ccp::store_backend<broken_backend>);
} // namespace

TEMPLATE_TEST_CASE("a failing cache never fails the request", "[cache_page][failure]", ccp_test::sync_front, ccp_test::async_front) {
  auto counters = std::make_shared<ccp::stats>();
  int calls = 0;
  auto handler = [&](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = "fresh " + std::to_string(++calls);
    res.prepare_payload();
    return res;
  };
  SECTION("store down") {
    auto cached = TestType::wrap({.backend = std::make_shared<broken_backend>(), .statistics = counters}, handler);
    auto a = get(cached, "/x");
    auto b = get(cached, "/x");
    CHECK(a.body() == "fresh 1");
    CHECK(b.body() == "fresh 2");
    CHECK(b.cache_status() == "custom_cache_page; fwd=miss; detail=store-unavailable");
    CHECK(receive(cached(make_request(http::verb::put, "/x", {}, "b"))).body() == "fresh 3");
  }
  SECTION("key function throws") {
    auto cached = TestType::wrap({.key_func = [](ccp::request_view) -> std::string { throw std::runtime_error("bad"); },
                                   .backend = std::make_shared<ccp::memory_backend>(), .statistics = counters}, handler);
    CHECK(get(cached, "/x").cache_status() == "custom_cache_page; fwd=bypass; detail=error");
  }
  SECTION("tag callable throws") {
    auto cached = TestType::wrap({.tags = {[](ccp::request_view) -> std::string { throw std::runtime_error("bad"); }},
                                   .backend = std::make_shared<ccp::memory_backend>(), .statistics = counters}, handler);
    CHECK(get(cached, "/x").body() == "fresh 1");
  }
  SECTION("unknown backend name") {
    ccp::default_registry().clear(); // nothing registered yet: the name is checked on each request
    auto cached = TestType::wrap({.backend = "no-such-backend", .statistics = counters}, handler);
    auto const answer = get(cached, "/x");
    CHECK(answer.body() == "fresh 1");
    CHECK(answer.cache_status() == "custom_cache_page; fwd=bypass; detail=unknown-backend");
    CHECK(counters->snapshot().unknown_backends == 1);
    CHECK(counters->snapshot().errors == 0); // counted on its own, not among generic errors
    // Once the registry holds backends, a name it lacks is an error at construction.
    ccp::default_registry().add("registered", std::make_shared<ccp::memory_backend>());
    CHECK_THROWS_AS(ccp::cache_page({.backend = "no-such-backend"}, handler), ccp::unknown_backend_error);
    CHECK_THROWS_WITH(ccp::cache_page({.backend = "no-such-backend"}, handler), Catch::Contains("no-such-backend"));
    ccp::cache_page({.backend = "registered"}, handler); // a known name is fine
  }
  auto const s = counters->snapshot();
  CHECK(s.errors + s.unknown_backends >= 1);
}

TEMPLATE_TEST_CASE("a handler's backend snapshot lets a replaced backend go", "[cache_page][registry][ownership]", ccp_test::sync_front, ccp_test::async_front) {
  // Counts destructions of the backends registered under the name.
  struct counted : ccp::memory_backend {
    explicit counted(std::atomic<int>& d) : destroyed(d) {}
    ~counted() { ++destroyed; }
    std::atomic<int>& destroyed;
  };
  std::atomic<int> destroyed{0};
  auto& registry = ccp::default_registry();
  std::string const name = std::string("cache-page-test-replaced-") + TestType::name;
  registry.add(name, std::make_shared<counted>(destroyed));
  auto cached = TestType::wrap({.backend = name}, [](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = "page";
    res.prepare_payload();
    return res;
  });
  get(cached, "/r");
  CHECK_THAT(get(cached, "/r").cache_status(), Catch::Contains("hit"));
  registry.add(name, std::make_shared<counted>(destroyed));
  CHECK(destroyed == 0); // the handler's snapshot still holds the first one
  CHECK_THAT(get(cached, "/r").cache_status(), Catch::Contains("fwd=miss")); // the new backend is empty
  CHECK(destroyed == 1); // the snapshot moved on: the first one is freed
  registry.add(name, std::make_shared<ccp::memory_backend>()); // nothing left referring to `destroyed`
}

TEMPLATE_TEST_CASE("a malformed target bypasses the cache", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto cached = h.wrap();
  CHECK(get(cached, "http://[::1").cache_status() == "custom_cache_page; fwd=bypass; detail=malformed-target");
}

TEMPLATE_TEST_CASE("prefix separates handlers sharing a backend", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto a = h.wrap({.prefix = "a"});
  auto b = h.wrap({.prefix = [](ccp::request_view) { return std::string("b"); }});
  get(a, "/same");
  CHECK_THAT(get(b, "/same").cache_status(), Catch::Contains("fwd=miss"));
  CHECK(*h.calls == 2);
}

TEMPLATE_TEST_CASE("a handler taking the request by rvalue, any request body type", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  auto backend = std::make_shared<ccp::memory_backend>();
  auto cached = TestType::wrap({.backend = backend}, [](http::request<http::empty_body>&& req) {
    http::response<http::vector_body<char>> res{http::status::ok, req.version()};
    res.body() = {'o', 'k'};
    res.prepare_payload();
    return res;
  });
  http::request<http::empty_body> req{http::verb::get, "/rv", 11};
  CHECK(receive(cached(std::move(req))).body() == "ok");
  http::request<http::empty_body> again{http::verb::get, "/rv", 11};
  auto hit = receive(cached(std::move(again)));
  CHECK(hit.body() == "ok");
  CHECK_THAT(hit.cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("an entry over the backend's own limit is reported not stored, not stored", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.backend = std::make_shared<ccp::memory_backend>(ccp::memory_backend_options{.max_bytes = 1 << 20, .max_entry = 4096});
  h.respond = [](auto const&, auto& res, auto&) { res.body() = std::string(8192, 'z'); };
  auto cached = h.wrap();
  auto first = get(cached, "/large");
  CHECK(first.cache_status() == "custom_cache_page; fwd=miss; detail=too-large");
  CHECK(first.body().size() == 8192);
  auto snap = h.counters->snapshot();
  CHECK(snap.stored == 0);
  CHECK(snap.errors == 0);
  CHECK(snap.not_stored[static_cast<std::size_t>(ccp::not_stored_reason::too_large)] == 1);
}

TEST_CASE("error messages say what failed once", "[cache_page][errors]") {
  ccp::unknown_backend_error e("nope");
  CHECK(std::string(e.what()) == "unknown cache backend 'nope'");
  CHECK(e.code() == ccp::error::unknown_backend);
}

TEMPLATE_TEST_CASE("a GET fill that started before a successful PUT does not store its older response", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  std::string data = "old";
  bool put_during_get = true;
  std::function<http::message_generator(http::request<http::string_body>&&)> cached_self;
  auto cached = TestType::wrap(h.options(), [&](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    if (req.method() == http::verb::put) {
      data = req.body();
    } else {
      res.body() = data; // the read happens here, then the slow part
      if (std::exchange(put_during_get, false)) receive(cached_self(make_request(http::verb::put, "/item", {}, "new")));
    }
    res.prepare_payload();
    return res;
  });
  cached_self = [&](http::request<http::string_body>&& r) { return cached(std::move(r)); };
  // While the GET handler is between its read and its return, a PUT of the
  // same target completes.
  auto racing = get(cached, "/item");
  CHECK(racing.body() == "old"); // built before the PUT: fine to send to this client
  CHECK(racing.cache_status() == "custom_cache_page; fwd=miss; detail=invalidated");
  CHECK(get(cached, "/item").body() == "new");
  CHECK_THAT(get(cached, "/item").cache_status(), Catch::Contains("hit"));
}

TEMPLATE_TEST_CASE("the target guard is internal: no tag header names it", "[cache_page]", ccp_test::sync_front, ccp_test::async_front) {
  // A CDN member adds the entry's tags as an xkey header; its purges go to a
  // port where nothing listens, which the PUT's guard bump must survive.
  auto store = std::make_shared<ccp::memory_backend>();
  auto cdn = std::make_shared<ccp::varnish_backend>(ccp::varnish_backend_options{.port = 9, .timeout = 200ms});
  auto composite = std::make_shared<ccp::composite_backend>(
      std::vector<ccp::composite_member>{{"memory", ccp::any_backend(store)}, {"varnish", ccp::any_backend(cdn)}});
  auto cached = TestType::wrap({.tags = {"page-g"}, .backend = composite}, [](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = "g";
    res.prepare_payload();
    return res;
  });
  get(cached, "/g");
  receive(cached(make_request(http::verb::put, "/g", {}, "x")));
  // A guard that exists now must not stop new fills, nor reach a header.
  auto const fill = get(cached, "/g");
  auto const hit = get(cached, "/g");
  CHECK_THAT(hit.cache_status(), Catch::Contains("hit"));
  for (auto const& answer : {fill, hit}) {
    CHECK(answer.header("xkey") == "page-g");
    CHECK(answer.header("xkey").find("target") == std::string::npos);
  }
}

TEMPLATE_TEST_CASE("backends by registered name and the default registry's free functions", "[cache_page][registry]", ccp_test::sync_front, ccp_test::async_front) {
  auto& registry = ccp::default_registry();
  auto named = std::make_shared<ccp::memory_backend>();
  registry.add("cache-page-test-named", ccp::any_backend(named));
  int calls = 0;
  auto handler = [&](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = std::to_string(++calls);
    res.prepare_payload();
    return res;
  };
  auto by_name = TestType::wrap({.tags = {"cache-page-test-tag"}, .backend = "cache-page-test-named"}, handler);
  get(by_name, "/named");
  CHECK_THAT(get(by_name, "/named").cache_status(), Catch::Contains("hit"));
  CHECK(named->size() == 1);
  auto result = ccp::invalidate_tag("cache-page-test-tag", "cache-page-test-named");
  CHECK(result.backend == "cache-page-test-named");
  CHECK(result.entries_removed == 1);
  CHECK_THAT(get(by_name, "/named").cache_status(), Catch::Contains("fwd=miss"));

  // The default backend: what cache_page uses when it names none.
  auto by_default = TestType::wrap({.tags = {ccp::versioned("cache-page-test-default")}}, handler);
  get(by_default, "/default");
  CHECK_THAT(get(by_default, "/default").cache_status(), Catch::Contains("hit"));
  auto results = ccp::invalidate_tags({"cache-page-test-default", "cache-page-test-other"});
  CHECK(results.size() == 2);
  CHECK_THAT(get(by_default, "/default").cache_status(), Catch::Contains("fwd=miss"));

  CHECK_THROWS_WITH(ccp::invalidate_tag("x", "no-such-backend"), Catch::Contains("no-such-backend"));
}

// RFC 9111 §4.1: a response selected by Vary is stored per variant, so
// clients that alternate values all hit; the values compare normalised.
TEMPLATE_TEST_CASE("Vary: variants are kept side by side, normalised, and bounded per key (RFC 9111 4.1)", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    res.set(http::field::vary, "Accept-Language");
    res.body() = "lang=" + std::string(req[http::field::accept_language]);
  };
  auto cached = h.wrap();
  for (int round = 0; round < 3; ++round)
    for (char const* lang : {"en", "fr", "de"}) CHECK(get(cached, "/v", {{"Accept-Language", lang}}).body() == std::string("lang=") + lang);
  CHECK(*h.calls == 3);
  CHECK_THAT(get(cached, "/v", {{"Accept-Language", "fr"}}).cache_status(), Catch::Contains("hit"));

  // Whitespace around commas and the case of Accept-Language's tokens do not make a variant.
  get(cached, "/n", {{"Accept-Language", "en-GB ,fr"}});
  auto const same = get(cached, "/n", {{"Accept-Language", "EN-gb, FR"}});
  CHECK_THAT(same.cache_status(), Catch::Contains("hit"));
  CHECK(same.body() == "lang=en-GB ,fr");

  // However many values clients send, a key holds at most 1 + max_vary_variants entries.
  harness<TestType> bounded;
  bounded.respond = h.respond;
  auto few = bounded.wrap({.max_vary_variants = 4});
  for (int i = 0; i < 40; ++i) get(few, "/b", {{"Accept-Language", "x-" + std::to_string(i)}});
  CHECK(bounded.backend->size() <= 5);
  CHECK(bounded.backend->size() >= 2);
}

// RFC 9111 §4.3.1, §4.3.3, §4.3.4: a stale entry with a validator is
// revalidated through the handler; its 304 refreshes the entry, which keeps
// its body and takes the 304's fields; a 200 replaces it. A stored
// no-cache response is validated before every answer (§5.2.2.4).
TEMPLATE_TEST_CASE("revalidation: the handler's 304 refreshes a stale entry without a new body (RFC 9111 4.3.4)", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto version = std::make_shared<std::string>("v1");
  auto seen = std::make_shared<std::vector<std::string>>(); // If-None-Match of each call
  h.respond = [version, seen](auto const& req, auto& res, auto&) {
    seen->emplace_back(req[http::field::if_none_match]);
    res.set(http::field::etag, "\"" + *version + "\"");
    res.set(http::field::cache_control, "no-cache");
    res.set("X-Version", *version);
    if (req[http::field::if_none_match] == "\"" + *version + "\"") {
      res.result(http::status::not_modified);
      res.set("X-Refreshed", "yes");
      res.body().clear();
    }
  };
  auto cached = h.wrap({.revalidate_for = 60s});
  auto const first = get(cached, "/doc", {{"If-None-Match", "\"old\""}, {"Range", "bytes=0-1"}});
  CHECK(first.response.result_int() == 206); // the handler was asked for all of it, unconditionally
  CHECK(seen->at(0).empty());
  auto const again = get(cached, "/doc");
  CHECK(again.response.result_int() == 200);
  CHECK(again.body() == "call 1 for /doc");
  CHECK(seen->at(1) == "\"v1\"");
  CHECK(again.cache_status() == "custom_cache_page; fwd=stale; fwd-status=304; stored");
  CHECK(again.header("X-Refreshed") == "yes");
  CHECK(again.header("Cache-Control") == "no-cache, max-age=300");

  *version = "v2"; // the page changed: a 200 replaces the entry
  auto const changed = get(cached, "/doc");
  CHECK(changed.body() == "call 3 for /doc");
  CHECK(changed.header("ETag") == "\"v2\"");
  CHECK(changed.cache_status() == "custom_cache_page; fwd=stale; stored");

  harness<TestType> off; // without revalidate_for, a no-cache response is served as the Python package does
  off.respond = h.respond;
  auto plain = off.wrap();
  get(plain, "/doc");
  CHECK_THAT(get(plain, "/doc").cache_status(), Catch::Contains("hit"));
}

// RFC 9110 §14.2, §13.1.5: one byte range of a stored 200 is answered 206,
// a range past the end 416, and If-Range that does not match the whole.
TEMPLATE_TEST_CASE("Range: single byte ranges are answered 206 from the entry, If-Range honoured (RFC 9110 14.2, 13.1.5)", "[cache_page][rfc9110]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto ranges = std::make_shared<std::vector<std::string>>();
  h.respond = [ranges](auto const& req, auto& res, auto&) {
    ranges->emplace_back(req[http::field::range]);
    res.set(http::field::etag, "\"r1\"");
    res.set(http::field::last_modified, "Sun, 06 Nov 1994 08:49:37 GMT");
    res.body() = "0123456789";
  };
  auto cached = h.wrap();
  auto const filled = get(cached, "/r", {{"Range", "bytes=2-5"}});
  CHECK(filled.response.result_int() == 206);
  CHECK(filled.body() == "2345");
  CHECK(filled.header("Content-Range") == "bytes 2-5/10");
  CHECK(ranges->at(0).empty()); // a 206 is never stored: the fill asked for all of it
  CHECK(get(cached, "/r", {{"Range", "bytes=-3"}}).body() == "789");
  CHECK(get(cached, "/r", {{"Range", "bytes=7-"}}).body() == "789");
  CHECK(get(cached, "/r", {{"Range", "bytes=8-100"}}).header("Content-Range") == "bytes 8-9/10");
  auto const past = get(cached, "/r", {{"Range", "bytes=10-"}});
  CHECK(past.response.result_int() == 416);
  CHECK(past.header("Content-Range") == "bytes */10");
  CHECK(past.body().empty());
  CHECK(get(cached, "/r", {{"Range", "bytes=0-1,4-5"}}).response.result_int() == 200); // several: the whole
  CHECK(get(cached, "/r", {{"Range", "lines=1-2"}}).response.result_int() == 200);
  CHECK(get(cached, "/r", {{"Range", "bytes=2-5"}, {"If-Range", "\"r1\""}}).response.result_int() == 206);
  CHECK(get(cached, "/r", {{"Range", "bytes=2-5"}, {"If-Range", "\"r0\""}}).body() == "0123456789");
  CHECK(get(cached, "/r", {{"Range", "bytes=2-5"}, {"If-Range", "W/\"r1\""}}).response.result_int() == 200);
  CHECK(get(cached, "/r", {{"Range", "bytes=2-5"}, {"If-Range", "Sun, 06 Nov 1994 08:49:37 GMT"}}).response.result_int() == 206);
  CHECK(get(cached, "/r", {{"Range", "bytes=2-5"}, {"If-None-Match", "\"r1\""}}).response.result_int() == 304);
  CHECK(*h.calls == 1);
}

// RFC 9111 §5.2.1: the request's directives, honoured on demand only.
TEMPLATE_TEST_CASE("request directives are ignored unless honour_request_directives (RFC 9111 5.2.1)", "[cache_page][rfc9111]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  auto ignoring = h.wrap();
  get(ignoring, "/d");
  for (auto const& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"Cache-Control", "no-cache"}, {"Cache-Control", "max-age=0"}, {"Pragma", "no-cache"}, {"Cache-Control", "no-store"}})
    CHECK_THAT(get(ignoring, "/d", {{name, value}}).cache_status(), Catch::Contains("hit"));
  CHECK(*h.calls == 1);

  harness<TestType> honoured;
  auto cached = honoured.wrap({.honour_request_directives = true});
  auto const unavailable = get(cached, "/d", {{"Cache-Control", "only-if-cached"}}); // §5.2.1.7
  CHECK(unavailable.response.result_int() == 504);
  CHECK(unavailable.cache_status() == "custom_cache_page; fwd=miss; detail=only-if-cached");
  CHECK(get(cached, "/d", {{"Cache-Control", "no-store"}}).cache_status() == "custom_cache_page; fwd=miss; detail=request-no-store"); // §5.2.1.5
  CHECK(get(cached, "/d").cache_status() == "custom_cache_page; fwd=miss; stored");
  CHECK_THAT(get(cached, "/d", {{"Cache-Control", "only-if-cached"}}).cache_status(), Catch::Contains("hit"));
  CHECK(get(cached, "/d", {{"Cache-Control", "no-cache"}}).cache_status() == "custom_cache_page; fwd=request; stored"); // §5.2.1.4
  CHECK(get(cached, "/d", {{"Pragma", "no-cache"}}).cache_status() == "custom_cache_page; fwd=request; stored"); // §5.4
  CHECK(get(cached, "/d", {{"Cache-Control", "max-age=0"}}).cache_status() == "custom_cache_page; fwd=request; stored"); // §5.2.1.1
  CHECK(get(cached, "/d", {{"Cache-Control", "min-fresh=1000"}}).cache_status() == "custom_cache_page; fwd=request; stored"); // §5.2.1.3
  CHECK_THAT(get(cached, "/d", {{"Cache-Control", "max-age=100, min-fresh=10"}}).cache_status(), Catch::Contains("hit"));
  CHECK(*honoured.calls == 6);
}

// RFC 9213: a targeted field governs this cache; Cache-Control goes downstream untouched.
TEMPLATE_TEST_CASE("a targeted Cache-Control field takes precedence for the cache's own storing (RFC 9213 2.1)", "[cache_page][rfc9213]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const& req, auto& res, auto&) {
    if (req.target() == "/edge-only") {
      res.set(http::field::cache_control, "private, no-store");
      res.set("CCP-Cache-Control", "max-age=60");
    } else {
      res.set(http::field::cache_control, "max-age=600");
      res.set("CCP-Cache-Control", "no-store");
    }
  };
  auto cached = h.wrap({.targeted_cache_control = "CCP-Cache-Control"});
  get(cached, "/edge-only");
  auto const hit = get(cached, "/edge-only");
  CHECK_THAT(hit.cache_status(), Catch::Contains("hit; ttl=60"));
  CHECK(hit.header("Cache-Control") == "private, no-store");
  CHECK(hit.header("Expires").empty());
  CHECK(get(cached, "/not-here").cache_status() == "custom_cache_page; fwd=miss; detail=no-store");
  CHECK(get(cached, "/not-here").cache_status() == "custom_cache_page; fwd=miss; detail=no-store");

  harness<TestType> plain; // without the option the field means nothing here
  plain.respond = h.respond;
  auto untargeted = plain.wrap();
  get(untargeted, "/edge-only");
  CHECK(get(untargeted, "/edge-only").cache_status() == "custom_cache_page; fwd=miss; detail=no-store");
}

// RFC 9110 5.6.7: If-Modified-Since in each of the three HTTP-date forms
// answers 304 from the entry; RFC 9111 4.2.1 with far-future dates: a
// response that Expires in 2286 (past the clock's nanoseconds) is stored
// and hit, its lifetime clamped.
TEMPLATE_TEST_CASE("If-Modified-Since in all three date forms, and Expires in 2286 (RFC 9110 5.6.7, RFC 9111 4.2.1)", "[cache_page][rfc9110]", ccp_test::sync_front, ccp_test::async_front) {
  harness<TestType> h;
  h.respond = [](auto const&, auto& res, auto&) {
    res.set(http::field::last_modified, "Sun, 06 Nov 1994 08:49:37 GMT");
    res.set(http::field::expires, "Fri, 01 Jan 2286 00:00:00 GMT");
  };
  auto cached = h.wrap({.timeout = [](auto const& res) { return ccp::freshness_lifetime(res); }, .patch_response_headers = false});
  get(cached, "/d");
  for (char const* since : {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"})
    CHECK(get(cached, "/d", {{"If-Modified-Since", since}}).response.result_int() == 304);
  CHECK(get(cached, "/d", {{"If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}).response.result_int() == 200);
  CHECK_THAT(get(cached, "/d").cache_status(), Catch::Contains("hit; ttl=2147483648"));
  CHECK(*h.calls == 1);
}
