// Stampede protection: request coalescing, stale-while-revalidate,
// stale-if-error and soft purge, through cache_page over a memory backend.
#include <custom_cache_page/cache_page.hpp>

#include "../support/front_ends.hpp"
#include "../support/messages.hpp"

#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/registry.hpp>
#include <custom_cache_page/versioned.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <latch>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using ccp_test::make_request;
using ccp_test::receive;

namespace {

// A cached handler whose handler counts its calls, takes `delay`, and then
// does what `respond` says (throw, set a status, a cookie...), through the
// front end `Front`.
template <class Front>
struct stampede {
  std::shared_ptr<ccp::memory_backend> backend = std::make_shared<ccp::memory_backend>();
  std::shared_ptr<ccp::stats> counters = std::make_shared<ccp::stats>();
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  std::chrono::milliseconds delay = 100ms;
  std::function<void(int call, http::request<http::string_body> const&, http::response<http::string_body>&)> respond =
      [](int, auto const&, auto&) {};
  std::vector<ccp::tag> tags; // the wrapped handler's: versioned names are part of its keys

  auto wrap(ccp::cache_options o = {}) {
    o.backend = backend;
    o.statistics = counters;
    if (o.tags.empty()) o.tags = {"t"};
    tags = o.tags;
    return Front::wrap(std::move(o), [this](http::request<http::string_body> const& req) {
      int const n = ++*calls;
      std::this_thread::sleep_for(delay);
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.body() = "call " + std::to_string(n) + " for " + std::string(req.target());
      respond(n, req, res);
      res.prepare_payload();
      return res;
    });
  }

  // Makes the stored entry of `target` look as if it had expired `ago`
  // (negative: still fresh for that long).
  void age(std::string const& target, std::chrono::milliseconds ago) {
    auto req = make_request(http::verb::get, target);
    ccp::request_view view(req);
    auto key = ccp::storage_key("", ccp::generate_cache_key(view), ccp::resolve_tags(tags, view), std::string_view{});
    auto found = backend->lookup(key, {});
    REQUIRE(found.entry);
    auto copy = std::make_shared<ccp::cached_response>(*found.entry);
    auto const now = ccp::cached_response::clock::now();
    copy->stored_at = now - ago - 60s;
    copy->expires_at = now - ago;
    REQUIRE(backend->store(key, copy));
  }
};

using ccp_test::get;

// `n` concurrent GETs of the targets `target_of(i)`, started together.
std::vector<ccp_test::received> concurrently(auto const& handler, int n, std::function<std::string(int)> target_of,
                                             std::function<std::vector<std::pair<std::string, std::string>>(int)> headers_of = {}) {
  std::vector<ccp_test::received> out(static_cast<std::size_t>(n));
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(n));
  std::latch start(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        out[static_cast<std::size_t>(i)] = get(handler, target_of(i), headers_of ? headers_of(i) : decltype(headers_of(i)){});
      } catch (...) {
        failures[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto const& f : failures)
    if (f) std::rethrow_exception(f);
  return out;
}

bool has(ccp_test::received const& r, std::string_view text) { return r.cache_status().find(text) != std::string::npos; }

} // namespace

TEMPLATE_TEST_CASE("concurrent cold misses on one key run the handler once", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  auto cached = s.wrap({.timeout = 60s});
  auto replies = concurrently(cached, 32, [](int) { return "/hot"; });
  CHECK(*s.calls == 1);
  for (auto const& r : replies) {
    CHECK(r.response.result() == http::status::ok);
    CHECK(r.body() == "call 1 for /hot");
  }
  auto snap = s.counters->snapshot();
  CHECK(snap.stored == 1);
  CHECK(snap.coalesced + snap.hits == 31);
  CHECK(has(get(cached, "/hot"), "hit"));
}

TEMPLATE_TEST_CASE("concurrent cold misses on four keys run the handler four times", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  auto cached = s.wrap({.timeout = 60s});
  auto replies = concurrently(cached, 32, [](int i) { return "/k" + std::to_string(i % 4); });
  CHECK(*s.calls == 4);
  for (int i = 0; i < 32; ++i) CHECK(replies[static_cast<std::size_t>(i)].body().ends_with("for /k" + std::to_string(i % 4)));
}

TEMPLATE_TEST_CASE("coalescing can be turned off", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  auto cached = s.wrap({.timeout = 60s, .coalesce = false});
  concurrently(cached, 4, [](int) { return "/hot"; });
  CHECK(*s.calls == 4);
}

TEMPLATE_TEST_CASE("waiters stop waiting after coalesce_wait and run the handler themselves", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.delay = 400ms;
  auto cached = s.wrap({.timeout = 60s, .coalesce_wait = 50ms});
  auto replies = concurrently(cached, 4, [](int) { return "/slow"; });
  CHECK(*s.calls == 4);
}

