// Does invalidating a plain tag with a million keys stall Redis for other
// clients? A separate connection PINGs every millisecond; the worst PING
// latency during redis_backend::invalidate_tag (batched ZPOPMIN + UNLINK
// steps) is printed next to the worst during one plain DEL of an equal set
// (the pages and the index in one command), in the same run.
// Redis's own SLOWLOG gives the longest single command of each phase (what
// every client waited behind), which does not depend on when the PINGs
// happened to be sent. Goal: both under 20 ms for the invalidation.
//
//   redis_invalidation_bench [keys]     (default 1000000)
//
// Starts its own redis-server on a free loopback port.
#include <custom_cache_page/redis.hpp>

#include "../tests/support/redis_server.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

void append(redisContext* c, std::vector<std::string_view> const& args) {
  std::vector<char const*> argv;
  std::vector<std::size_t> lens;
  for (auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()) != REDIS_OK)
    throw std::runtime_error(c->errstr);
}

// Reads `n` replies; returns the last one's integer.
long long read_replies(redisContext* c, std::size_t n) {
  long long last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK) throw std::runtime_error(c->errstr);
    ccp_test::redis_reply reply(static_cast<redisReply*>(r));
    if (reply->type == REDIS_REPLY_ERROR) throw std::runtime_error(std::string(reply->str, reply->len));
    last = reply->integer;
  }
  return last;
}

// `n` pages under `tag`, indexed the way redis_backend indexes them.
void fill(redisContext* c, ccp::redis_backend const& b, std::string const& tag, std::size_t n, std::string const& value) {
  auto const expiry = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         (std::chrono::system_clock::now() + 1h).time_since_epoch()).count());
  std::string const index = b.index_key(tag);
  constexpr std::size_t batch = 2000;
  for (std::size_t first = 0; first < n; first += batch) {
    std::size_t const last = std::min(n, first + batch);
    std::vector<std::string> keys, pages;
    keys.reserve(last - first);
    pages.reserve(last - first);
    std::vector<std::string_view> zadd{"ZADD", index};
    for (std::size_t i = first; i < last; ++i) {
      keys.push_back(fmt::format("k{}", i));
      pages.push_back(b.page_key(keys.back()));
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
      append(c, {"SET", pages[i], value, "PX", "3600000"});
      zadd.push_back(expiry);
      zadd.push_back(keys[i]);
    }
    append(c, zadd);
    read_replies(c, keys.size() + 1);
  }
  append(c, {"PEXPIREAT", index, expiry});
  read_replies(c, 1);
}

// PINGs every millisecond on its own connection, recording the worst
// latency of the current phase.
class pinger {
public:
  explicit pinger(std::uint16_t port) : port_(port), thread_([this] { run(); }) {}
  ~pinger() {
    stop_ = true;
    thread_.join();
  }

  void begin() {
    std::lock_guard lock(mutex_);
    worst_ = {};
    count_ = 0;
    recording_ = true;
  }
  // The worst latency and the number of PINGs since begin().
  std::pair<steady::duration, std::size_t> end() {
    std::lock_guard lock(mutex_);
    recording_ = false;
    return {worst_, count_};
  }

private:
  void run() {
    timeval tv{5, 0};
    std::unique_ptr<redisContext, void (*)(redisContext*)> c(redisConnectWithTimeout("127.0.0.1", port_, tv), &redisFree);
    if (!c || c->err) throw std::runtime_error("pinger cannot connect");
    while (!stop_) {
      auto const t0 = steady::now();
      ccp_test::redis_reply r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
      auto const took = steady::now() - t0;
      if (!r) throw std::runtime_error("PING failed");
      {
        std::lock_guard lock(mutex_);
        if (recording_) {
          worst_ = std::max(worst_, took);
          ++count_;
        }
      }
      std::this_thread::sleep_until(t0 + 1ms);
    }
  }

  std::uint16_t port_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  bool recording_ = false;
  steady::duration worst_{};
  std::size_t count_ = 0;
  std::thread thread_;
};

