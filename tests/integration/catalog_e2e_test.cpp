// End-to-end tests of the demo: the real catalog_server binary, started on a
// free port, spoken to over loopback HTTP/1.1. Each test case starts its
// own server, so no case sees another's cache.
#include "../support/process.hpp"
#include "../support/redis_server.hpp"
#include "../support/server_required.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <catch2/catch.hpp>

#include <charconv>
#include <array>
#include <latch>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using reply = http::response<http::string_body>;
using header_list = std::vector<std::pair<std::string, std::string>>;

// The server's path, or the policy of server_required.hpp when it is missing.
std::string catalog_server_program() {
#ifdef CCP_CATALOG_SERVER
  std::string const path = CCP_CATALOG_SERVER;
#else
  std::string const path;
#endif
  if (!path.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  std::string const message = "catalog_server was not built (configure with CUSTOM_CACHE_PAGE_BUILD_EXAMPLES=ON)";
  if (ccp_test::running_under_ci()) throw std::runtime_error(message + ": under CI a missing server is a failure");
  std::fprintf(stderr, "SKIPPED: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(77);
}

// One request on a connection of its own; every step within 5 s.
reply exchange(std::uint16_t port, http::verb method, std::string const& target, std::string body = {},
           header_list const& headers = {}) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  auto run = [&](char const* step) {
    ioc.run();
    ioc.restart();
    if (ec) throw std::runtime_error(std::string(step) + " " + target + ": " + ec.message());
  };
  auto done = [&](beast::error_code e, auto&&...) { ec = e; };

  stream.expires_after(5s);
  stream.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), done);
  run("connecting for");

  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  req.keep_alive(false);
  for (auto const& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == http::verb::put || method == http::verb::post) {
    req.body() = std::move(body);
    req.prepare_payload();
  }
  stream.expires_after(5s);
  http::async_write(stream, req, done);
  run("writing");

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16u << 20);
  parser.skip(method == http::verb::head); // a HEAD answer has a Content-Length but no body
  stream.expires_after(5s);
  http::async_read(stream, buffer, parser, done);
  run("reading the answer to");

  // Connection: close, so the server must now close: any further byte (a
  // body sent after a HEAD answer, say) is a framing error.
  std::size_t extra = buffer.size();
  for (;;) {
    char chunk[512];
    std::size_t n = 0;
    stream.expires_after(5s);
    stream.async_read_some(asio::buffer(chunk), [&](beast::error_code e, std::size_t got) {
      ec = e;
      n = got;
    });
    ioc.run();
    ioc.restart();
    extra += n;
    if (ec == asio::error::eof) break;
    if (ec) throw std::runtime_error("waiting for the server to close after " + target + ": " + ec.message());
  }
  if (extra != 0) throw std::runtime_error(std::to_string(extra) + " bytes after the answer to " + target);
  return parser.release();
}

