// The backend registry (registry.hpp), with the memory backend and stats.
#include <custom_cache_page/registry.hpp>
#include <custom_cache_page/stats.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>

#include "../support/scoped_env.hpp"
#include "../support/helpers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
using ccp_test::what_of;
using ccp_test::entry_with;
using ccp_test::scoped_env;
using namespace std::chrono_literals;

namespace {

// A backend whose invalidation fails for tags starting with "bad"; it
// records every tag it was asked to invalidate.
struct flaky_backend {
  std::vector<std::string> attempted;

  ccp::lookup_result lookup(std::string const&, std::span<ccp::resolved_tag const> tags) {
    return {nullptr, std::vector<std::uint64_t>(tags.size(), 0)};
  }
  std::vector<std::uint64_t> tag_versions(std::span<ccp::resolved_tag const> tags) {
    return std::vector<std::uint64_t>(tags.size(), std::uint64_t{1} << 40);
  }
  bool store(std::string const&, std::shared_ptr<ccp::cached_response const>) { return true; }
  bool erase(std::string const&) { return false; }
  ccp::invalidation_result invalidate_tag(std::string const& tag, ccp::purge_mode) {
    attempted.push_back(tag);
    if (tag.starts_with("bad")) throw std::runtime_error("store unreachable");
    ccp::invalidation_result r;
    r.tag = tag;
    r.version = 7;
    return r;
  }
};
static_assert(ccp::store_backend<flaky_backend>);

// Counts its own destruction, so a test can tell when the registry and the
// requests that used it have let it go.
struct tracked_backend : flaky_backend {
  explicit tracked_backend(std::shared_ptr<std::atomic<int>> d) : destroyed(std::move(d)) {}
  ~tracked_backend() { ++*destroyed; }
  std::shared_ptr<std::atomic<int>> destroyed;
};

} // namespace

TEST_CASE("a replaced or cleared backend is freed once nothing uses it", "[registry][ownership]") {
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  ccp::registry reg;
  reg.add("pages", ccp::any_backend(std::make_shared<tracked_backend>(destroyed)));
  ccp::any_backend in_use = reg.get("pages"); // a request still running with it
  reg.add("pages", ccp::any_backend(std::make_shared<flaky_backend>()));
  CHECK(*destroyed == 0);
  CHECK(in_use.target<tracked_backend>() != nullptr);
  in_use = {};
  CHECK(*destroyed == 1);

  reg.add("again", ccp::any_backend(std::make_shared<tracked_backend>(destroyed)));
  reg.clear();
  CHECK(*destroyed == 2);
}

TEST_CASE("concurrent first requests build one default backend from CUSTOM_CACHE_PAGE_BACKEND", "[registry][ownership]") {
  scoped_env env("CUSTOM_CACHE_PAGE_BACKEND", "memory://?max_bytes=3MiB");
  for (int round = 0; round < 20; ++round) {
    ccp::registry reg(true);
    std::atomic<bool> go{false};
    std::vector<ccp::any_backend> seen(8);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i)
      threads.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        seen[i] = reg.get_default();
      });
    go = true;
    for (auto& t : threads) t.join();
    REQUIRE(reg.names() == std::vector<std::string>{"default"});
    for (auto const& b : seen) {
      REQUIRE(b.target<ccp::memory_backend>() != nullptr);
      CHECK(b.target<ccp::memory_backend>() == seen[0].target<ccp::memory_backend>());
      CHECK(b.target<ccp::memory_backend>()->options().max_bytes == (std::size_t{3} << 20));
    }
  }
}

TEST_CASE("a bad CUSTOM_CACHE_PAGE_BACKEND fails every time, never falling back to memory", "[registry][ownership]") {
  scoped_env env("CUSTOM_CACHE_PAGE_BACKEND", "nosuchscheme://host");
  ccp::registry reg(true);
  CHECK_THROWS_AS(reg.get_default(), ccp::unknown_backend_error);
  CHECK_THROWS_AS(reg.get_default(), ccp::unknown_backend_error);
  CHECK_THROWS_AS(reg.invalidate_tag("t"), ccp::unknown_backend_error);
  CHECK(reg.names().empty());
}

