// The CDN backends (cdn.hpp): tag headers within each provider's limits,
// and purge requests against an in-process fake of each provider's API.
#include <custom_cache_page/cache_page.hpp>
#include <custom_cache_page/cdn.hpp>

#include "../support/messages.hpp"
#include "../support/silent_server.hpp"
#include "../support/helpers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ccp = custom_cache_page;
using ccp_test::what_of;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

struct recorded {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers; // names lower case
  std::string body;

  std::string header(std::string const& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string("<absent>") : it->second;
  }
};

struct reply {
  unsigned status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds delay{0}; // before answering
};

// An HTTP server on 127.0.0.1 (a port the kernel picks) that records each
// request and answers with `respond`, one request per connection.
class fake_api {
public:
  using responder = std::function<reply(recorded const&)>;

  explicit fake_api(responder respond) : respond_(std::move(respond)), acceptor_(ioc_) {
    using boost::asio::ip::tcp;
    tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(at.protocol());
    acceptor_.bind(at);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  // Answers `replies` in order, the last one to every later request.
  explicit fake_api(std::vector<reply> replies)
      : fake_api([replies = std::move(replies), n = std::make_shared<std::size_t>(0)](recorded const&) {
          auto i = std::min((*n)++, replies.size() - 1);
          return replies[i];
        }) {}

  ~fake_api() {
    stop_ = true;
    boost::system::error_code ec;
    boost::asio::ip::tcp::socket poke(ioc_);
    poke.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
  }

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<recorded> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

private:
  void serve() {
    while (!stop_) {
      boost::asio::ip::tcp::socket s(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (stop_) return;
      if (ec) continue;
      boost::beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(s, buffer, req, ec);
      if (ec) continue;
      recorded r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      r.body = req.body();
      for (auto const& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(r);
      }
      reply out = respond_(r);
      if (out.delay > 0ms) std::this_thread::sleep_for(out.delay);
      http::response<http::string_body> res{static_cast<http::status>(out.status), 11};
      for (auto const& [n, v] : out.headers) res.set(n, v);
      res.body() = out.body;
      res.keep_alive(false);
      res.prepare_payload();
      http::write(s, res, ec);
      s.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    }
  }

  responder respond_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<recorded> requests_;
  std::thread thread_;
};

reply fastly_ok() { return {200, R"({"status":"ok","id":"108-1391560174-974124"})", {{"Content-Type", "application/json"}}}; }
reply cloudflare_ok() {
  return {200, R"({"success":true,"errors":[],"messages":[],"result":{"id":"9a7806061c88ada191ed06f989cc3dac"}})",
          {{"Content-Type", "application/json"}}};
}

constexpr char const* token = "s3cr3t-t0ken-value";

ccp::fastly_backend_options fastly_options(fake_api const& api) {
  ccp::fastly_backend_options o;
  o.service_id = "SU1Z0isxPaozGVKXdv0eY";
  o.api_token = token;
  o.api_base = api.url();
  o.timeout = 2s;
  return o;
}

ccp::cloudflare_backend_options cloudflare_options(fake_api const& api) {
  ccp::cloudflare_backend_options o;
  o.zone_id = "023e105f4ecef8ad9ca31a8372d0c353";
  o.api_token = token;
  o.api_base = api.url();
  o.timeout = 2s;
  o.max_retry_wait = 1s;
  return o;
}

ccp::tag_version tag(std::string name, bool guard = false) {
  ccp::tag_version t;
  t.name = std::move(name);
  t.guard = guard;
  return t;
}

std::string emitted(ccp::cdn_header_backend& b, std::vector<ccp::tag_version> const& tags,
                    http::fields* out = nullptr) {
  http::fields f;
  b.prepare_response(f, ccp::public_tag_names(tags));
  std::string value(f[std::string(b.tag_syntax().header)]);
  if (out != nullptr) *out = f;
  return value;
}

// n tags of `size` bytes each, distinct: "t0001-xxxx...".
std::vector<ccp::tag_version> tags_of(std::size_t n, std::size_t size) {
  std::vector<ccp::tag_version> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string name = "t" + std::to_string(10000 + i) + "-";
    name.resize(size, 'x');
    out.push_back(tag(name));
  }
  return out;
}

struct env_var {
  env_var(char const* name, char const* value) : name_(name) { ::setenv(name, value, 1); }
  ~env_var() { ::unsetenv(name_); }
  char const* name_;
};

} // namespace

// --- Fastly ---------------------------------------------------------------

TEST_CASE("fastly: a purge is POST /service/{id}/purge/{key} with Fastly-Key", "[cdn][fastly]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend b(fastly_options(api));
  auto r = b.invalidate_tag("product-7");
  CHECK(r.tag == "product-7");
  CHECK(r.mode == ccp::purge_mode::hard);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/service/SU1Z0isxPaozGVKXdv0eY/purge/product-7");
  CHECK(reqs[0].header("fastly-key") == token);
  CHECK(reqs[0].header("fastly-soft-purge") == "<absent>");
  CHECK(reqs[0].header("host") == "127.0.0.1:" + std::to_string(api.port()));
  CHECK(reqs[0].body.empty());
}

