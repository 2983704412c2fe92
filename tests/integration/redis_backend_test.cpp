// redis_backend against a real redis-server: the backend contract, the key
// layout and its bounds, URL configuration, AUTH and unix sockets, and the
// circuit breaker. Every test works under its own key prefix.
#include <custom_cache_page/redis.hpp>
#include <custom_cache_page/backends/composite_backend.hpp>

#include "../support/messages.hpp"
#include "../support/process.hpp"
#include "../support/redis_server.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using ccp_test::command;

namespace {

ccp::redis_options options_for(std::string const& test, int db = 0) {
  ccp::redis_options o;
  o.port = ccp_test::redis_server::shared().port();
  o.db = db;
  o.prefix = "ccpt:" + test + ":";
  return o;
}

ccp::resolved_tag plain(std::string name) { return {std::move(name), false}; }
ccp::resolved_tag versioned(std::string name, std::chrono::seconds ttl = ccp::default_version_ttl) {
  return {std::move(name), true, ttl};
}

// An entry built under `versions` of `tags`, as cache_page would build it.
std::shared_ptr<ccp::cached_response const> make_entry(std::vector<ccp::resolved_tag> const& tags,
                                                       std::vector<std::uint64_t> const& versions,
                                                       std::chrono::milliseconds ttl, std::string body = "hello") {
  auto e = std::make_shared<ccp::cached_response>();
  auto const now = ccp::cached_response::clock::now();
  e->status = 200;
  e->headers = {{"Content-Type", "text/plain"}};
  e->body = std::move(body);
  e->stored_at = now;
  e->expires_at = now + ttl;
  for (std::size_t i = 0; i < tags.size(); ++i)
    e->tags.push_back({tags[i].name, versions.at(i), tags[i].versioned, tags[i].guard});
  return e;
}

// Stores `body` under `key` the way a fill does: snapshot, then store.
bool fill(ccp::redis_backend& b, std::string const& key, std::vector<ccp::resolved_tag> const& tags,
          std::chrono::milliseconds ttl = 60s, std::string body = "hello") {
  auto versions = b.tag_versions(tags);
  return b.store(key, make_entry(tags, versions, ttl, std::move(body)));
}

bool hit(ccp::redis_backend& b, std::string const& key, std::vector<ccp::resolved_tag> const& tags) {
  auto r = b.lookup(key, tags);
  REQUIRE(r.versions.size() == tags.size());
  return r.entry != nullptr;
}

std::int64_t integer(ccp_test::redis_reply const& r) {
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  return r->integer;
}

bool exists(redisContext* c, std::string const& key) { return integer(command(c, {"EXISTS", key})) == 1; }


} // namespace

