// Memory backend micro-benchmarks. The figures that matter are ratios taken
// in one run (the machines are noisy), printed at the end:
//   wrapper_hit/1KiB vs constant_response/1KiB (target: within 2x; both
//     serialised as a socket write would take them, allocations and writes
//     per answer counted)
//   wrapper_hit/1KiB vs bare_map_lookup/1KiB   (target: within 3x)
//   wrapper_hit/1MiB vs wrapper_hit/1KiB       (target: within 2x: no body copy)
//   wrapper_hit threads:2 vs threads:1         (items/s, target: >= 1.6x)
//   versioned_invalidation/1000000 vs /100     (target: within 2x)
#include <custom_cache_page/custom_cache_page.hpp>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

// Allocations made by this thread, counted by the replaced operator new
// (GCC cannot see that the replaced pair matches malloc with free).
thread_local std::uint64_t allocations = 0;
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  ++allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// Serialises the answer as a socket write would take it; returns the number
// of writes (buffer sequences prepared).
int send(http::message_generator& msg) {
  int writes = 0;
  boost::beast::error_code ec;
  while (!msg.is_done()) {
    auto buffers = msg.prepare(ec);
    ++writes;
    benchmark::DoNotOptimize(buffers.data());
    msg.consume(boost::beast::buffer_bytes(buffers));
  }
  return writes;
}

// Runs `answer` for each iteration, sends what it gives and records the
// allocations and writes per answer.
template <class Answer>
void measure_answers(benchmark::State& state, Answer answer) {
  std::uint64_t writes = 0;
  auto const before = allocations;
  for (auto _ : state) {
    http::message_generator msg = answer();
    writes += static_cast<std::uint64_t>(send(msg));
  }
  auto const n = static_cast<double>(state.iterations());
  state.counters["allocs_per_answer"] = benchmark::Counter(static_cast<double>(allocations - before) / n, benchmark::Counter::kAvgThreads);
  state.counters["writes_per_answer"] = benchmark::Counter(static_cast<double>(writes) / n, benchmark::Counter::kAvgThreads);
  state.SetItemsProcessed(state.iterations());
}

std::string body_of(std::int64_t size) { return std::string(static_cast<std::size_t>(size), 'x'); }

// Built once per body size, before any thread of a run uses it (benchmark
// threads start together, so thread 0 cannot set up for the others).
template <class T, class Make>
T& shared_fixture(std::int64_t size, Make make) {
  static std::mutex mutex;
  static std::map<std::int64_t, std::unique_ptr<T>> fixtures;
  std::lock_guard lock(mutex);
  auto& f = fixtures[size];
  if (!f) f = make();
  return *f;
}

struct bare_map {
  std::shared_mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<std::string const>> map;
};

// The in-run baseline: the same bytes behind an unordered_map under a
// shared_mutex, looked up by the same key string and handed out shared.
void bare_map_lookup(benchmark::State& state) {
  auto& fixture = shared_fixture<bare_map>(state.range(0), [&] {
    auto f = std::make_unique<bare_map>();
    for (int i = 0; i < 1000; ++i)
      f->map["/products?category=books&page=" + std::to_string(i)] = std::make_shared<std::string const>(body_of(state.range(0)));
    return f;
  });
  std::string key = "/products?category=books&page=" + std::to_string(state.thread_index());
  for (auto _ : state) {
    std::shared_ptr<std::string const> found;
    {
      std::shared_lock lock(fixture.mutex);
      auto it = fixture.map.find(key);
      if (it != fixture.map.end()) found = it->second;
    }
    benchmark::DoNotOptimize(found);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bare_map_lookup)->Arg(1024)->Arg(1 << 20)->Threads(1)->Threads(2)->UseRealTime();

using handler_fn = std::function<http::response<http::string_body>(http::request<http::string_body> const&)>;
using cached_fn = ccp::cached_handler<handler_fn>;

// A hit through cache_page: key function, lookup, tag check, message.
void wrapper_hit(benchmark::State& state) {
  auto& cached = shared_fixture<cached_fn>(state.range(0), [&] {
    std::string body = body_of(state.range(0));
    return std::make_unique<cached_fn>(
        ccp::cache_options{.timeout = 3600s,
                           .tags = {ccp::versioned("products"), "catalog"},
                           .backend = std::make_shared<ccp::memory_backend>()},
        handler_fn([body](http::request<http::string_body> const& req) {
          http::response<http::string_body> res{http::status::ok, req.version()};
          res.set(http::field::content_type, "application/json");
          res.body() = body;
          res.prepare_payload();
          return res;
        }));
  });
  http::request<http::string_body> req{http::verb::get, "/products?category=books&page=" + std::to_string(state.thread_index()), 11};
  { auto warm = cached(req); }
  measure_answers(state, [&] { return cached(req); });
}

// The response a hit sends, built by a handler on every request: what
// serving the page as a constant costs without the cache.
void constant_response(benchmark::State& state) {
  std::string const body = body_of(state.range(0));
  http::request<http::string_body> req{http::verb::get, "/products?category=books&page=1", 11};
  measure_answers(state, [&] {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::expires, "Wed, 02 Dec 2026 09:00:00 GMT");
    res.set(http::field::cache_control, "max-age=3600");
    res.set(http::field::age, "0");
    res.set("Cache-Status", "custom_cache_page; hit; ttl=3600");
    res.body() = body;
    res.prepare_payload();
    return http::message_generator(std::move(res));
  });
}
BENCHMARK(constant_response)->Arg(1024)->Arg(1 << 20)->UseRealTime();

