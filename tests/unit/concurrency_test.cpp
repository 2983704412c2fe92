// The invalidation guarantee under concurrency: after invalidate_tag(t)
// returns, no response built from data older than that call is served.
#include <custom_cache_page/cache_page.hpp>

#include "../support/messages.hpp"

#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/versioned.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <random>
#include <thread>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

TEST_CASE("8 threads, 10,000 mixed gets and invalidations: nothing older than a completed invalidation is served",
          "[concurrency]") {
  constexpr int tags = 4;
  constexpr int pages = 32;
  constexpr int threads = 8;
  constexpr int operations = 10'000;

  // The "database": one data version per tag. A write bumps it, then
  // invalidates the tag; `completed` records the data version every
  // finished invalidation covered.
  std::array<std::atomic<std::uint64_t>, tags> data{};
  std::array<std::atomic<std::uint64_t>, tags> completed{};
  auto backend = std::make_shared<ccp::memory_backend>();

  auto tag_of = [](ccp::request_view r) { return std::stoi(r.query("page")) % tags; };
  auto handler = [&](http::request<http::string_body> const& req) {
    ccp::request_view view(req);
    int t = tag_of(view);
    auto version = data[t].load(); // the snapshot a query takes when it starts
    std::this_thread::sleep_for(std::chrono::microseconds(std::rand() % 50));
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = std::to_string(version);
    res.prepare_payload();
    return res;
  };
  // Even pages use plain tags (index + counters), odd pages versioned ones.
  auto cached = ccp::cache_page(
      {.timeout = 60s,
       .tags = {[&](ccp::request_view r) -> std::optional<std::string> {
                  if (std::stoi(r.query("page")) % 2 == 0) return "t" + std::to_string(tag_of(r));
                  return std::nullopt;
                },
                ccp::versioned([&](ccp::request_view r) -> std::optional<std::string> {
                  if (std::stoi(r.query("page")) % 2 == 1) return "t" + std::to_string(tag_of(r));
                  return std::nullopt;
                })},
       .backend = backend},
      handler);

  std::atomic<int> stale{0}, hits{0}, invalidations{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w));
      for (int i = 0; i < operations / threads; ++i) {
        if (rng() % 10 == 0) {
          int t = static_cast<int>(rng() % tags);
          auto written = ++data[t];
          backend->invalidate_tag("t" + std::to_string(t));
          // Record the newest data version an invalidation has covered.
          auto seen = completed[t].load();
          while (seen < written && !completed[t].compare_exchange_weak(seen, written)) {
          }
          ++invalidations;
        } else {
          int page = static_cast<int>(rng() % pages);
          int t = page % tags;
          auto floor = completed[t].load();
          auto res = ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/p?page=" + std::to_string(page))));
          if (std::stoull(res.body()) < floor) ++stale;
          if (res.cache_status().find("hit") != std::string::npos) ++hits;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  INFO("hits " << hits << ", invalidations " << invalidations);
  CHECK(stale == 0);
  CHECK(hits > 1000);        // the cache did work
  CHECK(invalidations > 500); // and so did invalidation
}