TEST_CASE("an unknown backend name throws unknown_backend_error naming it", "[registry]") {
  ccp::registry reg;
  CHECK_THROWS_AS(reg.get("no-such-backend"), ccp::unknown_backend_error);
  CHECK_THAT(what_of([&] { reg.get("no-such-backend"); }), Catch::Contains("no-such-backend"));
  try {
    reg.get("other-name");
    FAIL("get did not throw");
  } catch (ccp::unknown_backend_error const& e) {
    CHECK(e.name() == "other-name");
    CHECK(e.code() == ccp::error::unknown_backend);
  }
  CHECK_THROWS_AS(reg.set_default("nope"), ccp::unknown_backend_error);
  CHECK_THROWS_AS(reg.invalidate_tag("t", "nope"), ccp::unknown_backend_error);
}

TEST_CASE("make_backend builds a memory backend with its options", "[registry]") {
  ccp::registry reg;
  auto b = reg.make_backend("memory://?max_bytes=1MiB&max_entry=64k");
  REQUIRE(b);
  auto* m = b.target<ccp::memory_backend>();
  REQUIRE(m != nullptr);
  CHECK(m->options().max_bytes == std::size_t{1} << 20);
  CHECK(m->options().max_entry == std::size_t{64} << 10);
  CHECK(b.target<flaky_backend>() == nullptr);

  auto plain = reg.make_backend("memory://?max_bytes=1048576&max_entry=2G");
  REQUIRE(plain.target<ccp::memory_backend>() != nullptr);
  CHECK(plain.target<ccp::memory_backend>()->options().max_bytes == 1048576);
  CHECK(plain.target<ccp::memory_backend>()->options().max_entry == std::size_t{2} << 30);

  auto defaults = reg.make_backend("memory://");
  CHECK(defaults.target<ccp::memory_backend>()->options().max_bytes == ccp::memory_backend_options{}.max_bytes);
}

TEST_CASE("make_backend rejects unknown schemes and bad options", "[registry]") {
  ccp::registry reg;
  CHECK_THROWS_AS(reg.make_backend("nosuchscheme://host"), ccp::unknown_backend_error);
  CHECK_THAT(what_of([&] { reg.make_backend("nosuchscheme://host"); }), Catch::Contains("nosuchscheme"));
  CHECK_THROWS_AS(reg.make_backend("not a url"), ccp::cache_error);

  for (char const* url : {"memory://?max_bytes=lots", "memory://?max_bytes=", "memory://?max_bytes=12XB",
                          "memory://?max_entry=-1", "memory://?unknown_option=1"}) {
    INFO(url);
    try {
      reg.make_backend(url);
      FAIL("accepted");
    } catch (ccp::cache_error const& e) {
      CHECK(e.code() == ccp::error::bad_configuration);
    }
  }
}

TEST_CASE("a size that overflows is rejected, not wrapped", "[registry]") {
  // 2^64 + 5 bytes would wrap to 5 and silently give a tiny budget; 2^54 GiB
  // overflows in the multiplication.
  ccp::registry reg;
  CHECK_THROWS_AS(reg.make_backend("memory://?max_bytes=18446744073709551621"), ccp::cache_error);
  CHECK_THROWS_AS(reg.make_backend("memory://?max_bytes=18014398509481984G"), ccp::cache_error);
}

TEST_CASE("scheme factories can be added", "[registry]") {
  ccp::registry reg;
  auto shared = std::make_shared<flaky_backend>();
  reg.add_scheme("flaky", [shared](boost::urls::url_view const&) { return ccp::any_backend(shared); });
  CHECK(reg.make_backend("flaky://x").target<flaky_backend>() == shared.get());
}

