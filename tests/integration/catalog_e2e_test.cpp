// End-to-end tests of the demo: the real catalog_server binary, started on a
// free port, spoken to over loopback HTTP/1.1. Each test case starts its
// own server, so no case sees another's cache.
#include "../support/catalog_server.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <sys/resource.h>
#include <unistd.h>
#include <chrono>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace ccp_test;

TEST_CASE("catalog_server announces where it listens", "[e2e]") {
  catalog_server server;
  auto const port = std::to_string(server.port());
  CHECK(server.first_line() == "catalog_server listening on http://127.0.0.1:" + port + "/ (backend: memory)");
  CHECK(server.second_line() == "try: curl -si http://127.0.0.1:" + port + "/products?category=books");
  auto const index = server.get("/");
  CHECK(index.result() == http::status::ok);
  CHECK(index.body().find("/products") != std::string::npos);
}

TEST_CASE("the second GET of a list page is a hit that queries nothing", "[e2e]") {
  catalog_server server;
  auto const before = server.db_queries();
  auto const first = server.get("/products?category=books&page=1");
  auto const second = server.get("/products?category=books&page=1");
  auto const after = server.db_queries();

  check_stored_then_hit(first, second);
  CHECK(first.body().find(R"("category":"books")") != std::string::npos);
  CHECK(after - before == 1);
}

TEST_CASE("renaming a product invalidates its page and its category's lists only", "[e2e]") {
  catalog_server server;
  auto const product = server.get("/products/5");
  REQUIRE(product.result() == http::status::ok);
  CHECK(cache_status_has(product, "stored"));
  CHECK(cache_status_has(server.get("/products/5"), "hit"));

  std::string const category = json_field(product.body(), "category");
  REQUIRE(!category.empty());
  std::string const other = category == "books" ? "games" : "books";
  std::string const own_list = "/products?category=" + category + "&page=1";
  std::string const other_list = "/products?category=" + other + "&page=1";
  for (auto const& list : {own_list, other_list}) {
    CHECK(cache_status_has(server.get(list), "stored"));
    CHECK(cache_status_has(server.get(list), "hit"));
  }

  auto const put = server.put("/products/5", "Renamed");
  REQUIRE(put.result() == http::status::ok);
  CHECK(json_field(put.body(), "name") == "Renamed");
  // Through the cache_page wrapper, which erases the GET entry of the URL.
  CHECK(cache_status_has(put, "fwd=method"));

  auto const after = server.get("/products/5");
  INFO("GET /products/5 after the PUT: " << field(after, "Cache-Status"));
  CHECK(cache_status_has(after, "fwd=miss"));
  CHECK(json_field(after.body(), "name") == "Renamed");

  auto const own = server.get(own_list);
  INFO(own_list << " after the PUT: " << field(own, "Cache-Status"));
  CHECK(cache_status_has(own, "fwd=miss"));
  CHECK(own.body().find(R"("name":"Renamed")") != std::string::npos);

  auto const untouched = server.get(other_list);
  INFO(other_list << " after the PUT: " << field(untouched, "Cache-Status"));
  CHECK(cache_status_has(untouched, "hit"));
}

TEST_CASE("a product page carries the tag of its product", "[e2e]") {
  catalog_server server;
  for (auto const* url : {"/products/5", "/products/10"}) {
    CHECK(cache_status_has(server.get(url), "stored"));
    CHECK(cache_status_has(server.get(url), "hit"));
  }
  auto const done = server.post("/invalidate?tag=model-product-5");
  CHECK(done.result() == http::status::ok);
  CHECK(done.body().find("\"entries_removed\":1") != std::string::npos);
  CHECK(cache_status_has(server.get("/products/5"), "fwd=miss"));
  CHECK(cache_status_has(server.get("/products/10"), "hit"));
}

TEST_CASE("PUT answers 404 for an unknown product and 400 without a name", "[e2e]") {
  catalog_server server;
  CHECK(server.put("/products/100000", "Renamed").result() == http::status::not_found);
  CHECK(server.put("/products/5", "").result() == http::status::bad_request);
  CHECK(server.get("/products/100000").result() == http::status::not_found);
  auto const still = server.get("/products/5");
  CHECK(json_field(still.body(), "name") == "Product 5");
}

