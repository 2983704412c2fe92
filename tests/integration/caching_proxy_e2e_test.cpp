// End-to-end tests of examples/caching_proxy: the real binary, started on a
// free port in front of an origin that runs in the test (a Beast server on
// a thread of its own, loopback only), which counts the requests it gets
// and records their header fields. Each test case starts its own origin
// and proxy, so no case sees another's cache.
#include "../support/catalog_server.hpp" // exchange, field, check_stored_then_hit, built_example
#include "../support/process.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <catch2/catch.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

using namespace ccp_test;

namespace {

// 1000 known bytes: the alphabet over and over.
std::string proxy_range_page() {
  std::string body(1000, ' ');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  return body;
}

std::string const proxy_short_page(100, 's');

// The origin: /fresh, /short (answers If-None-Match: "s1" with a 304) and
// /range; anything else is a 404.
class proxy_test_origin {
public:
  struct seen_request {
    std::string target;
    header_list fields;
    unsigned status = 0; // what the origin answered
    std::string header(std::string_view name) const {
      for (auto const& [n, v] : fields)
        if (beast::iequals(n, name)) return v;
      return {};
    }
    bool has(std::string_view name) const {
      for (auto const& f : fields)
        if (beast::iequals(f.first, name)) return true;
      return false;
    }
  };

  proxy_test_origin() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  proxy_test_origin(proxy_test_origin const&) = delete;
  proxy_test_origin& operator=(proxy_test_origin const&) = delete;
  ~proxy_test_origin() {
    ioc_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return port_; }

  std::vector<seen_request> requests(std::string_view target) const {
    std::lock_guard lock(mutex_);
    std::vector<seen_request> out;
    for (auto const& r : seen_)
      if (r.target == target) out.push_back(r);
    return out;
  }
  std::size_t count(std::string_view target) const { return requests(target).size(); }

private:
  static http::response<http::string_body> answer(http::request<http::string_body> const& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(req.keep_alive());
    if (req.target() == "/fresh") {
      res.set(http::field::cache_control, "max-age=60");
      res.set(http::field::etag, "\"f1\"");
      res.body() = "fresh body";
    } else if (req.target() == "/short") {
      res.set(http::field::cache_control, "max-age=1");
      res.set(http::field::etag, "\"s1\"");
      res.set(http::field::last_modified, "Sun, 06 Nov 1994 08:49:37 GMT");
      if (req[http::field::if_none_match] == "\"s1\"") res.result(http::status::not_modified);
      else res.body() = proxy_short_page;
    } else if (req.target() == "/range") {
      res.set(http::field::cache_control, "max-age=60");
      res.set(http::field::etag, "\"r1\"");
      res.body() = proxy_range_page();
    } else {
      res.result(http::status::not_found);
      res.body() = "no such page";
    }
    if (res.result() != http::status::not_modified) res.prepare_payload();
    return res;
  }

  void record(http::request<http::string_body> const& req, unsigned status) {
    seen_request r{std::string(req.target()), {}, status};
    for (auto const& f : req) r.fields.emplace_back(std::string(f.name_string()), std::string(f.value()));
    std::lock_guard lock(mutex_);
    seen_.push_back(std::move(r));
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto accepted = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (std::get<0>(accepted)) co_return;
      asio::co_spawn(ioc_, serve(std::move(std::get<1>(accepted))), asio::detached);
    }
  }

  // Requests in turn until the peer closes (at most 100: bounded).
  asio::awaitable<void> serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (int i = 0; i < 100; ++i) {
      http::request<http::string_body> req;
      stream.expires_after(5s);
      auto const read = co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
      if (std::get<0>(read)) break;
      auto res = answer(req);
      record(req, res.result_int());
      stream.expires_after(5s);
      auto const written = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (std::get<0>(written) || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::vector<seen_request> seen_;
  std::thread thread_;
};

std::string caching_proxy_program() {
#ifdef CCP_CACHING_PROXY
  return built_example(CCP_CACHING_PROXY, "caching_proxy");
#else
  return built_example({}, "caching_proxy");
#endif
}

// caching_proxy --listen 0 --upstream 127.0.0.1:<origin>, on the port its
// first line names.
class caching_proxy_process {
public:
  explicit caching_proxy_process(std::uint16_t upstream)
      : process_({caching_proxy_program(), "--listen", "0", "--upstream", "127.0.0.1:" + std::to_string(upstream)},
                 /*capture_stdout=*/true) {
    auto const line = process_.read_line(10s);
    if (!line) FAIL("caching_proxy printed no listening line within 10 s");
    constexpr std::string_view prefix = "listening on 127.0.0.1:";
    REQUIRE(line->starts_with(prefix));
    auto const digits = std::string_view(*line).substr(prefix.size());
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port_);
    if (ec != std::errc{} || port_ == 0 || end != digits.data() + digits.size()) FAIL("no port in: " << *line);
  }

  reply get(std::string const& target, header_list const& headers = {}) const {
    return exchange(port_, http::verb::get, target, {}, headers);
  }

private:
  child_process process_;
  std::uint16_t port_ = 0;
};

} // namespace

