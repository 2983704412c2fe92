// composite_backend (backends/composite_backend.hpp), its composite:// URLs
// (registry.hpp) and the JSON configuration (config.hpp).
#include <custom_cache_page/backends/composite_backend.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/config.hpp>
#include <custom_cache_page/registry.hpp>

#include "../support/scoped_env.hpp"
#include "../support/helpers.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
using ccp_test::what_of;
using ccp_test::entry_with;
using ccp_test::scoped_env;
using namespace std::chrono_literals;

namespace {

// A member that records what it was asked and fails on request.
struct recording_backend {
  std::string header;          // prepare_response sets X-<header>: <tags>
  std::uint64_t version = 0;   // what tag_versions and lookup report
  bool fail_store = false;
  bool fail_invalidate = false;
  bool refuse_store = false;
  std::shared_ptr<ccp::cached_response const> held;
  std::vector<std::string> lookups, stores, erases, invalidations;

  ccp::lookup_result lookup(std::string const& key, std::span<ccp::resolved_tag const> tags) {
    lookups.push_back(key);
    return {held, std::vector<std::uint64_t>(tags.size(), version)};
  }
  std::vector<std::uint64_t> tag_versions(std::span<ccp::resolved_tag const> tags) {
    return std::vector<std::uint64_t>(tags.size(), version);
  }
  bool store(std::string const& key, std::shared_ptr<ccp::cached_response const> e) {
    stores.push_back(key);
    if (fail_store) throw ccp::cache_error(ccp::error::store_unavailable, header + " is down");
    if (refuse_store) return false;
    held = std::move(e);
    return true;
  }
  bool erase(std::string const& key) {
    erases.push_back(key);
    bool const had = held != nullptr;
    held = nullptr;
    return had;
  }
  ccp::invalidation_result invalidate_tag(std::string const& tag, ccp::purge_mode mode) {
    invalidations.push_back(tag + (mode == ccp::purge_mode::soft ? ":soft" : ":hard"));
    if (fail_invalidate) throw std::runtime_error(header + " purge answered 503");
    ccp::invalidation_result r;
    r.tag = tag;
    r.version = version + 1;
    r.entries_removed = 2;
    return r;
  }
  void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> tags) {
    std::string names;
    for (auto const t : tags) names += (names.empty() ? "" : " ") + std::string(t);
    f.set("X-" + header, names);
  }
};
static_assert(ccp::store_backend<recording_backend> && ccp::backend<recording_backend>);

std::shared_ptr<recording_backend> member(std::string header, std::uint64_t version = 0) {
  auto b = std::make_shared<recording_backend>();
  b->header = std::move(header);
  b->version = version;
  return b;
}

bool contains(std::string const& text, std::string const& part) { return text.find(part) != std::string::npos; }

} // namespace

TEST_CASE("a composite reads from its read member and writes to all", "[composite]") {
  auto a = member("A", 5), b = member("B", 9);
  std::vector<ccp::resolved_tag> const tags{{"t"}};

  SECTION("the first member by default") {
    ccp::composite_backend c({{"a", a}, {"b", b}});
    auto const e = entry_with({{"t", 5}});
    CHECK(c.store("k", e));
    CHECK(a->stores == std::vector<std::string>{"k"});
    CHECK(b->stores == std::vector<std::string>{"k"});
    auto const found = c.lookup("k", tags);
    CHECK(found.entry == e);
    CHECK(found.versions == std::vector<std::uint64_t>{5});
    CHECK(c.tag_versions(tags) == std::vector<std::uint64_t>{5});
    CHECK(a->lookups.size() == 1);
    CHECK(b->lookups.empty());
    CHECK(c.erase("k"));
    CHECK(a->erases.size() == 1);
    CHECK(b->erases.size() == 1);
  }
  SECTION("another member chosen by index, versions from it too") {
    ccp::composite_backend c({{"a", a}, {"b", b}}, {.read = 1, .versions = {}});
    CHECK(c.lookup("k", tags).versions == std::vector<std::uint64_t>{9});
    CHECK(c.tag_versions(tags) == std::vector<std::uint64_t>{9});
    CHECK(a->lookups.empty());
    b->refuse_store = true;
    CHECK_FALSE(c.store("k", entry_with({{"t", 9}}))); // the read member's answer
    CHECK(a->stores.size() == 1);
  }
  SECTION("versions from a member other than the read member") {
    ccp::composite_backend c({{"a", a}, {"b", b}}, {.read = 0, .versions = 1});
    CHECK(c.tag_versions(tags) == std::vector<std::uint64_t>{9});
    a->held = entry_with({{"t", 5}});
    auto const stale = c.lookup("k", tags);
    CHECK(stale.entry == nullptr); // recorded 5, the versions member says 9
    CHECK(stale.versions == std::vector<std::uint64_t>{9});
    a->held = entry_with({{"t", 9}});
    CHECK(c.lookup("k", tags).entry == a->held);
  }
  SECTION("bad member lists are refused") {
    CHECK(contains(what_of([&] { ccp::composite_backend c({}); }), "at least one member"));
    CHECK(contains(what_of([&] { ccp::composite_backend c({{"a", a}}, {.read = 1, .versions = {}}); }), "read=1 is out of range"));
    CHECK(contains(what_of([&] { ccp::composite_backend c({{"a", a}}, {.read = 0, .versions = 3}); }), "versions=3"));
  }
}