TEST_CASE("the default backend is an in-memory one named memory", "[registry]") {
  ccp::registry reg;
  CHECK(reg.names().empty());
  CHECK(reg.default_name() == "memory");
  auto b = reg.get_default();
  REQUIRE(b);
  CHECK(b.target<ccp::memory_backend>() != nullptr);
  CHECK(reg.names() == std::vector<std::string>{"memory"});
  // The same backend every time, not a fresh one.
  CHECK(reg.get_default().target<ccp::memory_backend>() == b.target<ccp::memory_backend>());
  CHECK(reg.get("memory").target<ccp::memory_backend>() == b.target<ccp::memory_backend>());
}

TEST_CASE("the default is set_default's choice, else the backend named default", "[registry]") {
  ccp::registry reg;
  reg.add("pages", "memory://?max_bytes=1MiB");
  reg.add("other", ccp::any_backend(std::make_shared<flaky_backend>()));
  CHECK(reg.default_name() == "memory"); // adding a backend does not make it the default
  reg.add("default", ccp::any_backend(std::make_shared<flaky_backend>()));
  CHECK(reg.default_name() == "memory"); // the implicit one was already created
  ccp::registry fresh;
  fresh.add("default", ccp::any_backend(std::make_shared<flaky_backend>()));
  CHECK(fresh.default_name() == "default");
  reg.set_default("other");
  CHECK(reg.get_default().target<flaky_backend>() != nullptr);
  reg.clear();
  CHECK(reg.names().empty());
  CHECK(reg.default_name() == "memory");
}

TEST_CASE("invalidate_tag removes plain and versioned entries of the same name", "[registry]") {
  ccp::registry reg;
  auto mem = std::make_shared<ccp::memory_backend>();
  reg.add("mem", ccp::any_backend(mem));
  reg.set_default("mem");

  std::vector<ccp::resolved_tag> plain{{"products", false}};
  std::vector<ccp::resolved_tag> versioned{{"products", true}};
  auto pv = mem->tag_versions(plain);
  auto vv = mem->tag_versions(versioned);
  REQUIRE(mem->store("plain-page", entry_with({{"products", pv[0], false}})));
  REQUIRE(mem->store("versioned-page", entry_with({{"products", vv[0], true}})));
  std::vector<ccp::resolved_tag> users{{"users", false}};
  REQUIRE(mem->store("unrelated", entry_with({{"users", mem->tag_versions(users)[0], false}})));
  REQUIRE(mem->lookup("plain-page", plain).entry);
  REQUIRE(mem->lookup("versioned-page", versioned).entry);

  auto size_before = mem->size();
  auto r = reg.invalidate_tag("products"); // the default backend
  CHECK(r.tag == "products");
  CHECK(r.backend == "mem");
  // The plain entry is removed through the index; a versioned one may be
  // left to its counter. Either way the count is what left the store.
  CHECK(r.entries_removed >= 1);
  CHECK(r.entries_removed == size_before - mem->size());
  CHECK(r.version != 0);
  CHECK(r.version != vv[0]);

  auto after_plain = mem->lookup("plain-page", plain);
  auto after_versioned = mem->lookup("versioned-page", versioned);
  CHECK_FALSE(after_plain.entry);
  CHECK_FALSE(after_versioned.entry);
  REQUIRE(after_versioned.versions.size() == 1);
  CHECK(after_versioned.versions[0] == r.version);
  CHECK(mem->lookup("unrelated", users).entry); // other tags untouched
}

TEST_CASE("invalidate_tag normalises the tag and refuses an empty one", "[registry]") {
  ccp::registry reg;
  auto flaky = std::make_shared<flaky_backend>();
  reg.add("flaky", ccp::any_backend(flaky));
  reg.set_default("flaky");
  auto r = reg.invalidate_tag(" product\r\n-1 ");
  CHECK(r.tag == "product-1");
  CHECK(flaky->attempted == std::vector<std::string>{"product-1"});
  CHECK_THROWS_AS(reg.invalidate_tag(" \r\n"), ccp::invalidation_error);
  CHECK(flaky->attempted.size() == 1);
}