TEST_CASE("RFC 9111 §4: the second GET through the proxy is a hit that replays the origin's fields as sent", "[proxy]") {
  proxy_test_origin origin;
  caching_proxy_process proxy(origin.port());
  auto const first = proxy.get("/fresh");
  auto const second = proxy.get("/fresh");
  check_stored_then_hit(first, second);
  CHECK(origin.count("/fresh") == 1);
  CHECK(second.body() == "fresh body");
  // patch_response_headers = false: Cache-Control byte for byte, no Expires added.
  CHECK(field(first, "Cache-Control") == "max-age=60");
  CHECK(field(second, "Cache-Control") == "max-age=60");
  CHECK(second.count(http::field::expires) == 0);
  CHECK(field(second, "ETag") == "\"f1\"");
  CHECK(field(second, "Via") == "1.1 caching_proxy");
}

TEST_CASE("RFC 9110 §7.6.1: hop-by-hop fields do not reach the origin but Via does (§7.6.3)", "[proxy]") {
  proxy_test_origin origin;
  caching_proxy_process proxy(origin.port());
  auto const answer = proxy.get("/fresh", {{"Connection", "close, X-Hop"},
                                           {"X-Hop", "1"},
                                           {"Keep-Alive", "timeout=5"},
                                           {"Proxy-Authorization", "Basic eDp5"},
                                           {"X-End-To-End", "kept"}});
  REQUIRE(answer.result() == http::status::ok);
  auto const seen = origin.requests("/fresh");
  REQUIRE(seen.size() == 1);
  CHECK_FALSE(seen[0].has("X-Hop"));
  CHECK_FALSE(seen[0].has("Keep-Alive"));
  CHECK_FALSE(seen[0].has("Proxy-Authorization"));
  CHECK(seen[0].header("Connection") == "close"); // the proxy's own: one request per connection
  CHECK(seen[0].header("X-End-To-End") == "kept");
  CHECK(seen[0].header("Via") == "1.1 caching_proxy");
  CHECK(seen[0].header("Host") == "catalog.test"); // the client's
}

TEST_CASE("RFC 9111 §4.3.2: If-None-Match on a cached entry gets a 304 from the proxy alone", "[proxy]") {
  proxy_test_origin origin;
  caching_proxy_process proxy(origin.port());
  REQUIRE(proxy.get("/fresh").result() == http::status::ok);
  auto const not_modified = proxy.get("/fresh", {{"If-None-Match", "\"f1\""}});
  INFO("Cache-Status: " << field(not_modified, "Cache-Status"));
  CHECK(not_modified.result() == http::status::not_modified);
  CHECK(not_modified.body().empty());
  CHECK(field(not_modified, "ETag") == "\"f1\"");
  CHECK(origin.count("/fresh") == 1);
}

TEST_CASE("RFC 9110 §14.2 and §13.1.5: a Range of a cached page is a 206 from the proxy and an If-Range that "
          "does not match gets the whole page",
          "[proxy]") {
  proxy_test_origin origin;
  caching_proxy_process proxy(origin.port());
  auto const page = proxy_range_page();
  auto const full = proxy.get("/range");
  REQUIRE(full.result() == http::status::ok);
  REQUIRE(full.body() == page);

  auto const part = proxy.get("/range", {{"Range", "bytes=10-19"}});
  INFO("Cache-Status: " << field(part, "Cache-Status"));
  CHECK(part.result() == http::status::partial_content);
  CHECK(field(part, "Content-Range") == "bytes 10-19/1000");
  CHECK(part.body() == page.substr(10, 10));

  auto const whole = proxy.get("/range", {{"Range", "bytes=10-19"}, {"If-Range", "\"other\""}});
  CHECK(whole.result() == http::status::ok);
  CHECK(whole.body() == page);
  CHECK(origin.count("/range") == 1);
}

TEST_CASE("RFC 9111 §4.3.3 and §4.3.4: a stale entry is revalidated with If-None-Match, and a 304 freshens it",
          "[proxy]") {
  proxy_test_origin origin;
  caching_proxy_process proxy(origin.port());
  auto const first = proxy.get("/short");
  REQUIRE(first.result() == http::status::ok);
  REQUIRE(first.body() == proxy_short_page);
  CHECK(cache_status_has(first, "stored"));

  std::this_thread::sleep_for(1200ms); // past max-age=1: stale
  auto const second = proxy.get("/short");
  INFO("second: " << field(second, "Cache-Status"));
  auto const seen = origin.requests("/short");
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].header("If-None-Match") == "\"s1\"");
  CHECK(seen[1].status == 304);
  CHECK(second.result() == http::status::ok);
  CHECK(second.body() == proxy_short_page);
  CHECK(cache_status_has(second, "fwd=stale"));
  CHECK(cache_status_has(second, "fwd-status=304"));

  auto const third = proxy.get("/short");
  INFO("third: " << field(third, "Cache-Status"));
  CHECK(cache_status_has(third, "hit"));
  CHECK(third.body() == proxy_short_page);
  CHECK(origin.count("/short") == 2);
}