TEST_CASE("adding a product bumps the versioned tag of every list page", "[e2e]") {
  catalog_server server;
  // 60 books fill pages 1 to 3; a new one lands on page 4.
  std::string const last = "/products?category=books&page=4";
  std::string const other = "/products?category=games&page=1";
  for (auto const& list : {last, other}) {
    CHECK(cache_status_has(server.get(list), "stored"));
    CHECK(cache_status_has(server.get(list), "hit"));
  }
  CHECK(server.get(last).body().find("New book") == std::string::npos);

  auto const created = server.post("/products", "New book,books");
  REQUIRE(created.result() == http::status::created);
  CHECK(json_field(created.body(), "name") == "New book");

  auto const page = server.get(last);
  INFO(last << " after the POST: " << field(page, "Cache-Status"));
  CHECK(cache_status_has(page, "fwd=miss"));
  CHECK(page.body().find(R"("name":"New book")") != std::string::npos);
  // Another category has no tag in common with the new product but the
  // versioned "products".
  auto const games = server.get(other);
  INFO(other << " after the POST: " << field(games, "Cache-Status"));
  CHECK(cache_status_has(games, "fwd=miss"));

  CHECK(server.post("/products", "no category here").result() == http::status::bad_request);
  CHECK(server.post("/products", "Thing,no-such-category").result() == http::status::bad_request);
}

TEST_CASE("If-None-Match with the entry's ETag answers 304", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=tools&page=2";
  server.get(url);
  auto const hit = server.get(url);
  REQUIRE(cache_status_has(hit, "hit"));
  std::string const etag = field(hit, "ETag");
  REQUIRE(!etag.empty());

  auto const not_modified = server.get(url, {{"If-None-Match", etag}});
  CHECK(not_modified.result() == http::status::not_modified);
  CHECK(not_modified.body().empty());
  CHECK(field(not_modified, "ETag") == etag);

  auto const modified = server.get(url, {{"If-None-Match", "\"something-else\""}});
  CHECK(modified.result() == http::status::ok);
  CHECK(modified.body() == hit.body());
}

TEST_CASE("HEAD of a cached URL answers from the entry", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=music&page=2";
  auto const get = server.get(url);
  REQUIRE(get.result() == http::status::ok);
  REQUIRE(!get.body().empty());

  auto const head = server.head(url);
  INFO("HEAD: " << field(head, "Cache-Status"));
  CHECK(head.result() == http::status::ok);
  CHECK(cache_status_has(head, "hit"));
  CHECK(field(head, "Content-Length") == std::to_string(get.body().size()));
  CHECK(field(head, "ETag") == field(get, "ETag"));
  CHECK(head.body().empty());

  // A HEAD miss runs the handler, which must not send the body either.
  std::string const uncached = "/products?category=music&page=3";
  auto const head_miss = server.head(uncached);
  INFO("HEAD miss: " << field(head_miss, "Cache-Status"));
  CHECK(head_miss.result() == http::status::ok);
  CHECK(cache_status_has(head_miss, "fwd=miss"));
  CHECK(head_miss.body().empty());
  auto const get_after = server.get(uncached);
  CHECK(field(head_miss, "Content-Length") == std::to_string(get_after.body().size()));
}

TEST_CASE("responses that set a cookie are never served from the cache", "[e2e]") {
  catalog_server server;
  auto const first = server.get("/greeting");
  auto const second = server.get("/greeting");
  REQUIRE(first.result() == http::status::ok);
  REQUIRE(second.result() == http::status::ok);
  auto const cookie1 = field(first, "Set-Cookie");
  auto const cookie2 = field(second, "Set-Cookie");
  CHECK(cookie1.starts_with("visitor="));
  CHECK(cookie2.starts_with("visitor="));
  CHECK(cookie1 != cookie2);
  CHECK(first.body() != second.body());
  CHECK_FALSE(cache_status_has(first, "hit"));
  CHECK_FALSE(cache_status_has(second, "hit"));
  CHECK(!field(second, "Cache-Status").empty());
}

