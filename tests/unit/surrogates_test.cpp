// Surrogate keys (surrogates.hpp) and tag resolution (tags.hpp, versioned.hpp).
#include <custom_cache_page/surrogates.hpp>
#include <custom_cache_page/tags.hpp>
#include <custom_cache_page/versioned.hpp>

#include "../support/messages.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

using ccp_test::make_header;

bool printable(std::string const& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x21 && u <= 0x7e;
  });
}

// The documented rule, written independently of the implementation: Python's
// key.strip().replace(" ", "-"), then control bytes removed and bytes
// outside ASCII percent-encoded.
std::string expected_normalized(std::string_view raw) {
  auto const space = [](char c) { return std::string_view(" \t\n\v\f\r\x1c\x1d\x1e\x1f").find(c) != std::string_view::npos; };
  while (!raw.empty() && space(raw.front())) raw.remove_prefix(1);
  while (!raw.empty() && space(raw.back())) raw.remove_suffix(1);
  std::string out;
  char buf[4];
  for (char c : raw) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0x20) {
      out += '-';
    } else if (u >= 0x80) {
      std::snprintf(buf, sizeof buf, "%%%02X", u);
      out += buf;
    } else if (u > 0x20 && u != 0x7f) {
      out += c;
    }
  }
  return out;
}

std::vector<std::string> names(std::vector<ccp::resolved_tag> const& tags) {
  std::vector<std::string> out;
  for (auto const& t : tags) out.push_back(t.name);
  return out;
}

ccp::resolved_tag const* find(std::vector<ccp::resolved_tag> const& tags, std::string const& name) {
  auto it = std::find_if(tags.begin(), tags.end(), [&](ccp::resolved_tag const& t) { return t.name == name; });
  return it == tags.end() ? nullptr : &*it;
}

} // namespace

TEST_CASE("normalize_surrogate follows the Python package, then drops controls", "[surrogates][python]") {
  // Python: SurrogateKeySet._normalize_key.
  CHECK(ccp::normalize_surrogate("product-42") == "product-42");
  CHECK(ccp::normalize_surrogate("key with spaces") == "key-with-spaces");
  CHECK(ccp::normalize_surrogate("  padded  ") == "padded");
  CHECK(ccp::normalize_surrogate("a  b") == "a--b");
  CHECK(ccp::normalize_surrogate("a b") != ccp::normalize_surrogate("ab"));
  // Our safety on top: no control byte survives (Python keeps the inner tab).
  CHECK(ccp::normalize_surrogate(" a b\tc\r\nd ") == "a-bcd");
  CHECK(ccp::normalize_surrogate(std::string("a\0b\x7f" "c\x01\x1f", 7)) == "abc");
  CHECK(ccp::normalize_surrogate("caf\xC3\xA9") == "caf%C3%A9");
  CHECK(ccp::normalize_surrogate("").empty());
  CHECK(ccp::normalize_surrogate(" \r\n\t").empty());
}

TEST_CASE("normalize_surrogate maps every byte value to printable ASCII", "[surrogates][property]") {
  for (int b = 0; b < 256; ++b) {
    std::string raw(1, static_cast<char>(b));
    std::string out = ccp::normalize_surrogate(raw);
    INFO("byte " << b);
    CHECK(printable(out));
    CHECK(out == expected_normalized(raw));
    if (b < 0x20 || b == 0x7f || b == 0x20) CHECK(out.empty());
    else if (b >= 0x80) CHECK(out.size() == 3);
    else CHECK(out == raw);
  }
}

TEST_CASE("normalize_surrogate output is printable for random strings", "[surrogates][property]") {
  std::mt19937 rng(12345); // fixed seed: a failure is reproducible
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  for (int i = 0; i < 2000; ++i) {
    std::string raw(static_cast<std::size_t>(len(rng)), '\0');
    for (auto& c : raw) c = static_cast<char>(byte(rng));
    std::string out = ccp::normalize_surrogate(raw);
    REQUIRE(printable(out));
    REQUIRE(out == expected_normalized(raw));
    REQUIRE(ccp::normalize_surrogate(out) == out); // idempotent
  }
}

TEST_CASE("surrogate_from_path joins path segments", "[surrogates]") {
  auto tag_of = [](std::string_view target) {
    auto h = make_header(target);
    return ccp::surrogate_from_path(ccp::request_view(h));
  };
  CHECK(tag_of("/api/products/") == "path-api-products");
  CHECK(tag_of("/api/products") == "path-api-products");
  CHECK(tag_of("/") == "path-root");
  CHECK(tag_of("/api/products?page=2") == "path-api-products");
  CHECK(tag_of("/caf%C3%A9/a%20b") == "path-caf%C3%A9-a-b");
  // Python: request.path.strip("/").replace("/", "-") or "root".
  CHECK(tag_of("/api/products/123/") == "path-api-products-123");
  CHECK(tag_of("//a//b//") == "path-a--b");
  CHECK(tag_of("///") == "path-root");
}

