// The real catalog_server behind a real varnishd (tests/varnish/catalog.vcl),
// its pages in a composite backend: in memory, and tagged (xkey) and purged
// in Varnish. Requests go to Varnish; writes go to the origin, whose
// invalidations purge Varnish by tag.
#include "../support/catalog_server.hpp"
#include "../support/process.hpp"
#include "../support/server_required.hpp"
#include "../support/varnish_server.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <catch2/catch.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using reply = http::response<http::string_body>;

reply exchange(std::uint16_t port, std::string const& method, std::string const& target, std::string const& body = {}) {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                        "\r\nConnection: close\r\n";
  if (method == "PUT" || method == "POST") request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  request += "\r\n" + body;
  std::string const wire = ccp_test::raw_http(port, request, 5000ms);
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(wire), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) throw std::runtime_error("no whole answer to " + method + " " + target + " on port " +
                                                        std::to_string(port));
  return parser.release();
}

std::string field(reply const& r, char const* name) {
  auto it = r.find(name);
  return it == r.end() ? std::string{} : std::string(it->value());
}

// X-Varnish holds the request's id, then the id of the request that
// stored the object when the answer came from the cache.
bool varnish_hit(reply const& r) { return field(r, "X-Varnish").find(' ') != std::string::npos; }

std::uint64_t metric(std::string_view body, std::string_view name) {
  std::string const needle = "\n" + std::string(name) + " ";
  auto const at = body.find(needle);
  if (at == std::string_view::npos) throw std::runtime_error("no metric " + std::string(name));
  std::uint64_t n = 0;
  auto const digits = body.substr(at + needle.size());
  std::from_chars(digits.data(), digits.data() + digits.size(), n);
  return n;
}

// catalog_server on a port chosen beforehand (Varnish needs it first).
class origin {
public:
  origin(std::uint16_t port, std::string const& backend)
      : port_(port), process_({ccp_test::catalog_server_program(), "--port", std::to_string(port), "--backend", backend},
                              /*capture_stdout=*/true) {
    auto line = process_.read_line(10s);
    if (!line) FAIL("catalog_server printed no listening line within 10 s");
    REQUIRE(line->starts_with("catalog_server listening on http://127.0.0.1:" + std::to_string(port) + "/"));
  }
  std::uint16_t port() const { return port_; }
  reply get(std::string const& target) const { return exchange(port_, "GET", target); }
  reply put(std::string const& target, std::string const& body) const { return exchange(port_, "PUT", target, body); }
  // Requests that reached the origin's cached handlers (hits and misses).
  std::uint64_t requests() const {
    auto const m = get("/metrics");
    REQUIRE(m.result() == http::status::ok);
    return metric(m.body(), "custom_cache_page_hits_total") + metric(m.body(), "custom_cache_page_misses_total");
  }

private:
  std::uint16_t port_;
  ccp_test::child_process process_;
};

std::string composite_url(std::string const& varnish_member) {
  return "composite://?member=memory://&member=" + varnish_member;
}

} // namespace