// The longest command Redis ran since the last call, by its own clock
// (SLOWLOG, commands over 0.5 ms): what every other client waited behind.
double longest_command_ms(redisContext* c) {
  auto log = ccp_test::command(c, {"SLOWLOG", "GET", "-1"});
  long long worst_us = 0;
  if (log->type == REDIS_REPLY_ARRAY)
    for (std::size_t i = 0; i < log->elements; ++i)
      if (log->element[i]->type == REDIS_REPLY_ARRAY && log->element[i]->elements > 2)
        worst_us = std::max(worst_us, log->element[i]->element[2]->integer);
  ccp_test::command(c, {"SLOWLOG", "RESET"});
  return static_cast<double>(worst_us) / 1000.0;
}

double ms(steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

} // namespace

int main(int argc, char** argv) {
  std::size_t const n = argc > 1 ? std::stoul(argv[1]) : 1'000'000;
  ccp_test::redis_server server;
  auto admin = server.connect();

  ccp::redis_options o;
  o.port = server.port();
  o.prefix = "bench:";
  o.command_timeout = 5s; // the plain DEL below is expected to be slow; the backend's steps are not
  ccp::redis_backend b(o);
  std::vector<ccp::resolved_tag> const tags{{"catalog", false}};
  auto e = std::make_shared<ccp::cached_response>();
  e->body = std::string(200, 'x');
  e->expires_at = ccp::cached_response::clock::now() + 1h;
  e->tags.push_back({"catalog", b.tag_versions(tags).at(0), false});
  std::string const value = ccp::encode_entry(*e);
  b.invalidate_tag("warm-up");

  ccp_test::command(admin.get(), {"CONFIG", "SET", "slowlog-log-slower-than", "500"});
  ccp_test::command(admin.get(), {"CONFIG", "SET", "slowlog-max-len", "100000"});
  pinger ping(server.port());
  std::this_thread::sleep_for(200ms);

  ping.begin();
  std::this_thread::sleep_for(500ms);
  auto const [idle_worst, idle_count] = ping.end();

  auto t0 = steady::now();
  fill(admin.get(), b, "catalog", n, value);
  auto const fill_time = steady::now() - t0;

  longest_command_ms(admin.get());
  ping.begin();
  t0 = steady::now();
  auto const result = b.invalidate_tag("catalog");
  auto const invalidate_time = steady::now() - t0;
  auto const [invalidate_worst, invalidate_count] = ping.end();
  double const invalidate_longest = longest_command_ms(admin.get());
  if (result.entries_removed != n) {
    std::fprintf(stderr, "invalidate_tag removed %zu of %zu pages\n", result.entries_removed, n);
    return 1;
  }

  fill(admin.get(), b, "catalog", n, value);
  std::vector<std::string> keys{"DEL", b.index_key("catalog")};
  keys.reserve(n + 2);
  for (std::size_t i = 0; i < n; ++i) keys.push_back(b.page_key(fmt::format("k{}", i)));
  std::vector<std::string_view> del(keys.begin(), keys.end());
  longest_command_ms(admin.get());
  ping.begin();
  t0 = steady::now();
  append(admin.get(), del);
  auto const deleted = read_replies(admin.get(), 1);
  auto const del_time = steady::now() - t0;
  auto const [del_worst, del_count] = ping.end();
  double const del_longest = longest_command_ms(admin.get());
  if (deleted != static_cast<long long>(n) + 1) {
    std::fprintf(stderr, "DEL removed %lld of %zu keys\n", deleted, n + 1);
    return 1;
  }

  std::printf("keys: %zu (filled in %.0f ms)\n", n, ms(fill_time));
  std::printf("idle:                          worst PING %8.2f ms over %zu PINGs\n", ms(idle_worst), idle_count);
  std::printf("redis_backend::invalidate_tag: worst PING %8.2f ms over %zu PINGs; longest command in Redis %8.2f ms; "
              "took %.0f ms (%zu pages removed, batches of %zu)\n",
              ms(invalidate_worst), invalidate_count, invalidate_longest, ms(invalidate_time), result.entries_removed,
              o.drain_batch);
  std::printf("plain DEL of the same set:     worst PING %8.2f ms over %zu PINGs; longest command in Redis %8.2f ms; "
              "took %.0f ms\n",
              ms(del_worst), del_count, del_longest, ms(del_time));
  bool const met = ms(invalidate_worst) < 20.0 && invalidate_longest < 20.0;
  std::printf("goal: invalidate_tag stalls Redis < 20 ms: %s\n", met ? "met" : "NOT met");
  return 0;
}
