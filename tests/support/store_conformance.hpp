// The conformance suite every store backend passes: what cache_page relies
// on (backend.hpp's store_backend table). Include it after defining
// CCP_CONFORMANCE_STORES as a list of factories, each a type with
//
//   static ccp::any_backend make(std::string const& test);   // a fresh, empty store
//   static constexpr char const* name;
//
// tests/unit/store_conformance_test.cpp runs it over memory, the map_store
// exemplar and a composite; tests/integration over Redis.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/generations.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ccp_test::conformance {

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;

inline ccp::resolved_tag plain(std::string name) { return {std::move(name), false}; }
inline ccp::resolved_tag versioned(std::string name) { return {std::move(name), true}; }
inline ccp::resolved_tag guard(std::string name) { return {std::move(name), false, std::chrono::hours(24), true}; }

// An entry built under `versions` of `tags`, fresh for `ttl`.
inline std::shared_ptr<ccp::cached_response const> entry(std::vector<ccp::resolved_tag> const& tags,
                                                         std::vector<std::uint64_t> const& versions,
                                                         std::chrono::milliseconds ttl = 60s) {
  auto e = std::make_shared<ccp::cached_response>();
  e->body = "page";
  e->headers = {{"Content-Type", "text/plain"}};
  e->stored_at = ccp::cached_response::clock::now();
  e->expires_at = e->stored_at + ttl;
  for (std::size_t i = 0; i < tags.size(); ++i)
    e->tags.push_back({tags[i].name, versions[i], tags[i].versioned, tags[i].guard});
  return e;
}

// Snapshot then store, as a fill does.
inline bool fill(ccp::any_backend const& b, std::string const& key, std::vector<ccp::resolved_tag> const& tags,
                 std::chrono::milliseconds ttl = 60s) {
  return b.store(key, entry(tags, b.tag_versions(tags), ttl));
}

} // namespace ccp_test::conformance

TEMPLATE_TEST_CASE("conformance: a stored entry is found under the counters it was built under", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("found");
  std::vector<ccp::resolved_tag> const tags{plain("catalog"), versioned("products"), guard("~target:k")};
  auto const snapshot = b.tag_versions(tags);
  CHECK(snapshot[0] != 0);
  CHECK(snapshot[1] != 0);
  CHECK(snapshot[2] == 0); // a guard reads 0 when missing
  CHECK(b.lookup("k", tags).versions == std::vector<std::uint64_t>{0, 0, 0}); // reading created nothing
  REQUIRE(b.store("k", entry(tags, snapshot)));
  auto found = b.lookup("k", tags);
  REQUIRE(found.entry != nullptr);
  CHECK(found.entry->body == "page");
  CHECK(found.versions == snapshot); // the store created the counters at the recorded versions
  CHECK_FALSE(found.soft_purged);
  CHECK(b.lookup("other", tags).entry == nullptr);
}

TEMPLATE_TEST_CASE("conformance: a fill whose tag was invalidated meanwhile is refused", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("refused");
  for (auto const& t : {plain("catalog"), versioned("products")}) {
    std::vector<ccp::resolved_tag> const tags{t};
    auto const snapshot = b.tag_versions(tags);
    b.invalidate_tag(t.name);
    CHECK_FALSE(b.store("k-" + t.name, entry(tags, snapshot)));
    CHECK(b.lookup("k-" + t.name, tags).entry == nullptr);
  }
}

TEMPLATE_TEST_CASE("conformance: a hard invalidation removes every entry of the tag, a soft one leaves them stale",
                   "[conformance]", CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("purge");
  std::vector<ccp::resolved_tag> const tags{plain("catalog")};
  for (auto const* k : {"a", "b", "c"}) REQUIRE(fill(b, k, tags));
  auto const before = b.lookup("a", tags).versions[0];

  auto soft = b.invalidate_tag("catalog", ccp::purge_mode::soft);
  CHECK(soft.version != before);
  CHECK_FALSE(ccp::detail::never_invalidated(soft.version));
  auto stale = b.lookup("a", tags);
  REQUIRE(stale.entry != nullptr);
  CHECK(stale.soft_purged);
  CHECK(stale.versions[0] == soft.version);

  auto hard = b.invalidate_tag("catalog");
  CHECK(hard.version != soft.version);
  for (auto const* k : {"a", "b", "c"}) CHECK(b.lookup(k, tags).entry == nullptr);
  REQUIRE(fill(b, "a", tags)); // built under the new version
  CHECK(b.lookup("a", tags).entry != nullptr);
}

