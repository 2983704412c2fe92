// A small HTTP/1.1 client for purge requests (CDN APIs, Varnish), written
// once as a coroutine on the caller's executor (async_send) and run on a
// private io_context for callers that want to block (send): one connection
// per request, a timeout on every step and a deadline on the whole purge,
// https with SNI and the peer verified against the system's trusted roots,
// and one retry on a connection failure, a 5xx, or a 429 (after its
// Retry-After, capped). Purges are rare and idempotent, so neither pooling
// nor the retry needs more care than that.
//
// Errors say what failed (method, host, port, path, status, the start of
// the body); request headers never appear in them, and `secret` (the API
// token) is blanked wherever an answer might echo it.
#pragma once

#include <custom_cache_page/error.hpp>

#include <custom_cache_page/detail/run_blocking.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace custom_cache_page::detail {

// Where purge requests go: scheme, host, port and a path prefix.
struct http_endpoint {
  bool tls = false;
  std::string host;
  std::string port;
  std::string base_path; // "" or "/prefix", never ending in '/'

  std::string describe() const { return host + ":" + port; }
  // The Host field: the port only when not the scheme's default.
  std::string host_field() const {
    std::string out = host.find(':') == std::string::npos ? host : "[" + host + "]";
    if (port != (tls ? "443" : "80")) out += ":" + port;
    return out;
  }
};

// "https://api.fastly.com", "http://127.0.0.1:8080/base" -> endpoint;
// anything else throws cache_error(bad_configuration) naming `what`.
inline http_endpoint parse_http_endpoint(std::string_view url, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return cache_error(error::bad_configuration,
                       std::string(what) + ": bad URL '" + std::string(url) + "': " + std::string(why));
  };
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) throw bad("not an absolute URL");
  http_endpoint e;
  if (parsed->scheme() == "https") e.tls = true;
  else if (parsed->scheme() != "http") throw bad("the scheme must be http or https");
  e.host = std::string(parsed->encoded_host());
  if (e.host.empty()) throw bad("no host");
  // "[::1]" -> "::1" for the resolver.
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  e.port = parsed->has_port() ? std::string(parsed->port()) : (e.tls ? "443" : "80");
  if (e.port.empty()) throw bad("empty port");
  if (parsed->has_query() || parsed->has_fragment()) throw bad("a query or fragment has no meaning here");
  e.base_path = std::string(parsed->encoded_path());
  while (!e.base_path.empty() && e.base_path.back() == '/') e.base_path.pop_back();
  return e;
}

struct http_client_options {
  std::chrono::milliseconds timeout{5000}; // each of resolve, connect, handshake, write, read
  std::chrono::milliseconds max_retry_wait{5000}; // cap on a 429's Retry-After
  std::chrono::milliseconds deadline{15000};      // the whole purge, retry included
  std::string secret;                             // blanked from error messages
};

// A transport failure (resolve, connect, TLS, write, read, timeout).
class http_transport_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// The start of `body`, on one line, for an error message.
inline std::string body_excerpt(std::string_view body, std::size_t max = 200) {
  std::string out;
  for (char c : body.substr(0, max)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  if (body.size() > max) out += "...";
  return out;
}

// Seconds to wait from a Retry-After value (delta-seconds only; an HTTP
// date or garbage gives nothing).
inline std::optional<std::chrono::seconds> parse_retry_after(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  std::uint32_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size()) return std::nullopt;
  return std::chrono::seconds(n);
}

class http_client {
public:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  using response = boost::beast::http::response<boost::beast::http::string_body>;

  http_client(http_endpoint endpoint, http_client_options options)
      : endpoint_(std::move(endpoint)), options_(std::move(options)) {
    if (endpoint_.tls) {
      namespace ssl = boost::asio::ssl;
      ssl_ = std::make_shared<ssl::context>(ssl::context::tls_client);
      ssl_->set_default_verify_paths();
      ssl_->set_verify_mode(ssl::verify_peer);
    }
  }

  http_endpoint const& endpoint() const { return endpoint_; }
  http_client_options const& options() const { return options_; }

  // "POST api.fastly.com:443/service/x/purge/k", for messages.
  std::string describe(request const& req) const {
    return std::string(req.method_string()) + " " + endpoint_.describe() + std::string(req.target());
  }

  // The path of a request: the endpoint's prefix and `path`.
  std::string target(std::string_view path) const { return endpoint_.base_path + std::string(path); }

