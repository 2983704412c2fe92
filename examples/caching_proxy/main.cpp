// caching_proxy: a reverse proxy that caches whole responses with
// cache_page, in front of any HTTP/1.1 origin. Freshness is the origin's
// (freshness_lifetime: s-maxage, max-age, Expires, heuristics), and its
// Cache-Control and Expires reach clients byte for byte.
//
//   caching_proxy --listen 8081 --upstream 127.0.0.1:8080
//   curl -si http://127.0.0.1:8081/page   # Cache-Status: ...; fwd=miss; stored
//   curl -si http://127.0.0.1:8081/page   # Cache-Status: ...; hit
//
// One thread, a connection to the origin per request.
#include "../common/http_session.hpp"

#include <custom_cache_page/custom_cache_page.hpp>
#include <custom_cache_page/freshness.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ccp = custom_cache_page;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

namespace {

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

constexpr std::string_view via = "1.1 caching_proxy";
constexpr std::size_t max_upstream_body = std::size_t{64} << 20;

// Hop-by-hop fields (RFC 9110 §7.6.1): meant for one connection, never
// forwarded. Connection names more of them; Proxy-* are the proxy's own.
template <bool isRequest, class Fields>
void remove_hop_by_hop(http::header<isRequest, Fields>& h) {
  std::vector<std::string> names;
  auto const listed = h.equal_range(http::field::connection);
  for (auto it = listed.first; it != listed.second; ++it)
    for (auto const token : http::token_list(it->value())) names.emplace_back(token);
  for (auto const& f : h)
    if (beast::iequals(f.name_string().substr(0, 6), "proxy-")) names.emplace_back(f.name_string());
  for (auto const f : {http::field::connection, http::field::keep_alive, http::field::te, http::field::trailer,
                       http::field::transfer_encoding, http::field::upgrade})
    h.erase(f);
  for (auto const& name : names) h.erase(name);
}

// The request as the origin gets it: on a connection of its own, which
// closes after the answer. Expect is dropped: the body was read already.
// The client's Host is kept, as the cache key keeps it: one origin may
// serve several sites. (An HTTP/1.0 client may send none.)
request outbound(request req, std::string_view upstream) {
  remove_hop_by_hop(req.base());
  req.erase(http::field::expect);
  if (req.find(http::field::host) == req.end()) req.set(http::field::host, upstream);
  req.insert(http::field::via, via);
  req.version(11);
  req.keep_alive(false);
  req.prepare_payload();
  return req;
}

// The origin's response as the client gets it.
response inbound(response res, unsigned version, bool keep_alive, bool head) {
  remove_hop_by_hop(res.base());
  res.insert(http::field::via, via);
  res.version(version);
  res.keep_alive(keep_alive);
  // A body read whole now has a length; a HEAD answer or a 1xx, 204 or 304
  // has no body, and keeps the origin's Content-Length, if any.
  auto const status = res.result_int();
  if (!head && status >= 200 && status != 204 && status != 304) res.prepare_payload();
  return res;
}

response bad_gateway(unsigned version, bool keep_alive, std::string_view why) {
  response res{http::status::bad_gateway, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::via, via);
  res.keep_alive(keep_alive);
  res.body() = "bad gateway: " + std::string(why) + "\n";
  res.prepare_payload();
  return res;
}

// The handler cache_page wraps: the request goes to the origin, whose
// answer comes back (502 when there is none).
class forwarder {
public:
  forwarder(tcp::resolver::results_type endpoints, std::string upstream)
      : endpoints_(std::move(endpoints)), upstream_(std::move(upstream)) {}

  net::awaitable<response> operator()(request req) const {
    auto const version = req.version();
    bool const keep_alive = req.keep_alive();
    bool const head = req.method() == http::verb::head;
    std::string failure;
    request const out = outbound(std::move(req), upstream_);
    std::optional<response> res = co_await fetch(out, head, failure);
    if (!res) {
      std::cerr << "caching_proxy: " << upstream_ << ": " << failure << '\n';
      co_return bad_gateway(version, keep_alive, failure);
    }
    co_return inbound(std::move(*res), version, keep_alive, head);
  }

private:
  // One exchange with the origin; nothing, and `failure` set, when a step
  // fails or takes too long. (Error codes, not exceptions: nothing here is
  // awaited in a catch handler, which GCC 12 cannot compile.)
  net::awaitable<std::optional<response>> fetch(request const& req, bool head, std::string& failure) const {
    auto const executor = co_await net::this_coro::executor;
    beast::tcp_stream stream(executor);
    stream.expires_after(10s);
    auto const connected = co_await stream.async_connect(endpoints_, net::as_tuple(net::use_awaitable));
    if (std::get<0>(connected)) co_return failed(failure, "connect", std::get<0>(connected));
    stream.expires_after(30s);
    auto const written = co_await http::async_write(stream, req, net::as_tuple(net::use_awaitable));
    if (std::get<0>(written)) co_return failed(failure, "write", std::get<0>(written));

    // Interim answers (103 Early Hints) are skipped: the client and the
    // cache get the final one. A few at most, so an origin cannot loop us.
    beast::flat_buffer buffer;
    for (int interim = 0; interim < 8; ++interim) {
      http::response_parser<http::string_body> parser;
      parser.body_limit(max_upstream_body);
      parser.skip(head); // a HEAD answer has a Content-Length but no body
      stream.expires_after(60s);
      auto const read = co_await http::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
      if (std::get<0>(read)) co_return failed(failure, "read", std::get<0>(read));
      if (parser.get().result_int() / 100 == 1) continue;
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return parser.release();
    }
    failure = "read: too many interim responses";
    co_return std::nullopt;
  }