TEMPLATE_TEST_CASE("a handler that throws releases its waiters, who each get their own answer", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.respond = [](int call, auto const&, auto&) {
    if (call == 1) throw std::runtime_error("database down");
  };
  auto cached = s.wrap({.timeout = 60s});
  std::atomic<int> thrown{0};
  std::vector<std::string> bodies(8);
  std::latch start(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        bodies[static_cast<std::size_t>(i)] = get(cached, "/fragile").body();
      } catch (std::runtime_error const&) {
        ++thrown;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(thrown == 1);
  // The others were not answered with the failure: each got the answer of a
  // handler call that succeeded (its own, or an entry one of them stored),
  // and every call that succeeded answered at least its own caller.
  std::set<std::string> distinct;
  for (auto const& b : bodies)
    if (!b.empty()) distinct.insert(b);
  CHECK(std::count_if(bodies.begin(), bodies.end(), [](auto const& b) { return b.empty(); }) == 1);
  CHECK(distinct.count("call 1 for /fragile") == 0);
  CHECK(*s.calls >= 2);
  CHECK(distinct.size() == static_cast<std::size_t>(*s.calls - 1));
}

TEMPLATE_TEST_CASE("a response that must not be shared is never handed to a waiter", "[stampede]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.respond = [](int, auto const& req, auto& res) {
    res.set(http::field::set_cookie, "session=" + std::string(req["X-User"]));
    res.body() = "private page of " + std::string(req["X-User"]);
  };
  auto cached = s.wrap({.timeout = 60s});
  auto replies = concurrently(cached, 16, [](int) { return "/account"; },
                              [](int i) { return std::vector<std::pair<std::string, std::string>>{{"X-User", "user" + std::to_string(i)}}; });
  CHECK(*s.calls == 16);
  for (int i = 0; i < 16; ++i) {
    auto const& r = replies[static_cast<std::size_t>(i)];
    CHECK(r.body() == "private page of user" + std::to_string(i));
    CHECK(r.header("Set-Cookie") == "session=user" + std::to_string(i));
  }
}

TEMPLATE_TEST_CASE("stale-while-revalidate: just inside the window the stale entry answers while one request refreshes", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  auto cached = s.wrap({.timeout = 60s, .stale_while_revalidate = 10s});
  get(cached, "/list");
  s.age("/list", 9800ms);
  s.delay = 300ms;
  ccp_test::received refresher;
  std::thread t([&] { refresher = get(cached, "/list"); });
  std::this_thread::sleep_for(100ms);
  auto during = concurrently(cached, 4, [](int) { return "/list"; });
  t.join();
  CHECK(*s.calls == 2);
  for (auto const& r : during) {
    CHECK(r.body() == "call 1 for /list");
    CHECK(has(r, "hit; fwd=stale; ttl=-9"));
    CHECK(r.header("Age") != "");
  }
  if constexpr (std::is_same_v<TestType, ccp_test::async_front>) {
    // The awaitable front end answers the refresher stale too, and refreshes in the background.
    CHECK(refresher.body() == "call 1 for /list");
    CHECK(has(refresher, "hit; fwd=stale; ttl=-9"));
  } else {
    CHECK(refresher.body() == "call 2 for /list");
    CHECK(has(refresher, "fwd=stale; stored"));
  }
  auto after = get(cached, "/list");
  CHECK(after.body() == "call 2 for /list");
  CHECK(has(after, "hit; ttl="));
}

TEMPLATE_TEST_CASE("stale-while-revalidate: just outside the window nobody gets the stale entry", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  auto cached = s.wrap({.timeout = 60s, .stale_while_revalidate = 10s});
  get(cached, "/list");
  s.age("/list", 10200ms);
  auto replies = concurrently(cached, 4, [](int) { return "/list"; });
  CHECK(*s.calls == 2);
  for (auto const& r : replies) CHECK(r.body() == "call 2 for /list");
}

TEMPLATE_TEST_CASE("the response's stale-while-revalidate and stale-if-error directives set the windows", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.respond = [](int, auto const&, auto& res) {
    res.set(http::field::cache_control, "public, stale-while-revalidate=30, stale-if-error=600");
  };
  auto cached = s.wrap({.timeout = 60s, .stale_while_revalidate = 5s});
  get(cached, "/directives");
  auto req = make_request(http::verb::get, "/directives");
  auto found = s.backend->lookup(ccp::storage_key("", ccp::generate_cache_key(ccp::request_view(req)), {}, std::string_view{}), {});
  REQUIRE(found.entry);
  CHECK(found.entry->stale_while_revalidate == 30s);
  CHECK(found.entry->stale_if_error == 600s);
}