  // Sends `req` (Host, Content-Length and Connection set here) and returns
  // the answer, whatever its status. Retries once after a transport
  // failure, a 5xx or a 429; throws http_transport_error when the last
  // attempt could not complete or the deadline passed first.
  boost::asio::awaitable<response> async_send(request req) const {
    namespace http = boost::beast::http;
    req.version(11);
    req.set(http::field::host, endpoint_.host_field());
    req.keep_alive(false);
    req.prepare_payload();
    auto const deadline = clock::now() + options_.deadline;
    for (int attempt = 0;; ++attempt) {
      bool const last = attempt == 1;
      std::optional<response> res;
      try {
        res = co_await exchange(req, deadline);
      } catch (http_transport_error const&) {
        if (last) throw;
      }
      if (!res) continue;
      auto const status = res->result_int();
      if (last || (status < 500 && status != 429)) co_return std::move(*res);
      if (status == 429) {
        auto wait = parse_retry_after(std::string_view((*res)[http::field::retry_after])).value_or(std::chrono::seconds(1));
        boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor,
                                        std::min<clock::time_point>(deadline, clock::now() + std::min<std::chrono::milliseconds>(wait, options_.max_retry_wait)));
        co_await pause.async_wait(boost::asio::use_awaitable);
      }
    }
  }

  // The same, blocking the calling thread (and no other) until it is done.
  response send(request req) const { return run_blocking(async_send(std::move(req))); }

  std::string redact(std::string text) const {
    if (options_.secret.empty()) return text;
    for (auto at = text.find(options_.secret); at != std::string::npos; at = text.find(options_.secret, at))
      text.replace(at, options_.secret.size(), "<redacted>");
    return text;
  }

private:
  using tcp = boost::asio::ip::tcp;
  using clock = std::chrono::steady_clock;
  static constexpr auto no_throw = boost::asio::as_tuple(boost::asio::use_awaitable);

  [[noreturn]] void fail(request const& req, std::string_view step, boost::system::error_code ec) const {
    std::string why = ec == boost::beast::error::timeout || ec == boost::asio::error::operation_aborted
                          ? "timed out (" + std::to_string(options_.timeout.count()) + "ms a step, " +
                                std::to_string(options_.deadline.count()) + "ms the whole purge)"
                          : ec.message();
    throw http_transport_error(redact(describe(req) + ": " + std::string(step) + " failed: " + why));
  }

  // When a step must be done: its timeout, or the purge's deadline if sooner.
  clock::time_point step_end(clock::time_point deadline) const {
    return std::min(deadline, clock::now() + options_.timeout);
  }

  // Resolving has no expiry of its own: a timer cancels it.
  boost::asio::awaitable<tcp::resolver::results_type> resolve(request const& req, clock::time_point deadline) const {
    auto const ex = co_await boost::asio::this_coro::executor;
    auto resolver = std::make_shared<tcp::resolver>(ex);
    boost::asio::steady_timer limit(ex, step_end(deadline));
    limit.async_wait([resolver](boost::system::error_code ec) {
      if (!ec) resolver->cancel();
    });
    auto [ec, results] = co_await resolver->async_resolve(endpoint_.host, endpoint_.port, no_throw);
    limit.cancel();
    if (ec) fail(req, "resolving " + endpoint_.host, ec);
    co_return results;
  }

  template <class Stream>
  boost::asio::awaitable<response> write_and_read(Stream& stream, request const& req, clock::time_point deadline) const {
    namespace http = boost::beast::http;
    auto& lowest = boost::beast::get_lowest_layer(stream);
    lowest.expires_at(step_end(deadline));
    if (auto [ec, n] = co_await http::async_write(stream, req, no_throw); ec) fail(req, "sending", ec);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 20);
    lowest.expires_at(step_end(deadline));
    if (auto [ec, n] = co_await http::async_read(stream, buffer, parser, no_throw); ec) fail(req, "reading the answer", ec);
    co_return parser.release();
  }

  boost::asio::awaitable<response> exchange(request const& req, clock::time_point deadline) const {
    auto const results = co_await resolve(req, deadline);
    boost::beast::tcp_stream tcp_stream(co_await boost::asio::this_coro::executor);
    tcp_stream.expires_at(step_end(deadline));
    if (auto [ec, at] = co_await tcp_stream.async_connect(results, no_throw); ec) fail(req, "connecting", ec);
    if (!endpoint_.tls) co_return co_await write_and_read(tcp_stream, req, deadline);
    boost::beast::ssl_stream<boost::beast::tcp_stream> stream(std::move(tcp_stream), *ssl_);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), endpoint_.host.c_str()))
      fail(req, "setting SNI", {static_cast<int>(::ERR_get_error()), boost::asio::error::get_ssl_category()});
    stream.set_verify_callback(boost::asio::ssl::host_name_verification(endpoint_.host));
    boost::beast::get_lowest_layer(stream).expires_at(step_end(deadline));
    if (auto [ec] = co_await stream.async_handshake(boost::asio::ssl::stream_base::client, no_throw); ec)
      fail(req, "TLS handshake", ec);
    co_return co_await write_and_read(stream, req, deadline);
  }

  http_endpoint endpoint_;
  http_client_options options_;
  std::shared_ptr<boost::asio::ssl::context> ssl_;
};

} // namespace custom_cache_page::detail
