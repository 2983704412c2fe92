// Cache keys (keys.hpp) and the request view they are computed from.
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/request_view.hpp>

#include <boost/url/parse.hpp>

#include "../support/messages.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;

namespace {

using ccp_test::make_header;

// The header must outlive the view, so the key is computed here.
std::string key_of(std::string_view target) {
  auto h = make_header(target);
  return ccp::generate_cache_key(ccp::request_view(h));
}

std::string query_key_of(std::string_view target) {
  auto h = make_header(target);
  return ccp::generate_query_params_cache_key(ccp::request_view(h));
}

bool ci_less(std::string const& a, std::string const& b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) < std::tolower(static_cast<unsigned char>(y));
  });
}

// What two requests must share to share a key, computed with Boost.URL
// straight from the origin-form grammar (RFC 9112 §3.2.1): the decoded path,
// whether there is a query, and the decoded parameters ordered by name
// case-insensitively, repeated names in request order. Serialised with
// length prefixes so that equal strings mean equal references.
std::optional<std::string> reference_of(std::string const& target, bool path_too) {
  auto u = boost::urls::parse_origin_form(target);
  if (!u) return std::nullopt;
  std::vector<std::tuple<std::string, bool, std::string>> params;
  for (auto const& p : u->params()) params.emplace_back(p.key, p.has_value, p.value);
  std::stable_sort(params.begin(), params.end(),
                   [](auto const& a, auto const& b) { return ci_less(std::get<0>(a), std::get<0>(b)); });
  std::string ref;
  auto field = [&](std::string const& s) {
    ref += std::to_string(s.size());
    ref += ':';
    ref += s;
  };
  if (path_too) {
    field(std::string(u->path()));
    ref += u->has_query() ? 'Q' : 'N';
  }
  for (auto const& [k, hv, v] : params) {
    field(k);
    ref += hv ? 'V' : 'E';
    field(v);
  }
  return ref;
}

// Every string of up to `max_len` tokens.
void expand(std::vector<std::string> const& tokens, std::string const& prefix, int max_len,
            std::vector<std::string>& out) {
  out.push_back(prefix);
  if (max_len == 0) return;
  for (auto const& t : tokens) expand(tokens, prefix + t, max_len - 1, out);
}

struct injectivity_report {
  std::size_t valid = 0;
  std::vector<std::string> failures;
};

// Two valid targets must get the same key exactly when their references are
// equal, in both directions (injective and canonical).
template <class KeyFn>
injectivity_report check_injective(std::vector<std::string> const& targets, KeyFn key_fn, bool path_too) {
  injectivity_report rep;
  std::map<std::string, std::pair<std::string, std::string>> by_key; // key -> (reference, target)
  std::map<std::string, std::pair<std::string, std::string>> by_ref; // reference -> (key, target)
  for (auto const& t : targets) {
    auto h = make_header(t);
    ccp::request_view r(h);
    auto ref = reference_of(t, path_too);
    if (r.valid() != ref.has_value()) {
      rep.failures.push_back("validity differs from the origin-form grammar for '" + t + "'");
      continue;
    }
    if (!ref) continue;
    ++rep.valid;
    std::string key = key_fn(r);
    auto [ki, knew] = by_key.try_emplace(key, *ref, t);
    if (!knew && ki->second.first != *ref)
      rep.failures.push_back("'" + ki->second.second + "' and '" + t + "' share the key '" + key + "'");
    auto [ri, rnew] = by_ref.try_emplace(*ref, key, t);
    if (!rnew && ri->second.first != key)
      rep.failures.push_back("'" + ri->second.second + "' and '" + t + "' are the same request but get keys '" +
                             ri->second.first + "' and '" + key + "'");
  }
  return rep;
}

std::string sample(std::vector<std::string> const& failures) {
  std::string out = std::to_string(failures.size()) + " failures, first ones:\n";
  for (std::size_t i = 0; i < failures.size() && i < 8; ++i) out += "  " + failures[i] + "\n";
  return out;
}

// Characters that delimit or escape something in a target or in a key,
// raw and percent-encoded.
std::vector<std::string> const tricky_tokens = {"a", "A", ":", "&", "=", "?", "-", "/", "+", "%",
                                                "%26", "%3D", "%3F", "%3A"};

} // namespace

TEST_CASE("generate_cache_key sorts parameters case-insensitively and stably", "[keys]") {
  CHECK(key_of("/a/b?Z=1&a=2&a=3") == "/a/b?a:2&a:3&Z:1");
  // Same name in different cases: a tie, so request order is kept.
  CHECK(key_of("/x?b=1&B=2&a=3&A=4") == "/x?a:3&A:4&b:1&B:2");
  CHECK(key_of("/x?B=2&b=1&A=4&a=3") == "/x?A:4&a:3&B:2&b:1");
  CHECK(query_key_of("/a/b?Z=1&a=2&a=3") == "a:2&a:3&Z:1");
}

