// The in-memory backend (backends/memory_backend.hpp): entries, TTLs, tag
// counters, the surrogate index and the byte budget.
#include <custom_cache_page/backends/memory_backend.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;

namespace {

using clock_type = ccp::cached_response::clock;

std::shared_ptr<ccp::cached_response> make_entry(std::string body, std::vector<ccp::tag_version> tags = {},
                                                 clock_type::duration ttl = 60s) {
  auto e = std::make_shared<ccp::cached_response>();
  e->body = std::move(body);
  e->stored_at = clock_type::now();
  e->expires_at = e->stored_at + ttl;
  e->tags = std::move(tags);
  return e;
}

std::vector<ccp::resolved_tag> one_tag(std::string name, bool versioned = true, std::chrono::seconds ttl = ccp::default_version_ttl) {
  return {ccp::resolved_tag{std::move(name), versioned, ttl}};
}

// An entry recorded under the current version of `tag`, as cache_page builds it.
template <class Backend>
std::shared_ptr<ccp::cached_response> tagged_entry(Backend& b, std::string const& tag, bool versioned = true,
                                                   std::string body = "page") {
  auto versions = b.tag_versions(one_tag(tag, versioned));
  return make_entry(std::move(body), {{tag, versions.at(0), versioned}});
}

} // namespace

TEST_CASE("memory backend: lookup, store, erase", "[memory_backend]") {
  ccp::memory_backend b;
  CHECK_FALSE(b.lookup("k", {}).entry);
  auto e = make_entry("hello");
  CHECK(b.store("k", e));
  auto found = b.lookup("k", {});
  REQUIRE(found.entry);
  CHECK(found.entry->body == "hello");
  CHECK(found.entry == e); // shared, not copied
  CHECK(b.size() == 1);
  CHECK(b.bytes() > 0);

  // A store under the same key replaces the entry.
  CHECK(b.store("k", make_entry("second")));
  CHECK(b.lookup("k", {}).entry->body == "second");
  CHECK(b.size() == 1);

  CHECK(b.erase("k"));
  CHECK_FALSE(b.erase("k"));
  CHECK_FALSE(b.lookup("k", {}).entry);
  CHECK(b.size() == 0);
  CHECK(b.bytes() == 0);
}

TEST_CASE("memory backend: an expired entry is a miss", "[memory_backend]") {
  ccp::memory_backend b;
  b.store("old", make_entry("stale", {}, -1s));
  b.store("edge", make_entry("stale", {}, 0s));
  b.store("fresh", make_entry("fresh", {}, 60s));
  CHECK_FALSE(b.lookup("old", {}).entry);
  CHECK_FALSE(b.lookup("edge", {}).entry);
  CHECK(b.lookup("fresh", {}).entry);
}

TEST_CASE("memory backend: lookup reports one version per tag, 0 when no counter", "[memory_backend]") {
  ccp::memory_backend b;
  std::vector<ccp::resolved_tag> tags{{"a", true}, {"b", false}};
  auto r = b.lookup("k", tags);
  CHECK(r.versions == std::vector<std::uint64_t>{0, 0});
  auto v = b.tag_versions(tags);
  REQUIRE(v.size() == 2);
  // Proposals: even (no invalidation made them), and written by nothing yet.
  CHECK(v[0] % 2 == 0);
  CHECK(v[1] % 2 == 0);
  CHECK(b.counter_count() == 0);
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{0, 0});
  REQUIRE(b.store("k", make_entry("page", {{"a", v[0], true}, {"b", v[1], false}})));
  CHECK(b.counter_count() == 2);
  CHECK(b.lookup("k", tags).versions == v);
  CHECK(b.tag_versions(tags) == v); // stable until bumped
}

TEST_CASE("memory backend: fills whose responses are not stored leave nothing behind", "[memory_backend][bounded]") {
  ccp::memory_backend b;
  for (int i = 0; i < 1000; ++i) {
    auto tags = one_tag("category-" + std::string(4096, 'x') + std::to_string(i), false);
    CHECK(b.tag_versions(tags).at(0) != 0);
  }
  CHECK(b.counter_count() == 0);
  CHECK(b.bytes() == 0);
}

TEST_CASE("memory backend: concurrent first fills of pages sharing a tag all store", "[memory_backend]") {
  // Both snapshots were taken before either store created the counter: the
  // second store adopts the counter the first one created.
  ccp::memory_backend b;
  auto tags = one_tag("products");
  auto first = b.tag_versions(tags);
  auto second = b.tag_versions(tags);
  CHECK(first != second);
  CHECK(b.store("page-1", make_entry("1", {{"products", first[0], true}})));
  CHECK(b.store("page-2", make_entry("2", {{"products", second[0], true}})));
  CHECK(b.lookup("page-1", tags).entry);
  REQUIRE(b.lookup("page-2", tags).entry);
  CHECK(b.lookup("page-2", tags).entry->tags.at(0).version == first[0]);
  // Both are invalidated together.
  b.invalidate_tag("products");
  CHECK_FALSE(b.lookup("page-1", tags).entry);
  CHECK_FALSE(b.lookup("page-2", tags).entry);
}