  static std::nullopt_t failed(std::string& failure, std::string_view step, beast::error_code const& ec) {
    failure = std::string(step) + ": " + ec.message();
    return std::nullopt;
  }

  tcp::resolver::results_type endpoints_;
  std::string upstream_;
};

// Statuses whose responses a shared cache may store without a directive
// allowing it (heuristically cacheable, RFC 9110 §15.1), but 206: a part
// is not the page.
std::vector<http::status> proxy_cacheable_statuses() {
  std::vector<http::status> out;
  for (unsigned s : {200u, 203u, 204u, 300u, 301u, 308u, 404u, 405u, 410u, 414u, 501u})
    out.push_back(static_cast<http::status>(s));
  return out;
}

// The proxy: the origin's freshness, the origin's header fields as sent,
// the client's Cache-Control honoured (RFC 9111 §5.2.1), and stale entries
// with a validator kept a day to be revalidated with the origin (a 304
// costs it no body).
auto make_proxy(forwarder forward) {
  return ccp::cache_page({.timeout = [](auto const& res) { return ccp::freshness_lifetime(res); },
                          .cacheable_statuses = proxy_cacheable_statuses(),
                          .patch_response_headers = false,
                          .revalidate_for = 24h,
                          .honour_request_directives = true},
                         std::move(forward));
}

struct options {
  unsigned short listen = 8081;
  std::string host, port; // the upstream's
};

constexpr char const* usage = "usage: caching_proxy --listen PORT --upstream HOST:PORT [--help]";

std::optional<unsigned short> parse_port(std::string_view s) {
  unsigned short n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return n;
}

// HOST:PORT, or [IPv6]:PORT.
bool parse_upstream(std::string_view s, options& o) {
  auto const colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || !parse_port(s.substr(colon + 1))) return false;
  auto host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  o.host = std::string(host);
  o.port = std::string(s.substr(colon + 1));
  return true;
}

std::optional<options> parse_arguments(int argc, char** argv, bool& help) {
  options o;
  bool upstream = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    std::optional<std::string_view> value;
    if (i + 1 < argc) value = argv[i + 1];
    if (arg == "--help" || arg == "-h") {
      help = true;
      continue;
    }
    if (arg == "--listen" && value && parse_port(*value)) o.listen = *parse_port(*value);
    else if (arg == "--upstream" && value && parse_upstream(*value, o)) upstream = true;
    else {
      std::cerr << "caching_proxy: bad argument '" << arg << "'\n";
      return std::nullopt;
    }
    ++i;
  }
  if (!upstream && !help) {
    std::cerr << "caching_proxy: --upstream is required\n";
    return std::nullopt;
  }
  return o;
}

} // namespace

int main(int argc, char** argv) {
  bool help = false;
  auto const opts = parse_arguments(argc, argv, help);
  if (!opts || help) {
    (help ? std::cout : std::cerr) << usage << '\n';
    return help ? 0 : 2;
  }

  net::io_context ioc(1);
  // Resolved once: a bad upstream fails at start-up, not on each request.
  beast::error_code ec;
  auto endpoints = tcp::resolver(ioc).resolve(opts->host, opts->port, ec);
  if (ec) {
    std::cerr << "caching_proxy: cannot resolve " << opts->host << ": " << ec.message() << '\n';
    return 1;
  }
  tcp::acceptor acceptor(ioc);
  if (!ccp_examples::listen(acceptor, opts->listen, ec)) {
    std::cerr << "caching_proxy: cannot listen on 127.0.0.1:" << opts->listen << ": " << ec.message() << '\n';
    return 1;
  }
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });

  auto const proxy = make_proxy(forwarder(std::move(endpoints), opts->host + ":" + opts->port));
  auto respond = [&proxy](request req) { return proxy(std::move(req)); };
  std::cout << "listening on 127.0.0.1:" << acceptor.local_endpoint().port() << std::endl;
  net::co_spawn(ioc, ccp_examples::accept(acceptor, respond), net::detached);
  ioc.run();
  return 0;
}