TEST_CASE("POST /invalidate invalidates the tag it names", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=garden&page=1";
  server.get(url);
  REQUIRE(cache_status_has(server.get(url), "hit"));

  auto const done = server.post("/invalidate?tag=products");
  CHECK(done.result() == http::status::ok);
  CHECK(json_field(done.body(), "tag") == "products");
  CHECK(done.body().find("\"entries_removed\":") != std::string::npos);
  CHECK(cache_status_has(server.get(url), "fwd=miss"));

  CHECK(server.post("/invalidate").result() == http::status::bad_request);
}

TEST_CASE("unknown routes answer 404, and Authorization bypasses the cache", "[e2e]") {
  catalog_server server;
  CHECK(server.get("/no/such/route").result() == http::status::not_found);

  std::string const url = "/products?category=books&page=2";
  server.get(url);
  auto const authorized = server.get(url, {{"Authorization", "Bearer secret"}});
  INFO("with Authorization: " << field(authorized, "Cache-Status"));
  CHECK(authorized.result() == http::status::ok);
  CHECK(cache_status_has(authorized, "fwd=bypass"));
  CHECK_FALSE(cache_status_has(authorized, "hit"));
}

TEST_CASE("an unknown category answers 404 and is not cached", "[e2e]") {
  catalog_server server;
  auto const first = server.get("/products?category=no-such-thing");
  auto const second = server.get("/products?category=no-such-thing");
  CHECK(first.result() == http::status::not_found);
  CHECK(second.result() == http::status::not_found);
  CHECK(cache_status_has(second, "detail=status"));
}

TEST_CASE("concurrent clients all get the same page", "[e2e]") {
  catalog_server server({"--threads", "4"});
  std::string const url = "/products?category=games&page=3";
  std::string const expected = server.get(url).body();
  REQUIRE(!expected.empty());

  std::vector<std::thread> clients;
  std::vector<std::string> failures(8);
  for (std::size_t i = 0; i < failures.size(); ++i)
    clients.emplace_back([&, i] {
      try {
        for (int n = 0; n < 10; ++n) {
          // Uncached product pages too, so that handlers run on several threads at once.
          auto const page = exchange(server.port(), http::verb::get, url);
          auto const one = exchange(server.port(), http::verb::get, "/products/" + std::to_string(1 + i * 10 + n));
          if (page.body() != expected || one.result() != http::status::ok) failures[i] = "wrong answer";
        }
      } catch (std::exception const& e) {
        failures[i] = e.what();
      }
    });
  for (auto& t : clients) t.join();
  for (auto const& f : failures) CHECK(f.empty());
}

TEST_CASE("two servers on one redis backend share pages and invalidations", "[e2e][redis]") {
  std::string const backend = redis_backend_url("two-servers");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  CHECK(a.first_line().ends_with("(backend: " + backend + ")"));

  // Filled by A, served to B.
  std::string const books = "/products?category=books&page=1";
  auto const filled = a.get(books);
  REQUIRE(filled.result() == http::status::ok);
  INFO("A: " << field(filled, "Cache-Status"));
  CHECK(cache_status_has(filled, "fwd=miss"));
  CHECK(cache_status_has(filled, "stored"));
  auto const shared = b.get(books);
  INFO("B: " << field(shared, "Cache-Status"));
  CHECK(cache_status_has(shared, "hit"));
  CHECK(shared.body() == filled.body());

  // Product 6 is a book: renaming it on A drops B's entries for its page
  // and for the books lists.
  std::string const product = "/products/6";
  CHECK(cache_status_has(b.get(product), "stored"));
  CHECK(cache_status_has(b.get(product), "hit"));
  REQUIRE(a.put(product, "Renamed on A").result() == http::status::ok);
  auto const page = b.get(product);
  INFO("B " << product << " after the PUT on A: " << field(page, "Cache-Status"));
  CHECK(cache_status_has(page, "fwd=miss"));
  // Only the cache is shared: B's catalog still has the old name.
  CHECK(json_field(page.body(), "name") == "Product 6");
  auto const list = b.get(books);
  INFO("B " << books << " after the PUT on A: " << field(list, "Cache-Status"));
  CHECK(cache_status_has(list, "fwd=miss"));

  // An invalidation on B reaches the entries A reads.
  std::string const games = "/products?category=games&page=1";
  CHECK(cache_status_has(a.get(games), "stored"));
  CHECK(cache_status_has(a.get(games), "hit"));
  auto const done = b.post("/invalidate?tag=products");
  CHECK(done.result() == http::status::ok);
  CHECK(json_field(done.body(), "tag") == "products");
  auto const after = a.get(games);
  INFO("A " << games << " after POST /invalidate on B: " << field(after, "Cache-Status"));
  CHECK(cache_status_has(after, "fwd=miss"));
}