TEST_CASE("memory backend: a first fill that an invalidation overtook is refused, never adopted", "[memory_backend]") {
  ccp::memory_backend b;
  auto tags = one_tag("products");
  SECTION("the invalidation created the counter") {
    auto proposed = b.tag_versions(tags);
    b.invalidate_tag("products");
    CHECK_FALSE(b.store("page", make_entry("old", {{"products", proposed[0], true}})));
  }
  SECTION("another fill created it, then an invalidation bumped it") {
    auto proposed = b.tag_versions(tags);
    REQUIRE(b.store("other", make_entry("x", {{"products", b.tag_versions(tags)[0], true}})));
    b.invalidate_tag("products");
    CHECK_FALSE(b.store("page", make_entry("old", {{"products", proposed[0], true}})));
  }
  SECTION("bumped twice: still not taken for a counter no invalidation touched") {
    auto proposed = b.tag_versions(tags);
    REQUIRE(b.store("other", make_entry("x", {{"products", b.tag_versions(tags)[0], true}})));
    b.invalidate_tag("products");
    b.invalidate_tag("products");
    CHECK_FALSE(b.store("page", make_entry("old", {{"products", proposed[0], true}})));
  }
  CHECK_FALSE(b.lookup("page", tags).entry);
}

TEST_CASE("memory backend: a counter and its floor count against the byte budget", "[memory_backend][bounded]") {
  ccp::memory_backend b;
  auto const empty = b.bytes();
  b.invalidate_tag("never-stored");
  CHECK(b.bytes() == empty + std::string("never-stored").size() + 64);
  CHECK(b.counter_count() == 1);
}

TEST_CASE("memory backend: versioned invalidation bumps the counter and misses", "[memory_backend]") {
  ccp::memory_backend b;
  auto tags = one_tag("products");
  auto v = b.tag_versions(tags);
  CHECK(b.store("page", make_entry("p", {{"products", v[0], true}})));
  auto hit = b.lookup("page", tags);
  REQUIRE(hit.entry);
  CHECK(hit.versions == v);

  auto r = b.invalidate_tag("products");
  CHECK(r.tag == "products");
  CHECK(r.version != v[0]);
  auto miss = b.lookup("page", tags);
  CHECK_FALSE(miss.entry);
  CHECK(miss.versions == std::vector<std::uint64_t>{r.version});

  // A new fill under the new version is served again.
  auto v2 = b.tag_versions(tags);
  CHECK(v2[0] == r.version);
  CHECK(b.store("page", make_entry("p2", {{"products", v2[0], true}})));
  CHECK(b.lookup("page", tags).entry);
}

TEST_CASE("memory backend: the entry's own tags decide, whatever the caller asks", "[memory_backend]") {
  // A tag added by the handler (fill_context) is recorded in the entry but
  // not in the request's tag list: invalidating it must still miss.
  ccp::basic_memory_backend<ccp::null_surrogate_index> b;
  auto e = tagged_entry(b, "product-42");
  REQUIRE(b.store("page", e));
  REQUIRE(b.lookup("page", {}).entry);
  b.invalidate_tag("product-42");
  CHECK_FALSE(b.lookup("page", {}).entry);
}

TEST_CASE("memory backend: counters start at a fresh random generation", "[memory_backend]") {
  // A lost counter must not restart where entries built under an old one
  // could match again: invalidation starts a missing counter at random.
  ccp::memory_backend a, b;
  auto const va = a.invalidate_tag("never-seen").version;
  auto const vb = b.invalidate_tag("never-seen").version;
  CHECK(va >= (std::uint64_t{1} << 32));
  CHECK(va < (std::uint64_t{1} << 62));
  CHECK(va != vb);
  // A fill's proposal is large too, and never what an invalidation drew.
  auto const proposed = a.tag_versions(one_tag("t"))[0];
  CHECK(proposed >= (std::uint64_t{1} << 32));
  CHECK(proposed < (std::uint64_t{1} << 62));
  CHECK(proposed != a.invalidate_tag("t").version);
}