TEMPLATE_TEST_CASE("stale-if-error: just inside the window a failing handler is answered by the stale entry", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.delay = 0ms;
  bool fail_by_throwing = true;
  s.respond = [&](int call, auto const&, auto& res) {
    if (call == 1) return;
    if (fail_by_throwing) throw std::runtime_error("database down");
    res.result(http::status::service_unavailable);
  };
  auto cached = s.wrap({.timeout = 60s, .stale_if_error = 30s});
  get(cached, "/list");
  s.age("/list", 29800ms);
  auto thrown = get(cached, "/list");
  CHECK(thrown.body() == "call 1 for /list");
  CHECK(has(thrown, "hit; fwd=stale; ttl=-29; detail=stale-if-error"));
  fail_by_throwing = false;
  auto unavailable = get(cached, "/list");
  CHECK(unavailable.response.result() == http::status::ok);
  CHECK(unavailable.body() == "call 1 for /list");
  CHECK(has(unavailable, "fwd-status=503; detail=stale-if-error"));
  CHECK(s.counters->snapshot().stale == 2);
}

TEMPLATE_TEST_CASE("stale-if-error: just outside the window the failure goes through", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.delay = 0ms;
  s.respond = [](int call, auto const&, auto& res) {
    if (call == 2) throw std::runtime_error("database down");
    if (call == 3) res.result(http::status::service_unavailable);
  };
  auto cached = s.wrap({.timeout = 60s, .stale_if_error = 30s});
  get(cached, "/list");
  s.age("/list", 30200ms);
  CHECK_THROWS_AS(get(cached, "/list"), std::runtime_error);
  auto unavailable = get(cached, "/list");
  CHECK(unavailable.response.result() == http::status::service_unavailable);
  CHECK(unavailable.body() == "call 3 for /list");
}

TEMPLATE_TEST_CASE("a hard invalidation is never served as stale, a soft purge is but inside the windows only", "[stampede][stale]", ccp_test::sync_front, ccp_test::async_front) {
  stampede<TestType> s;
  s.delay = 0ms;
  bool failing = false;
  s.respond = [&](int, auto const&, auto& res) {
    if (failing) res.result(http::status::service_unavailable);
  };
  auto cached = s.wrap({.timeout = 60s, .tags = {"plain", ccp::versioned("v")}, .stale_if_error = 30s});

  SECTION("soft purge of a plain tag") {
    get(cached, "/list");
    auto r = s.backend->invalidate_tag("plain", ccp::purge_mode::soft);
    CHECK(r.mode == ccp::purge_mode::soft);
    failing = true;
    auto stale = get(cached, "/list");
    CHECK(stale.body() == "call 1 for /list");
    CHECK(has(stale, "fwd=stale; ttl=-1; fwd-status=503; detail=stale-if-error"));
    failing = false;
    auto fresh = get(cached, "/list");
    CHECK(fresh.body() == "call 3 for /list");
    CHECK(has(fresh, "fwd=stale; stored"));
    CHECK(has(get(cached, "/list"), "hit; ttl="));
  }
  SECTION("soft purge of a versioned tag") {
    get(cached, "/list");
    s.backend->invalidate_tag("v", ccp::purge_mode::soft);
    failing = true;
    CHECK(get(cached, "/list").body() == "call 1 for /list");
  }
  SECTION("soft then hard: the entry is gone") {
    get(cached, "/list");
    s.backend->invalidate_tag("v", ccp::purge_mode::soft);
    s.backend->invalidate_tag("v", ccp::purge_mode::hard);
    failing = true;
    auto after = get(cached, "/list");
    CHECK(after.response.result() == http::status::service_unavailable);
  }
  SECTION("hard purge") {
    get(cached, "/list");
    CHECK(s.backend->invalidate_tag("plain").entries_removed == 1);
    failing = true;
    auto after = get(cached, "/list");
    CHECK(after.response.result() == http::status::service_unavailable);
    CHECK(after.body() == "call 2 for /list");
  }
  SECTION("a soft-purged entry outside its windows is not served") {
    get(cached, "/list");
    s.age("/list", 31s);
    s.backend->invalidate_tag("plain", ccp::purge_mode::soft);
    failing = true;
    CHECK(get(cached, "/list").response.result() == http::status::service_unavailable);
  }
}

TEST_CASE("soft purge through the registry's free function", "[stampede][stale]") {
  ccp::registry reg;
  auto b = std::make_shared<ccp::memory_backend>();
  reg.add("default", b);
  auto r = reg.invalidate_tag("t", {}, ccp::purge_mode::soft);
  CHECK(r.mode == ccp::purge_mode::soft);
  CHECK(r.backend == "default");
}
