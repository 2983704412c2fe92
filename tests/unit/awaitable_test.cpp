// What only the awaitable front end does: its waits suspend (one io thread
// carries a thousand waiting requests and keeps serving other work), a
// stale-while-revalidate refresh runs in the background, and a cancelled
// request leaves no waiter behind. The behaviour both front ends share is
// tested over both in cache_page_test.cpp and stampede_test.cpp.
#include <custom_cache_page/cache_page.hpp>

#include "../support/messages.hpp"

#include <custom_cache_page/backends/memory_backend.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
namespace net = boost::asio;
using namespace std::chrono_literals;
using ccp_test::make_request;
using ccp_test::receive;

namespace {

using response = http::response<http::string_body>;

// A page whose handler waits on a timer (as a database query would) for
// `delay_of(call)`, and a log of what happened, in order.
struct page {
  std::shared_ptr<ccp::memory_backend> backend = std::make_shared<ccp::memory_backend>();
  std::vector<std::string> log;
  int calls = 0;
  std::function<std::chrono::milliseconds(int call)> delay_of = [](int) { return 100ms; };
  // When set, the handler waits on this timer (until it is cancelled or
  // expires) instead of `delay_of`.
  net::steady_timer* gate = nullptr;

  auto wrap(ccp::cache_options o = {}) {
    o.backend = backend;
    return ccp::cache_page(std::move(o), [this](http::request<http::string_body> req) -> net::awaitable<response> {
      int const n = ++calls;
      log.push_back("handler " + std::to_string(n) + " starts");
      net::steady_timer delay(co_await net::this_coro::executor, delay_of(n));
      boost::system::error_code ec;
      net::steady_timer& wait = gate ? *gate : delay;
      co_await wait.async_wait(net::redirect_error(net::use_awaitable, ec));
      log.push_back("handler " + std::to_string(n) + " ends");
      response res{http::status::ok, req.version()};
      res.body() = "call " + std::to_string(n);
      res.prepare_payload();
      co_return res;
    });
  }
};

// Runs `get` of `target` through `cached` on `ioc`; the answer lands in `out`.
template <class Cached>
void spawn_get(net::io_context& ioc, Cached const& cached, std::string target, std::optional<ccp_test::received>& out) {
  net::co_spawn(ioc, [&cached, &out, target]() -> net::awaitable<void> {
    out = receive(co_await cached(make_request(http::verb::get, target)));
  }, net::detached);
}

// Ticks every millisecond on the io thread; the first tick after the
// handler has started is logged and opens the handler's gate. If anything
// blocked the thread while the handler waits, the gate would only open at
// its expiry and no tick would come before "handler 1 ends".
net::awaitable<void> ticker(page& p) {
  net::steady_timer t(co_await net::this_coro::executor);
  for (int i = 0; i < 10'000 && p.calls == 0; ++i) {
    t.expires_after(1ms);
    co_await t.async_wait(net::use_awaitable);
  }
  p.log.push_back("tick");
  p.gate->cancel();
}

} // namespace

TEST_CASE("one io thread: 1,000 concurrent cold requests run the handler once while other work goes on", "[awaitable]") {
  page p;
  auto cached = p.wrap({.timeout = 60s});
  net::io_context ioc(1);
  net::steady_timer gate(ioc, 30s);
  p.gate = &gate;
  std::vector<std::optional<ccp_test::received>> answers(1000);
  for (auto& a : answers) spawn_get(ioc, cached, "/products/1", a);
  net::co_spawn(ioc, ticker(p), net::detached);
  ioc.run();
  CHECK(p.calls == 1);
  // The ticker ran while the handler waited: nothing blocked the thread.
  CHECK(p.log == std::vector<std::string>{"handler 1 starts", "tick", "handler 1 ends"});
  int coalesced = 0;
  for (auto const& a : answers) {
    REQUIRE(a);
    CHECK(a->body() == "call 1");
    coalesced += a->cache_status().find("detail=coalesced") != std::string::npos;
  }
  CHECK(coalesced == 999);
}