TEST_CASE("memory backend: a counter created by a store lives as long as its entry", "[memory_backend]") {
  ccp::memory_backend b;
  auto tags = one_tag("short");
  auto v = b.tag_versions(tags)[0];
  REQUIRE(b.store("k", make_entry("x", {{"short", v, true}}, 200ms)));
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{v});
  std::this_thread::sleep_for(300ms);
  // Entry and counter are gone together.
  CHECK_FALSE(b.lookup("k", tags).entry);
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{0});
}

TEST_CASE("memory backend: a store after an invalidation is refused", "[memory_backend]") {
  // The handler read the versions, then the data changed and the tag was
  // invalidated while it ran: its response is stale and must not be stored.
  ccp::memory_backend b;
  auto tags = one_tag("products");
  auto before = b.tag_versions(tags);
  b.invalidate_tag("products");
  CHECK_FALSE(b.store("page", make_entry("stale", {{"products", before[0], true}})));
  CHECK_FALSE(b.lookup("page", tags).entry);
  CHECK(b.size() == 0);

  // Same for a plain tag.
  auto plain = one_tag("plain", false);
  auto pv = b.tag_versions(plain);
  b.invalidate_tag("plain");
  CHECK_FALSE(b.store("page", make_entry("stale", {{"plain", pv[0], false}})));
  CHECK(b.index_size() == 0);
}

TEST_CASE("memory backend: invalidating a plain tag removes its entries", "[memory_backend]") {
  ccp::memory_backend b;
  for (int i = 0; i < 3; ++i) REQUIRE(b.store("cat-" + std::to_string(i), tagged_entry(b, "cat", false)));
  REQUIRE(b.store("other", tagged_entry(b, "other", false)));
  CHECK(b.size() == 4);
  CHECK(b.index_size() == 4);

  auto r = b.invalidate_tag("cat");
  CHECK(r.entries_removed == 3);
  CHECK(b.size() == 1);
  CHECK(b.index_size() == 1);
  for (int i = 0; i < 3; ++i) CHECK_FALSE(b.lookup("cat-" + std::to_string(i), one_tag("cat", false)).entry);
  CHECK(b.lookup("other", one_tag("other", false)).entry);

  CHECK(b.invalidate_tag("cat").entries_removed == 0); // nothing left
  CHECK(b.erase("other"));
  CHECK(b.index_size() == 0);
  CHECK(b.size() == 0);
  // Only the two counters are left: each its name and 64 bytes.
  CHECK(b.counter_count() == 2);
  CHECK(b.bytes() == (3 + 64) + (5 + 64));
}

TEST_CASE("memory backend: the index follows replacements", "[memory_backend]") {
  ccp::memory_backend b;
  // An entry with two tags, replaced by one with another tag.
  auto v = b.tag_versions(std::vector<ccp::resolved_tag>{{"x", false}, {"y", false}, {"z", false}});
  REQUIRE(b.store("k", make_entry("1", {{"x", v[0], false}, {"y", v[1], false}})));
  CHECK(b.index_size() == 2);
  REQUIRE(b.store("k", make_entry("2", {{"z", v[2], false}})));
  CHECK(b.index_size() == 1);
  CHECK(b.invalidate_tag("x").entries_removed == 0); // no longer under x
  CHECK(b.lookup("k", {}).entry);
  CHECK(b.invalidate_tag("z").entries_removed == 1);
  CHECK(b.index_size() == 0);
}

TEST_CASE("memory backend: the byte budget holds and CLOCK keeps read entries", "[memory_backend]") {
  // max_entry as large as max_bytes: one budget and one CLOCK queue, so the
  // order of evictions is deterministic.
  ccp::memory_backend_options o;
  o.max_bytes = 64 << 10;
  o.max_entry = 64 << 10;
  ccp::memory_backend b(o);
  std::string const body(1024, 'b');

  // Hot entries are read after every store; cold ones never.
  std::vector<std::string> hot, cold;
  for (int i = 0; i < 8; ++i) {
    hot.push_back("hot-" + std::to_string(i));
    REQUIRE(b.store(hot.back(), make_entry(body)));
    cold.push_back("cold-" + std::to_string(i));
    REQUIRE(b.store(cold.back(), make_entry(body)));
  }
  for (int i = 0; i < 500; ++i) {
    REQUIRE(b.store("filler-" + std::to_string(i), make_entry(body)));
    REQUIRE(b.bytes() <= o.max_bytes);
    for (auto const& k : hot) (void)b.lookup(k, {});
  }
  CHECK(b.size() < 500); // eviction happened
  std::size_t hot_left = 0, cold_left = 0;
  for (auto const& k : hot) hot_left += b.lookup(k, {}).entry ? 1 : 0;
  for (auto const& k : cold) cold_left += b.lookup(k, {}).entry ? 1 : 0;
  CHECK(hot_left == hot.size());
  CHECK(cold_left == 0);
}