TEST_CASE("a store failing in one member keeps the others", "[composite]") {
  auto a = member("A"), b = member("B");
  ccp::composite_backend c({{"local", a}, {"cdn", b}});
  b->fail_store = true;
  auto const errors_before = ccp::global_stats().snapshot().errors;
  CHECK(c.store("k", entry_with({})));
  CHECK(a->held != nullptr);
  CHECK(c.store_failures(1) == 1);
  CHECK(c.store_failures(0) == 0);
  CHECK(ccp::global_stats().snapshot().errors == errors_before + 1);

  // The read member's failure is the composite's, after the others stored.
  a->fail_store = true;
  b->fail_store = false;
  CHECK_THROWS_AS(c.store("k2", entry_with({})), ccp::cache_error);
  CHECK(b->held != nullptr);
  CHECK(b->stores.back() == "k2");
}

TEST_CASE("invalidation reaches every member and reports each", "[composite]") {
  auto a = member("A", 10), b = member("B"), d = member("D");
  ccp::composite_backend c({{"memory", a}, {"varnish", b}, {"fastly", d}});

  auto const ok = c.invalidate_tag("product-1", ccp::purge_mode::soft);
  REQUIRE(ok.members.size() == 3);
  CHECK(ok.members[0].backend == "memory");
  CHECK(ok.members[1].backend == "varnish");
  CHECK(ok.members[2].backend == "fastly");
  CHECK(ok.version == 11);
  CHECK(ok.entries_removed == 6);
  CHECK(ok.mode == ccp::purge_mode::soft);
  CHECK(b->invalidations == std::vector<std::string>{"product-1:soft"});

  b->fail_invalidate = true;
  try {
    c.invalidate_tag("product-2", ccp::purge_mode::hard);
    FAIL("a failing member must make the invalidation throw");
  } catch (ccp::composite_invalidation_error const& e) {
    std::string const what = e.what();
    CHECK(contains(what, "'product-2'"));
    CHECK(contains(what, "'varnish'"));
    CHECK(contains(what, "B purge answered 503"));
    CHECK_FALSE(contains(what, "'memory'"));
    CHECK(e.tag() == "product-2");
    CHECK(e.code() == ccp::error::invalidation_failed);
    auto const& r = e.result();
    REQUIRE(r.members.size() == 3);
    CHECK(r.members[0].error.empty());
    CHECK(r.members[1].error == "B purge answered 503");
    CHECK(r.members[1].backend == "varnish");
    CHECK(r.members[2].error.empty());
    CHECK(r.version == 11);
  }
  // The members after the failing one were still invalidated.
  CHECK(a->invalidations.back() == "product-2:hard");
  CHECK(d->invalidations.back() == "product-2:hard");
}

TEST_CASE("through the registry a composite's failure is an invalidation_error", "[composite]") {
  ccp::registry r;
  auto a = member("A"), b = member("B");
  b->fail_invalidate = true;
  r.add("main", ccp::any_backend(std::make_shared<ccp::composite_backend>(
                    std::vector<ccp::composite_member>{{"memory", a}, {"varnish", b}})));
  CHECK_THROWS_AS(r.invalidate_tag("x", "main"), ccp::composite_invalidation_error);
  CHECK(a->invalidations.size() == 1);
}

TEST_CASE("every member adds its headers to a response", "[composite]") {
  auto a = member("A"), b = member("B");
  ccp::composite_backend c({{"a", a}, {"b", b}});
  boost::beast::http::fields f;
  std::vector<ccp::tag_version> const tags{{"x", 1}, {"~target:k", 1, false, true}, {"y", 2}};
  ccp::any_backend(std::make_shared<ccp::composite_backend>(std::vector<ccp::composite_member>{{"a", a}, {"b", b}}))
      .prepare_response(f, tags);
  CHECK(f["X-A"] == "x y"); // the guard is internal: no member sees it
  CHECK(f["X-B"] == "x y");
}

