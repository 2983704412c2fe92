// A plain tag with a million keys is invalidated while two threads keep
// storing and reading keys under the same tag: every key indexed before
// the call is gone afterwards, and every key stored during it is either gone
// or still indexed — never cached but unindexed, where no later
// invalidation could reach it.
//
// CCP_REDIS_BULK_MEMBERS overrides the number of keys.
#include <custom_cache_page/redis.hpp>

#include "../support/redis_server.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::size_t bulk_members() {
  if (char const* n = std::getenv("CCP_REDIS_BULK_MEMBERS"); n != nullptr && *n != '\0') return std::stoul(n);
  return 1'000'000;
}

// Appends one command to `c`'s pipeline.
void append(redisContext* c, std::initializer_list<std::string_view> args) {
  char const* argv[8];
  std::size_t lens[8];
  int n = 0;
  for (auto a : args) {
    argv[n] = a.data();
    lens[n++] = a.size();
  }
  if (redisAppendCommandArgv(c, n, argv, lens) != REDIS_OK) throw std::runtime_error(c->errstr);
}
void append(redisContext* c, std::vector<std::string> const& args) {
  std::vector<char const*> argv;
  std::vector<std::size_t> lens;
  for (auto const& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()) != REDIS_OK)
    throw std::runtime_error(c->errstr);
}

// Reads `n` replies; returns how many were errors.
std::size_t read_replies(redisContext* c, std::size_t n) {
  std::size_t errors = 0;
  for (std::size_t i = 0; i < n; ++i) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK) throw std::runtime_error(c->errstr);
    ccp_test::redis_reply reply(static_cast<redisReply*>(r));
    errors += reply->type == REDIS_REPLY_ERROR ? 1 : 0;
  }
  return errors;
}

std::shared_ptr<ccp::cached_response const> make_entry(std::string const& tag, std::uint64_t version) {
  auto e = std::make_shared<ccp::cached_response>();
  auto const now = ccp::cached_response::clock::now();
  e->body = "bulk";
  e->stored_at = now;
  e->expires_at = now + 1h;
  e->tags.push_back({tag, version, false});
  return e;
}

} // namespace

TEST_CASE("redis_backend: a million-key plain tag is invalidated under concurrent stores without losing a key",
          "[redis][bulk]") {
  auto& server = ccp_test::redis_server::shared();
  auto ctx = server.connect();
  std::size_t const members = bulk_members();
  std::string const tag = "bulk";
  ccp::redis_options o;
  o.port = server.port();
  o.prefix = "ccpt:bulk:";
  ccp::redis_backend b(o);
  std::vector<ccp::resolved_tag> const tags{{tag, false}};

  // Pages that a real fill would have stored under the current counter,
  // written directly in pipelined batches.
  auto const version = b.tag_versions(tags).at(0);
  ccp_test::command(ctx.get(), {"SET", b.counter_key(tag), std::to_string(version)}); // as the first store would
  std::string const value = ccp::encode_entry(*make_entry(tag, version));
  auto const fill_start = steady::now();
  auto const expiry_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             (std::chrono::system_clock::now() + 1h).time_since_epoch()).count();
  std::string const score = std::to_string(expiry_ms);
  constexpr std::size_t batch = 2000;
  std::size_t fill_errors = 0;
  for (std::size_t first = 0; first < members; first += batch) {
    std::vector<std::string> zadd{"ZADD", b.index_key(tag)};
    std::size_t const last = std::min(members, first + batch);
    for (std::size_t i = first; i < last; ++i) {
      std::string key = fmt::format("before-{}", i);
      append(ctx.get(), {"SET", b.page_key(key), value, "PX", "3600000"});
      zadd.push_back(score);
      zadd.push_back(std::move(key));
    }
    append(ctx.get(), zadd);
    fill_errors += read_replies(ctx.get(), last - first + 1);
  }
  REQUIRE(fill_errors == 0);
  ccp_test::command(ctx.get(), {"PEXPIREAT", b.index_key(tag), score});
  auto const fill_time = steady::now() - fill_start;
  REQUIRE(ccp_test::command(ctx.get(), {"ZCARD", b.index_key(tag)})->integer == static_cast<long long>(members));
  REQUIRE(b.lookup("before-0", tags).entry != nullptr);
  b.invalidate_tag("warm-up"); // scripts loaded before the clock starts

  // Two threads store new keys under the tag and read old and new ones.
  std::atomic<bool> stop{false};
  std::atomic<bool> invalidated{false};
  std::atomic<int> errors{0};
  std::atomic<int> stale_reads{0};
  std::vector<std::vector<std::string>> stored(2);
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (std::size_t i = 0; !stop; ++i) {
        try {
          std::string key = fmt::format("during-{}-{}", t, i);
          auto v = b.tag_versions(tags);
          if (b.store(key, make_entry(tag, v.at(0)))) stored[static_cast<std::size_t>(t)].push_back(key);
          b.lookup(key, tags);
          bool const after = invalidated.load();
          // A key indexed before the call must not be served once it returned.
          if (b.lookup(fmt::format("before-{}", (i * 7919) % members), tags).entry && after) ++stale_reads;
        } catch (...) {
          ++errors;
        }
      }
    });
  }
  std::this_thread::sleep_for(100ms);
  auto const t0 = steady::now();
  auto const result = b.invalidate_tag(tag);
  auto const took = steady::now() - t0;
  invalidated = true;
  std::this_thread::sleep_for(100ms);
  stop = true;
  for (auto& w : writers) w.join();

  CHECK(errors == 0);
  CHECK(stale_reads == 0);
  CHECK(result.entries_removed >= members);

  // Every key indexed before the call is gone.
  long long still_there = 0;
  for (std::size_t first = 0; first < members; first += batch) {
    std::vector<std::string> exists{"EXISTS"};
    for (std::size_t i = first; i < std::min(members, first + batch); ++i) exists.push_back(b.page_key(fmt::format("before-{}", i)));
    still_there += ccp_test::command(ctx.get(), exists)->integer;
  }
  CHECK(still_there == 0);

  // Every key stored meanwhile is gone or still indexed.
  std::size_t during = 0, gone = 0, indexed = 0, lost = 0;
  for (auto const& keys : stored)
    for (auto const& key : keys) {
      ++during;
      bool const cached = ccp_test::command(ctx.get(), {"EXISTS", b.page_key(key)})->integer == 1;
      bool const in_index = ccp_test::command(ctx.get(), {"ZSCORE", b.index_key(tag), key})->type != REDIS_REPLY_NIL;
      if (!cached) ++gone;
      else if (in_index) ++indexed;
      else ++lost;
    }
  CHECK(lost == 0);
  CHECK(during > 0);
  // A second invalidation reaches all that remained.
  CHECK(b.invalidate_tag(tag).entries_removed == indexed);

  auto const ms = [](steady::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf("redis bulk invalidation: %zu keys (filled in %lld ms) invalidated in %lld ms, %zu pages removed; "
              "%zu keys stored meanwhile: %zu gone, %zu still indexed, %zu cached but unindexed\n",
              members, static_cast<long long>(ms(fill_time)), static_cast<long long>(ms(took)), result.entries_removed,
              during, gone, indexed, lost);
  CHECK(took < 30s);
}
