// A small synchronous HTTP/1.1 client for purge requests (CDN APIs,
// Varnish): one connection per request, a timeout on every step, https with
// SNI and the peer verified against the system's trusted roots, and one
// retry on a connection failure, a 5xx, or a 429 (after its Retry-After,
// capped). Purges are rare and idempotent, so neither pooling nor the
// retry needs more care than that.
//
// Errors say what failed (method, host, port, path, status, the start of
// the body); request headers never appear in them, and `secret` (the API
// token) is blanked wherever an answer might echo it.
#pragma once

#include <custom_cache_page/error.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
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
#include <thread>
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
  // attempt could not complete.
  response send(request req) const {
    namespace http = boost::beast::http;
    req.version(11);
    req.set(http::field::host, endpoint_.host_field());
    req.keep_alive(false);
    req.prepare_payload();
    for (int attempt = 0;; ++attempt) {
      bool const last = attempt == 1;
      try {
        response res = exchange(req);
        auto const status = res.result_int();
        if (last || (status < 500 && status != 429)) return res;
        if (status == 429) {
          auto wait = parse_retry_after(std::string_view(res[http::field::retry_after]))
                          .value_or(std::chrono::seconds(1));
          std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(wait, options_.max_retry_wait));
        }
      } catch (http_transport_error const&) {
        if (last) throw;
      }
    }
  }

  std::string redact(std::string text) const {
    if (options_.secret.empty()) return text;
    for (auto at = text.find(options_.secret); at != std::string::npos; at = text.find(options_.secret, at))
      text.replace(at, options_.secret.size(), "<redacted>");
    return text;
  }

private:
  using tcp = boost::asio::ip::tcp;

  // Runs the asynchronous operation `start` to completion on `ioc` and
  // returns its error: a synchronous call that still honours the stream's
  // expiry (Beast's timeouts apply to asynchronous operations only).
  template <class Start>
  static boost::system::error_code run(boost::asio::io_context& ioc, Start&& start) {
    boost::system::error_code result = boost::asio::error::would_block;
    start([&](boost::system::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  [[noreturn]] void fail(request const& req, std::string_view step, boost::system::error_code ec) const {
    std::string why = ec == boost::beast::error::timeout || ec == boost::asio::error::operation_aborted
                          ? "timed out after " + std::to_string(options_.timeout.count()) + "ms"
                          : ec.message();
    throw http_transport_error(redact(describe(req) + ": " + std::string(step) + " failed: " + why));
  }

  tcp::resolver::results_type resolve(boost::asio::io_context& ioc, request const& req) const {
    tcp::resolver resolver(ioc);
    boost::asio::steady_timer deadline(ioc, options_.timeout);
    bool expired = false;
    deadline.async_wait([&](boost::system::error_code ec) {
      if (!ec) {
        expired = true;
        resolver.cancel();
      }
    });
    tcp::resolver::results_type results;
    auto ec = run(ioc, [&](auto handler) {
      resolver.async_resolve(endpoint_.host, endpoint_.port,
                             [&, handler](boost::system::error_code e, tcp::resolver::results_type r) mutable {
                               deadline.cancel();
                               results = std::move(r);
                               handler(e);
                             });
    });
    if (expired) ec = boost::beast::error::timeout;
    if (ec) fail(req, "resolving " + endpoint_.host, ec);
    return results;
  }

  template <class Stream>
  response write_and_read(boost::asio::io_context& ioc, Stream& stream, boost::beast::tcp_stream& lowest,
                          request const& req) const {
    namespace http = boost::beast::http;
    lowest.expires_after(options_.timeout);
    if (auto ec = run(ioc, [&](auto h) { http::async_write(stream, req, std::move(h)); })) fail(req, "sending", ec);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 20);
    lowest.expires_after(options_.timeout);
    if (auto ec = run(ioc, [&](auto h) { http::async_read(stream, buffer, parser, std::move(h)); }))
      fail(req, "reading the answer", ec);
    return parser.release();
  }

  response exchange(request const& req) const {
    boost::asio::io_context ioc;
    auto const results = resolve(ioc, req);
    boost::beast::tcp_stream tcp_stream(ioc);
    auto connect = [&](boost::beast::tcp_stream& s) {
      s.expires_after(options_.timeout);
      if (auto ec = run(ioc, [&](auto h) { s.async_connect(results, std::move(h)); }))
        fail(req, "connecting", ec);
    };
    if (!endpoint_.tls) {
      connect(tcp_stream);
      return write_and_read(ioc, tcp_stream, tcp_stream, req);
    }
    boost::beast::ssl_stream<boost::beast::tcp_stream> stream(std::move(tcp_stream), *ssl_);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), endpoint_.host.c_str()))
      fail(req, "setting SNI", {static_cast<int>(::ERR_get_error()), boost::asio::error::get_ssl_category()});
    stream.set_verify_callback(boost::asio::ssl::host_name_verification(endpoint_.host));
    auto& lowest = boost::beast::get_lowest_layer(stream);
    connect(lowest);
    lowest.expires_after(options_.timeout);
    if (auto ec = run(ioc, [&](auto h) { stream.async_handshake(boost::asio::ssl::stream_base::client, std::move(h)); }))
      fail(req, "TLS handshake", ec);
    return write_and_read(ioc, stream, lowest, req);
  }

  http_endpoint endpoint_;
  http_client_options options_;
  std::shared_ptr<boost::asio::ssl::context> ssl_;
};

} // namespace custom_cache_page::detail