TEST_CASE("surrogate_from_view and surrogate_from_model", "[surrogates]") {
  CHECK(ccp::surrogate_from_view("product_list") == "view-product_list");
  CHECK(ccp::surrogate_from_view("product_detail") == "view-product_detail");
  CHECK(ccp::surrogate_from_view("a b\r\n") == "view-a-b");
  CHECK(ccp::surrogate_from_model("Product", 123) == "model-product-123");
  CHECK(ccp::surrogate_from_model("Product") == "model-product");
  CHECK(ccp::surrogate_from_model("Product", 7ull) == "model-product-7");
  CHECK(ccp::surrogate_from_model("OrderItem", -3) == "model-orderitem--3");
  CHECK(ccp::surrogate_from_model("Product", std::string("sku-AB12")) == "model-product-sku-AB12");
  CHECK(ccp::surrogate_from_model("Product", std::string_view("x")) == "model-product-x");
  CHECK(ccp::surrogate_from_model("Product", "with space") == "model-product-with-space");
}

TEST_CASE("surrogate_from_user tags a known user and nothing for anonymous", "[surrogates]") {
  auto user_tag = ccp::surrogate_from_user([](ccp::request_view const& r) -> std::optional<std::string> {
    if (!r.has("X-User")) return std::nullopt;
    return std::string(r.header("X-User"));
  });
  auto known = make_header("/x");
  known.set("X-User", "123");
  CHECK(user_tag(ccp::request_view(known)) == std::optional<std::string>("user-123"));

  auto anonymous = make_header("/x");
  CHECK_FALSE(user_tag(ccp::request_view(anonymous)).has_value());

  auto empty = make_header("/x");
  empty.set("X-User", "");
  CHECK_FALSE(user_tag(ccp::request_view(empty)).has_value());

  // Usable as a tag: anonymous requests get none.
  std::vector<ccp::tag> tags{user_tag};
  CHECK(names(ccp::resolve_tags(tags, ccp::request_view(known))) == std::vector<std::string>{"user-123"});
  CHECK(ccp::resolve_tags(tags, ccp::request_view(anonymous)).empty());
}

TEST_CASE("surrogate_from_query_params follows the request's order, skipping empty values", "[surrogates][python]") {
  // Python: ?category=shoes&brand=nike -> ["param-category-shoes", "param-brand-nike"].
  auto shoes = make_header("/x?category=shoes&brand=nike");
  CHECK(ccp::surrogate_from_query_params(ccp::request_view(shoes)) ==
        std::vector<std::string>{"param-category-shoes", "param-brand-nike"});

  // Each name once, where it first appears, with its last value (QueryDict.get);
  // empty values give no tag.
  auto h = make_header("/x?b=2&a=1&e=&a=3&c=x%20y&f");
  ccp::request_view r(h);
  CHECK(ccp::surrogate_from_query_params(r) == std::vector<std::string>{"param-b-2", "param-a-3", "param-c-x-y"});
  // Only the names given, in that list's order; an empty list gives none.
  CHECK(ccp::surrogate_from_query_params(r, {"c", "a", "e", "zzz"}) == std::vector<std::string>{"param-c-x-y", "param-a-3"});
  CHECK(ccp::surrogate_from_query_params(r, {}).empty());

  auto none = make_header("/x");
  CHECK(ccp::surrogate_from_query_params(ccp::request_view(none)).empty());
}

TEST_CASE("surrogate_key_set dedupes, drops empty keys and joins for a header", "[surrogates]") {
  ccp::surrogate_key_set set{"b", "a", "b", "", " ", "a\t"};
  CHECK(set.keys() == std::vector<std::string>{"b", "a"});
  CHECK(set.size() == 2);
  CHECK(set.contains("a"));
  CHECK_FALSE(set.contains("c"));
  CHECK(set.add("c"));
  CHECK_FALSE(set.add("c"));
  CHECK_FALSE(set.add("\r\n"));
  CHECK(set.to_header() == "b a c");

  ccp::surrogate_key_set other;
  CHECK(other.empty());
  CHECK(other.to_header().empty());
  other.add_all(std::vector<std::string>{"x", "y", "x"});
  CHECK(other.to_header() == "x y");
}