TEST_CASE("redis_backend: an entry is a hit with its bytes until its TTL, then a miss", "[redis][backend]") {
  ccp::redis_backend b(options_for("ttl"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{plain("p"), versioned("v")};

  CHECK_FALSE(hit(b, "k", tags));
  REQUIRE(fill(b, "k", tags, 400ms, std::string("bin\0ary", 7)));
  auto found = b.lookup("k", tags);
  REQUIRE(found.entry);
  CHECK(found.entry->body == std::string("bin\0ary", 7));
  CHECK(found.entry->header("content-type") == "text/plain");
  CHECK(found.versions == b.tag_versions(tags));
  auto pttl = integer(command(ctx.get(), {"PTTL", b.page_key("k")}));
  CHECK(pttl > 0);
  CHECK(pttl <= 400);

  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(hit(b, "k", tags));
  CHECK_FALSE(exists(ctx.get(), b.page_key("k")));
}

TEST_CASE("redis_backend: plain invalidation removes the tag's entries, and only them", "[redis][backend]") {
  ccp::redis_backend b(options_for("plain"));
  auto ctx = ccp_test::redis_server::shared().connect();
  REQUIRE(fill(b, "k1", {plain("p")}));
  REQUIRE(fill(b, "k2", {plain("p"), plain("q")}));
  REQUIRE(fill(b, "k3", {plain("q")}));
  auto before = b.tag_versions(std::vector{plain("p")}).at(0);
  CHECK(integer(command(ctx.get(), {"ZCARD", b.index_key("p")})) == 2);

  auto r = b.invalidate_tag("p");
  CHECK(r.tag == "p");
  CHECK(r.entries_removed == 2);
  CHECK(r.version == before + 1);
  CHECK_FALSE(hit(b, "k1", {plain("p")}));
  CHECK_FALSE(hit(b, "k2", {plain("p"), plain("q")}));
  CHECK(hit(b, "k3", {plain("q")}));
  CHECK_FALSE(exists(ctx.get(), b.page_key("k1"))); // removed eagerly, not just outdated
  CHECK_FALSE(exists(ctx.get(), b.page_key("k2")));
  CHECK_FALSE(exists(ctx.get(), b.index_key("p")));

  // Invalidating again finds nothing left.
  auto again = b.invalidate_tag("p");
  CHECK(again.entries_removed == 0);
  CHECK(again.version == before + 3); // odd stays odd: +2 (detail/generations.hpp)
}

TEST_CASE("redis_backend: versioned invalidation is one counter bump that makes the next lookup miss", "[redis][backend]") {
  ccp::redis_backend b(options_for("versioned"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{versioned("v")};
  for (int i = 0; i < 50; ++i) REQUIRE(fill(b, fmt::format("k{}", i), tags));
  auto before = b.tag_versions(tags).at(0);
  CHECK_FALSE(exists(ctx.get(), b.index_key("v"))); // versioned tags need no index
  b.invalidate_tag("warm-up"); // the server learns the scripts

  auto const trips = b.stats().round_trips;
  auto r = b.invalidate_tag("v");
  CHECK(b.stats().round_trips - trips == 1); // one script, whatever the number of entries
  CHECK(r.version == before + 1);
  CHECK(r.entries_removed == 0);
  for (int i = 0; i < 50; ++i) CHECK_FALSE(hit(b, fmt::format("k{}", i), tags));
  // Counters keep (at least) the default lifetime of ten days.
  CHECK(integer(command(ctx.get(), {"TTL", b.counter_key("v")})) > 9 * 24 * 3600);
}

TEST_CASE("redis_backend: a stored value that does not decode is a miss and is counted", "[redis][backend]") {
  ccp::redis_backend b(options_for("corrupt"));
  auto ctx = ccp_test::redis_server::shared().connect();
  REQUIRE(fill(b, "k", {}));
  REQUIRE(hit(b, "k", {}));

  auto const valid = ccp::encode_entry(*make_entry({}, {}, 60s));
  command(ctx.get(), {"SET", b.page_key("k"), "garbage"});
  CHECK_FALSE(hit(b, "k", {}));
  CHECK(b.stats().corrupt_entries == 1);
  command(ctx.get(), {"SET", b.page_key("k"), valid.substr(0, valid.size() - 1)}); // truncated
  CHECK_FALSE(hit(b, "k", {}));
  CHECK(b.stats().corrupt_entries == 2);
  command(ctx.get(), {"SET", b.page_key("k"), valid});
  CHECK(hit(b, "k", {}));
  CHECK(b.stats().corrupt_entries == 2);
  // Not a string at all: a miss too, and the next fill replaces it.
  command(ctx.get(), {"DEL", b.page_key("k")});
  command(ctx.get(), {"RPUSH", b.page_key("k"), "x"});
  CHECK_FALSE(hit(b, "k", {}));
  CHECK(fill(b, "k", {}));
  CHECK(hit(b, "k", {}));
}

TEST_CASE("redis_backend: signed entries, an entry written without the secret or moved to another key is a miss", "[redis][backend][hmac]") {
  auto signed_options = options_for("hmac");
  signed_options.hmac_key = "0123456789abcdef-a-secret";
  ccp::redis_backend b(signed_options);
  ccp::redis_backend unsigned_writer(options_for("hmac")); // the same keys, no secret
  auto ctx = ccp_test::redis_server::shared().connect();
  REQUIRE(fill(b, "k", {}));
  REQUIRE(hit(b, "k", {}));
  CHECK(b.stats().unsigned_entries == 0);

  REQUIRE(fill(unsigned_writer, "k", {}, 60s, "forged"));
  CHECK_FALSE(hit(b, "k", {}));
  CHECK(b.stats().unsigned_entries == 1);
  // A valid encoding with a signature made under another secret.
  auto other = signed_options;
  other.hmac_key = "another-secret-of-16+";
  REQUIRE(fill(*std::make_unique<ccp::redis_backend>(other), "k", {}, 60s, "forged"));
  CHECK_FALSE(hit(b, "k", {}));
  CHECK(b.stats().unsigned_entries == 2);
  // A genuine signed entry copied to another key.
  REQUIRE(fill(b, "k", {}));
  auto genuine = command(ctx.get(), {"GET", b.page_key("k")});
  REQUIRE(genuine->type == REDIS_REPLY_STRING);
  command(ctx.get(), {"SET", b.page_key("elsewhere"), std::string(genuine->str, genuine->len)});
  CHECK_FALSE(hit(b, "elsewhere", {}));
  CHECK(hit(b, "k", {}));
  CHECK(b.stats().unsigned_entries == 3);
}

TEST_CASE("redis URLs: hmac_key_env reads the secret from the environment, and says when it is missing", "[redis][url][hmac]") {
  ::setenv("CCP_TEST_HMAC_SECRET", "0123456789abcdef-from-env", 1);
  CHECK(ccp::parse_redis_url("redis://127.0.0.1/?hmac_key_env=CCP_TEST_HMAC_SECRET").hmac_key == "0123456789abcdef-from-env");
  ::unsetenv("CCP_TEST_HMAC_SECRET");
  CHECK_THROWS_WITH(ccp::parse_redis_url("redis://127.0.0.1/?hmac_key_env=CCP_TEST_HMAC_SECRET"),
                    Catch::Contains("hmac_key_env") && Catch::Contains("not set"));
  auto short_secret = options_for("hmac-short");
  short_secret.hmac_key = "short";
  CHECK_THROWS_WITH(ccp::redis_backend(short_secret), Catch::Contains("at least 16"));
}

TEST_CASE("redis_backend: a fill whose snapshot predates an invalidation is not stored", "[redis][backend]") {
  ccp::redis_backend b(options_for("race"));
  auto ctx = ccp_test::redis_server::shared().connect();
  for (auto const& tag : {plain("p"), versioned("v")}) {
    std::vector<ccp::resolved_tag> const tags{plain("other"), tag};
    auto versions = b.tag_versions(tags); // the handler starts
    b.invalidate_tag(tag.name);           // the data changes while it runs
    CHECK_FALSE(b.store("k-" + tag.name, make_entry(tags, versions, 60s)));
    CHECK_FALSE(exists(ctx.get(), b.page_key("k-" + tag.name)));
    CHECK_FALSE(hit(b, "k-" + tag.name, tags));
    CHECK(integer(command(ctx.get(), {"EXISTS", b.index_key(tag.name)})) == 0);
    CHECK(fill(b, "k-" + tag.name, tags)); // a fill that starts afterwards is stored
    CHECK(hit(b, "k-" + tag.name, tags));
  }
  // A version no counter ever had (including a missing counter) is refused.
  CHECK_FALSE(b.store("k", make_entry({plain("never-created")}, {0}, 60s)));
  CHECK_FALSE(b.store("k", make_entry({plain("p")}, {12345}, 60s)));
}

TEST_CASE("redis_backend: a lost counter restarts at a fresh large generation and old entries never match again",
          "[redis][backend]") {
  ccp::redis_backend b(options_for("lost"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{versioned("v")};
  auto const old = b.tag_versions(tags).at(0);
  CHECK(old >= (std::uint64_t{1} << 32));
  CHECK(old < (std::uint64_t{1} << 62));
  REQUIRE(b.store("k", make_entry(tags, {old}, 60s)));
  REQUIRE(hit(b, "k", tags));

  command(ctx.get(), {"DEL", b.counter_key("v")}); // evicted, flushed, expired
  auto r = b.lookup("k", tags);
  CHECK(r.versions == std::vector<std::uint64_t>{0});
  CHECK_FALSE(r.entry);
  auto fresh = b.tag_versions(tags).at(0);
  CHECK(fresh >= (std::uint64_t{1} << 32));
  CHECK(fresh < (std::uint64_t{1} << 62));
  CHECK(fresh != old);
  CHECK(fresh != 1);
  CHECK_FALSE(hit(b, "k", tags));

  // Invalidating a tag without a counter also starts from a fresh generation.
  command(ctx.get(), {"DEL", b.counter_key("v")});
  auto inv = b.invalidate_tag("v");
  CHECK(inv.version > (std::uint64_t{1} << 32));
  CHECK(inv.version != old + 1);
  CHECK_FALSE(hit(b, "k", tags));

  // An unreadable counter is treated as missing, and invalidation repairs it.
  command(ctx.get(), {"SET", b.counter_key("v"), "not-a-number"});
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{0});
  CHECK(b.invalidate_tag("v").version > (std::uint64_t{1} << 32));
}

TEST_CASE("redis_backend: tags a handler added are checked although the request does not name them", "[redis][backend]") {
  ccp::redis_backend b(options_for("added"));
  std::vector<ccp::resolved_tag> const named{versioned("v")};
  std::vector<ccp::resolved_tag> const all{versioned("v"), versioned("added-v"), plain("added-p")};
  REQUIRE(b.store("k", make_entry(all, b.tag_versions(all), 60s)));

  auto const trips = b.stats().round_trips;
  REQUIRE(hit(b, "k", named));
  CHECK(b.stats().round_trips - trips == 2); // the named tags, then the added ones
  b.invalidate_tag("added-v");
  CHECK_FALSE(hit(b, "k", named));

  REQUIRE(b.store("k2", make_entry(all, b.tag_versions(all), 60s)));
  REQUIRE(hit(b, "k2", named));
  b.invalidate_tag("added-p");
  CHECK_FALSE(hit(b, "k2", named));
}

TEST_CASE("redis_backend: a guard tag is only read by fills, matches while missing, and refuses older fills once bumped",
          "[redis][backend]") {
  ccp::redis_backend b(options_for("guard"));
  auto ctx = ccp_test::redis_server::shared().connect();
  ccp::resolved_tag guard{"~target:k", false, std::chrono::hours(24), true};
  std::vector<ccp::resolved_tag> const tags{plain("p"), guard};

  auto v1 = b.tag_versions(tags);
  CHECK(v1.at(1) == 0);
  CHECK_FALSE(exists(ctx.get(), b.counter_key(guard.name))); // a fill never creates it
  REQUIRE(b.store("k", make_entry(tags, v1, 60s)));
  CHECK(hit(b, "k", tags));
  CHECK_FALSE(exists(ctx.get(), b.index_key(guard.name))); // nor indexes under it
  CHECK(integer(command(ctx.get(), {"ZCARD", b.index_key("p")})) == 1);

  auto v2 = b.tag_versions(tags); // a second fill starts
  auto bumped = b.invalidate_tag(guard.name); // an unsafe request on the target succeeds
  CHECK(bumped.version > (std::uint64_t{1} << 32));
  CHECK(bumped.entries_removed == 0);
  CHECK_FALSE(hit(b, "k", tags));
  CHECK_FALSE(b.store("k", make_entry(tags, v2, 60s)));
  auto v3 = b.tag_versions(tags);
  CHECK(v3.at(1) == bumped.version);
  CHECK(b.store("k", make_entry(tags, v3, 60s)));
  CHECK(hit(b, "k", tags));
  // An ordinary tag recorded at 0 is never current, even without a counter.
  CHECK_FALSE(b.store("k0", make_entry({plain("no-counter")}, {0}, 60s)));
}

TEST_CASE("redis_backend: an entry over max_entry is refused with entry_too_large", "[redis][backend]") {
  auto o = options_for("too-large");
  o.max_entry = 1024;
  ccp::redis_backend b(o);
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{plain("p")};
  auto const trips = b.stats().round_trips;
  try {
    b.store("big", make_entry(tags, {1}, 60s, std::string(2000, 'x')));
    FAIL("no entry_too_large");
  } catch (ccp::cache_error const& e) {
    CHECK(e.code() == ccp::error::entry_too_large);
  }
  CHECK(b.stats().round_trips == trips); // refused before Redis sees it
  CHECK_FALSE(exists(ctx.get(), b.page_key("big")));
  CHECK(fill(b, "small", tags, 60s, std::string(500, 'x')));
  CHECK(ccp::parse_redis_url("redis://h/0?max_entry=64KiB").max_entry == 64 * 1024);
}

TEST_CASE("redis_backend: connections can come from the application's own connect function", "[redis][backend]") {
  auto o = options_for("factory");
  int calls = 0;
  auto const port = o.port;
  o.port = 1; // never used: the function decides where to connect
  o.connect = [&calls, port] {
    ++calls;
    return redisConnect("127.0.0.1", port);
  };
  ccp::redis_backend b(o);
  std::vector<ccp::resolved_tag> const tags{plain("p")};
  REQUIRE(fill(b, "k", tags, 10s));
  CHECK(hit(b, "k", tags));
  CHECK(calls >= 1);

  auto failing = options_for("factory-fails");
  failing.connect = [] { return static_cast<redisContext*>(nullptr); };
  failing.breaker_threshold = 0;
  ccp::redis_backend down(failing);
  CHECK_THROWS_AS(down.lookup("k", tags), ccp::cache_error);
}

TEST_CASE("redis_backend: erase removes one entry", "[redis][backend]") {
  ccp::redis_backend b(options_for("erase"));
  REQUIRE(fill(b, "k", {plain("p")}));
  CHECK(b.erase("k"));
  CHECK_FALSE(b.erase("k"));
  CHECK_FALSE(hit(b, "k", {plain("p")}));
  // Its index member stays until it expires or the tag is drained: harmless.
  CHECK(b.invalidate_tag("p").entries_removed == 0);
}

TEST_CASE("redis_backend: tag_versions reads counters in one round trip and creates none, the store creates them",
          "[redis][backend][bounded]") {
  ccp::redis_backend b(options_for("versions"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{versioned("a", 60s), plain("b"), versioned("c", 120s)};
  auto const trips = b.stats().round_trips;
  auto first = b.tag_versions(tags);
  CHECK(b.stats().round_trips - trips == 1);
  REQUIRE(first.size() == 3);
  for (auto v : first) CHECK((v >= (std::uint64_t{1} << 32) && v % 2 == 0)); // proposals
  for (auto const* name : {"a", "b", "c"}) CHECK_FALSE(exists(ctx.get(), b.counter_key(name)));

  // The store creates them, living as long as the entry.
  REQUIRE(b.store("k", make_entry(tags, first, 30s)));
  CHECK(b.tag_versions(tags) == first);
  for (auto const* name : {"a", "b", "c"}) {
    auto const ttl = integer(command(ctx.get(), {"TTL", b.counter_key(name)}));
    CHECK(ttl > 25);
    CHECK(ttl <= 30);
  }
  // A longer-lived entry extends them; a shorter one never shortens them.
  REQUIRE(b.store("k2", make_entry(tags, first, 600s)));
  CHECK(integer(command(ctx.get(), {"TTL", b.counter_key("a")})) > 500);
  REQUIRE(b.store("k3", make_entry(tags, first, 10s)));
  CHECK(integer(command(ctx.get(), {"TTL", b.counter_key("a")})) > 500);
  // An invalidation keeps the counter at least ten days.
  b.invalidate_tag("b");
  CHECK(integer(command(ctx.get(), {"TTL", b.counter_key("b")})) > 9 * 24 * 3600);
  CHECK(b.tag_versions({}).empty());
}

TEST_CASE("redis_backend: a fill that was waited for leaves a pass marker, seen by lookups until it expires",
          "[redis][backend]") {
  ccp::redis_backend b(options_for("pass"));
  std::vector<ccp::resolved_tag> const tags{plain("catalog")};
  b.mark_pass("k", 300ms); // nobody waited for this fill: nothing is written
  CHECK_FALSE(b.lookup("k", tags).pass_marked);
  auto const token = b.try_fill_lock("k", 1s);
  REQUIRE(token);
  CHECK_FALSE(b.try_fill_lock("k", 1s)); // another process waits
  b.mark_pass("k", 300ms);
  b.release_fill_lock("k", *token);
  CHECK(b.lookup("k", tags).pass_marked);
  CHECK_FALSE(b.lookup("other", tags).pass_marked);
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{0}); // it creates no counter
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(b.lookup("k", tags).pass_marked);
}

TEST_CASE("redis_backend: concurrent first fills adopt one counter, an invalidation in between refuses",
          "[redis][backend]") {
  ccp::redis_backend b(options_for("adopt"));
  std::vector<ccp::resolved_tag> const tags{versioned("v"), plain("p")};
  auto const one = b.tag_versions(tags);
  auto const two = b.tag_versions(tags);
  CHECK(one != two);
  REQUIRE(b.store("page-1", make_entry(tags, one, 60s)));
  auto const trips = b.stats().round_trips;
  REQUIRE(b.store("page-2", make_entry(tags, two, 60s)));
  CHECK(b.stats().round_trips - trips == 3); // refused, the counters read to adopt, then stored
  auto const found = b.lookup("page-2", tags);
  REQUIRE(found.entry);
  CHECK(found.entry->tags.at(0).version == one.at(0));
  b.invalidate_tag("p");
  CHECK_FALSE(hit(b, "page-1", tags));
  CHECK_FALSE(hit(b, "page-2", tags));

  auto const late = b.tag_versions(std::vector{versioned("w")});
  b.invalidate_tag("w"); // creates the counter: odd, never adopted
  CHECK_FALSE(b.store("page-3", make_entry(std::vector{versioned("w")}, late, 60s)));
}

TEST_CASE("redis_backend: requests whose responses are not stored leave no key behind", "[redis][backend][bounded]") {
  auto const o = options_for("bounded", 6);
  ccp::redis_backend b(o);
  auto ctx = ccp_test::redis_server::shared().connect();
  command(ctx.get(), {"SELECT", "6"}); // the backend's database
  command(ctx.get(), {"FLUSHDB"});
  auto const handler = [](http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::not_found, req.version()};
    res.body() = "no such category";
    res.prepare_payload();
    return res;
  };
  auto cached = ccp::cache_page(
      {.tags = {ccp::versioned("products"), [](ccp::request_view r) { return "category-" + r.query("category"); }},
       .backend = std::make_shared<ccp::redis_backend>(o)},
      handler);
  std::string const padding(4096, 'x');
  for (int i = 0; i < 2000; ++i) {
    auto req = ccp_test::make_request(http::verb::get, "/products?category=" + padding + std::to_string(i));
    ccp_test::receive(cached(std::move(req)));
  }
  auto const keys = integer(command(ctx.get(), {"DBSIZE"}));
  INFO("keys after 2,000 requests for unknown categories: " << keys);
  CHECK(keys < 50);
  std::printf("redis: DBSIZE %lld after 2,000 requests for distinct unknown 4 KB categories\n", static_cast<long long>(keys));
}

TEST_CASE("redis_backend: nothing is read or written outside the prefix", "[redis][backend]") {
  // A database of its own, so that the whole keyspace can be checked.
  auto const o = options_for("keyspace", 7);
  auto ctx = ccp_test::redis_server::shared().connect();
  command(ctx.get(), {"SELECT", "7"});
  command(ctx.get(), {"FLUSHDB"});
  {
    ccp::redis_backend b(o);
    std::vector<ccp::resolved_tag> const tags{versioned("v"), plain("p"), plain("q")};
    for (int i = 0; i < 20; ++i) REQUIRE(fill(b, fmt::format("k{}", i), tags));
    CHECK(hit(b, "k1", tags));
    b.erase("k2");
    b.invalidate_tag("v");
    b.invalidate_tag("q");
    REQUIRE(fill(b, "after", tags));
    b.index().add("r", "k3", std::chrono::system_clock::now() + 60s);
    CHECK(b.index().size() > 0);
  }
  auto keys = ccp_test::scan_keys(ctx.get());
  CHECK(keys.size() >= 5);
  for (auto const& k : keys) CHECK_THAT(k, Catch::StartsWith(o.prefix));
  // Database 0 did not receive any of them.
  command(ctx.get(), {"SELECT", "0"});
  for (auto const& k : keys) CHECK_FALSE(exists(ctx.get(), k));
}

TEST_CASE("redis_backend: an expired index member leaves the index on the next store to its tag", "[redis][index]") {
  ccp::redis_backend b(options_for("prune"));
  auto ctx = ccp_test::redis_server::shared().connect();
  REQUIRE(fill(b, "short", {plain("p")}, 100ms));
  REQUIRE(fill(b, "long", {plain("p")}, 60s));
  CHECK(integer(command(ctx.get(), {"ZCARD", b.index_key("p")})) == 2);
  std::this_thread::sleep_for(200ms);
  REQUIRE(fill(b, "new", {plain("p")}, 60s));
  CHECK(command(ctx.get(), {"ZSCORE", b.index_key("p"), "short"})->type == REDIS_REPLY_NIL);
  CHECK(integer(command(ctx.get(), {"ZCARD", b.index_key("p")})) == 2);
  // Scores are the entries' expiry in ms.
  auto score = command(ctx.get(), {"ZSCORE", b.index_key("p"), "long"});
  REQUIRE(score->type == REDIS_REPLY_STRING);
  auto const ms = std::stoll(std::string(score->str, score->len));
  auto const expected = std::chrono::duration_cast<std::chrono::milliseconds>(
                            (std::chrono::system_clock::now() + 60s).time_since_epoch()).count();
  CHECK(std::abs(ms - expected) < 2000);
}

TEST_CASE("redis_backend: an entry cached for longer than a day stays reachable through the index", "[redis][index]") {
  ccp::redis_backend b(options_for("long-ttl"));
  auto ctx = ccp_test::redis_server::shared().connect();
  REQUIRE(fill(b, "week", {plain("p")}, std::chrono::hours(24 * 7)));
  REQUIRE(fill(b, "minute", {plain("p")}, 60s)); // a later, shorter entry must not shorten the index
  // Absolute expiry times: two PTTL reads would be taken a millisecond apart.
  auto const page = integer(command(ctx.get(), {"PEXPIRETIME", b.page_key("week")}));
  auto const index = integer(command(ctx.get(), {"PEXPIRETIME", b.index_key("p")}));
  auto const now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(page - now_ms > 24 * 3600 * 1000);
  CHECK(index >= page);
  CHECK(index <= page + 1000);
  CHECK(b.invalidate_tag("p").entries_removed == 2);
  CHECK_FALSE(exists(ctx.get(), b.page_key("week")));
}

TEST_CASE("redis_backend: the index key expires when its last member does", "[redis][index]") {
  ccp::redis_backend b(options_for("index-expiry"));
  auto ctx = ccp_test::redis_server::shared().connect();
  // Margins of 300 ms either side, for sanitizer builds on a loaded machine.
  REQUIRE(fill(b, "a", {plain("p")}, 600ms));
  REQUIRE(fill(b, "b", {plain("p")}, 1200ms));
  REQUIRE(fill(b, "c", {plain("p")}, 300ms)); // added last, expires first
  auto const index = integer(command(ctx.get(), {"PTTL", b.index_key("p")}));
  CHECK(index > 900);
  CHECK(index <= 1200);
  std::this_thread::sleep_for(900ms);
  CHECK(exists(ctx.get(), b.index_key("p")));
  CHECK(exists(ctx.get(), b.page_key("b")));
  std::this_thread::sleep_for(600ms);
  CHECK_FALSE(exists(ctx.get(), b.page_key("b")));
  CHECK_FALSE(exists(ctx.get(), b.index_key("p")));
}

TEST_CASE("redis_surrogate_index needs a client or a URL, as Python's RedisSurrogateIndex", "[redis][index][python]") {
  static_assert(!std::is_default_constructible_v<ccp::redis_surrogate_index>); // Python: ValueError
  CHECK_THROWS_AS(ccp::redis_surrogate_index(std::shared_ptr<ccp::detail::redis_client>()), ccp::cache_error);
  auto const o = options_for("index-url");
  ccp::redis_surrogate_index index("redis://" + o.host + ":" + std::to_string(o.port) + "/0?prefix=" + o.prefix);
  index.add("t", "k1", std::chrono::system_clock::now() + 60s);
  CHECK(index.take("t") == std::vector<std::string>{"k1"});
}

TEST_CASE("redis_surrogate_index: the sorted-set index on its own", "[redis][index]") {
  static_assert(ccp::surrogate_index<ccp::redis_surrogate_index>);
  auto const o = options_for("index-alone");
  ccp::redis_surrogate_index index(o);
  auto const now = std::chrono::system_clock::now();
  index.add("t", "k1", now + 60s);
  index.add("t", "k2", now + 60s);
  index.add("t", "k3", now + 60s);
  index.add("u", "k1", now + 60s);
  index.add("t", "gone", now - 1s); // already expired: not added
  CHECK(index.size("t") == 3);
  CHECK(index.size() == 4);
  index.remove("t", "k2");
  auto taken = index.take("t");
  std::sort(taken.begin(), taken.end());
  CHECK(taken == std::vector<std::string>{"k1", "k3"});
  CHECK(index.take("t").empty());
  CHECK(index.size() == 1);

  // Members whose entries expired are not returned.
  index.add("w", "soon", std::chrono::system_clock::now() + 100ms);
  index.add("w", "later", std::chrono::system_clock::now() + 60s);
  std::this_thread::sleep_for(200ms);
  CHECK(index.take("w") == std::vector<std::string>{"later"});

  // A take larger than one drain step.
  auto small = o;
  small.drain_batch = 7;
  ccp::redis_surrogate_index batched(small);
  for (int i = 0; i < 50; ++i) batched.add("big", fmt::format("m{}", i), now + 60s);
  CHECK(batched.take("big").size() == 50);
}

TEST_CASE("redis_backend: invalidation drains an index larger than one step", "[redis][index]") {
  auto o = options_for("batches");
  o.drain_batch = 10;
  ccp::redis_backend b(o);
  for (int i = 0; i < 95; ++i) REQUIRE(fill(b, fmt::format("k{}", i), {plain("p")}));
  b.invalidate_tag("warm-up"); // the server learns the scripts
  b.index().take("warm-up");
  auto const trips = b.stats().round_trips;
  CHECK(b.invalidate_tag("p").entries_removed == 95);
  CHECK(b.stats().round_trips - trips == 10); // ceil(95 / 10) steps, the first with the bump
  for (int i = 0; i < 95; ++i) CHECK_FALSE(hit(b, fmt::format("k{}", i), {plain("p")}));
}

TEST_CASE("redis URLs: host, port, password, db, prefix, timeouts, pool, unix sockets", "[redis][url]") {
  auto o = ccp::parse_redis_url("redis://:s%40cret@cache.internal:6380/3?prefix=app:&timeout_ms=250&pool=8");
  CHECK(o.host == "cache.internal");
  CHECK(o.port == 6380);
  CHECK(o.password == "s@cret");
  CHECK(o.username.empty());
  CHECK(o.db == 3);
  CHECK(o.prefix == "app:");
  CHECK(o.command_timeout == 250ms);
  CHECK(o.pool_size == 8);
  CHECK(o.unix_socket.empty());

  auto d = ccp::parse_redis_url("redis://127.0.0.1");
  CHECK(d.port == 6379);
  CHECK(d.db == 0);
  CHECK(d.prefix == "ccp:");
  CHECK(d.command_timeout == 100ms);
  CHECK(d.pool_size == 4);
  CHECK(d.password.empty());

  auto acl = ccp::parse_redis_url("redis://app:pw@[::1]:7000/?connect_timeout_ms=50&breaker_threshold=3&breaker_cooldown_ms=200");
  CHECK(acl.host == "::1");
  CHECK(acl.port == 7000);
  CHECK(acl.username == "app");
  CHECK(acl.password == "pw");
  CHECK(acl.connect_timeout == 50ms);
  CHECK(acl.breaker_threshold == 3);
  CHECK(acl.breaker_cooldown == 200ms);

  auto u = ccp::parse_redis_url("unix:///run/redis/redis.sock?db=2&prefix=x:&password=pw");
  CHECK(u.unix_socket == "/run/redis/redis.sock");
  CHECK(u.db == 2);
  CHECK(u.prefix == "x:");
  CHECK(u.password == "pw");

  auto fails_with = [](std::string const& url, std::string const& text) {
    try {
      ccp::parse_redis_url(url);
      FAIL("no error for " << url);
    } catch (ccp::cache_error const& e) {
      CHECK(e.code() == ccp::error::bad_configuration);
      CHECK_THAT(e.what(), Catch::Contains(text));
    }
  };
  fails_with("redis://127.0.0.1:6379/0?prefx=app:", "'prefx'");
  fails_with("unix:///tmp/r.sock?color=blue", "'color'");
  fails_with("redis://127.0.0.1/zero", "'db'");
  fails_with("redis://127.0.0.1/0?pool=0", "'pool'");
  fails_with("redis://127.0.0.1/0?timeout_ms=fast", "'timeout_ms'");
  fails_with("unix://", "socket path");
  fails_with("http://127.0.0.1/", "http");
}

TEST_CASE("enable_redis: make_backend builds redis backends from redis:// URLs", "[redis][url]") {
  ccp::registry r;
  CHECK_THROWS_AS(r.make_backend("redis://127.0.0.1:6379/0"), ccp::unknown_backend_error);
  ccp::enable_redis(r);
  auto& server = ccp_test::redis_server::shared();
  auto b = r.make_backend(fmt::format("redis://127.0.0.1:{}/0?prefix=ccpt:registry:&pool=2", server.port()));
  auto* typed = b.target<ccp::redis_backend>();
  REQUIRE(typed != nullptr);
  CHECK(typed->options().prefix == "ccpt:registry:");
  CHECK(typed->options().pool_size == 2);
  std::vector<ccp::resolved_tag> const tags{plain("p")};
  REQUIRE(b.store("k", make_entry(tags, b.tag_versions(tags), 60s)));
  CHECK(b.lookup("k", tags).entry != nullptr);
  r.add("shared", b);
  CHECK(r.invalidate_tag("p", "shared").entries_removed == 1);
  CHECK_THROWS_AS(r.make_backend("redis://127.0.0.1:1/0?nope=1"), ccp::cache_error);
}

TEST_CASE("redis_backend: AUTH, SELECT and a unix socket on a server of its own", "[redis][auth]") {
  std::string const program = ccp_test::require_program("redis-server", "redis-server");
  char tmpl[] = "/tmp/ccp-redis-auth-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  std::filesystem::path const dir = tmpl;
  auto const socket = (dir / "redis.sock").string();
  ccp_test::child_process server({program, "--port", "0", "--unixsocket", socket, "--requirepass", "s3cret",
                                  "--save", "", "--appendonly", "no", "--dir", dir.string(), "--logfile",
                                  (dir / "redis.log").string()});
  for (int i = 0; i < 250 && !std::filesystem::exists(socket); ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(std::filesystem::exists(socket));

  ccp::registry r;
  ccp::enable_redis(r);
  auto b = r.make_backend("unix://" + socket + "?db=3&prefix=ccpt:auth:&password=s3cret");
  std::vector<ccp::resolved_tag> const tags{plain("p")};
  REQUIRE(b.store("k", make_entry(tags, b.tag_versions(tags), 60s)));
  CHECK(b.lookup("k", tags).entry != nullptr);
  {
    // The entry went to database 3.
    std::unique_ptr<redisContext, void (*)(redisContext*)> c(redisConnectUnix(socket.c_str()), &redisFree);
    REQUIRE(c);
    REQUIRE(c->err == 0);
    command(c.get(), {"AUTH", "s3cret"});
    command(c.get(), {"SELECT", "3"});
    CHECK(integer(command(c.get(), {"EXISTS", "ccpt:auth:page:k"})) == 1);
  }

  auto wrong = r.make_backend("unix://" + socket + "?password=hunter2&prefix=ccpt:auth:");
  try {
    wrong.lookup("k", tags);
    FAIL("a wrong password must fail");
  } catch (ccp::cache_error const& e) {
    CHECK(e.code() == ccp::error::store_unavailable);
    CHECK_THAT(e.what(), Catch::Contains("AUTH"));
    CHECK_THAT(e.what(), !Catch::Contains("hunter2")); // the password is not repeated
  }
  server.stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_CASE("redis_backend: a command that outlasts the timeout fails in about the timeout, and the next one reconnects",
          "[redis][timeout]") {
  auto& server = ccp_test::redis_server::shared();
  auto o = options_for("timeout");
  o.command_timeout = 100ms;
  ccp::redis_backend b(o);
  REQUIRE(fill(b, "k", {}));
  REQUIRE(hit(b, "k", {}));

  // A script that keeps Redis busy for about a second (well under Redis's
  // 5 s script limit), calibrated on this machine.
  auto busy = [&](long iterations) {
    auto c = server.connect();
    auto const t0 = std::chrono::steady_clock::now();
    command(c.get(), {"EVAL", "for i = 1, tonumber(ARGV[1]) do end return 1", "0", std::to_string(iterations)});
    return std::chrono::steady_clock::now() - t0;
  };
  long const probe = 10'000'000;
  auto const per = busy(probe) / probe;
  long const iterations = per.count() > 0 ? static_cast<long>(1200ms / per) : 200'000'000;
  std::chrono::steady_clock::duration blocked{};
  std::thread blocker([&] { blocked = busy(iterations); });
  std::this_thread::sleep_for(100ms);
  auto const t0 = std::chrono::steady_clock::now();
  std::string error;
  try {
    b.lookup("k", {});
  } catch (ccp::cache_error const& e) {
    error = e.what();
  }
  auto const took = std::chrono::steady_clock::now() - t0;
  blocker.join();
  CAPTURE(error);
  CHECK_THAT(error, Catch::Contains("timed out"));
  CHECK(took >= 90ms);
  CHECK(took < 400ms);
  CHECK(blocked > took + 200ms); // the lookup did not wait for Redis
  auto const connects = b.stats().connects;
  CHECK(hit(b, "k", {})); // a fresh connection: the timed-out one was discarded
  CHECK(b.stats().connects == connects + 1);
}

TEST_CASE("redis_backend: an unreachable Redis fails fast once the circuit breaker opens", "[redis][breaker]") {
  ccp::redis_options o;
  o.port = ccp_test::free_loopback_port(); // nothing listens there
  o.prefix = "ccpt:breaker:";
  o.breaker_threshold = 3;
  o.breaker_cooldown = 300ms;
  ccp::redis_backend b(o);
  std::vector<ccp::resolved_tag> const tags{plain("p")};

  for (int i = 0; i < 3; ++i) {
    try {
      b.lookup("k", tags);
      FAIL("lookup on a closed port must throw");
    } catch (ccp::cache_error const& e) {
      CHECK(e.code() == ccp::error::store_unavailable);
      // Either the refused connect, or the backoff that follows it.
      CHECK_THAT(e.what(), Catch::Contains("connect"));
    }
  }
  CHECK(b.breaker_open());
  auto const rejected = b.stats().rejected;
  auto const t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) CHECK_THROWS_WITH(b.lookup("k", tags), Catch::Contains("circuit breaker open"));
  CHECK(std::chrono::steady_clock::now() - t0 < 250ms);
  CHECK(b.stats().rejected - rejected == 1000);
  CHECK_THROWS_AS(b.invalidate_tag("p"), ccp::cache_error);

  // After the cooldown one probe goes through; it fails and re-opens the breaker.
  std::this_thread::sleep_for(350ms);
  auto const connects_tried = b.stats().failures;
  CHECK_THROWS_WITH(b.lookup("k", tags), !Catch::Contains("circuit breaker open"));
  CHECK(b.stats().failures == connects_tried + 1);
  CHECK_THROWS_WITH(b.lookup("k", tags), Catch::Contains("circuit breaker open"));
}

TEST_CASE("redis_backend: a soft purge leaves entries stale, a hard purge after it removes them", "[redis][stale]") {
  ccp::redis_backend b(options_for("soft"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const named{versioned("v"), plain("p")};
  std::vector<ccp::resolved_tag> const all{versioned("v"), plain("p"), versioned("added-v")};

  for (auto const& tag : {"v", "p", "added-v"}) {
    DYNAMIC_SECTION("soft purge of " << tag) {
      auto const before = b.tag_versions(all);
      REQUIRE(b.store("k", make_entry(all, before, 60s)));
      auto soft = b.invalidate_tag(tag, ccp::purge_mode::soft);
      CHECK(soft.mode == ccp::purge_mode::soft);
      CHECK(soft.entries_removed == 0);
      CHECK(exists(ctx.get(), b.page_key("k")));
      auto found = b.lookup("k", named);
      REQUIRE(found.entry);
      CHECK(found.soft_purged);
      // A second soft purge keeps the floor where the first put it.
      b.invalidate_tag(tag, ccp::purge_mode::soft);
      CHECK(b.lookup("k", named).soft_purged);
      // A fill whose snapshot predates the purge is refused.
      CHECK_FALSE(b.store("k2", make_entry(all, before, 60s)));
      b.invalidate_tag(tag, ccp::purge_mode::hard);
      CHECK_FALSE(hit(b, "k", named));
      // A fresh fill is current again.
      REQUIRE(b.store("k", make_entry(all, b.tag_versions(all), 60s)));
      auto again = b.lookup("k", named);
      REQUIRE(again.entry);
      CHECK_FALSE(again.soft_purged);
    }
  }
}

TEST_CASE("redis_backend: a soft purge of a lost counter serves nothing built before it", "[redis][stale]") {
  ccp::redis_backend b(options_for("soft-lost"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{versioned("v")};
  REQUIRE(fill(b, "k", tags));
  command(ctx.get(), {"DEL", b.counter_key("v")});
  b.invalidate_tag("v", ccp::purge_mode::soft);
  CHECK_FALSE(hit(b, "k", tags));
}

TEST_CASE("redis_backend: entries are kept for their stale windows past their expiry", "[redis][stale]") {
  ccp::redis_backend b(options_for("stale-keep"));
  auto ctx = ccp_test::redis_server::shared().connect();
  std::vector<ccp::resolved_tag> const tags{plain("p")};
  auto e = std::make_shared<ccp::cached_response>(*make_entry(tags, b.tag_versions(tags), 60s));
  e->stale_if_error = 3600s;
  REQUIRE(b.store("k", e));
  auto const pttl = integer(command(ctx.get(), {"PTTL", b.page_key("k")}));
  CHECK(pttl > 3600 * 1000);
  CHECK(pttl <= 3660 * 1000);
  auto found = b.lookup("k", tags);
  REQUIRE(found.entry);
  CHECK(found.entry->stale_if_error == 3600s);
}

TEST_CASE("redis_backend: a fill lock has one holder, expires, and only its token releases it", "[redis][lock]") {
  ccp::redis_backend a(options_for("lock"));
  ccp::redis_backend other(options_for("lock"));
  auto ctx = ccp_test::redis_server::shared().connect();
  auto token = a.try_fill_lock("k", 2000ms);
  REQUIRE(token);
  CHECK_FALSE(other.try_fill_lock("k", 2000ms));
  CHECK(other.try_fill_lock("another key", 2000ms));
  other.release_fill_lock("k", "not the token");
  CHECK_FALSE(other.try_fill_lock("k", 2000ms));
  a.release_fill_lock("k", *token);
  auto next = other.try_fill_lock("k", 150ms);
  REQUIRE(next);
  CHECK(*next != *token);
  std::this_thread::sleep_for(400ms);
  auto after_expiry = a.try_fill_lock("k", 2000ms);
  CHECK(after_expiry);
  // The expired holder's late release does not free the new holder's lock.
  other.release_fill_lock("k", *next);
  CHECK_FALSE(other.try_fill_lock("k", 2000ms));
}

TEST_CASE("composite_backend: fill locks are its read member's", "[redis][lock][composite]") {
  auto shared = std::make_shared<ccp::redis_backend>(options_for("composite-lock"));
  ccp::composite_backend c({{"redis", shared}, {"memory", std::make_shared<ccp::memory_backend>()}});
  auto token = c.try_fill_lock("k", 2000ms);
  REQUIRE(token);
  CHECK_FALSE(token->empty());
  CHECK_FALSE(shared->try_fill_lock("k", 2000ms));
  c.release_fill_lock("k", *token);
  CHECK(shared->try_fill_lock("k", 2000ms));
}