TEST_CASE("Varnish in front of catalog_server: hits, purges by tag, soft purges", "[varnish][e2e]") {
  auto const origin_port = ccp_test::free_loopback_port();
  ccp_test::varnish_server varnish(origin_port);
  origin server(origin_port, composite_url(varnish.backend_url()));
  auto via_varnish = [&](std::string const& target) { return exchange(varnish.port(), "GET", target); };

  // Product 5 is in "garden", product 6 in "books".
  auto const direct = server.get("/products/5");
  REQUIRE(direct.result() == http::status::ok);
  INFO("origin xkey: " << field(direct, "xkey"));
  CHECK(field(direct, "xkey").find("model-product-5") != std::string::npos);
  CHECK(field(direct, "xkey").find("category-garden") != std::string::npos);

  auto const before = server.requests();
  auto const first = via_varnish("/products/5");
  auto const second = via_varnish("/products/5");
  REQUIRE(first.result() == http::status::ok);
  REQUIRE(second.result() == http::status::ok);
  INFO("X-Varnish: " << field(first, "X-Varnish") << " then " << field(second, "X-Varnish"));
  CHECK_FALSE(varnish_hit(first));
  CHECK(varnish_hit(second));
  CHECK(second.body() == first.body());
  CHECK(field(second, "xkey").empty()); // the VCL keeps the tags to itself
  CHECK(server.requests() - before == 1);

  for (auto const* target : {"/products/6", "/products?category=books", "/products?category=garden"}) {
    via_varnish(target);
    CHECK(varnish_hit(via_varnish(target)));
  }
  auto const cached = server.requests();

  // A write at the origin purges the objects of its tags, and only those.
  auto const put = server.put("/products/5", "Renamed rake");
  REQUIRE(put.result() == http::status::ok);
  auto const fresh = via_varnish("/products/5");
  CHECK_FALSE(varnish_hit(fresh));
  CHECK(fresh.body().find("Renamed rake") != std::string::npos);
  auto const list = via_varnish("/products?category=garden"); // tagged category-garden
  CHECK_FALSE(varnish_hit(list));
  CHECK(list.body().find("Renamed rake") != std::string::npos);
  CHECK(server.requests() - cached == 2);
  CHECK(varnish_hit(via_varnish("/products/6")));
  CHECK(varnish_hit(via_varnish("/products?category=books")));
  CHECK(varnish_hit(via_varnish("/products/5"))); // cached again
  auto const after_write = server.requests();
  CHECK(after_write - cached == 2);

  // A soft purge serves the stale object once while Varnish refetches.
  CHECK(varnish.purge("model-product-6", /*soft=*/true).starts_with("HTTP/1.1 200 Purged 1"));
  auto const stale = via_varnish("/products/6");
  CHECK(stale.result() == http::status::ok);
  CHECK(varnish_hit(stale)); // from grace, not from the origin
  // The background fetch reaches the origin (whose own copy answers).
  auto const deadline = std::chrono::steady_clock::now() + 3s;
  while (server.requests() == after_write && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(server.requests() - after_write == 1);
  auto const refreshed = via_varnish("/products/6");
  CHECK(varnish_hit(refreshed));
  CHECK(field(refreshed, "X-Varnish") != field(stale, "X-Varnish"));
  CHECK(varnish_hit(via_varnish("/products/5"))); // another tag: untouched
  CHECK(server.requests() - after_write == 1);

  // A purge of a tag nothing carries.
  CHECK(varnish.purge("model-product-999").starts_with("HTTP/1.1 200 Purged 0"));
  CHECK(varnish_hit(via_varnish("/products/5")));
}

TEST_CASE("a Varnish that cannot be reached fails the write's invalidation, not the local one", "[varnish][e2e]") {
  // Nothing listens on the Varnish member's port.
  auto const origin_port = ccp_test::free_loopback_port();
  auto const nowhere = ccp_test::free_loopback_port();
  origin server(origin_port, composite_url("varnish://127.0.0.1:" + std::to_string(nowhere) + "?timeout=1s"));

  REQUIRE(server.get("/products/5").result() == http::status::ok);
  auto const put = server.put("/products/5", "Renamed rake");
  CHECK(put.result() == http::status::internal_server_error);
  INFO(put.body());
  CHECK(put.body().find("model-product-5") != std::string::npos);
  CHECK(put.body().find("'varnish'") != std::string::npos);
  // The memory member was invalidated all the same.
  CHECK(server.get("/products/5").body().find("Renamed rake") != std::string::npos);

  // The failed purge is kept and retried: once a Varnish listens there, it lands.
  auto metrics = [&] { return server.get("/metrics").body(); };
  CHECK(metric(metrics(), "custom_cache_page_pending_invalidations") >= 1);
  ccp_test::varnish_server varnish(origin_port, nowhere);
  auto const deadline = std::chrono::steady_clock::now() + 5s;
  while (metric(metrics(), "custom_cache_page_pending_invalidations") != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  CHECK(metric(metrics(), "custom_cache_page_pending_invalidations") == 0);
  CHECK(metric(metrics(), "custom_cache_page_invalidations_retried_total") >= 1);
}