TEST_CASE("generate_cache_key is readable and decoded", "[keys]") {
  CHECK(key_of("/api/products") == "/api/products");
  CHECK(key_of("/caf%C3%A9?q=hello%20world&x=a+b") == "/caf\xC3\xA9?q:hello world&x:a b");
  // A parameter without '=' has no ':'; an empty value has one.
  CHECK(key_of("/x?flag") == "/x?flag");
  CHECK(key_of("/x?flag=") == "/x?flag:");
  // Key delimiters inside decoded names and values are escaped; '?' needs no
  // escape in the query, only in the path.
  CHECK(key_of("/x?v=%3A%26%25%3F") == "/x?v:%3A%26%25?");
  CHECK(key_of("/x?%3Ak%26=1") == "/x?%3Ak%26:1");
  CHECK(key_of("/a%3Fb%25") == "/a%3Fb%25");
}

TEST_CASE("generate_cache_key separates requests the Python seed confuses", "[keys]") {
  // The seed strips or joins characters; each pair is two different pages.
  CHECK(key_of("/a-b") != key_of("/ab"));
  CHECK(key_of("/a-b?x=1") != key_of("/ab?x=1"));
  CHECK(key_of("/p?a=1-b:2") != key_of("/p?a=1&b=2"));
  CHECK(query_key_of("/p?a=1-b:2") != query_key_of("/p?a=1&b=2"));
  CHECK(key_of("/p?a=1&a=2") != key_of("/p?a=1"));
  CHECK(query_key_of("/p?a=1&a=2") != query_key_of("/p?a=1"));
  CHECK(key_of("/p?a=1&a=2") != key_of("/p?a=2&a=1"));
  CHECK(key_of("/p?a") != key_of("/p?a="));
  CHECK(key_of("/p?") != key_of("/p"));
  CHECK(key_of("/p?v=1:2") != key_of("/p?v:1=2"));
  CHECK(key_of("/p?v=a%26b=c") != key_of("/p?v=a&b=c"));
  CHECK(key_of("/p?v=%25") != key_of("/p?v=%2525"));
  CHECK(key_of("/p%3Fa=1") != key_of("/p?a=1"));
  CHECK(key_of("/p?k%3Av=1") != key_of("/p?k=v:1"));
}

TEST_CASE("generate_cache_key keeps an empty parameter apart from no parameter", "[keys]") {
  // Boost.URL reads "?&a=1" as two parameters, the first empty; dropping it
  // would make "/p?&a=1" and "/p?a=1" (or "/p?" and "/p?&") one page.
  CHECK(key_of("/p?&a=1") != key_of("/p?a=1"));
  CHECK(key_of("/p?&") != key_of("/p?"));
  CHECK(query_key_of("/p?&a=1") != query_key_of("/p?a=1"));
}

TEST_CASE("an origin-form target that starts with // keeps its whole path", "[keys][request_view]") {
  // "//evil.example/x" is an absolute-path (RFC 9112 §3.2.1), not a
  // network-path reference: reading "evil.example" as an authority would
  // give it the key of "/x" and let any client fill "/x" with another page.
  auto h = make_header("//evil.example/x");
  ccp::request_view r(h);
  CHECK(r.decoded_path() == "//evil.example/x");
  CHECK(key_of("//evil.example/x") != key_of("/x"));
  CHECK(key_of("//a/x") != key_of("//b/x"));
}

TEST_CASE("generate_cache_key is injective over targets built from tricky characters", "[keys][property]") {
  std::vector<std::string> suffixes;
  expand(tricky_tokens, "", 3, suffixes);
  std::set<std::string> targets;
  for (auto const& s : suffixes) {
    targets.insert("/" + s); // "//..." included: a path, not an authority
    targets.insert("/p?" + s);
  }
  std::vector<std::string> all(targets.begin(), targets.end());
  REQUIRE(all.size() > 2000);

  auto rep = check_injective(all, [](ccp::request_view const& r) { return ccp::generate_cache_key(r); }, true);
  INFO(sample(rep.failures));
  CHECK(rep.failures.empty());
  CHECK(rep.valid > 1500); // most targets must be valid, or the test proves little
}

TEST_CASE("generate_query_params_cache_key is injective over the parameters", "[keys][property]") {
  std::vector<std::string> suffixes;
  expand(tricky_tokens, "", 3, suffixes);
  std::vector<std::string> targets;
  for (auto const& s : suffixes) targets.push_back("/p?" + s);
  // Different paths with the same query share the key by design.
  targets.push_back("/other?a=1");

  auto rep = check_injective(targets, [](ccp::request_view const& r) { return ccp::generate_query_params_cache_key(r); },
                             false);
  INFO(sample(rep.failures));
  CHECK(rep.failures.empty());
  CHECK(query_key_of("/other?a=1") == query_key_of("/p?a=1"));
}

TEST_CASE("hash_key is the MD5 hex of the key, as in the Python package", "[keys]") {
  // printf %s 'prefix:cached_views:0:/bo' | md5sum
  CHECK(ccp::hash_key("prefix:cached_views:0:/bo") == "95b6aeec79178d211d4f985220d3345a");
  // printf %s '' | md5sum
  CHECK(ccp::hash_key("") == "d41d8cd98f00b204e9800998ecf8427e");
}