TEST_CASE("fastly: a key with reserved URL characters is percent-encoded in the path", "[cdn][fastly]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend b(fastly_options(api));
  b.invalidate_tag("a/b?c#d%e");
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/service/SU1Z0isxPaozGVKXdv0eY/purge/a%2Fb%3Fc%23d%25e");
}

TEST_CASE("fastly: soft purges send Fastly-Soft-Purge: 1, by mode or by option", "[cdn][fastly]") {
  fake_api api({fastly_ok()});
  {
    ccp::fastly_backend b(fastly_options(api));
    CHECK(b.invalidate_tag("news", ccp::purge_mode::soft).mode == ccp::purge_mode::soft);
  }
  {
    auto o = fastly_options(api);
    o.soft_purge = true;
    ccp::fastly_backend b(o);
    CHECK(b.invalidate_tag("news").mode == ccp::purge_mode::soft);
  }
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].header("fastly-soft-purge") == "1");
  CHECK(reqs[1].header("fastly-soft-purge") == "1");
}

TEST_CASE("fastly: a batch purge sends up to 256 keys in one Surrogate-Key header", "[cdn][fastly]") {
  fake_api api({{200, R"({"k":"108-1391560174-974124"})", {}}});
  ccp::fastly_backend b(fastly_options(api));
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("key-" + std::to_string(i));
  keys.push_back("key-0"); // once only
  auto results = b.purge_tags(keys, ccp::purge_mode::soft);
  CHECK(results.size() == 300);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 2);
  for (auto const& r : reqs) {
    CHECK(r.method == "POST");
    CHECK(r.target == "/service/SU1Z0isxPaozGVKXdv0eY/purge");
    CHECK(r.header("fastly-key") == token);
    CHECK(r.header("fastly-soft-purge") == "1");
  }
  std::string first;
  for (int i = 0; i < 256; ++i) first += (i ? " " : "") + std::string("key-") + std::to_string(i);
  CHECK(reqs[0].header("surrogate-key") == first);
  std::string second;
  for (int i = 256; i < 300; ++i) second += (i > 256 ? " " : "") + std::string("key-") + std::to_string(i);
  CHECK(reqs[1].header("surrogate-key") == second);
}

TEST_CASE("fastly: a 5xx is retried once, then the purge succeeds", "[cdn][fastly]") {
  fake_api api({{503, "busy", {}}, fastly_ok()});
  ccp::fastly_backend b(fastly_options(api));
  b.invalidate_tag("product-7");
  CHECK(api.requests().size() == 2);
}