TEST_CASE("invalidate_tags attempts every tag, then reports the first failure", "[registry]") {
  ccp::registry reg;
  auto flaky = std::make_shared<flaky_backend>();
  reg.add("flaky", ccp::any_backend(flaky));
  try {
    reg.invalidate_tags({"a", "bad-1", "b", "bad-2", "c"}, "flaky");
    FAIL("invalidate_tags reported success for a failed invalidation");
  } catch (ccp::invalidation_error const& e) {
    CHECK(e.tag() == "bad-1");
    CHECK_THAT(std::string(e.what()), Catch::Contains("store unreachable"));
    CHECK(e.code() == ccp::error::invalidation_failed);
  }
  CHECK(flaky->attempted == std::vector<std::string>{"a", "bad-1", "b", "bad-2", "c"});

  auto ok = reg.invalidate_tags({"x", "y"}, "flaky");
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].tag == "x");
  CHECK(ok[1].backend == "flaky");
  CHECK(ok[1].version == 7);
}

TEST_CASE("async_invalidate_tag: the outcomes of invalidate_tag, awaited", "[registry][awaitable]") {
  namespace net = boost::asio;
  ccp::registry reg;
  auto flaky = std::make_shared<flaky_backend>();
  reg.add("flaky", ccp::any_backend(flaky));
  net::io_context ioc(1);
  auto awaited = [&](std::string tag, std::string backend) {
    auto f = net::co_spawn(ioc, reg.async_invalidate_tag(std::move(tag), std::move(backend)), net::use_future);
    ioc.restart();
    ioc.run();
    return f.get();
  };
  auto const r = awaited(" product\r\n-1 ", "flaky");
  CHECK(r.tag == "product-1");
  CHECK(r.backend == "flaky");
  CHECK(r.version == 7);
  CHECK_THAT(what_of([&] { awaited("bad-1", "flaky"); }), Catch::Contains("store unreachable"));
  CHECK_THROWS_AS(awaited("bad-2", "flaky"), ccp::invalidation_error);
  CHECK_THROWS_AS(awaited("t", "nope"), ccp::unknown_backend_error);
  CHECK_THROWS_AS(awaited(" \r\n", "flaky"), ccp::invalidation_error);
  CHECK(flaky->attempted == std::vector<std::string>{"product-1", "bad-1", "bad-2"});
}

TEST_CASE("stats counts and exposes Prometheus text", "[stats]") {
  ccp::stats s;
  s.hit();
  s.hit();
  s.miss();
  s.store();
  s.not_stored(ccp::not_stored_reason::vary_star);
  s.not_stored(ccp::not_stored_reason::set_cookie);
  s.not_stored(ccp::not_stored_reason::set_cookie);
  auto snap = s.snapshot();
  CHECK(snap.hits == 2);
  CHECK(snap.misses == 1);
  CHECK(snap.stored == 1);
  CHECK(snap.not_stored_total() == 3);

  auto text = s.prometheus();
  CHECK_THAT(text, Catch::Contains("# TYPE custom_cache_page_hits_total counter\n"));
  CHECK_THAT(text, Catch::Contains("\ncustom_cache_page_hits_total 2\n"));
  CHECK_THAT(text, Catch::Contains("\ncustom_cache_page_misses_total 1\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE custom_cache_page_not_stored_total counter\n"));
  CHECK_THAT(text, Catch::Contains("custom_cache_page_not_stored_total{reason=\"vary-star\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("custom_cache_page_not_stored_total{reason=\"set-cookie\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("custom_cache_page_not_stored_total{reason=\"no-store\"} 0\n"));
  // Every reason has a line, and one TYPE line per metric family.
  for (std::size_t i = 0; i < static_cast<std::size_t>(ccp::not_stored_reason::count_); ++i) {
    auto reason = ccp::to_string(static_cast<ccp::not_stored_reason>(i));
    CHECK_THAT(text, Catch::Contains("{reason=\"" + std::string(reason) + "\"}"));
  }
  CHECK_THAT(s.prometheus("app_cache"), Catch::Contains("# TYPE app_cache_hits_total counter"));
}
