// The demo, catalog_server, as the integration tests drive it: started on a
// free port, spoken to over loopback HTTP/1.1, one connection per request.
#pragma once

#include "process.hpp"
#include "redis_server.hpp"
#include "server_required.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

namespace ccp_test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using reply = http::response<http::string_body>;
using header_list = std::vector<std::pair<std::string, std::string>>;

// The path of an example the build made (`path`, empty when it was not
// configured), or the policy of server_required.hpp when it is missing.
inline std::string built_example(std::string const& path, std::string_view name) {
  if (!path.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  std::string const message = std::string(name) + " was not built (configure with CUSTOM_CACHE_PAGE_BUILD_EXAMPLES=ON)";
  if (ccp_test::running_under_ci()) throw std::runtime_error(message + ": under CI a missing server is a failure");
  std::fprintf(stderr, "SKIPPED: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(77);
}

inline std::string catalog_server_program() {
#ifdef CCP_CATALOG_SERVER
  return built_example(CCP_CATALOG_SERVER, "catalog_server");
#else
  return built_example({}, "catalog_server");
#endif
}


// One request on a connection of its own; every step within 5 s.
inline reply exchange(std::uint16_t port, http::verb method, std::string const& target, std::string body = {},
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
  // The site's host, whatever the server's port, as behind a load
  // balancer: servers sharing a store then share its entries (keys hold
  // the host).
  req.set(http::field::host, "catalog.test");
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

// `bytes` sent as they are on a connection of its own; all that comes back
// until the server closes it (every step within 5 s).
inline std::string raw_exchange(std::uint16_t port, std::string const& bytes) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  std::size_t n = 0;
  auto step = [&](char const* what) {
    ioc.run();
    ioc.restart();
    if (ec && ec != asio::error::eof) throw std::runtime_error(std::string(what) + ": " + ec.message());
  };
  auto done = [&](beast::error_code e, std::size_t got = 0) {
    ec = e;
    n = got;
  };
  stream.expires_after(5s);
  stream.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), [&](beast::error_code e) { done(e); });
  step("connecting");
  stream.expires_after(5s);
  asio::async_write(stream, asio::buffer(bytes), done);
  step("writing");
  std::string received;
  while (ec != asio::error::eof) {
    char chunk[4096];
    stream.expires_after(5s);
    stream.async_read_some(asio::buffer(chunk), done);
    step("reading until the server closes");
    received.append(chunk, n);
  }
  return received;
}

inline std::string field(reply const& r, std::string_view name) {
  auto it = r.find(beast::string_view(name.data(), name.size()));
  return it == r.end() ? std::string{} : std::string(it->value());
}

inline std::string_view trimmed(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Whether our Cache-Status member has the parameter `param` ("hit",
// "stored", "fwd=miss"): items after the cache's name, split at ';'.
inline bool cache_status_has(reply const& r, std::string_view param) {
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

// A miss that stored, then a hit with the same body.
inline void check_stored_then_hit(reply const& first, reply const& second) {
  REQUIRE(first.result() == http::status::ok);
  REQUIRE(second.result() == http::status::ok);
  INFO("first: " << field(first, "Cache-Status") << "; second: " << field(second, "Cache-Status"));
  CHECK(cache_status_has(first, "fwd=miss"));
  CHECK(cache_status_has(first, "stored"));
  CHECK(cache_status_has(second, "hit"));
  CHECK(first.body() == second.body());
}

// The string value of "key" in a flat JSON object (the server's own output).
inline std::string json_field(std::string_view json, std::string_view key) {
  std::string const needle = "\"" + std::string(key) + "\":\"";
  auto const start = json.find(needle);
  if (start == std::string_view::npos) return {};
  auto const from = start + needle.size();
  return std::string(json.substr(from, json.find('"', from) - from));
}

// A backend URL on the test redis-server, under a key prefix of its own.
inline std::string redis_backend_url(std::string const& test) {
  return ccp_test::redis_server::shared().url() + "?prefix=ccpt:e2e:" + test + ":";
}

// Sets an environment variable for the servers started in its lifetime.
class scoped_env {
public:
  scoped_env(char const* name, std::string const& value) : name_(name) {
    if (char const* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  scoped_env(scoped_env const&) = delete;
  scoped_env& operator=(scoped_env const&) = delete;
  ~scoped_env() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

private:
  char const* name_;
  std::optional<std::string> old_;
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
  pid_t pid() const { return process_.pid(); }
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
  std::uint64_t db_queries() const { return metric("catalog_db_queries_total"); }

  // A metric without labels from /metrics (its integer part).
  std::uint64_t metric(std::string_view metric_name) const {
    auto const metrics = get("/metrics");
    REQUIRE(metrics.result() == http::status::ok);
    std::string_view body = metrics.body();
    std::string const name = "\n" + std::string(metric_name) + " ";
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


// `targets.size()` GETs sent at once, each from a client thread of its own
// (bounded: one request per client, every step within 5 s).
inline std::vector<reply> burst(std::vector<std::uint16_t> const& ports, std::vector<std::string> const& targets) {
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

} // namespace ccp_test