TEST_CASE("fastly: two 5xx make an invalidation_error naming fastly and the tag, not the token", "[cdn][fastly]") {
  fake_api api({{500, std::string(R"({"msg":"internal error","detail":"token )") + token + R"("})", {}}});
  ccp::fastly_backend b(fastly_options(api));
  std::string what;
  try {
    b.invalidate_tag("product-7");
  } catch (ccp::invalidation_error const& e) {
    what = e.what();
    CHECK(e.tag() == "product-7");
    CHECK(e.code() == ccp::error::invalidation_failed);
  }
  CHECK(api.requests().size() == 2);
  CHECK_THAT(what, Catch::Contains("fastly") && Catch::Contains("product-7") && Catch::Contains("500") &&
                       Catch::Contains("internal error") && Catch::Contains("/service/SU1Z0isxPaozGVKXdv0eY/purge"));
  CHECK_THAT(what, !Catch::Contains(token));
}

TEST_CASE("fastly: a 4xx is not retried and its message is reported", "[cdn][fastly]") {
  fake_api api({{403, R"({"msg":"Provided credentials are missing or invalid"})", {}}});
  ccp::fastly_backend b(fastly_options(api));
  auto what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK(api.requests().size() == 1);
  CHECK_THAT(what, Catch::Contains("403") && Catch::Contains("Provided credentials are missing or invalid") &&
                       Catch::Contains("'product-7'"));
  CHECK_THAT(what, !Catch::Contains(token));
}

TEST_CASE("fastly: a 200 whose body is not {\"status\":\"ok\"} is a failure", "[cdn][fastly]") {
  fake_api api({{200, "<html>captive portal</html>", {}}});
  ccp::fastly_backend b(fastly_options(api));
  CHECK_THROWS_AS(b.invalidate_tag("x"), ccp::invalidation_error);
}

TEST_CASE("fastly: an unreachable API is retried once and reported with host and port", "[cdn][fastly]") {
  std::string url;
  {
    fake_api gone({fastly_ok()});
    url = gone.url();
  } // nothing listens there now
  ccp::fastly_backend_options o;
  o.service_id = "svc";
  o.api_token = token;
  o.api_base = url;
  o.timeout = 1s;
  ccp::fastly_backend b(o);
  std::string what;
  CHECK_THROWS_AS(b.invalidate_tag("product-7"), ccp::invalidation_error);
  what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK_THAT(what, Catch::Contains("fastly") && Catch::Contains("product-7") && Catch::Contains("connecting") &&
                       Catch::Contains(url.substr(7)));
  CHECK_THAT(what, !Catch::Contains(token));
}

TEST_CASE("fastly: a slow API times out, retried once", "[cdn][fastly]") {
  auto slow = fastly_ok();
  slow.delay = 600ms;
  fake_api api({slow});
  auto o = fastly_options(api);
  o.timeout = 200ms;
  ccp::fastly_backend b(o);
  auto const start = std::chrono::steady_clock::now();
  auto what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK_THAT(what, Catch::Contains("timed out (200ms a step") && Catch::Contains("product-7"));
  CHECK(api.requests().size() >= 1);
}

// A CDN backend purges and decorates; it is not a store and never says it
// stored anything.
static_assert(ccp::cdn_backend<ccp::fastly_backend> && !ccp::store_backend<ccp::fastly_backend>);
static_assert(ccp::cdn_backend<ccp::cloudflare_backend> && ccp::cdn_backend<ccp::varnish_backend>);
static_assert(!ccp::cdn_backend<ccp::memory_backend> && !ccp::cdn_backend<ccp::composite_backend>);

TEST_CASE("fastly alone keeps nothing: lookups miss, stores are refused, no request made", "[cdn][fastly]") {
  fake_api api({fastly_ok()});
  ccp::any_backend b(std::make_shared<ccp::fastly_backend>(fastly_options(api)));
  std::vector<ccp::resolved_tag> tags{{"a"}, {"b"}};
  CHECK_FALSE(b.keeps_entries());
  CHECK(b.lookup("k", tags).entry == nullptr);
  CHECK_FALSE(b.store("k", std::make_shared<ccp::cached_response const>()));
  CHECK_FALSE(b.erase("k"));
  b.invalidate_internal_tag("~target:k"); // a guard: never sent to a CDN
  CHECK(api.requests().empty());
}

// --- Tag headers ------------------------------------------------------------

TEST_CASE("tag headers: each provider's header name and separator, guard tags never sent", "[cdn][headers]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend fastly(fastly_options(api));
  ccp::cloudflare_backend cloudflare(cloudflare_options(api));
  ccp::varnish_backend varnish({"127.0.0.1", api.port()});
  std::vector<ccp::tag_version> tags{tag("product-7"), tag("target-guard", true), tag("view-list"), tag("product-7")};

  http::fields f;
  CHECK(emitted(fastly, tags, &f) == "product-7 view-list");
  CHECK(f["Surrogate-Control"].empty());
  CHECK(emitted(cloudflare, tags) == "product-7,view-list");
  CHECK(emitted(varnish, tags) == "product-7 view-list");
  CHECK(fastly.headers_emitted() == 1);

  // Only guard tags: no header at all, also through the handle cache_page uses.
  http::fields none;
  ccp::any_backend(std::make_shared<ccp::fastly_backend>(fastly_options(api)))
      .prepare_response(none, std::vector<ccp::tag_version>{tag("guard-only", true)});
  CHECK(none.begin() == none.end());
  CHECK(api.requests().empty());
}

TEST_CASE("tag headers: header injection attempts are sanitised", "[cdn][headers]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend fastly(fastly_options(api));
  ccp::cloudflare_backend cloudflare(cloudflare_options(api));
  std::vector<ccp::tag_version> tags{tag("a\r\nSet-Cookie: x=1"), tag("b c\td"), tag("e,f"), tag("caf\xc3\xa9"),
                                     tag(std::string("g\0h", 3))};
  auto const fv = emitted(fastly, tags);
  auto const cv = emitted(cloudflare, tags);
  CHECK(fv == "aSet-Cookie:-x=1 b-cd e,f caf%C3%A9 gh");
  CHECK(cv == "aSet-Cookie:-x=1,b-cd,e%2Cf,caf%C3%A9,gh");
  for (auto const& v : {fv, cv})
    for (char c : v) CHECK((c == ' ' || (c >= 0x21 && c <= 0x7e)));
  // Purges name the same keys the header carried.
  CHECK(fastly.provider_tag("e,f") == "e,f");
  CHECK(cloudflare.provider_tag("e,f") == "e%2Cf");
}

TEST_CASE("tag headers: a key exactly at the per-key limit is kept, one byte over is hashed", "[cdn][headers]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend b(fastly_options(api));
  std::string const at(1024, 'k');
  std::string const over(1025, 'k');
  CHECK(emitted(b, {tag(at)}) == at);
  CHECK(b.headers_hashed() == 0);

  auto const hashed = emitted(b, {tag(over), tag("short")});
  CHECK(hashed.size() == ccp::cdn_hashed_tag_bytes + 1 + 5);
  CHECK(hashed.starts_with("hash-"));
  CHECK(hashed.ends_with(" short"));
  CHECK(b.headers_hashed() == 1);
  CHECK(b.responses_uncacheable() == 0);

  // The purge names the hashed key, so purge and header agree.
  b.invalidate_tag(over);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/service/SU1Z0isxPaozGVKXdv0eY/purge/" + hashed.substr(0, ccp::cdn_hashed_tag_bytes));
  CHECK(ccp::cdn_tag(over, ccp::fastly_tag_syntax) != ccp::cdn_tag(std::string(1026, 'k'), ccp::fastly_tag_syntax));
}

TEST_CASE("tag headers: Fastly's 16384-byte header: exactly at the limit emitted, one over uncacheable", "[cdn][headers]") {
  fake_api api({fastly_ok()});
  ccp::fastly_backend b(fastly_options(api));
  // 16 keys of 1023 bytes and 15 spaces = 16383; the last key one byte
  // longer reaches 16384 exactly.
  auto tags = tags_of(16, 1023);
  tags.back().name += 'x';
  http::fields f;
  auto v = emitted(b, tags, &f);
  CHECK(v.size() == 16384);
  CHECK(f["Surrogate-Control"].empty());
  CHECK(b.responses_uncacheable() == 0);

  tags.front().name += 'x'; // 16385
  http::fields over;
  over.set("Surrogate-Key", "set-by-handler");
  CHECK(emitted(b, tags, &over).empty());
  CHECK(over["Surrogate-Control"] == "no-store");
  CHECK(b.responses_uncacheable() == 1);
  CHECK(b.headers_emitted() == 1);
}

TEST_CASE("tag headers: Cloudflare's 16 KB Cache-Tag: at the limit emitted, over marks CDN-Cache-Control", "[cdn][headers]") {
  fake_api api({cloudflare_ok()});
  ccp::cloudflare_backend b(cloudflare_options(api));
  auto tags = tags_of(16, 1023);
  tags.back().name += 'x';
  http::fields f;
  auto v = emitted(b, tags, &f);
  CHECK(v.size() == 16384);
  CHECK(v.find(' ') == std::string::npos);
  CHECK(f["CDN-Cache-Control"].empty());

  tags.push_back(tag("one-more"));
  http::fields over;
  CHECK(emitted(b, tags, &over).empty());
  CHECK(over["CDN-Cache-Control"] == "no-store");
  CHECK(b.responses_uncacheable() == 1);
}

TEST_CASE("tag headers: a set too large is uncacheable even after hashing, and tags the handler set count", "[cdn][headers]") {
  fake_api api({fastly_ok()});
  ccp::varnish_backend b({"127.0.0.1", api.port()});
  // Hashing shortens long tags, but 200 hashed tags still exceed 8000 bytes.
  auto tags = tags_of(200, 2000);
  http::fields f;
  CHECK(emitted(b, tags, &f).empty());
  CHECK(f["Surrogate-Control"] == "no-store");
  CHECK(b.responses_uncacheable() == 1);

  // A handler's own xkey header is merged, not overwritten.
  http::fields mine;
  mine.set("xkey", "by-hand other");
  b.prepare_response(mine, std::vector<std::string_view>{"product-7"});
  CHECK(mine["xkey"] == "product-7 by-hand other");
}

// --- Cloudflare -------------------------------------------------------------

TEST_CASE("cloudflare: a purge is POST purge_cache with a Bearer token and {\"tags\": [...]}", "[cdn][cloudflare]") {
  fake_api api({cloudflare_ok()});
  ccp::cloudflare_backend b(cloudflare_options(api));
  auto r = b.invalidate_tag("product-7", ccp::purge_mode::soft);
  CHECK(r.mode == ccp::purge_mode::hard); // Cloudflare has no soft purge by tag
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache");
  CHECK(reqs[0].header("authorization") == std::string("Bearer ") + token);
  CHECK(reqs[0].header("content-type") == "application/json");
  CHECK(reqs[0].body == R"({"tags":["product-7"]})");
}

TEST_CASE("cloudflare: purges go in batches of 100 tags", "[cdn][cloudflare]") {
  fake_api api({cloudflare_ok()});
  ccp::cloudflare_backend b(cloudflare_options(api));
  std::vector<std::string> tags;
  for (int i = 0; i < 250; ++i) tags.push_back("t" + std::to_string(i));
  CHECK(b.purge_tags(tags).size() == 250);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 3);
  std::vector<std::size_t> sizes;
  std::size_t next = 0;
  for (auto const& r : reqs) {
    auto body = boost::json::parse(r.body);
    auto const& list = body.as_object().at("tags").as_array();
    sizes.push_back(list.size());
    for (auto const& t : list) CHECK(t.as_string() == "t" + std::to_string(next++));
  }
  CHECK(sizes == std::vector<std::size_t>{100, 100, 50});
}

