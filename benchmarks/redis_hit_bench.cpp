// A hit through cache_page on redis_backend against the floor: a raw
// hiredis GET of the same stored bytes on one connection. Printed as a
// ratio taken in one run (the machines are noisy). The hit includes the
// MGET of the page and its tag counters, decoding, and serialising the
// response into buffers as a Beast session would.
//
// Starts its own redis-server on a free loopback port.
#include <custom_cache_page/redis.hpp>

#include "../tests/support/redis_server.hpp"

#include <fmt/format.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <map>
#include <memory>
#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

ccp_test::redis_server& server() {
  static ccp_test::redis_server s;
  return s;
}

std::shared_ptr<ccp::redis_backend> backend() {
  static auto b = [] {
    ccp::redis_options o;
    o.port = server().port();
    o.prefix = "bench:";
    return std::make_shared<ccp::redis_backend>(o);
  }();
  return b;
}

std::string body_of(std::int64_t size) { return std::string(static_cast<std::size_t>(size), 'x'); }

// A handler answering `size` bytes of HTML.
auto page_of(std::int64_t size) {
  return [size](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/html");
    res.body() = body_of(size);
    res.prepare_payload();
    return res;
  };
}

void cache_page_hit(benchmark::State& state) {
  auto const size = state.range(0);
  auto cached = ccp::cache_page(
      {.timeout = 3600s,
       .tags = {ccp::versioned("products"), "catalog"},
       .prefix = fmt::format("size-{}", size),
       .backend = backend()},
      page_of(size));
  http::request<http::string_body> const req{http::verb::get, "/products?category=books&page=1", 11};
  {
    auto warm = cached(http::request<http::string_body>(req));
    (void)warm;
  }
  std::size_t bytes = 0;
  auto const trips = backend()->stats().round_trips;
  for (auto _ : state) {
    http::message_generator gen = cached(http::request<http::string_body>(req));
    boost::beast::error_code ec;
    while (!gen.is_done()) {
      auto buffers = gen.prepare(ec);
      std::size_t n = boost::asio::buffer_size(buffers);
      bytes += n;
      gen.consume(n);
    }
  }
  benchmark::DoNotOptimize(bytes);
  state.counters["round_trips_per_hit"] =
      static_cast<double>(backend()->stats().round_trips - trips) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(cache_page_hit)->Arg(1024)->Arg(64 * 1024)->UseRealTime()->Repetitions(5);

// A miss, 1 KiB body, with coalescing (argument 1, the default) and
// without: each iteration a URL not seen before; the round trips a miss
// costs are printed as a counter.
void cache_page_miss(benchmark::State& state) {
  bool const coalesce = state.range(0) != 0;
  auto cached = ccp::cache_page({.timeout = 3600s,
                                 .tags = {ccp::versioned("products"), "catalog"},
                                 .prefix = fmt::format("miss-{}", coalesce),
                                 .backend = backend(),
                                 .coalesce = coalesce},
                                page_of(1024));
  {
    auto warm = cached(http::request<http::string_body>{http::verb::get, "/warm-up", 11});
    (void)warm;
  }
  static std::size_t n = 0; // URLs never seen before, in every run
  auto const trips = backend()->stats().round_trips;
  for (auto _ : state) {
    http::message_generator gen = cached(http::request<http::string_body>{http::verb::get, fmt::format("/miss/{}", n++), 11});
    benchmark::DoNotOptimize(gen);
  }
  state.counters["round_trips_per_miss"] =
      static_cast<double>(backend()->stats().round_trips - trips) / static_cast<double>(state.iterations());
}
BENCHMARK(cache_page_miss)->Arg(1)->Arg(0)->Iterations(1000)->UseRealTime();

// The backend alone: the MGET of the page and its counters, and decoding.
void redis_backend_lookup(benchmark::State& state) {
  auto const size = state.range(0);
  auto b = backend();
  std::vector<ccp::resolved_tag> const tags{{"products", true}, {"catalog", false}, {"~target:lookup", false, 24h, true}};
  auto versions = b->tag_versions(tags);
  auto e = std::make_shared<ccp::cached_response>();
  e->body = body_of(size);
  e->headers = {{"Content-Type", "text/html"}, {"Cache-Control", "max-age=3600"}};
  e->expires_at = ccp::cached_response::clock::now() + 1h;
  for (std::size_t i = 0; i < tags.size(); ++i) e->tags.push_back({tags[i].name, versions[i], tags[i].versioned, tags[i].guard});
  std::string const key = fmt::format("lookup-{}", size);
  if (!b->store(key, e)) {
    state.SkipWithError("store refused");
    return;
  }
  for (auto _ : state) {
    auto r = b->lookup(key, tags);
    if (!r.entry) {
      state.SkipWithError("miss");
      break;
    }
    benchmark::DoNotOptimize(r.entry->body.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(redis_backend_lookup)->Arg(1024)->Arg(64 * 1024)->UseRealTime()->Repetitions(5);

// The same page's stored bytes, fetched with one GET on one connection.
void raw_hiredis_get(benchmark::State& state) {
  auto const size = state.range(0);
  auto c = server().connect();
  ccp::detail::keep_read_buffer(c.get()); // as the library's connections: a fair floor
  std::string const key = fmt::format("bench:raw-{}", size);
  ccp::cached_response e;
  e.body = body_of(size);
  e.headers = {{"Content-Type", "text/html"}, {"Cache-Control", "max-age=3600"}};
  e.tags = {{"products", std::uint64_t{1} << 40, true}, {"catalog", std::uint64_t{1} << 41, false}};
  ccp_test::command(c.get(), {"SET", key, ccp::encode_entry(e)});
  char const* argv[] = {"GET", key.c_str()};
  std::size_t const lens[] = {3, key.size()};
  for (auto _ : state) {
    ccp_test::redis_reply r(static_cast<redisReply*>(redisCommandArgv(c.get(), 2, argv, lens)));
    if (!r || r->type != REDIS_REPLY_STRING) {
      state.SkipWithError("GET failed");
      break;
    }
    benchmark::DoNotOptimize(r->str);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(raw_hiredis_get)->Arg(1024)->Arg(64 * 1024)->UseRealTime()->Repetitions(5);

// Keeps each run's time per iteration, to print the ratios of their
// medians at the end.
class collecting_reporter : public benchmark::ConsoleReporter {
public:
  void ReportRuns(std::vector<Run> const& runs) override {
    for (auto const& r : runs)
      if (r.run_type == Run::RT_Iteration && !r.error_occurred) times_[r.run_name.function_name + "/" + r.run_name.args].push_back(r.GetAdjustedRealTime());
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> medians() {
    std::map<std::string, double> out;
    for (auto& [name, t] : times_) {
      std::sort(t.begin(), t.end());
      out[name] = t[t.size() / 2];
    }
    return out;
  }

private:
  std::map<std::string, std::vector<double>> times_;
};

} // namespace

int main(int argc, char** argv) {
  // The hit and its floor are compared in one run, interleaved and repeated
  // (medians): run one after the other, they drift apart on a busy machine.
  std::vector<char*> args(argv, argv + argc);
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  collecting_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  auto const ns = reporter.medians();
  for (std::string size : {"1024", "65536"}) {
    auto hit = ns.find("cache_page_hit/" + size);
    auto lookup = ns.find("redis_backend_lookup/" + size);
    auto raw = ns.find("raw_hiredis_get/" + size);
    if (hit != ns.end() && raw != ns.end() && lookup != ns.end())
      std::printf("body %6s B: cache_page hit %.1f us, redis_backend::lookup %.1f us, raw hiredis GET %.1f us; "
                  "hit/GET ratio %.2f, lookup/GET ratio %.2f\n",
                  size.c_str(), hit->second / 1000, lookup->second / 1000, raw->second / 1000, hit->second / raw->second,
                  lookup->second / raw->second);
  }
  std::printf("redis_backend: %llu round trips, %llu commands in all\n",
              static_cast<unsigned long long>(backend()->stats().round_trips),
              static_cast<unsigned long long>(backend()->stats().commands));
  benchmark::Shutdown();
  return 0;
}