TEST_CASE("composite:// URLs name members or give their URLs", "[composite][registry]") {
  ccp::registry r;
  auto const cdn = member("CDN");
  r.add("cdn", ccp::any_backend(cdn));

  SECTION("names: registered backends are shared, others built from their scheme") {
    auto b = r.make_backend("composite://memory,cdn");
    auto* c = b.target<ccp::composite_backend>();
    REQUIRE(c != nullptr);
    REQUIRE(c->size() == 2);
    CHECK(c->member(0).name == "memory");
    CHECK(c->member(0).backend.target<ccp::memory_backend>() != nullptr);
    CHECK(c->member(1).name == "cdn");
    CHECK(c->member(1).backend.target<recording_backend>() == cdn.get());
  }
  SECTION("member URLs, percent-encoded, with read=") {
    auto b = r.make_backend("composite://?member=memory://%3Fmax_bytes%3D1MiB%26shards%3D2&member=memory://&read=1");
    auto* c = b.target<ccp::composite_backend>();
    REQUIRE(c != nullptr);
    REQUIRE(c->size() == 2);
    CHECK(c->read_index() == 1);
    CHECK(c->versions_index() == 1);
    auto* first = c->member(0).backend.target<ccp::memory_backend>();
    REQUIRE(first != nullptr);
    CHECK(first->options().max_bytes == std::size_t{1} << 20);
    CHECK(first->options().shards == 2);
    CHECK(c->member(1).name == "memory");
  }
  SECTION("names and URLs together, names first; versions=") {
    auto b = r.make_backend("composite://cdn?member=memory://&versions=1");
    auto* c = b.target<ccp::composite_backend>();
    REQUIRE(c != nullptr);
    CHECK(c->member(0).name == "cdn");
    CHECK(c->member(1).name == "memory");
    CHECK(c->read_index() == 0);
    CHECK(c->versions_index() == 1);
  }
  SECTION("errors name the member, the scheme or the option") {
    auto const unknown = what_of([&] { r.make_backend("composite://memory,nosuch"); });
    CHECK(contains(unknown, "member 1 'nosuch'"));
    CHECK(contains(unknown, "unknown cache backend 'nosuch'"));
    CHECK_THROWS_AS(r.make_backend("composite://memory,nosuch"), ccp::cache_error);
    CHECK(contains(what_of([&] { r.make_backend("composite://?member=ftp://x"); }), "'ftp'"));
    auto const bad_option = what_of([&] { r.make_backend("composite://?member=memory://%3Fcolour%3Dred"); });
    CHECK(contains(bad_option, "member 0 'memory'"));
    CHECK(contains(bad_option, "'colour'"));
    CHECK(contains(what_of([&] { r.make_backend("composite://memory?speed=2"); }), "unknown composite:// option 'speed'"));
    CHECK(contains(what_of([&] { r.make_backend("composite://memory?read=x"); }), "bad composite:// read: 'x'"));
    CHECK(contains(what_of([&] { r.make_backend("composite://memory?read=3"); }), "read=3 is out of range"));
    CHECK(contains(what_of([&] { r.make_backend("composite://"); }), "needs members"));
    CHECK(contains(what_of([&] { r.make_backend("composite://memory,,cdn"); }), "empty member name"));
  }
  SECTION("a member URL's password never appears in an error") {
    auto const what = what_of([&] { r.make_backend("composite://?member=nosuch://user:s3cret@host/"); });
    CHECK(contains(what, "'nosuch'"));
    CHECK_FALSE(contains(what, "s3cret"));
  }
}

TEST_CASE("the JSON configuration registers backends and the default", "[composite][config]") {
  ccp::registry r;
  scoped_env token("CCP_TEST_SECRET_SIZE", "2MiB");
  ccp::configure(r, R"({
    "DEFAULT_BACKEND": "main",
    "BACKENDS": {
      "main": {"BACKEND": "composite", "OPTIONS": {"backends": ["local", "memory://?shards=2"], "read": 0}},
      "local": {"BACKEND": "memory", "OPTIONS": {"max_bytes": {"ENV": "CCP_TEST_SECRET_SIZE"}, "shards": 4}},
      "other": {"BACKEND": "memory://?max_entry=64k"}
    }
  })");
  CHECK(r.default_name() == "main");
  auto* c = r.get("main").target<ccp::composite_backend>();
  REQUIRE(c != nullptr);
  REQUIRE(c->size() == 2);
  CHECK(c->member(0).name == "local");
  // The named member is the registered backend itself, not a copy.
  CHECK(c->member(0).backend.target<ccp::memory_backend>() == r.get("local").target<ccp::memory_backend>());
  auto* local = r.get("local").target<ccp::memory_backend>();
  REQUIRE(local != nullptr);
  CHECK(local->options().max_bytes == std::size_t{2} << 20);
  CHECK(local->options().shards == 4);
  CHECK(c->member(1).name == "memory");
  auto* other = r.get("other").target<ccp::memory_backend>();
  REQUIRE(other != nullptr);
  CHECK(other->options().max_entry == std::size_t{64} << 10);
}