std::string field(reply const& r, std::string_view name) {
  auto it = r.find(beast::string_view(name.data(), name.size()));
  return it == r.end() ? std::string{} : std::string(it->value());
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Whether our Cache-Status member has the parameter `param` ("hit",
// "stored", "fwd=miss"): items after the cache's name, split at ';'.
bool cache_status_has(reply const& r, std::string_view param) {
  std::string const value = field(r, "Cache-Status");
  std::string_view rest = value;
  auto const name_end = rest.find(';');
  if (name_end == std::string_view::npos || trimmed(rest.substr(0, name_end)) != "custom_cache_page") return false;
  rest.remove_prefix(name_end + 1);
  while (!rest.empty()) {
    auto const end = rest.find(';');
    if (trimmed(rest.substr(0, end)) == param) return true;
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return false;
}

// The string value of "key" in a flat JSON object (the server's own output).
std::string json_field(std::string_view json, std::string_view key) {
  std::string const needle = "\"" + std::string(key) + "\":\"";
  auto const start = json.find(needle);
  if (start == std::string_view::npos) return {};
  auto const from = start + needle.size();
  return std::string(json.substr(from, json.find('"', from) - from));
}

// A backend URL on the test redis-server, under a key prefix of its own.
std::string redis_backend_url(std::string const& test) {
  return ccp_test::redis_server::shared().url() + "?prefix=ccpt:e2e:" + test + ":";
}

// Sets an environment variable for the servers started in its lifetime.
class scoped_env {
public:
  scoped_env(char const* name, std::string const& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  scoped_env(scoped_env const&) = delete;
  scoped_env& operator=(scoped_env const&) = delete;
  ~scoped_env() { ::unsetenv(name_); }

private:
  char const* name_;
};

class catalog_server {
public:
  explicit catalog_server(std::vector<std::string> extra_args = {})
      : process_(arguments(std::move(extra_args)), /*capture_stdout=*/true) {
    auto line = process_.read_line(10s);
    if (!line) FAIL("catalog_server printed no listening line within 10 s");
    first_line_ = *line;
    constexpr std::string_view prefix = "catalog_server listening on http://127.0.0.1:";
    REQUIRE(first_line_.starts_with(prefix));
    auto const digits = std::string_view(first_line_).substr(prefix.size());
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port_);
    if (ec != std::errc{} || port_ == 0 || end == digits.data() + digits.size() || *end != '/')
      FAIL("no port in the listening line: " << first_line_);
    second_line_ = process_.read_line(10s).value_or("");
  }

  std::uint16_t port() const { return port_; }
  std::string const& first_line() const { return first_line_; }
  std::string const& second_line() const { return second_line_; }

  reply get(std::string const& target, header_list const& headers = {}) const {
    return exchange(port_, http::verb::get, target, {}, headers);
  }
  reply head(std::string const& target) const { return exchange(port_, http::verb::head, target); }
  reply put(std::string const& target, std::string body) const {
    return exchange(port_, http::verb::put, target, std::move(body));
  }
  reply post(std::string const& target, std::string body = {}) const {
    return exchange(port_, http::verb::post, target, std::move(body));
  }

  // catalog_db_queries_total from /metrics.
  std::uint64_t db_queries() const {
    auto const metrics = get("/metrics");
    REQUIRE(metrics.result() == http::status::ok);
    std::string_view body = metrics.body();
    constexpr std::string_view name = "\ncatalog_db_queries_total ";
    auto const at = body.find(name);
    REQUIRE(at != std::string_view::npos);
    std::uint64_t n = 0;
    auto const digits = body.substr(at + name.size());
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    REQUIRE(ec == std::errc{});
    return n;
  }

private:
  static std::vector<std::string> arguments(std::vector<std::string> extra) {
    std::vector<std::string> argv{catalog_server_program(), "--port", "0"};
    for (auto& a : extra) argv.push_back(std::move(a));
    return argv;
  }

  ccp_test::child_process process_;
  std::uint16_t port_ = 0;
  std::string first_line_, second_line_;
};

} // namespace

TEST_CASE("catalog_server announces where it listens", "[e2e]") {
  catalog_server server;
  auto const port = std::to_string(server.port());
  CHECK(server.first_line() == "catalog_server listening on http://127.0.0.1:" + port + "/ (backend: memory)");
  CHECK(server.second_line() == "try: curl -si http://127.0.0.1:" + port + "/products?category=books");
  auto const index = server.get("/");
  CHECK(index.result() == http::status::ok);
  CHECK(index.body().find("/products") != std::string::npos);
}

TEST_CASE("the second GET of a list page is a hit that queries nothing", "[e2e]") {
  catalog_server server;
  auto const before = server.db_queries();
  auto const first = server.get("/products?category=books&page=1");
  auto const second = server.get("/products?category=books&page=1");
  auto const after = server.db_queries();

  REQUIRE(first.result() == http::status::ok);
  REQUIRE(second.result() == http::status::ok);
  INFO("first: " << field(first, "Cache-Status") << "; second: " << field(second, "Cache-Status"));
  CHECK(cache_status_has(first, "fwd=miss"));
  CHECK(cache_status_has(first, "stored"));
  CHECK(cache_status_has(second, "hit"));
  CHECK(first.body() == second.body());
  CHECK(first.body().find(R"("category":"books")") != std::string::npos);
  CHECK(after - before == 1);
}

TEST_CASE("renaming a product invalidates its page and its category's lists only", "[e2e]") {
  catalog_server server;
  auto const product = server.get("/products/5");
  REQUIRE(product.result() == http::status::ok);
  CHECK(cache_status_has(product, "stored"));
  CHECK(cache_status_has(server.get("/products/5"), "hit"));

  std::string const category = json_field(product.body(), "category");
  REQUIRE(!category.empty());
  std::string const other = category == "books" ? "games" : "books";
  std::string const own_list = "/products?category=" + category + "&page=1";
  std::string const other_list = "/products?category=" + other + "&page=1";
  for (auto const& list : {own_list, other_list}) {
    CHECK(cache_status_has(server.get(list), "stored"));
    CHECK(cache_status_has(server.get(list), "hit"));
  }

  auto const put = server.put("/products/5", "Renamed");
  REQUIRE(put.result() == http::status::ok);
  CHECK(json_field(put.body(), "name") == "Renamed");
  // Through the cache_page wrapper, which erases the GET entry of the URL.
  CHECK(cache_status_has(put, "fwd=method"));

  auto const after = server.get("/products/5");
  INFO("GET /products/5 after the PUT: " << field(after, "Cache-Status"));
  CHECK(cache_status_has(after, "fwd=miss"));
  CHECK(json_field(after.body(), "name") == "Renamed");

  auto const own = server.get(own_list);
  INFO(own_list << " after the PUT: " << field(own, "Cache-Status"));
  CHECK(cache_status_has(own, "fwd=miss"));
  CHECK(own.body().find(R"("name":"Renamed")") != std::string::npos);

  auto const untouched = server.get(other_list);
  INFO(other_list << " after the PUT: " << field(untouched, "Cache-Status"));
  CHECK(cache_status_has(untouched, "hit"));
}

TEST_CASE("a product page carries the tag of its product", "[e2e]") {
  catalog_server server;
  for (auto const* url : {"/products/5", "/products/10"}) {
    CHECK(cache_status_has(server.get(url), "stored"));
    CHECK(cache_status_has(server.get(url), "hit"));
  }
  auto const done = server.post("/invalidate?tag=model-product-5");
  CHECK(done.result() == http::status::ok);
  CHECK(done.body().find("\"entries_removed\":1") != std::string::npos);
  CHECK(cache_status_has(server.get("/products/5"), "fwd=miss"));
  CHECK(cache_status_has(server.get("/products/10"), "hit"));
}

TEST_CASE("PUT answers 404 for an unknown product and 400 without a name", "[e2e]") {
  catalog_server server;
  CHECK(server.put("/products/100000", "Renamed").result() == http::status::not_found);
  CHECK(server.put("/products/5", "").result() == http::status::bad_request);
  CHECK(server.get("/products/100000").result() == http::status::not_found);
  auto const still = server.get("/products/5");
  CHECK(json_field(still.body(), "name") == "Product 5");
}

TEST_CASE("adding a product bumps the versioned tag of every list page", "[e2e]") {
  catalog_server server;
  // 60 books fill pages 1 to 3; a new one lands on page 4.
  std::string const last = "/products?category=books&page=4";
  std::string const other = "/products?category=games&page=1";
  for (auto const& list : {last, other}) {
    CHECK(cache_status_has(server.get(list), "stored"));
    CHECK(cache_status_has(server.get(list), "hit"));
  }
  CHECK(server.get(last).body().find("New book") == std::string::npos);

  auto const created = server.post("/products", "New book,books");
  REQUIRE(created.result() == http::status::created);
  CHECK(json_field(created.body(), "name") == "New book");

  auto const page = server.get(last);
  INFO(last << " after the POST: " << field(page, "Cache-Status"));
  CHECK(cache_status_has(page, "fwd=miss"));
  CHECK(page.body().find(R"("name":"New book")") != std::string::npos);
  // Another category has no tag in common with the new product but the
  // versioned "products".
  auto const games = server.get(other);
  INFO(other << " after the POST: " << field(games, "Cache-Status"));
  CHECK(cache_status_has(games, "fwd=miss"));

  CHECK(server.post("/products", "no category here").result() == http::status::bad_request);
  CHECK(server.post("/products", "Thing,no-such-category").result() == http::status::bad_request);
}

TEST_CASE("If-None-Match with the entry's ETag answers 304", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=tools&page=2";
  server.get(url);
  auto const hit = server.get(url);
  REQUIRE(cache_status_has(hit, "hit"));
  std::string const etag = field(hit, "ETag");
  REQUIRE(!etag.empty());

  auto const not_modified = server.get(url, {{"If-None-Match", etag}});
  CHECK(not_modified.result() == http::status::not_modified);
  CHECK(not_modified.body().empty());
  CHECK(field(not_modified, "ETag") == etag);

  auto const modified = server.get(url, {{"If-None-Match", "\"something-else\""}});
  CHECK(modified.result() == http::status::ok);
  CHECK(modified.body() == hit.body());
}

TEST_CASE("HEAD of a cached URL answers from the entry", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=music&page=2";
  auto const get = server.get(url);
  REQUIRE(get.result() == http::status::ok);
  REQUIRE(!get.body().empty());

  auto const head = server.head(url);
  INFO("HEAD: " << field(head, "Cache-Status"));
  CHECK(head.result() == http::status::ok);
  CHECK(cache_status_has(head, "hit"));
  CHECK(field(head, "Content-Length") == std::to_string(get.body().size()));
  CHECK(field(head, "ETag") == field(get, "ETag"));
  CHECK(head.body().empty());

  // A HEAD miss runs the handler, which must not send the body either.
  std::string const uncached = "/products?category=music&page=3";
  auto const head_miss = server.head(uncached);
  INFO("HEAD miss: " << field(head_miss, "Cache-Status"));
  CHECK(head_miss.result() == http::status::ok);
  CHECK(cache_status_has(head_miss, "fwd=miss"));
  CHECK(head_miss.body().empty());
  auto const get_after = server.get(uncached);
  CHECK(field(head_miss, "Content-Length") == std::to_string(get_after.body().size()));
}

TEST_CASE("responses that set a cookie are never served from the cache", "[e2e]") {
  catalog_server server;
  auto const first = server.get("/greeting");
  auto const second = server.get("/greeting");
  REQUIRE(first.result() == http::status::ok);
  REQUIRE(second.result() == http::status::ok);
  auto const cookie1 = field(first, "Set-Cookie");
  auto const cookie2 = field(second, "Set-Cookie");
  CHECK(cookie1.starts_with("visitor="));
  CHECK(cookie2.starts_with("visitor="));
  CHECK(cookie1 != cookie2);
  CHECK(first.body() != second.body());
  CHECK_FALSE(cache_status_has(first, "hit"));
  CHECK_FALSE(cache_status_has(second, "hit"));
  CHECK(!field(second, "Cache-Status").empty());
}

TEST_CASE("POST /invalidate invalidates the tag it names", "[e2e]") {
  catalog_server server;
  std::string const url = "/products?category=garden&page=1";
  server.get(url);
  REQUIRE(cache_status_has(server.get(url), "hit"));

  auto const done = server.post("/invalidate?tag=products");
  CHECK(done.result() == http::status::ok);
  CHECK(json_field(done.body(), "tag") == "products");
  CHECK(done.body().find("\"entries_removed\":") != std::string::npos);
  CHECK(cache_status_has(server.get(url), "fwd=miss"));

  CHECK(server.post("/invalidate").result() == http::status::bad_request);
}

TEST_CASE("unknown routes answer 404, and Authorization bypasses the cache", "[e2e]") {
  catalog_server server;
  CHECK(server.get("/no/such/route").result() == http::status::not_found);

  std::string const url = "/products?category=books&page=2";
  server.get(url);
  auto const authorized = server.get(url, {{"Authorization", "Bearer secret"}});
  INFO("with Authorization: " << field(authorized, "Cache-Status"));
  CHECK(authorized.result() == http::status::ok);
  CHECK(cache_status_has(authorized, "fwd=bypass"));
  CHECK_FALSE(cache_status_has(authorized, "hit"));
}

TEST_CASE("an unknown category answers 404 and is not cached", "[e2e]") {
  catalog_server server;
  auto const first = server.get("/products?category=no-such-thing");
  auto const second = server.get("/products?category=no-such-thing");
  CHECK(first.result() == http::status::not_found);
  CHECK(second.result() == http::status::not_found);
  CHECK(cache_status_has(second, "detail=status"));
}

TEST_CASE("concurrent clients all get the same page", "[e2e]") {
  catalog_server server({"--threads", "4"});
  std::string const url = "/products?category=games&page=3";
  std::string const expected = server.get(url).body();
  REQUIRE(!expected.empty());

  std::vector<std::thread> clients;
  std::vector<std::string> failures(8);
  for (std::size_t i = 0; i < failures.size(); ++i)
    clients.emplace_back([&, i] {
      try {
        for (int n = 0; n < 10; ++n) {
          // Uncached product pages too, so that handlers run on several threads at once.
          auto const page = exchange(server.port(), http::verb::get, url);
          auto const one = exchange(server.port(), http::verb::get, "/products/" + std::to_string(1 + i * 10 + n));
          if (page.body() != expected || one.result() != http::status::ok) failures[i] = "wrong answer";
        }
      } catch (std::exception const& e) {
        failures[i] = e.what();
      }
    });
  for (auto& t : clients) t.join();
  for (auto const& f : failures) CHECK(f.empty());
}

TEST_CASE("two servers on one redis backend share pages and invalidations", "[e2e][redis]") {
  std::string const backend = redis_backend_url("two-servers");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  CHECK(a.first_line().ends_with("(backend: " + backend + ")"));

  // Filled by A, served to B.
  std::string const books = "/products?category=books&page=1";
  auto const filled = a.get(books);
  REQUIRE(filled.result() == http::status::ok);
  INFO("A: " << field(filled, "Cache-Status"));
  CHECK(cache_status_has(filled, "fwd=miss"));
  CHECK(cache_status_has(filled, "stored"));
  auto const shared = b.get(books);
  INFO("B: " << field(shared, "Cache-Status"));
  CHECK(cache_status_has(shared, "hit"));
  CHECK(shared.body() == filled.body());

  // Product 6 is a book: renaming it on A drops B's entries for its page
  // and for the books lists.
  std::string const product = "/products/6";
  CHECK(cache_status_has(b.get(product), "stored"));
  CHECK(cache_status_has(b.get(product), "hit"));
  REQUIRE(a.put(product, "Renamed on A").result() == http::status::ok);
  auto const page = b.get(product);
  INFO("B " << product << " after the PUT on A: " << field(page, "Cache-Status"));
  CHECK(cache_status_has(page, "fwd=miss"));
  // Only the cache is shared: B's catalog still has the old name.
  CHECK(json_field(page.body(), "name") == "Product 6");
  auto const list = b.get(books);
  INFO("B " << books << " after the PUT on A: " << field(list, "Cache-Status"));
  CHECK(cache_status_has(list, "fwd=miss"));

  // An invalidation on B reaches the entries A reads.
  std::string const games = "/products?category=games&page=1";
  CHECK(cache_status_has(a.get(games), "stored"));
  CHECK(cache_status_has(a.get(games), "hit"));
  auto const done = b.post("/invalidate?tag=products");
  CHECK(done.result() == http::status::ok);
  CHECK(json_field(done.body(), "tag") == "products");
  auto const after = a.get(games);
  INFO("A " << games << " after POST /invalidate on B: " << field(after, "Cache-Status"));
  CHECK(cache_status_has(after, "fwd=miss"));
}

TEST_CASE("CUSTOM_CACHE_PAGE_BACKEND may name a redis backend", "[e2e][redis]") {
  std::string const backend = redis_backend_url("environment");
  std::optional<catalog_server> from_env;
  {
    scoped_env env("CUSTOM_CACHE_PAGE_BACKEND", backend);
    from_env.emplace();
  }
  CHECK(from_env->first_line().ends_with("(backend: " + backend + ")"));
  catalog_server from_flag({"--backend", backend});

  std::string const url = "/products?category=tools&page=1";
  CHECK(cache_status_has(from_env->get(url), "stored"));
  auto const shared = from_flag.get(url);
  INFO("server given --backend: " << field(shared, "Cache-Status"));
  CHECK(cache_status_has(shared, "hit"));
}

namespace {

// `targets.size()` GETs sent at once, each from a client thread of its own
// (bounded: one request per client, every step within 5 s).
std::vector<reply> burst(std::vector<std::uint16_t> const& ports, std::vector<std::string> const& targets) {
  std::vector<reply> replies(targets.size());
  std::vector<std::string> failures(targets.size());
  std::latch start(static_cast<std::ptrdiff_t>(targets.size()));
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < targets.size(); ++i)
    clients.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        replies[i] = exchange(ports[i % ports.size()], http::verb::get, targets[i]);
      } catch (std::exception const& e) {
        failures[i] = e.what();
      }
    });
  for (auto& t : clients) t.join();
  for (auto const& f : failures) REQUIRE(f.empty());
  return replies;
}

} // namespace

