// A hit through cache_page on redis_backend costs one round trip to Redis,
// whatever the number of versioned tags: counted by the backend and by the
// server itself (INFO commandstats).
#include <custom_cache_page/redis.hpp>

#include "../support/front_ends.hpp"
#include "../support/messages.hpp"
#include "../support/redis_server.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <sstream>
#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// calls per command, from INFO commandstats ("cmdstat_get:calls=3,usec=...").
std::map<std::string, long long> command_calls(std::string const& info) {
  std::map<std::string, long long> calls;
  std::istringstream in(info);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("cmdstat_")) continue;
    auto colon = line.find(':');
    auto eq = line.find("calls=");
    if (colon == std::string::npos || eq == std::string::npos) continue;
    calls[line.substr(8, colon - 8)] = std::stoll(line.substr(eq + 6));
  }
  return calls;
}

// Commands the server ran between two INFO snapshots, less the INFO itself.
std::map<std::string, long long> delta(std::map<std::string, long long> const& before,
                                       std::map<std::string, long long> const& after) {
  std::map<std::string, long long> d;
  for (auto const& [name, n] : after) {
    if (name == "info") continue;
    auto it = before.find(name);
    auto diff = n - (it == before.end() ? 0 : it->second);
    if (diff != 0) d[name] = diff;
  }
  return d;
}

long long total(std::map<std::string, long long> const& d) {
  long long n = 0;
  for (auto const& [name, c] : d) n += c;
  return n;
}

} // namespace

TEST_CASE("redis_backend: a hit through cache_page is one round trip with 0, 1 or 3 versioned tags and 2 plain tags",
          "[redis][round-trips]") {
  auto& server = ccp_test::redis_server::shared();
  for (int versioned_tags : {0, 1, 3}) {
    INFO("versioned tags: " << versioned_tags);
    ccp::redis_options o;
    o.port = server.port();
    o.prefix = fmt::format("ccpt:round-trips-{}:", versioned_tags);
    auto backend = std::make_shared<ccp::redis_backend>(o);
    auto counters = std::make_shared<ccp::stats>();
    std::vector<ccp::tag> tags;
    for (int i = 0; i < versioned_tags; ++i) tags.push_back(ccp::versioned(fmt::format("v{}", i)));
    tags.push_back("p1");
    tags.push_back([](ccp::request_view const& r) { return "p2-" + std::string(r.path()); });
    std::atomic<int> calls{0};
    auto cached = ccp::cache_page({.timeout = 600s, .tags = tags, .backend = backend, .statistics = counters},
                                  [&](http::request<http::string_body> const& req) {
                                    ++calls;
                                    http::response<http::string_body> res{http::status::ok, req.version()};
                                    res.body() = "page " + std::string(req.target());
                                    res.prepare_payload();
                                    return res;
                                  });
    auto get = [&] { return ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/catalog?page=1"))); };

    auto const miss = get();
    CHECK_THAT(miss.cache_status(), Catch::Contains("stored"));
    get(); // connections open and warm
    auto const before = command_calls(server.info("commandstats"));
    auto const trips = backend->stats();
    auto const hit = get();
    auto const after = command_calls(server.info("commandstats"));
    auto const used = backend->stats();

    CHECK_THAT(hit.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
    CHECK(hit.body() == "page /catalog?page=1");
    CHECK(calls == 1);
    auto const d = delta(before, after);
    CAPTURE(d);
    CHECK(total(d) == 1);
    CHECK(d.count("mget") == 1);
    CHECK(used.round_trips - trips.round_trips == 1);
    CHECK(used.commands - trips.commands == 1);

    // A HEAD is a hit too, one round trip.
    auto const head_before = backend->stats().round_trips;
    auto head = ccp_test::receive(cached(ccp_test::make_request(http::verb::head, "/catalog?page=1")), true);
    CHECK_THAT(head.cache_status(), Catch::StartsWith("custom_cache_page; hit"));
    CHECK(backend->stats().round_trips - head_before == 1);
    CHECK(counters->snapshot().hits == 3);
  }
}

TEST_CASE("redis_backend: a miss costs a lookup, a snapshot only for missing counters, and one store", "[redis][round-trips]") {
  auto& server = ccp_test::redis_server::shared();
  ccp::redis_options o;
  o.port = server.port();
  o.prefix = "ccpt:miss-trips:";
  auto backend = std::make_shared<ccp::redis_backend>(o);
  // Coalescing adds the fill lock (with a re-read): see the next case.
  auto cached = ccp::cache_page({.timeout = 600s, .tags = {ccp::versioned("v"), "p"}, .backend = backend, .coalesce = false},
                                [](http::request<http::string_body> const& req) {
                                  http::response<http::string_body> res{http::status::ok, req.version()};
                                  res.body() = "x";
                                  res.prepare_payload();
                                  return res;
                                });
  auto get = [&](std::string target) {
    return ccp_test::receive(cached(ccp_test::make_request(http::verb::get, std::move(target))));
  };
  get("/warm-up"); // connections and scripts
  auto t0 = backend->stats().round_trips;
  get("/a"); // counters exist now: lookup + store
  CHECK(backend->stats().round_trips - t0 == 2);
  backend->invalidate_tag("p");
  auto t1 = backend->stats().round_trips;
  CHECK_THAT(get("/a").cache_status(), Catch::Contains("stored"));
  CHECK(backend->stats().round_trips - t1 == 2);
}

TEMPLATE_TEST_CASE("redis_backend: a coalesced miss takes the lock with the re-read and unlocks with the store",
                   "[redis][round-trips]", ccp_test::sync_front, ccp_test::async_front) {
  auto& server = ccp_test::redis_server::shared();
  ccp::redis_options o;
  o.port = server.port();
  o.prefix = fmt::format("ccpt:coalesced-miss-trips:{}:", TestType::name);
  auto backend = std::make_shared<ccp::redis_backend>(o);
  auto cached = TestType::wrap({.timeout = 600s, .tags = {ccp::versioned("v"), "p"}, .backend = backend},
                               [](http::request<http::string_body> const& req) {
                                 http::response<http::string_body> res{http::status::ok, req.version()};
                                 res.body() = "x";
                                 res.prepare_payload();
                                 return res;
                               });
  auto get = [&](std::string target) {
    return ccp_test::receive(cached(ccp_test::make_request(http::verb::get, std::move(target))));
  };
  get("/warm-up");
  auto t0 = backend->stats().round_trips;
  CHECK_THAT(get("/a").cache_status(), Catch::Contains("stored"));
  CHECK(backend->stats().round_trips - t0 == 3); // lookup, lock + re-read, store + unlock
  auto ctx = server.connect();
  auto locks = ccp_test::command(ctx.get(), {"KEYS", o.prefix + "lock:*"});
  CHECK(locks->elements == 0); // the store released it
  auto t1 = backend->stats().round_trips;
  CHECK_THAT(get("/a").cache_status(), Catch::Contains("hit"));
  CHECK(backend->stats().round_trips - t1 == 1);
}