TEST_CASE("surrogate_key_set matches Python's SurrogateKeySet, from_header included", "[surrogates][python]") {
  ccp::surrogate_key_set set{"key with spaces", " products ", "a b", "ab", "products"};
  CHECK(set.keys() == std::vector<std::string>{"key-with-spaces", "products", "a-b", "ab"});
  CHECK(set.to_header() == "key-with-spaces products a-b ab");

  CHECK(ccp::surrogate_key_set::from_header("a b c").keys() == std::vector<std::string>{"a", "b", "c"});
  CHECK(ccp::surrogate_key_set::from_header("  a\t b  a ").keys() == std::vector<std::string>{"a", "b"});
  CHECK(ccp::surrogate_key_set::from_header("").empty());
  CHECK(ccp::surrogate_key_set::from_header(set.to_header()).keys() == set.keys());
}

TEST_CASE("a header-injection attempt in a surrogate key becomes harmless", "[surrogates]") {
  ccp::surrogate_key_set set;
  set.add("a\r\nX-Evil: 1");
  std::string value = set.to_header();
  CHECK(value.find('\r') == std::string::npos);
  CHECK(value.find('\n') == std::string::npos);
  CHECK(value.find(' ') == std::string::npos); // one key stays one key
  CHECK(value == "aX-Evil:-1");
  CHECK(set.size() == 1);
}

TEST_CASE("resolve_tags accepts names and every kind of tag callable", "[tags]") {
  auto h = make_header("/x?cat=shoes&id=9");
  ccp::request_view r(h);
  std::vector<ccp::tag> tags{
      "static",
      std::string("from-string"),
      std::string_view("from-view"),
      [](ccp::request_view const& v) { return "cat-" + v.query("cat"); },
      [](ccp::request_view const& v) -> std::optional<std::string> {
        if (v.has_query("id")) return "id-" + v.query("id");
        return std::nullopt;
      },
      [](ccp::request_view const&) -> std::optional<std::string> { return std::nullopt; },
      [](ccp::request_view const&) { return std::vector<std::string>{"list-1", "list-2"}; },
      [](ccp::request_view const&) -> char const* { return "from-cstr"; },
      [](ccp::request_view const&) -> char const* { return nullptr; },
  };
  CHECK(names(ccp::resolve_tags(tags, r)) == std::vector<std::string>{"static", "from-string", "from-view", "cat-shoes",
                                                                      "id-9", "list-1", "list-2", "from-cstr"});
  for (auto const& t : ccp::resolve_tags(tags, r)) {
    CHECK_FALSE(t.versioned);
    CHECK(t.version_ttl == ccp::default_version_ttl);
  }
}

TEST_CASE("resolve_tags normalises names, drops empty ones and merges duplicates", "[tags]") {
  auto h = make_header("/x");
  ccp::request_view r(h);
  std::vector<ccp::tag> tags{
      "a b",
      "ab",
      "",
      " \r\n",
      [](ccp::request_view const&) { return std::vector<std::string>{"ab", "", "c", "c"}; },
  };
  CHECK(names(ccp::resolve_tags(tags, r)) == std::vector<std::string>{"a-b", "ab", "c"});
}

TEST_CASE("a name versioned anywhere is versioned, with the longest counter lifetime", "[tags]") {
  auto h = make_header("/x");
  ccp::request_view r(h);
  std::vector<ccp::tag> tags{
      "products",
      ccp::versioned("products", 60s),
      ccp::versioned("other", 60s),
      ccp::versioned("other", 3600s),
      ccp::versioned("short", 10s),
      "plain",
  };
  auto resolved = ccp::resolve_tags(tags, r);
  REQUIRE(names(resolved) == std::vector<std::string>{"products", "other", "short", "plain"});
  CHECK(find(resolved, "products")->versioned);
  // A plain mention has a counter too, with the default lifetime.
  CHECK(find(resolved, "products")->version_ttl == ccp::default_version_ttl);
  CHECK(find(resolved, "other")->versioned);
  CHECK(find(resolved, "other")->version_ttl == 3600s);
  CHECK(find(resolved, "short")->version_ttl == 10s);
  CHECK_FALSE(find(resolved, "plain")->versioned);

  // Order does not matter: the versioned mention may come first.
  std::vector<ccp::tag> reversed{ccp::versioned("p"), "p"};
  auto rr = ccp::resolve_tags(reversed, r);
  REQUIRE(rr.size() == 1);
  CHECK(rr[0].versioned);
  CHECK(rr[0].version_ttl == ccp::default_version_ttl);
}

TEST_CASE("versioned wraps a tag callable", "[tags]") {
  auto h = make_header("/x?store=7");
  ccp::request_view r(h);
  auto t = ccp::versioned([](ccp::request_view const& v) { return "store-" + v.query("store"); }, 120s);
  CHECK(t.is_versioned());
  CHECK(t.version_ttl() == 120s);
  auto resolved = ccp::resolve_tags({t}, r);
  REQUIRE(resolved.size() == 1);
  CHECK(resolved[0] == ccp::resolved_tag{"store-7", true, 120s});

  ccp::tag plain("x");
  CHECK_FALSE(plain.is_versioned());
}