TEST_CASE("cloudflare: a failed batch names its first tag and stops there", "[cdn][cloudflare]") {
  fake_api api({cloudflare_ok(), {400, R"({"success":false,"errors":[{"code":1,"message":"no"}]})", {}}});
  ccp::cloudflare_backend b(cloudflare_options(api));
  std::vector<std::string> tags;
  for (int i = 0; i < 300; ++i) tags.push_back("t" + std::to_string(i));
  auto what = what_of([&] { b.purge_tags(tags); });
  CHECK_THAT(what, Catch::StartsWith("invalidating tag 't100 and 99 more' failed: cloudflare: "));
  CHECK(api.requests().size() == 2);
}

TEST_CASE("cloudflare: success false reports errors[].message, not the token", "[cdn][cloudflare]") {
  fake_api api({{400,
                 R"({"success":false,"errors":[{"code":1012,"message":"Request must contain one of \"purge_everything\", \"files\", \"tags\""},{"code":9,"message":"second"}],"messages":[],"result":null})",
                 {}}});
  ccp::cloudflare_backend b(cloudflare_options(api));
  std::string what;
  try {
    b.invalidate_tag("product-7");
  } catch (ccp::invalidation_error const& e) {
    what = e.what();
    CHECK(e.tag() == "product-7");
  }
  CHECK(api.requests().size() == 1);
  CHECK_THAT(what, Catch::Contains("cloudflare") && Catch::Contains("'product-7'") && Catch::Contains("400") &&
                       Catch::Contains("Request must contain one of") && Catch::Contains("; second"));
  CHECK_THAT(what, !Catch::Contains(token));
}