TEST_CASE("256 concurrent cold requests for one page run its handler once, for four pages four times", "[e2e][stampede]") {
  catalog_server server;
  // What one handler call of a list page costs in queries.
  auto const before_one = server.db_queries();
  REQUIRE(server.get("/products?category=books&page=9").result() == http::status::ok);
  auto const per_call = server.db_queries() - before_one;
  REQUIRE(per_call >= 1);

  auto const before = server.db_queries();
  auto replies = burst({server.port()}, std::vector<std::string>(256, "/products?category=games&page=1"));
  CHECK(server.db_queries() - before == per_call);
  for (auto const& r : replies) {
    CHECK(r.result() == http::status::ok);
    CHECK(r.body() == replies.front().body());
  }

  std::vector<std::string> four;
  for (int i = 0; i < 256; ++i) four.push_back("/products?category=tools&page=" + std::to_string(1 + i % 4));
  auto const before_four = server.db_queries();
  for (auto const& r : burst({server.port()}, four)) CHECK(r.result() == http::status::ok);
  CHECK(server.db_queries() - before_four == 4 * per_call);
}

TEST_CASE("128 concurrent cold requests split over two servers sharing redis run the handler once", "[e2e][stampede][redis]") {
  std::string const backend = redis_backend_url("stampede");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  auto const before_one = a.db_queries();
  REQUIRE(a.get("/products?category=books&page=9").result() == http::status::ok);
  auto const per_call = a.db_queries() - before_one;
  REQUIRE(per_call >= 1);

  auto const before = a.db_queries() + b.db_queries();
  auto replies = burst({a.port(), b.port()}, std::vector<std::string>(128, "/products?category=games&page=2"));
  CHECK(a.db_queries() + b.db_queries() - before == per_call);
  for (auto const& r : replies) {
    CHECK(r.result() == http::status::ok);
    CHECK(r.body() == replies.front().body());
  }
}