TEST_CASE("stale-while-revalidate: the awaitable front end answers stale at once and refreshes in the background",
          "[awaitable][stale]") {
  page p;
  auto cached = p.wrap({.timeout = 1s, .stale_while_revalidate = 60s});
  net::io_context ioc(1);
  std::optional<ccp_test::received> first, stale, after;
  spawn_get(ioc, cached, "/list", first);
  ioc.run();
  REQUIRE(first);
  ioc.restart();
  net::steady_timer expire(ioc, 1100ms);
  expire.async_wait([&](auto) {
    spawn_get(ioc, cached, "/list", stale);
    net::post(ioc, [&] { p.log.push_back(stale ? "answered" : "not yet answered"); });
  });
  ioc.run();
  REQUIRE(stale);
  CHECK(stale->body() == "call 1");
  CHECK_THAT(stale->cache_status(), Catch::Contains("hit; fwd=stale") && Catch::Contains("detail=revalidating"));
  // The stale answer came before the refresh's handler ended.
  auto const at = [&](std::string const& what) { return std::find(p.log.begin(), p.log.end(), what) - p.log.begin(); };
  CHECK(at("answered") < at("handler 2 ends"));
  CHECK(at("handler 2 ends") < static_cast<long>(p.log.size()));
  ioc.restart();
  spawn_get(ioc, cached, "/list", after);
  ioc.run();
  REQUIRE(after);
  CHECK(after->body() == "call 2");
  CHECK_THAT(after->cache_status(), Catch::StartsWith("custom_cache_page; hit; ttl="));
}

TEST_CASE("a cancelled leader releases its followers at once", "[awaitable][cancel]") {
  using namespace net::experimental::awaitable_operators;
  page p;
  p.delay_of = [](int call) { return call == 1 ? 60s : 10ms; }; // the first handler would hang
  auto cached = p.wrap({.timeout = 60s, .coalesce_wait = 60s});
  net::io_context ioc(1);
  bool leader_cancelled = false;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> {
    net::steady_timer give_up(co_await net::this_coro::executor, 50ms);
    auto won = co_await (cached(make_request(http::verb::get, "/slow")) || give_up.async_wait(net::use_awaitable));
    leader_cancelled = won.index() == 1;
  }, net::detached);
  std::optional<ccp_test::received> follower;
  net::steady_timer later(ioc, 10ms);
  later.async_wait([&](auto) { spawn_get(ioc, cached, "/slow", follower); });
  ioc.run_for(5s);
  CHECK(leader_cancelled);
  REQUIRE(follower); // not left waiting for coalesce_wait
  CHECK(follower->body() == "call 2");
  CHECK(p.calls == 2);
  CHECK(ioc.stopped()); // nothing of the cancelled leader is left behind
}

TEST_CASE("async_add_tag: the entry carries the tag, and an invalidation after it keeps the response out",
          "[awaitable][fill_context]") {
  auto backend = std::make_shared<ccp::memory_backend>();
  bool data_changes_meanwhile = false;
  auto cached = ccp::cache_page({.timeout = 60s, .backend = backend},
                                [&](http::request<http::string_body> req, ccp::fill_context& ctx) -> net::awaitable<response> {
                                  co_await ctx.async_add_tag("learned-tag");
                                  if (data_changes_meanwhile) backend->invalidate_tag("learned-tag");
                                  response res{http::status::ok, req.version()};
                                  res.body() = "page";
                                  res.prepare_payload();
                                  co_return res;
                                });
  net::io_context ioc(1);
  auto get = [&](std::string target) {
    std::optional<ccp_test::received> answer;
    spawn_get(ioc, cached, std::move(target), answer);
    ioc.restart();
    ioc.run();
    REQUIRE(answer);
    return answer->cache_status();
  };
  data_changes_meanwhile = true;
  CHECK_THAT(get("/a"), Catch::Contains("detail=invalidated"));
  data_changes_meanwhile = false;
  CHECK_THAT(get("/a"), Catch::Contains("stored"));
  CHECK_THAT(get("/a"), Catch::Contains("hit"));
  CHECK(backend->invalidate_tag("learned-tag").entries_removed == 1);
  CHECK_THAT(get("/a"), Catch::Contains("fwd=miss"));
}