TEST_CASE("cloudflare: a 200 with success false is a failure", "[cdn][cloudflare]") {
  fake_api api({{200, R"({"success":false,"errors":[{"code":10000,"message":"Authentication error"}]})", {}}});
  ccp::cloudflare_backend b(cloudflare_options(api));
  CHECK_THAT(what_of([&] { b.invalidate_tag("x"); }), Catch::Contains("Authentication error"));
}

TEST_CASE("cloudflare: a 429 is retried once after its Retry-After", "[cdn][cloudflare]") {
  fake_api api({{429, R"({"success":false,"errors":[{"code":971,"message":"rate limited"}]})", {{"Retry-After", "1"}}},
                cloudflare_ok()});
  ccp::cloudflare_backend b(cloudflare_options(api));
  auto const start = std::chrono::steady_clock::now();
  b.invalidate_tag("product-7");
  auto const waited = std::chrono::steady_clock::now() - start;
  CHECK(api.requests().size() == 2);
  CHECK(waited >= 1s);
  CHECK(waited < 3s);
}

TEST_CASE("cloudflare: a long Retry-After is capped, and a second 429 fails", "[cdn][cloudflare]") {
  fake_api api({{429, R"({"success":false,"errors":[{"code":971,"message":"rate limited"}]})", {{"Retry-After", "3600"}}}});
  auto o = cloudflare_options(api);
  o.max_retry_wait = 100ms;
  ccp::cloudflare_backend b(o);
  auto const start = std::chrono::steady_clock::now();
  auto what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(api.requests().size() == 2);
  CHECK_THAT(what, Catch::Contains("429") && Catch::Contains("rate limited") && Catch::Contains("product-7"));
}

TEST_CASE("a CDN purge that fails (5xx, 429 with Retry-After, blackholed) is retried until it lands", "[cdn][pending]") {
  auto const rate_limited = reply{429, R"({"success":false,"errors":[{"code":971,"message":"rate limited"}]})", {{"Retry-After", "0"}}};
  struct fault {
    char const* name;
    std::vector<reply> replies; // then success
    bool cloudflare;
  };
  std::vector<fault> const faults{
      {"5xx", {{503, "busy", {}}, {503, "busy", {}}, {503, "busy", {}}}, false},
      {"429", {rate_limited, rate_limited, rate_limited}, true},
      {"blackholed", {{200, "", {}, 1500ms}, {200, "", {}, 1500ms}}, false},
  };
  for (auto const& f : faults) {
    INFO(f.name);
    auto replies = f.replies;
    replies.push_back(f.cloudflare ? cloudflare_ok() : fastly_ok());
    fake_api api(replies);
    ccp::any_backend b;
    if (f.cloudflare) {
      b = ccp::any_backend(std::make_shared<ccp::cloudflare_backend>(cloudflare_options(api)));
    } else {
      auto o = fastly_options(api);
      o.timeout = 200ms;
      b = ccp::any_backend(std::make_shared<ccp::fastly_backend>(o));
    }
    CHECK_THROWS_AS(b.invalidate_tag("product-7"), ccp::invalidation_error);
    CHECK(b.pending()->size() == 1);
    CHECK(b.pending()->wait_until_empty(10s));
    CHECK(api.requests().size() >= replies.size()); // more when a blackholed attempt timed out while queued
    auto const last = api.requests().back();
    CHECK((last.target + last.body).find("product-7") != std::string::npos);
  }
}

// --- Varnish ----------------------------------------------------------------