TEMPLATE_TEST_CASE("conformance: a tag the handler added, not requested, still invalidates the entry", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("added");
  std::vector<ccp::resolved_tag> const requested{plain("catalog")};
  std::vector<ccp::resolved_tag> const all{plain("catalog"), plain("product-7")};
  REQUIRE(b.store("k", entry(all, b.tag_versions(all))));
  REQUIRE(b.lookup("k", requested).entry != nullptr);
  b.invalidate_tag("product-7");
  CHECK(b.lookup("k", requested).entry == nullptr);
}

TEMPLATE_TEST_CASE("conformance: a guard is bumped by invalidation, never created by a fill", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("guard");
  std::vector<ccp::resolved_tag> const tags{plain("catalog"), guard("~target:k")};
  auto const snapshot = b.tag_versions(tags);
  REQUIRE(b.store("k", entry(tags, snapshot)));
  CHECK(b.lookup("k", tags).versions[1] == 0);
  b.invalidate_internal_tag("~target:k");
  CHECK(b.lookup("k", tags).entry == nullptr);
  CHECK_FALSE(b.store("k", entry(tags, snapshot))); // built before the unsafe request
  REQUIRE(fill(b, "k", tags));
  CHECK(b.lookup("k", tags).entry != nullptr);
}

TEMPLATE_TEST_CASE("conformance: erase removes one entry, an expired entry is a miss", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("erase");
  std::vector<ccp::resolved_tag> const tags{plain("catalog")};
  REQUIRE(fill(b, "a", tags));
  REQUIRE(fill(b, "b", tags));
  CHECK(b.erase("a"));
  CHECK_FALSE(b.erase("a"));
  CHECK(b.lookup("a", tags).entry == nullptr);
  CHECK(b.lookup("b", tags).entry != nullptr);
  CHECK(b.invalidate_tag("catalog").entries_removed == 1); // "a" left the index with its entry

  REQUIRE(fill(b, "short", tags, 100ms));
  std::this_thread::sleep_for(300ms);
  CHECK(b.lookup("short", tags).entry == nullptr);
}

TEMPLATE_TEST_CASE("conformance: concurrent first fills of pages sharing a tag both store", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("adopt");
  std::vector<ccp::resolved_tag> const tags{plain("catalog"), versioned("products")};
  auto const first = b.tag_versions(tags), second = b.tag_versions(tags); // two proposals
  REQUIRE(b.store("a", entry(tags, first)));
  CHECK(b.store("b", entry(tags, second))); // adopts the counters the first store created
  auto const found = b.lookup("b", tags);
  REQUIRE(found.entry != nullptr);
  CHECK(found.versions == b.lookup("a", tags).versions);
  b.invalidate_tag("products");
  CHECK(b.lookup("a", tags).entry == nullptr);
  CHECK(b.lookup("b", tags).entry == nullptr);
}

TEMPLATE_TEST_CASE("conformance: a fill lock taken with a lookup reads under it, and the store releases it", "[conformance]",
                   CCP_CONFORMANCE_STORES) {
  using namespace ccp_test::conformance;
  auto b = TestType::make("fused-lock");
  std::vector<ccp::resolved_tag> const tags{plain("catalog"), guard("~target:k")};
  auto first = b.try_fill_lock_and_lookup("k", tags, 2000ms);
  REQUIRE(first.token);
  CHECK(first.found.entry == nullptr);
  CHECK(first.found.versions.size() == tags.size());
  if (!first.token->empty()) // a store without fill locks grants every one, empty
    CHECK_FALSE(b.try_fill_lock_and_lookup("k", tags, 2000ms).token);
  auto const before = b.tag_versions(tags);
  REQUIRE(b.store_and_release_fill_lock("k", entry(tags, before), *first.token));
  auto again = b.try_fill_lock_and_lookup("k", tags, 2000ms); // free again: the store released it
  REQUIRE(again.token);
  REQUIRE(again.found.entry != nullptr);
  CHECK(again.found.entry->body == "page");
  CHECK(again.found.versions == b.lookup("k", tags).versions);
  // A refused store releases it too.
  b.invalidate_tag("catalog");
  CHECK_FALSE(b.store_and_release_fill_lock("k", entry(tags, before), *again.token));
  CHECK(b.try_fill_lock_and_lookup("k", tags, 2000ms).token);
}
