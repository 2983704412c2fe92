// Redis goes away while requests flow through cache_page: every request is
// still answered by the handler, invalidations fail loudly, and caching
// resumes by itself when Redis comes back on the same port.
#include <custom_cache_page/redis.hpp>

#include "../support/messages.hpp"
#include "../support/redis_server.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

TEST_CASE("redis_backend: an outage never fails a request, and the hit ratio recovers by itself", "[redis][outage]") {
  auto& server = ccp_test::redis_server::shared();
  auto const port = server.port();
  ccp::redis_options o; // default timeouts and circuit breaker
  o.port = port;
  o.prefix = "ccpt:outage:";
  auto backend = std::make_shared<ccp::redis_backend>(o);
  auto cached = ccp::cache_page({.timeout = 600s, .tags = {ccp::versioned("v"), "p"}, .backend = backend},
                                [](http::request<http::string_body> const& req) {
                                  http::response<http::string_body> res{http::status::ok, req.version()};
                                  res.body() = "item " + std::string(req.target());
                                  res.prepare_payload();
                                  return res;
                                });

  struct sample {
    steady::time_point at;
    steady::duration took;
    bool hit;
  };
  std::mutex mutex;
  std::vector<sample> samples;
  std::atomic<bool> stop{false};
  std::atomic<int> not_ok{0};
  std::atomic<int> thrown{0};
  std::thread loop([&] {
    for (int i = 0; !stop; ++i) {
      auto const t0 = steady::now();
      try {
        auto r = ccp_test::receive(cached(ccp_test::make_request(http::verb::get, fmt::format("/item/{}", i % 8))));
        auto const t1 = steady::now();
        if (r.response.result() != http::status::ok || r.body() != fmt::format("item /item/{}", i % 8)) ++not_ok;
        std::lock_guard lock(mutex);
        samples.push_back({t1, t1 - t0, r.cache_status().starts_with("custom_cache_page; hit")});
      } catch (...) {
        ++thrown;
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  auto between = [&](steady::time_point from, steady::time_point to) {
    std::lock_guard lock(mutex);
    std::vector<sample> out;
    for (auto const& s : samples)
      if (s.at >= from && s.at < to) out.push_back(s);
    return out;
  };
  auto hit_ratio = [](std::vector<sample> const& v) {
    std::size_t hits = 0;
    for (auto const& s : v) hits += s.hit ? 1 : 0;
    return v.empty() ? 0.0 : static_cast<double>(hits) / static_cast<double>(v.size());
  };

  auto const warm_start = steady::now();
  std::this_thread::sleep_for(500ms);
  auto const down = steady::now();
  CHECK(hit_ratio(between(warm_start + 200ms, down)) > 0.9);

  server.stop();
  auto const stopped = steady::now(); // requests that began before may still have hit
  std::this_thread::sleep_for(1500ms);
  auto const outage = between(stopped + 20ms, steady::now());
  CHECK_THROWS_AS(backend->invalidate_tag("p"), ccp::cache_error);
  CHECK_THROWS_AS(backend->invalidate_tag("v"), ccp::cache_error);
  CHECK(backend->breaker_open());

  server.start();
  REQUIRE(server.port() == port); // the restart kept the port the backend knows
  auto const up = steady::now();
  std::this_thread::sleep_for(3s);
  stop = true;
  loop.join();

  CHECK(not_ok == 0);
  CHECK(thrown == 0);
  REQUIRE(outage.size() > 100);
  CHECK(hit_ratio(outage) == 0.0);
  steady::duration worst{};
  for (auto const& s : outage) worst = std::max(worst, s.took);
  // After the first failures the breaker answers at once: no request waits
  // for a timeout.
  std::vector<sample> late_outage;
  for (auto const& s : outage)
    if (s.at > stopped + 200ms) late_outage.push_back(s);
  steady::duration late_worst{};
  for (auto const& s : late_outage) late_worst = std::max(late_worst, s.took);
  CHECK(late_worst < o.command_timeout);

  // Recovered: the first 100 ms window from which every window has a hit
  // ratio of 90% or more (8 pages, each missed once after the restart).
  std::optional<steady::duration> recovered;
  for (auto from = up; from + 100ms <= up + 3s; from += 100ms) {
    bool all_good = true;
    for (auto w = from; w + 100ms <= up + 3s; w += 100ms) {
      auto v = between(w, w + 100ms);
      if (v.empty() || hit_ratio(v) < 0.9) {
        all_good = false;
        break;
      }
    }
    if (all_good) {
      recovered = from + 100ms - up;
      break;
    }
  }
  auto const ms = [](steady::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf("redis outage: %zu requests during the outage, all answered (worst %lld ms, after the breaker opened %lld ms); "
              "%llu refused at once by the breaker; hit ratio back to >= 90%% %lld ms after the restart\n",
              outage.size(), static_cast<long long>(ms(worst)), static_cast<long long>(ms(late_worst)),
              static_cast<unsigned long long>(backend->stats().rejected),
              static_cast<long long>(recovered ? ms(*recovered) : -1));
  REQUIRE(recovered.has_value());
  CHECK(*recovered <= 2s);
  CHECK_FALSE(backend->breaker_open());
  // And invalidation works again.
  CHECK_NOTHROW(backend->invalidate_tag("p"));
}