TEST_CASE("two servers sharing redis: concurrent requests for a page that is not stored never wait for a fill",
          "[e2e][stampede][redis]") {
  // The request that loses the fill lock would otherwise wait coalesce_wait
  // (5 s) for an entry that never comes: the leader leaves a pass marker.
  std::string const backend = redis_backend_url("pass");
  catalog_server a({"--backend", backend});
  catalog_server b({"--backend", backend});
  using namespace std::chrono;
  milliseconds worst{0};
  for (int pair = 0; pair < 15; ++pair) {
    std::string const target = "/products?category=unknown-" + std::to_string(pair); // 404: not stored
    std::latch start(2);
    std::array<milliseconds, 2> took{};
    std::array<std::string, 2> failures;
    std::array<std::uint16_t, 2> const ports{a.port(), b.port()};
    std::vector<std::thread> clients;
    for (std::size_t i = 0; i < 2; ++i)
      clients.emplace_back([&, i] {
        start.arrive_and_wait();
        auto const t0 = steady_clock::now();
        try {
          if (exchange(ports[i], http::verb::get, target).result() != http::status::not_found) failures[i] = "not a 404";
        } catch (std::exception const& e) {
          failures[i] = e.what();
        }
        took[i] = duration_cast<milliseconds>(steady_clock::now() - t0);
      });
    for (auto& t : clients) t.join();
    for (auto const& f : failures) REQUIRE(f.empty());
    worst = std::max({worst, took[0], took[1]});
  }
  INFO("slowest of 30 requests: " << worst.count() << " ms");
  CHECK(worst < 1s);
  std::printf("two servers, 15 concurrent pairs for a page that is not stored: slowest request %lld ms\n",
              static_cast<long long>(worst.count()));
}