BENCHMARK(wrapper_hit)->Arg(1024)->Arg(1 << 20)->Threads(1)->Threads(2)->UseRealTime();

std::shared_ptr<ccp::cached_response> make_entry(std::string tag, std::uint64_t version, bool versioned) {
  auto e = std::make_shared<ccp::cached_response>();
  e->body = "x";
  e->stored_at = ccp::cached_response::clock::now();
  e->expires_at = e->stored_at + 1h;
  e->tags.push_back({std::move(tag), version, versioned});
  return e;
}

// Versioned invalidation is one counter bump, whatever the entries under it.
void versioned_invalidation(benchmark::State& state) {
  ccp::memory_backend backend({.max_bytes = std::size_t{4} << 30});
  ccp::resolved_tag tag{"products", true};
  auto version = backend.tag_versions(std::span(&tag, 1))[0];
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    auto e = make_entry("products", version, true);
    backend.store("key" + std::to_string(i), e);
  }
  for (auto _ : state) benchmark::DoNotOptimize(backend.invalidate_tag("products"));
  state.counters["entries"] = static_cast<double>(state.range(0));
}
BENCHMARK(versioned_invalidation)->Arg(100)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);

// Plain-tag invalidation removes every entry under the tag.
void plain_invalidation(benchmark::State& state) {
  std::unique_ptr<ccp::memory_backend> backend;
  for (auto _ : state) {
    state.PauseTiming();
    backend = std::make_unique<ccp::memory_backend>(ccp::memory_backend_options{.max_bytes = std::size_t{4} << 30});
    ccp::resolved_tag tag{"catalog", false};
    auto version = backend->tag_versions(std::span(&tag, 1))[0];
    for (std::int64_t i = 0; i < state.range(0); ++i) backend->store("key" + std::to_string(i), make_entry("catalog", version, false));
    state.ResumeTiming();
    benchmark::DoNotOptimize(backend->invalidate_tag("catalog"));
  }
  state.counters["entries"] = static_cast<double>(state.range(0));
}
BENCHMARK(plain_invalidation)->Arg(100'000)->Unit(benchmark::kMillisecond)->Iterations(3);

} // namespace

namespace {

// Prints, after the usual table, the ratios the targets are about.
class ratio_reporter : public benchmark::ConsoleReporter {
public:
  void ReportRuns(std::vector<Run> const& runs) override {
    for (auto const& r : runs) ns_[r.benchmark_name()] = r.GetAdjustedRealTime();
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    ratio("hit / constant response, 1 KiB (target <= 2)", "wrapper_hit/1024/real_time/threads:1", "constant_response/1024/real_time");
    ratio("hit / bare map lookup, 1 KiB (target <= 3)", "wrapper_hit/1024/real_time/threads:1", "bare_map_lookup/1024/real_time/threads:1");
    ratio("hit 1 MiB / hit 1 KiB (target <= 2)", "wrapper_hit/1048576/real_time/threads:1", "wrapper_hit/1024/real_time/threads:1");
  }

private:
  void ratio(std::string_view what, std::string const& a, std::string const& b) {
    if (!ns_.contains(a) || !ns_.contains(b)) return;
    std::cout << what << ": " << ns_[a] / ns_[b] << "x\n";
  }
  std::map<std::string, double> ns_;
};

} // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