TEST_CASE("a PUT while redis is paused loses no invalidation: both servers serve the new name within 3 s of the pause ending",
          "[e2e][redis][pending]") {
  std::string const backend = redis_backend_url("pause-put");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  std::string const product = "/products/21";
  REQUIRE(cache_status_has(a.get(product), "stored"));
  REQUIRE(cache_status_has(b.get(product), "hit"));

  auto redis = redis_server::shared().connect();
  command(redis.get(), {"CLIENT", "PAUSE", "2000", "ALL"});
  auto const pause_ends = std::chrono::steady_clock::now() + 2000ms;
  auto const put = a.put(product, "Renamed while paused");
  CHECK(put.result() == http::status::internal_server_error); // the invalidation failed, and said so
  // Meanwhile A never serves the page the failed invalidation covers.
  CHECK(json_field(a.get(product).body(), "name") == "Renamed while paused");
  std::this_thread::sleep_until(pause_ends);

  // The retry lands (A's pending gauge drops to 0); A then refills the
  // page with the new name and B, whose own catalog never changed, is
  // served A's new entry from the shared Redis.
  std::string seen_by_b;
  auto const deadline = pause_ends + 3s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (a.metric("custom_cache_page_pending_invalidations") == 0) {
      a.get(product);
      seen_by_b = json_field(b.get(product).body(), "name");
      if (seen_by_b == "Renamed while paused") break;
    }
    std::this_thread::sleep_for(100ms);
  }
  INFO("seconds after the pause ended: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - pause_ends).count());
  CHECK(std::chrono::steady_clock::now() < deadline);
  CHECK(seen_by_b == "Renamed while paused");
  CHECK(a.metric("custom_cache_page_invalidations_retried_total") >= 1);
}

TEST_CASE("no client ever receives a response built for another: cookies, private, no-store, Authorization, Vary, Host",
          "[e2e][redis][leaks]") {
  struct client_pair {
    std::string path;
    header_list a, b;
    std::string mark_a, mark_b; // what only a's page, and only b's, holds
  };
  std::vector<client_pair> const pairs{
      {"/account", {{"Cookie", "session=alice"}}, {{"Cookie", "session=bob"}}, "of alice", "of bob"},
      {"/account", {{"Authorization", "Bearer alice"}}, {}, "of alice", "of -"},
      {"/account", {{"Authorization", "Bearer alice"}}, {{"Authorization", "Bearer bob"}}, "of alice", "of bob"},
      {"/hello", {{"Accept-Language", "en"}}, {{"Accept-Language", "fr"}}, "Hello (en", "Bonjour (fr"},
      {"/hello", {{"Accept-Encoding", "gzip"}}, {{"Accept-Encoding", "br"}}, "offered: gzip", "offered: br"},
      {"/links", {{"Host", "a.example"}}, {{"Host", "B.example:80"}}, "//a.example/", "//B.example:80/"},
      {"/links", {{"X-Forwarded-Host", "evil.example"}}, {}, "//evil.example/", "//catalog.test/"},
      {"/news", {{"X-Client", "a"}}, {{"X-Client", "b"}}, "for a", "for b"},
  };
  for (std::string const& backend : {std::string("memory://"), redis_backend_url("leaks")}) {
    catalog_server server({"--backend", backend});
    int leaked = 0, answered = 0;
    for (auto const& p : pairs) {
      for (int round = 0; round < 3; ++round) {
        for (bool first : {true, false}) {
          auto const& headers = first ? p.a : p.b;
          auto const res = exchange(server.port(), http::verb::get, p.path, {}, headers);
          REQUIRE(res.result() == http::status::ok);
          ++answered;
          std::string const& own = first ? p.mark_a : p.mark_b;
          std::string const& other = first ? p.mark_b : p.mark_a;
          bool const leak = res.body().find(own) == std::string::npos || res.body().find(other) != std::string::npos;
          if (leak) {
            ++leaked;
            UNSCOPED_INFO(backend << " " << p.path << (first ? " client a" : " client b") << " got: " << res.body()
                                  << " (" << field(res, "Cache-Status") << ")");
          }
        }
      }
    }
    // Each greeting sets its own visitor cookie: no two answers share one.
    std::vector<std::string> cookies;
    for (int i = 0; i < 4; ++i) cookies.push_back(field(server.get("/greeting"), "Set-Cookie"));
    std::sort(cookies.begin(), cookies.end());
    CHECK(std::adjacent_find(cookies.begin(), cookies.end()) == cookies.end());
    INFO(backend << ": " << answered << " answers");
    CHECK(leaked == 0);
  }
}