TEST_CASE("varnish: a purge is PURGE / with xkey-purge, or xkey-softpurge when soft", "[cdn][varnish]") {
  fake_api api({{200, "Invalidated 3 objects", {}}});
  ccp::varnish_backend b({"127.0.0.1", api.port()});
  CHECK(b.invalidate_tag("product-7").mode == ccp::purge_mode::hard);
  CHECK(b.invalidate_tag("product-8", ccp::purge_mode::soft).mode == ccp::purge_mode::soft);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].method == "PURGE");
  CHECK(reqs[0].target == "/");
  CHECK(reqs[0].header("xkey-purge") == "product-7");
  CHECK(reqs[0].header("xkey-softpurge") == "<absent>");
  CHECK(reqs[1].header("xkey-softpurge") == "product-8");
  CHECK(reqs[1].header("xkey-purge") == "<absent>");
}

TEST_CASE("varnish: a non-2xx answer throws naming varnish and the tag", "[cdn][varnish]") {
  fake_api api({{403, "Forbidden", {}}});
  ccp::varnish_backend b({"127.0.0.1", api.port()});
  auto what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK_THAT(what, Catch::Contains("varnish") && Catch::Contains("'product-7'") && Catch::Contains("403") &&
                       Catch::Contains("Forbidden"));
}

TEST_CASE("varnish that never answers: awaited purges hold no thread and end at their deadline", "[cdn][varnish]") {
  namespace net = boost::asio;
  ccp_test::silent_server silent;
  ccp::varnish_backend b({.host = "127.0.0.1", .port = silent.port(), .timeout = 5s, .deadline = 300ms});
  net::io_context ioc(1);
  std::vector<std::string> failures;
  for (char const* tag : {"product-7", "product-8"}) {
    net::co_spawn(ioc, b.async_invalidate_tag(tag), [&](std::exception_ptr e, ccp::invalidation_result) {
      failures.push_back(what_of([&] { if (e) std::rethrow_exception(e); }));
    });
  }
  // Ticks on the same thread while both purges wait for their answer.
  int ticks = 0;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> {
    net::steady_timer t(co_await net::this_coro::executor);
    for (int i = 0; i < 1000 && failures.size() < 2; ++i, ++ticks) {
      t.expires_after(10ms);
      co_await t.async_wait(net::use_awaitable);
    }
  }, net::detached);
  auto const start = std::chrono::steady_clock::now();
  ioc.run();
  CHECK(std::chrono::steady_clock::now() - start < 2s); // 300 ms deadline, not 2 x 5 s timeouts
  CHECK(ticks >= 10);
  CHECK(silent.requests().size() >= 2);
  REQUIRE(failures.size() == 2);
  for (auto const& what : failures) CHECK_THAT(what, Catch::Contains("varnish") && Catch::Contains("timed out"));
  CHECK_THAT(failures[0] + failures[1], Catch::Contains("product-7") && Catch::Contains("product-8"));
}

// --- Registry URLs ------------------------------------------------------------

TEST_CASE("cdn URLs build each backend with its options and its token from the environment", "[cdn][registry]") {
  fake_api api({fastly_ok()});
  env_var fastly_token("CCP_TEST_FASTLY_TOKEN", token);
  env_var cf_token("CCP_TEST_CF_TOKEN", token);
  ccp::registry r;
  ccp::enable_cdn(r);

  auto f = r.make_backend("fastly://SVC123?token_env=CCP_TEST_FASTLY_TOKEN&soft_purge=true&timeout=750ms&api=" + api.url());
  auto* fb = f.target<ccp::fastly_backend>();
  REQUIRE(fb != nullptr);
  CHECK(fb->options().service_id == "SVC123");
  CHECK(fb->options().api_token == token);
  CHECK(fb->options().soft_purge);
  CHECK(fb->options().timeout == 750ms);
  CHECK(fb->options().api_base == api.url());

  auto c = r.make_backend("cloudflare://ZONE9?token_env=CCP_TEST_CF_TOKEN&api=http://127.0.0.1:9&timeout=2s");
  auto* cb = c.target<ccp::cloudflare_backend>();
  REQUIRE(cb != nullptr);
  CHECK(cb->options().zone_id == "ZONE9");
  CHECK(cb->options().api_base == "http://127.0.0.1:9");
  CHECK(cb->options().timeout == 2s);

  auto v = r.make_backend("varnish://127.0.0.1:6082?soft_purge=1&max_header_bytes=4k");
  auto* vb = v.target<ccp::varnish_backend>();
  REQUIRE(vb != nullptr);
  CHECK(vb->options().host == "127.0.0.1");
  CHECK(vb->options().port == 6082);
  CHECK(vb->options().soft_purge);
  CHECK(vb->tag_syntax().max_header_bytes == 4096);
  CHECK(r.make_backend("varnish://").target<ccp::varnish_backend>()->options().port == 6081);

  // Through the registry: the registered backend purges.
  r.add("edge", f);
  CHECK(r.invalidate_tag("product-7", "edge").backend == "edge");
  REQUIRE(api.requests().size() == 1);
  CHECK(api.requests()[0].target == "/service/SVC123/purge/product-7");
  CHECK(api.requests()[0].header("fastly-soft-purge") == "1");
}