TEST_CASE("JSON configuration errors name the backend and the key", "[composite][config]") {
  ccp::registry r;
  auto const error_of = [&](std::string const& json) { return what_of([&] { ccp::configure(r, json); }); };

  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "nosuch"}}})"), "backend 'x'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "nosuch"}}})"), "'nosuch'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": 3}}})"), "backend 'x', key 'BACKEND'"));
  auto const bad_option = error_of(R"({"BACKENDS": {"x": {"BACKEND": "memory", "OPTIONS": {"colour": "red"}}}})");
  CHECK(contains(bad_option, "backend 'x'"));
  CHECK(contains(bad_option, "'colour'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "memory", "OPTIONS": {"shards": null}}}})"),
                 "backend 'x', key 'OPTIONS.shards'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "memory", "OPTIONS": {"shards": [2, {"a": 1}]}}}})"),
                 "backend 'x', key 'OPTIONS.shards[1]'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "memory", "COLOUR": 1}}})"), "backend 'x', key 'COLOUR'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"c": {"BACKEND": "composite", "OPTIONS": {"backends": ["nope"]}}}})"),
                 "backend 'c', key 'OPTIONS.backends[0]'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"c": {"BACKEND": "composite", "OPTIONS": {"backends": ["c"]}}}})"),
                 "backend 'c', key 'OPTIONS.backends[0]'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"c": {"BACKEND": "composite", "OPTIONS": {"backends": "memory"}}}})"),
                 "backend 'c', key 'OPTIONS.backends'"));
  CHECK(contains(error_of(R"({"DEFAULT_BACKEND": "none", "BACKENDS": {"x": {"BACKEND": "memory"}}})"),
                 "key 'DEFAULT_BACKEND'"));
  CHECK(contains(error_of(R"({"BACKENDS": [1]})"), "key 'BACKENDS'"));
  CHECK(contains(error_of(R"({"BACKENDS": {)"), "not JSON"));
  CHECK(contains(error_of(R"({"BACKENDS": {}, "EXTRA": 1})"), "key 'EXTRA'"));
  CHECK(contains(error_of(R"({"BACKENDS": {"x": {"BACKEND": "memory", "OPTIONS": {"max_bytes": {"ENV": "CCP_TEST_UNSET_VAR"}}}}})"),
                 "backend 'x', key 'OPTIONS.max_bytes': environment variable CCP_TEST_UNSET_VAR is not set"));
  // Nothing was registered by a configuration that failed.
  CHECK(r.names().empty());
}

TEST_CASE("an empty configuration is valid, as CUSTOM_CACHE_PAGE = {} in Python", "[composite][config][python]") {
  ccp::registry r;
  ccp::configure(r, "{}");
  CHECK(r.names().empty());
  ccp::configure(r, R"({"DEFAULT_BACKEND": "local", "BACKENDS": {"local": {"BACKEND": "memory"}}})");
  ccp::configure(r, R"({"DEFAULT_BACKEND": "local"})"); // no BACKENDS: none added, a registered default
  CHECK(r.names() == std::vector<std::string>{"local"});
  // No BACKEND: the default store (Python: "django"); read_from is Python's name for read.
  ccp::configure(r, R"({"BACKENDS": {"plain": {}, "both": {"BACKEND": "composite",
                        "OPTIONS": {"backends": ["plain", "memory"], "read_from": 1}}}})");
  CHECK(r.get("plain").target<ccp::memory_backend>() != nullptr);
  CHECK(contains(what_of([&] {
                   ccp::configure(r, R"({"BACKENDS": {"c": {"BACKEND": "composite", "OPTIONS": {"backends": ["memory"], "read_from": 1}}}})");
                 }),
                 "out of range"));
}

TEST_CASE("a secret from the environment never appears in an error", "[composite][config]") {
  ccp::registry r;
  scoped_env secret("CCP_TEST_SECRET", "hunter2-token");
  auto const what = what_of([&] {
    ccp::configure(r, R"({"BACKENDS": {"x": {"BACKEND": "memory", "OPTIONS": {"max_bytes": {"ENV": "CCP_TEST_SECRET"}}}}})");
  });
  CHECK(contains(what, "backend 'x'"));
  CHECK_FALSE(contains(what, "hunter2"));
}
