#include <custom_cache_page/pending_invalidations.hpp>

#include "../support/front_ends.hpp"
#include "../support/map_store.hpp"
#include "../support/messages.hpp"

#include <custom_cache_page/cache_page.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// A store whose counters cannot be bumped while `down`: an invalidation
// fails while lookups and stores still work (a Redis that timed out on the
// invalidation, a primary that refused the write).
struct flaky_store : ccp_test::map_store {
  std::shared_ptr<std::atomic<bool>> down = std::make_shared<std::atomic<bool>>(false);
  ccp::bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    if (*down) throw ccp::cache_error(ccp::error::store_unavailable, "the store is down");
    return map_store::bump(name, hard, start, ttl);
  }
};

std::vector<ccp::tag_version> tagged(std::string name, bool guard = false) { return {{std::move(name), 1, false, guard}}; }

ccp::pending_invalidations_options quick(std::size_t bound = 10000) { return {bound, 1ms, 5ms}; }

} // namespace

TEST_CASE("a failed invalidation is retried with backoff until it succeeds, and covers its tag until then", "[pending]") {
  std::atomic<int> calls{0};
  std::atomic<bool> other_tag{false}; // (Catch's assertions belong to the test's thread)
  auto pending = std::make_shared<ccp::pending_invalidations>(
      [&](ccp::pending_invalidation const& p) {
        if (p.tag != "products") other_tag = true;
        if (++calls < 3) throw std::runtime_error("still down");
      },
      quick());
  CHECK(pending->add("products", ccp::purge_mode::hard, false, "down"));
  CHECK(pending->covers(tagged("products")));
  CHECK_FALSE(pending->covers(tagged("products", true))); // a guard of the same name is another tag
  CHECK_FALSE(pending->covers(tagged("orders")));
  REQUIRE(pending->wait_until_empty(5s));
  CHECK(calls == 3);
  CHECK_FALSE(other_tag);
  CHECK_FALSE(pending->covers(tagged("products")));
}

TEST_CASE("a pending set at its bound refuses the next failure and covers every entry until it drains", "[pending]") {
  std::atomic<bool> down{true};
  auto pending = std::make_shared<ccp::pending_invalidations>(
      [&](ccp::pending_invalidation const&) {
        if (down) throw std::runtime_error("down");
      },
      quick(2));
  CHECK(pending->add("a", ccp::purge_mode::hard, false, "down"));
  CHECK(pending->add("b", ccp::purge_mode::soft, false, "down"));
  CHECK(pending->add("b", ccp::purge_mode::hard, false, "down")); // the same tag: kept once, now hard
  CHECK_FALSE(pending->add("c", ccp::purge_mode::hard, false, "down"));
  CHECK(pending->size() == 2);
  CHECK(pending->overflowed());
  CHECK(pending->covers(tagged("anything")));
  auto const before = ccp::stats().snapshot();
  CHECK(before.pending_invalidations >= 2);
  down = false;
  REQUIRE(pending->wait_until_empty(5s));
  CHECK_FALSE(pending->overflowed());
  CHECK_FALSE(pending->covers(tagged("anything")));
  CHECK(ccp::stats().snapshot().invalidations_retried >= before.invalidations_retried + 2);
}

TEST_CASE("a later invalidation that succeeds settles a pending one as hard as itself, if it was sent after the failure", "[pending]") {
  auto pending = std::make_shared<ccp::pending_invalidations>([](ccp::pending_invalidation const&) { throw std::runtime_error("down"); },
                                                              ccp::pending_invalidations_options{10, 1h, 1h});
  auto const before = ccp::pending_invalidations::clock::now();
  pending->add("products", ccp::purge_mode::hard, false, "down");
  // Sent before the failure (it may have landed before the data changed): settles nothing.
  pending->succeeded("products", ccp::purge_mode::hard, false, before);
  CHECK(pending->size() == 1);
  auto const after = ccp::pending_invalidations::clock::now();
  pending->succeeded("products", ccp::purge_mode::soft, false, after);
  CHECK(pending->size() == 1);
  pending->succeeded("products", ccp::purge_mode::hard, false, after);
  CHECK(pending->size() == 0);
}

TEMPLATE_TEST_CASE("an invalidation lost to a store fault is never served around: the page is rebuilt, then the retry lands", "[pending][cache_page]",
                   ccp_test::sync_front, ccp_test::async_front) {
  auto store = std::make_shared<flaky_store>();
  auto down = store->down;
  ccp::any_backend backend(std::make_shared<ccp::protocol_store<flaky_store>>(store));
  auto name = std::make_shared<std::string>("old name");
  auto cached = TestType::wrap({.timeout = 600s, .tags = {"products"}, .backend = backend},
                               [name](http::request<http::string_body> const& req) {
                                 http::response<http::string_body> res{http::status::ok, req.version()};
                                 res.body() = *name;
                                 res.prepare_payload();
                                 return res;
                               });
  ccp_test::get(cached, "/p/1");
  CHECK(ccp_test::get(cached, "/p/1").body() == "old name");

  *down = true;
  *name = "new name";
  CHECK_THROWS_AS(backend.invalidate_tag("products"), ccp::cache_error);
  REQUIRE(backend.pending()->size() == 1);
  CHECK(backend.pending()->list().front().tag == "products");
  auto during = ccp_test::get(cached, "/p/1");
  CHECK(during.body() == "new name");
  CHECK_THAT(during.cache_status(), Catch::StartsWith("custom_cache_page; fwd=stale"));

  *down = false;
  REQUIRE(backend.pending()->wait_until_empty(5s));
  ccp_test::get(cached, "/p/1");
  auto after = ccp_test::get(cached, "/p/1");
  CHECK(after.body() == "new name");
  CHECK_THAT(after.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
}

TEMPLATE_TEST_CASE("a PUT whose target invalidation fails keeps the guard pending: the GET is rebuilt", "[pending][cache_page]",
                   ccp_test::sync_front, ccp_test::async_front) {
  auto store = std::make_shared<flaky_store>();
  ccp::any_backend backend(std::make_shared<ccp::protocol_store<flaky_store>>(store));
  auto name = std::make_shared<std::string>("old name");
  auto cached = TestType::wrap({.timeout = 600s, .backend = backend}, [name](http::request<http::string_body> const& req) {
    if (req.method() == http::verb::put) *name = req.body();
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = *name;
    res.prepare_payload();
    return res;
  });
  ccp_test::get(cached, "/p/1");
  *store->down = true;
  ccp_test::receive(cached(ccp_test::make_request(http::verb::put, "/p/1", {}, "new name")));
  CHECK(backend.pending()->size() == 1);
  CHECK(ccp_test::get(cached, "/p/1").body() == "new name");
  *store->down = false;
  REQUIRE(backend.pending()->wait_until_empty(5s));
}
