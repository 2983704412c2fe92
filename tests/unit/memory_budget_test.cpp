// The memory backend stays within its byte budget under a fill of ten
// times that budget with concurrent readers, by its own accounting and by
// the process's resident memory; its index stays proportional to what lives.
#include <custom_cache_page/backends/memory_backend.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include <malloc.h>
#include <unistd.h>

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;

namespace {

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true; // shadow memory and quarantine make RSS meaningless
#else
constexpr bool sanitized = false;
#endif

} // namespace

TEST_CASE("a fill of 10x the budget with concurrent readers stays within the budget", "[memory][budget]") {
  constexpr std::size_t budget = std::size_t{64} << 20;
  ccp::memory_backend backend({.max_bytes = budget, .max_entry = std::size_t{1} << 20});
  ::malloc_trim(0);
  auto const rss_before = resident_bytes();

  std::atomic<bool> done{false};
  std::atomic<std::size_t> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(r));
      ccp::resolved_tag tag{"tag-0", false};
      while (!done.load()) {
        auto found = backend.lookup("key-" + std::to_string(rng() % 20000), std::span(&tag, 1));
        if (found.entry) reads.fetch_add(1);
      }
    });

  std::mt19937 rng(42);
  std::size_t stored_bytes = 0;
  std::size_t peak_rss = 0;
  for (int i = 0; stored_bytes < 10 * budget; ++i) {
    // Sizes from 512 B to 256 KiB, most of them small, as pages are.
    std::size_t size = std::size_t{512} << (rng() % 10);
    auto e = std::make_shared<ccp::cached_response>();
    e->body.assign(size, static_cast<char>('a' + i % 26));
    e->headers = {{"Content-Type", "text/html"}, {"ETag", "\"" + std::to_string(i) + "\""}};
    e->stored_at = ccp::cached_response::clock::now();
    e->expires_at = e->stored_at + 1h;
    std::vector<ccp::resolved_tag> tags{{"tag-" + std::to_string(i % 50), false}, {"all", false}};
    auto versions = backend.tag_versions(tags);
    for (std::size_t t = 0; t < tags.size(); ++t) e->tags.push_back({tags[t].name, versions[t], false});
    REQUIRE(backend.store("key-" + std::to_string(i), e));
    stored_bytes += size;
    if (i % 256 == 0) {
      REQUIRE(backend.bytes() <= budget);
      peak_rss = std::max(peak_rss, resident_bytes());
    }
  }
  done = true;
  for (auto& t : readers) t.join();

  WARN("entries " << backend.size() << ", accounted " << backend.bytes() << " B, index " << backend.index_size()
                  << ", reads " << reads.load());
  CHECK(backend.bytes() <= budget);
  CHECK(backend.bytes() > budget / 2); // it did fill up
  // Two plain tags per entry: the index holds exactly two members per live entry.
  CHECK(backend.index_size() == 2 * backend.size());
  if (!sanitized) {
    auto growth = peak_rss > rss_before ? peak_rss - rss_before : 0;
    WARN("RSS growth " << growth / (1 << 20) << " MiB for a budget of " << budget / (1 << 20) << " MiB");
    CHECK(growth <= budget + budget / 4);
  }
}

TEST_CASE("expired entries and their index members go without being read", "[memory][budget]") {
  ccp::memory_backend backend({.max_bytes = std::size_t{8} << 20, .shards = 1});
  std::vector<ccp::resolved_tag> tags{{"t", false}};
  auto version = backend.tag_versions(tags)[0];
  auto make = [&](std::chrono::milliseconds ttl) {
    auto e = std::make_shared<ccp::cached_response>();
    e->body = "x";
    e->stored_at = ccp::cached_response::clock::now();
    e->expires_at = e->stored_at + ttl;
    e->tags.push_back({"t", version, false});
    return e;
  };
  for (int i = 0; i < 100; ++i) backend.store("old-" + std::to_string(i), make(1ms));
  std::this_thread::sleep_for(5ms);
  // Each store sweeps a few expired entries from the front of the queue.
  for (int i = 0; i < 20; ++i) backend.store("new-" + std::to_string(i), make(1h));
  CHECK(backend.size() == 20);
  CHECK(backend.index_size() == 20);
}