namespace {
// backend.hpp: a store throws cache_error(entry_too_large) for an entry
// over the store's own limit.
template <class Backend>
void check_too_large(Backend& b, std::string const& key, std::shared_ptr<ccp::cached_response> e) {
  try {
    (void)b.store(key, std::move(e));
    FAIL("a too large entry was accepted");
  } catch (ccp::cache_error const& err) {
    CHECK(err.code() == ccp::error::entry_too_large);
  }
}
} // namespace

TEST_CASE("memory backend: an entry bigger than max_entry is not stored", "[memory_backend]") {
  ccp::memory_backend_options o;
  o.max_bytes = 1 << 20;
  o.max_entry = 4 << 10;
  ccp::memory_backend b(o);
  check_too_large(b, "big", make_entry(std::string(8 << 10, 'x')));
  CHECK_FALSE(b.lookup("big", {}).entry);
  CHECK(b.size() == 0);
  CHECK(b.bytes() == 0);
  CHECK(b.store("small", make_entry(std::string(1 << 10, 'x'))));
  CHECK(b.lookup("small", {}).entry);

  // Nor one bigger than the whole budget.
  ccp::memory_backend_options tiny;
  tiny.max_bytes = 2 << 10;
  ccp::memory_backend t(tiny);
  check_too_large(t, "big", make_entry(std::string(4 << 10, 'x')));
  CHECK_FALSE(t.lookup("big", {}).entry);
  CHECK(t.bytes() <= tiny.max_bytes);
}

TEST_CASE("memory backend: a guard tag is read, never created, and not indexed", "[memory_backend]") {
  // The target guard: fills read its counter (0 when missing); only an
  // invalidation creates or bumps it.
  ccp::memory_backend b;
  std::vector<ccp::resolved_tag> guard{{"target:/x", false}};
  guard[0].guard = true;
  CHECK(b.tag_versions(guard) == std::vector<std::uint64_t>{0});
  CHECK(b.tag_versions(guard) == std::vector<std::uint64_t>{0}); // still not created

  ccp::tag_version recorded;
  recorded.name = "target:/x";
  recorded.version = 0;
  recorded.guard = true;
  REQUIRE(b.store("page", make_entry("p", {recorded})));
  CHECK(b.index_size() == 0);
  CHECK(b.lookup("page", guard).entry);

  // A successful unsafe request bumps it: the old fill misses and a fill
  // that read the old value is refused.
  auto r = b.invalidate_tag("target:/x");
  CHECK_FALSE(b.lookup("page", guard).entry);
  CHECK_FALSE(b.store("page", make_entry("stale", {recorded})));
  CHECK(b.tag_versions(guard) == std::vector<std::uint64_t>{r.version});
}

TEST_CASE("memory backend without an index still misses after invalidation", "[memory_backend]") {
  ccp::basic_memory_backend<ccp::null_surrogate_index> b;
  REQUIRE(b.store("plain", tagged_entry(b, "t", false)));
  REQUIRE(b.store("versioned", tagged_entry(b, "t", true)));
  CHECK(b.index_size() == 0);
  auto r = b.invalidate_tag("t");
  CHECK(r.entries_removed == 0); // nothing indexed, nothing removed eagerly
  CHECK_FALSE(b.lookup("plain", one_tag("t", false)).entry);
  CHECK_FALSE(b.lookup("versioned", one_tag("t", true)).entry);
  CHECK(b.index_size() == 0);
}

TEST_CASE("memory backend: concurrent readers, writers and invalidations", "[memory_backend][concurrency]") {
  // Short and small: a smoke test for the sanitizer builds.
  ccp::memory_backend_options o;
  o.max_bytes = 32 << 10;
  ccp::memory_backend b(o);
  auto tags = one_tag("t");
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}; // Catch2 assertions are not thread-safe: count instead
  std::thread reader([&] {
    while (!stop.load()) {
      for (int i = 0; i < 50; ++i) {
        auto r = b.lookup("k-" + std::to_string(i), tags);
        if (r.entry && r.entry->body != std::string(512, 'c')) ++torn;
      }
    }
  });
  for (int round = 0; round < 2000; ++round) {
    auto v = b.tag_versions(tags);
    (void)b.store("k-" + std::to_string(round % 50), make_entry(std::string(512, 'c'), {{"t", v[0], true}}));
    if (round % 97 == 0) b.invalidate_tag("t");
    if (round % 13 == 0) b.erase("k-" + std::to_string(round % 50));
  }
  stop = true;
  reader.join();
  CHECK(torn == 0);
  CHECK(b.bytes() <= o.max_bytes);
}