namespace {

// A fault of the demo's Redis: begin() makes it, end() undoes it.
struct redis_fault {
  std::string name;
  std::function<void(redis_server&, std::string const& prefix)> begin, end;
};

} // namespace

TEST_CASE("Redis faults through the demo: every request answered by the handler in time, no invalidation lost, recovery",
          "[e2e][redis][faults]") {
  redis_server redis; // its own: stopped, paused and reconfigured here
  auto on = [&](auto f) { return [f](redis_server& r, std::string const& prefix) { f(r.connect().get(), prefix); }; };
  auto nothing = [](redis_server&, std::string const&) {};
  std::vector<redis_fault> const faults{
      {"connection refused", [](redis_server& r, auto&) { r.stop(); }, [](redis_server& r, auto&) { r.start(); }},
      {"CLIENT PAUSE", on([](redisContext* c, auto&) { command(c, {"CLIENT", "PAUSE", "1500", "ALL"}); }),
       [](redis_server&, auto&) { std::this_thread::sleep_for(1600ms); }},
      {"maxmemory with noeviction",
       on([](redisContext* c, auto&) {
         command(c, {"CONFIG", "SET", "maxmemory-policy", "noeviction"});
         command(c, {"CONFIG", "SET", "maxmemory", "1"});
       }),
       on([](redisContext* c, auto&) { command(c, {"CONFIG", "SET", "maxmemory", "0"}); })},
      {"corrupt values", on([](redisContext* c, std::string const& prefix) {
         for (auto const& k : scan_keys(c, prefix + "page:*")) command(c, {"SET", k, "garbage"});
       }),
       nothing},
      {"wrong-type counters",
       on([](redisContext* c, std::string const& prefix) {
         for (auto const& k : scan_keys(c, prefix + "tagv:*")) {
           command(c, {"DEL", k});
           command(c, {"RPUSH", k, "x"});
         }
       }),
       on([](redisContext* c, std::string const& prefix) {
         for (auto const& k : scan_keys(c, prefix + "tagv:*")) command(c, {"DEL", k});
       })},
  };
  int round = 0;
  for (auto const& fault : faults) {
    INFO("fault: " << fault.name);
    std::string const prefix = "ccpt:faults" + std::to_string(round) + ":";
    std::string const product = "/products/" + std::to_string(21 + round++);
    catalog_server server({"--backend", redis.url() + "?prefix=" + prefix});
    REQUIRE(cache_status_has(server.get(product), "stored"));
    REQUIRE(cache_status_has(server.get(product), "hit"));

    fault.begin(redis, prefix);
    for (int i = 0; i < 3; ++i) {
      auto const t0 = std::chrono::steady_clock::now();
      auto const res = server.get(product);
      CHECK(res.result() == http::status::ok);
      CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    }
    auto const renamed = "Renamed under " + fault.name;
    auto const put = server.put(product, renamed);
    CHECK((put.result() == http::status::ok || put.result() == http::status::internal_server_error));
    CHECK(json_field(server.get(product).body(), "name") == renamed);
    fault.end(redis, prefix);

    // Recovery: the retried invalidations land, the page is stored again and hit.
    auto const deadline = std::chrono::steady_clock::now() + 5s;
    while (server.metric("custom_cache_page_pending_invalidations") != 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(100ms);
    CHECK(server.metric("custom_cache_page_pending_invalidations") == 0);
    bool hit = false;
    while (!hit && std::chrono::steady_clock::now() < deadline) {
      auto const res = server.get(product);
      CHECK(json_field(res.body(), "name") == renamed);
      hit = cache_status_has(res, "hit");
      if (!hit) std::this_thread::sleep_for(100ms);
    }
    CHECK(hit);
  }
}

TEST_CASE("CUSTOM_CACHE_PAGE_BACKEND may name a redis backend", "[e2e][redis]") {
  std::string const backend = redis_backend_url("environment");
  std::optional<catalog_server> from_env;
  {
    scoped_env env("CUSTOM_CACHE_PAGE_BACKEND", backend);
    from_env.emplace();
  }
  CHECK(from_env->first_line().ends_with("(backend: " + backend + ")"));
  catalog_server from_flag({"--backend", backend});

  std::string const url = "/products?category=tools&page=1";
  CHECK(cache_status_has(from_env->get(url), "stored"));
  auto const shared = from_flag.get(url);
  INFO("server given --backend: " << field(shared, "Cache-Status"));
  CHECK(cache_status_has(shared, "hit"));
}


TEST_CASE("256 concurrent cold requests for one page run its handler once, for four pages four times", "[e2e][stampede]") {
  catalog_server server;
  // What one handler call of a list page costs in queries.
  auto const before_one = server.db_queries();
  REQUIRE(server.get("/products?category=books&page=9").result() == http::status::ok);
  auto const per_call = server.db_queries() - before_one;
  REQUIRE(per_call >= 1);

  auto const before = server.db_queries();
  auto replies = burst({server.port()}, std::vector<std::string>(256, "/products?category=games&page=1"));
  CHECK(server.db_queries() - before == per_call);
  for (auto const& r : replies) {
    CHECK(r.result() == http::status::ok);
    CHECK(r.body() == replies.front().body());
  }

  std::vector<std::string> four;
  for (int i = 0; i < 256; ++i) four.push_back("/products?category=tools&page=" + std::to_string(1 + i % 4));
  auto const before_four = server.db_queries();
  for (auto const& r : burst({server.port()}, four)) CHECK(r.result() == http::status::ok);
  CHECK(server.db_queries() - before_four == 4 * per_call);
}

TEST_CASE("two servers sharing redis: concurrent requests for a page that is not stored never wait for a fill",
          "[e2e][stampede][redis]") {
  // The request that loses the fill lock would otherwise wait coalesce_wait
  // (5 s) for an entry that never comes: the leader leaves a pass marker.
  std::string const backend = redis_backend_url("pass");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  using namespace std::chrono;
  milliseconds worst{0};
  for (int pair = 0; pair < 15; ++pair) {
    std::string const target = "/products?category=unknown-" + std::to_string(pair); // 404: not stored
    std::latch start(2);
    std::array<milliseconds, 2> took{};
    std::array<std::string, 2> failures;
    std::array<std::uint16_t, 2> const ports{a.port(), b.port()};
    std::vector<std::thread> clients;
    for (std::size_t i = 0; i < 2; ++i)
      clients.emplace_back([&, i] {
        start.arrive_and_wait();
        auto const t0 = steady_clock::now();
        try {
          if (exchange(ports[i], http::verb::get, target).result() != http::status::not_found) failures[i] = "not a 404";
        } catch (std::exception const& e) {
          failures[i] = e.what();
        }
        took[i] = duration_cast<milliseconds>(steady_clock::now() - t0);
      });
    for (auto& t : clients) t.join();
    for (auto const& f : failures) REQUIRE(f.empty());
    worst = std::max({worst, took[0], took[1]});
  }
  INFO("slowest of 30 requests: " << worst.count() << " ms");
  CHECK(worst < 1s);
  std::printf("two servers, 15 concurrent pairs for a page that is not stored: slowest request %lld ms\n",
              static_cast<long long>(worst.count()));
}


TEST_CASE("a request whose framing or Host is wrong answers 400 and closes: nothing after it runs (RFC 9112 3.2, 6.3)",
          "[e2e][security]") {
  catalog_server server;
  auto const before = server.db_queries();
  // Each head, then a second request that a server reading "no body"
  // would run: the bytes after the head.
  std::string const smuggled = "GET /products/1 HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::string head : {"Transfer-Encoding: gzip\r\nHost: x\r\n", "Transfer-Encoding: xchunked\r\nHost: x\r\n",
                           "Transfer-Encoding: chunked, identity\r\nHost: x\r\n",
                           "Transfer-Encoding: chunked\r\nContent-Length: 5\r\nHost: x\r\n", "Host: a\r\nHost: b\r\n", ""}) {
    INFO(head);
    auto const answer = raw_exchange(server.port(), "GET /products/2 HTTP/1.1\r\n" + head + "\r\n" + smuggled);
    CHECK(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    CHECK(answer.find("\nHTTP/1.") == std::string::npos); // one answer, then the connection closed
  }
  CHECK(server.db_queries() == before); // neither request reached a handler
  auto const chunked = raw_exchange(server.port(), "PUT /products/3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                                   "Connection: close\r\n\r\n5\r\nThird\r\n0\r\n\r\n");
  CHECK(chunked.starts_with("HTTP/1.1 200 OK\r\n"));
  auto const old = raw_exchange(server.port(), "GET / HTTP/1.0\r\n\r\n"); // HTTP/1.0 needs no Host
  CHECK(old.starts_with("HTTP/1.0 200 OK\r\n"));
}

TEST_CASE("out of file descriptors, the accept loop waits instead of spinning, and serves again once some close",
          "[e2e][faults]") {
  catalog_server server;
  asio::io_context ioc;
  {
    // A client that leaves at once: the server sees its end of stream now.
    // (UBSan checks an object's type once, opening a pipe to probe its
    // memory; in a process out of descriptors that fails and is reported
    // as a bad vptr.)
    tcp::socket leaving(ioc);
    leaving.connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), server.port()));
  }
  std::this_thread::sleep_for(100ms);
  rlimit const few{32, 32};
  REQUIRE(::prlimit(server.pid(), RLIMIT_NOFILE, &few, nullptr) == 0);
  // More idle connections than it may open: the kernel queues the rest.
  std::vector<tcp::socket> idle;
  for (int i = 0; i < 64; ++i) {
    idle.emplace_back(ioc);
    idle.back().connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), server.port()));
  }
  auto cpu_ticks = [&] {
    std::ifstream stat("/proc/" + std::to_string(server.pid()) + "/stat");
    std::string line;
    std::getline(stat, line);
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
    return std::stoll(f.at(11)) + std::stoll(f.at(12)); // utime, stime
  };
  std::this_thread::sleep_for(200ms);
  auto const t0 = cpu_ticks();
  std::this_thread::sleep_for(1s);
  auto const used = static_cast<double>(cpu_ticks() - t0) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  CHECK(used < 0.3); // seconds of CPU in one second: a spinning loop takes all of it
  idle.clear();
  std::optional<reply> page;
  for (int i = 0; i < 40 && !page; ++i) {
    try {
      page = server.get("/");
    } catch (std::exception const&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  REQUIRE(page);
  CHECK(page->result() == http::status::ok);
}

// RFC 9111 §4.1 and RFC 9110 §14.2 through the demo, over each store:
// clients alternating Accept-Language each hit their own variant after its
// fill, and one byte range of a stored page is answered 206 from the entry.
TEST_CASE("through the demo: Vary variants side by side, and byte ranges answered 206", "[e2e][redis][rfc9111]") {
  for (std::string const& backend : {std::string("memory://"), redis_backend_url("variants")}) {
    INFO(backend);
    catalog_server server({"--backend", backend});
    int hits = 0;
    for (int round = 0; round < 3; ++round)
      for (char const* lang : {"en", "fr", "de"}) {
        auto const res = server.get("/hello", {{"Accept-Language", lang}});
        REQUIRE(res.result() == http::status::ok);
        hits += field(res, "Cache-Status").find("hit") != std::string::npos ? 1 : 0;
      }
    CHECK(hits == 6); // every round after the first

    auto const whole = server.get("/products/21");
    auto const part = server.get("/products/21", {{"Range", "bytes=5-14"}});
    CHECK(part.result() == http::status::partial_content);
    CHECK(part.body() == whole.body().substr(5, 10));
    CHECK(field(part, "Content-Range") == "bytes 5-14/" + std::to_string(whole.body().size()));
    CHECK(server.get("/products/21", {{"Range", "bytes=5-14"}, {"If-Range", "\"other\""}}).body() == whole.body());
  }
}