TEST_CASE("cdn URLs: an unknown option is named, and a token in the URL is refused", "[cdn][registry]") {
  env_var fastly_token("CCP_TEST_FASTLY_TOKEN", token);
  ccp::registry r;
  ccp::enable_cdn(r);
  auto code_of = [&](std::string const& url) {
    try {
      r.make_backend(url);
    } catch (ccp::cache_error const& e) {
      return e.code();
    }
    return std::error_code();
  };
  CHECK_THAT(what_of([&] { r.make_backend("fastly://SVC?token_env=CCP_TEST_FASTLY_TOKEN&colour=blue"); }),
             Catch::Contains("unknown fastly:// option 'colour'"));
  CHECK(code_of("fastly://SVC?token_env=CCP_TEST_FASTLY_TOKEN&colour=blue") == ccp::error::bad_configuration);
  CHECK_THAT(what_of([&] { r.make_backend("cloudflare://Z?token_env=CCP_TEST_FASTLY_TOKEN&zone=1"); }),
             Catch::Contains("unknown cloudflare:// option 'zone'"));
  CHECK_THAT(what_of([&] { r.make_backend("varnish://127.0.0.1?purge=yes"); }),
             Catch::Contains("unknown varnish:// option 'purge'"));
  CHECK_THAT(what_of([&] { r.make_backend("fastly://SVC?token=abc"); }), Catch::Contains("token_env"));
  CHECK_THAT(what_of([&] { r.make_backend("fastly://SVC?token_env=CCP_TEST_FASTLY_TOKEN&timeout=soon"); }),
             Catch::Contains("timeout"));
  CHECK_THAT(what_of([&] { r.make_backend("fastly://?token_env=CCP_TEST_FASTLY_TOKEN"); }),
             Catch::Contains("no service id"));
  CHECK_THAT(what_of([&] { r.make_backend("fastly://SVC?token_env=CCP_TEST_FASTLY_TOKEN&api=ftp://x"); }),
             Catch::Contains("http or https"));
}

TEST_CASE("cdn URLs: a missing token variable is named, its value never shown", "[cdn][registry]") {
  ::unsetenv("CCP_TEST_NO_SUCH_TOKEN");
  ccp::registry r;
  ccp::enable_cdn(r);
  auto what = what_of([&] { r.make_backend("fastly://SVC?token_env=CCP_TEST_NO_SUCH_TOKEN"); });
  CHECK_THAT(what, Catch::Contains("CCP_TEST_NO_SUCH_TOKEN") && Catch::Contains("not set"));
  what = what_of([&] { r.make_backend("cloudflare://Z?token_env=CCP_TEST_NO_SUCH_TOKEN"); });
  CHECK_THAT(what, Catch::Contains("CCP_TEST_NO_SUCH_TOKEN"));
  {
    env_var empty("CCP_TEST_NO_SUCH_TOKEN", "");
    CHECK_THAT(what_of([&] { r.make_backend("fastly://SVC?token_env=CCP_TEST_NO_SUCH_TOKEN"); }),
               Catch::Contains("CCP_TEST_NO_SUCH_TOKEN"));
  }
}

TEST_CASE("https endpoints: a failed TLS handshake fails the purge, naming the step, not the token", "[cdn][tls]") {
  // A plain-HTTP server behind an https:// base: the handshake fails, and
  // the error says where and what, without the token.
  fake_api api({fastly_ok()});
  auto o = fastly_options(api);
  o.api_base = "https://127.0.0.1:" + std::to_string(api.port());
  o.timeout = 1s;
  ccp::fastly_backend b(o);
  auto what = what_of([&] { b.invalidate_tag("product-7"); });
  CHECK_THAT(what, Catch::Contains("TLS handshake") && Catch::Contains("product-7"));
  CHECK_THAT(what, !Catch::Contains(token));
}

// --- CDN backends behind cache_page -----------------------------------------

namespace {

// A user's CDN backend: a page of code against ccp::backend. It records
// what it was told and decorates responses with an X-Edge-Tags header.
struct edge_log_backend {
  std::vector<std::string> purges;

  ccp::invalidation_result invalidate_tag(std::string const& tag, ccp::purge_mode mode) {
    purges.push_back(tag + (mode == ccp::purge_mode::soft ? " (soft)" : ""));
    ccp::invalidation_result r;
    r.tag = tag;
    r.mode = mode;
    return r;
  }
  void prepare_response(http::fields& f, std::span<std::string_view const> tags) {
    std::string value;
    for (auto const t : tags) value.append(value.empty() ? "" : " ").append(t);
    f.set("X-Edge-Tags", value);
  }
};
static_assert(ccp::cdn_backend<edge_log_backend>);

auto catalog_handler(std::shared_ptr<std::atomic<int>> calls) {
  return [calls](http::request<http::string_body> const& req) {
    ++*calls;
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.body() = "product " + std::string(req.target());
    res.prepare_payload();
    return res;
  };
}

} // namespace