TEST_CASE("storage_key is a SHA-256 hex whose prefix cannot trade characters with the key", "[keys]") {
  auto k = ccp::storage_key("views", "/a?b:1");
  REQUIRE(k.size() == 64);
  CHECK(std::all_of(k.begin(), k.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }));
  CHECK(k == ccp::storage_key("views", "/a?b:1"));
  CHECK(ccp::storage_key("ab", "c") != ccp::storage_key("a", "bc"));
  CHECK(ccp::storage_key("", "1:ab") != ccp::storage_key("1:a", "b"));
  CHECK(ccp::storage_key("", "x") != ccp::storage_key("x", ""));
  CHECK(ccp::storage_key("p", "/a") != ccp::storage_key("p", "/b"));
}

TEST_CASE("normalized_host: lower case, no trailing dot or default port, the absolute-form authority first", "[keys]") {
  auto host_of = [](std::string_view target, std::string_view host) {
    auto h = make_header(target);
    if (!host.empty()) h.set(http::field::host, host);
    return ccp::normalized_host(ccp::request_view(h));
  };
  CHECK(host_of("/", "Example.COM") == "example.com");
  CHECK(host_of("/", "example.com:80") == "example.com");
  CHECK(host_of("/", "example.com.:443") == "example.com");
  CHECK(host_of("/", "example.com:8080") == "example.com:8080");
  CHECK(host_of("/", "[::1]:8080") == "[::1]:8080");
  CHECK(host_of("http://Other.example:80/x", "example.com") == "other.example"); // RFC 9112 3.2.2
  CHECK(host_of("/", "") == "");
}

TEST_CASE("storage_key keeps hosts apart, and apart from a key without one", "[keys]") {
  CHECK(ccp::storage_key("", "/a", {}, "a.example") != ccp::storage_key("", "/a", {}, "b.example"));
  CHECK(ccp::storage_key("", "/a", {}, "") != ccp::storage_key("", "/a"));
  // The host's part cannot pass for a versioned tag's (both are "1:x"
  // without the 'h' that marks the host).
  std::vector<ccp::resolved_tag> const versioned_x{{"x", true}};
  CHECK(ccp::storage_key("", "/a", {}, "x") != ccp::storage_key("", "0:/a", versioned_x));
}

TEST_CASE("request_view exposes method, target and path", "[request_view]") {
  auto h = make_header("/a%20b/c?q=1", http::verb::post);
  ccp::request_view r(h);
  CHECK(r.valid());
  CHECK(r.method() == http::verb::post);
  CHECK(r.method_string() == "POST");
  CHECK(r.target() == "/a%20b/c?q=1");
  CHECK(r.path() == "/a%20b/c");
  CHECK(r.decoded_path() == "/a b/c");
  CHECK(r.encoded_query() == "q=1");
  CHECK(r.has_query_string());
}

TEST_CASE("request_view decodes query parameters", "[request_view]") {
  auto h = make_header("/s?q=hello%20big+world&empty=&flag&dup=1&dup=2");
  ccp::request_view r(h);
  CHECK(r.query("q") == "hello big world");
  CHECK(r.has_query("q"));
  CHECK(r.has_query("flag"));
  CHECK(r.has_query("empty"));
  CHECK(r.query("empty").empty());
  CHECK_FALSE(r.has_query("missing"));
  CHECK(r.query("missing").empty());
  CHECK(r.query("dup") == "2"); // the last value, as Django's request.GET.get
  CHECK(r.query_params().size() == 5);

  auto plain = make_header("/s");
  ccp::request_view p(plain);
  CHECK_FALSE(p.has_query_string());
  CHECK_FALSE(p.has_query("q"));
}

TEST_CASE("request_view looks headers up by field and by name", "[request_view]") {
  auto h = make_header("/x");
  h.set(http::field::accept_language, "fr");
  h.set("X-Store-Id", "42");
  ccp::request_view r(h);
  CHECK(r.header(http::field::accept_language) == "fr");
  CHECK(r.header("accept-language") == "fr");
  CHECK(r.header("x-store-id") == "42");
  CHECK(r.header("X-Store-Id") == "42");
  CHECK(r.has(http::field::accept_language));
  CHECK(r.has("X-STORE-ID"));
  CHECK_FALSE(r.has(http::field::authorization));
  CHECK_FALSE(r.has("X-Other"));
  CHECK(r.header("X-Other").empty());
  CHECK(&r.fields() == &h);
}

TEST_CASE("request_view rejects a malformed target", "[request_view]") {
  for (std::string_view bad : {"http://[::1", "/a%zz", "/a b", "/%"}) {
    INFO(bad);
    auto h = make_header(bad);
    ccp::request_view r(h);
    CHECK_FALSE(r.valid());
    CHECK(r.path().empty());
    CHECK(r.decoded_path().empty());
    CHECK_FALSE(r.has_query_string());
    CHECK(r.query("a").empty());
  }
  auto h = make_header("/x");
  CHECK(ccp::request_view(h).valid());
}