TEST_CASE("a PUT through a cached handler purges nothing at a composite's Varnish, tags purge what they name",
          "[cdn][varnish][composite]") {
  fake_api varnish({reply{200, {}, {}}});
  ccp::registry r;
  ccp::enable_cdn(r);
  auto site = r.make_backend("composite://memory,varnish://127.0.0.1:" + std::to_string(varnish.port()));
  auto const calls = std::make_shared<std::atomic<int>>(0);
  auto cached = ccp::cache_page({.tags = {"catalog"}, .backend = site}, catalog_handler(calls));

  auto first = ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/products/7")));
  CHECK(first.header("xkey") == "catalog"); // the target guard is internal: not in the header
  CHECK(ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/products/7"))).body() == first.body());
  CHECK(calls->load() == 1);

  auto put = ccp_test::receive(cached(ccp_test::make_request(http::verb::put, "/products/7")));
  CHECK(put.response.result_int() == 200);
  CHECK(varnish.requests().empty()); // the guard was bumped in the store alone
  ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/products/7")));
  CHECK(calls->load() == 3); // the PUT's handler call, then a miss: the local entry is gone

  site.invalidate_tag("catalog");
  auto const purges = varnish.requests();
  REQUIRE(purges.size() == 1);
  CHECK(purges[0].method == "PURGE");
  CHECK(purges[0].header("xkey-purge") == "catalog");
}

TEST_CASE("a user's CDN backend in a composite decorates hits and is purged by tag, never by guard",
          "[cdn][composite]") {
  auto edge = std::make_shared<edge_log_backend>();
  auto site = ccp::any_backend(std::make_shared<ccp::composite_backend>(
      std::vector<ccp::composite_member>{{"memory", ccp::any_backend(std::make_shared<ccp::memory_backend>())},
                                         {"edge", ccp::any_backend(edge)}}));
  auto const calls = std::make_shared<std::atomic<int>>(0);
  auto cached = ccp::cache_page({.tags = {"catalog", [](ccp::request_view const& v) { return "path-" + v.decoded_path().substr(1); }},
                                 .backend = site},
                                catalog_handler(calls));

  ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/shoes")));
  auto hit = ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/shoes")));
  CHECK(calls->load() == 1);
  CHECK(hit.header("X-Edge-Tags") == "catalog path-shoes");
  ccp_test::receive(cached(ccp_test::make_request(http::verb::post, "/shoes")));
  CHECK(edge->purges.empty());
  site.invalidate_tag("catalog", ccp::purge_mode::soft);
  CHECK(edge->purges == std::vector<std::string>{"catalog (soft)"});
}

TEST_CASE("a CDN backend alone behind cache_page stores nothing and says so, and still tags the response",
          "[cdn][varnish]") {
  fake_api varnish({reply{200, {}, {}}});
  ccp::registry r;
  ccp::enable_cdn(r);
  auto edge = r.make_backend("varnish://127.0.0.1:" + std::to_string(varnish.port()));
  auto const calls = std::make_shared<std::atomic<int>>(0);
  auto cached = ccp::cache_page({.tags = {"catalog"}, .backend = edge}, catalog_handler(calls));
  for (int i = 0; i < 2; ++i) {
    auto res = ccp_test::receive(cached(ccp_test::make_request(http::verb::get, "/products/7")));
    CHECK(res.header("xkey") == "catalog");
    CHECK_THAT(std::string(res.header("Cache-Status")), Catch::Contains("fwd=miss; detail=no-store-backend"));
  }
  CHECK(calls->load() == 2);
}

TEST_CASE("composite:// lists names and member URLs, and a member that keeps no pages cannot be read from",
          "[cdn][composite][registry]") {
  ccp::registry r;
  ccp::enable_cdn(r);
  env_var token("CCP_TEST_CF_TOKEN", "t");
  auto b = r.make_backend("composite://memory,varnish://127.0.0.1:6081,cloudflare://ZONE?token_env=CCP_TEST_CF_TOKEN");
  auto const* c = b.target<ccp::composite_backend>();
  REQUIRE(c != nullptr);
  REQUIRE(c->size() == 3);
  CHECK(c->member(2).name == "cloudflare");
  CHECK(c->member(0).backend.target<ccp::memory_backend>() != nullptr);
  CHECK(c->member(1).name == "varnish");
  auto const* v = c->member(1).backend.target<ccp::varnish_backend>();
  REQUIRE(v != nullptr);
  CHECK(v->options().port == 6081);
  CHECK(c->member(2).backend.target<ccp::cloudflare_backend>() != nullptr);
  CHECK_THAT(what_of([&] { r.make_backend("composite://varnish://127.0.0.1:6081,memory"); }),
             Catch::Contains("read member 0 ('varnish') keeps no pages"));
  CHECK_THAT(what_of([&] { r.make_backend("composite://memory,,varnish://127.0.0.1:6081"); }),
             Catch::Contains("empty member name"));
}
