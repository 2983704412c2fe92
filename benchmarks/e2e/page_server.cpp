// page_server: the origin of the end-to-end benchmark (run.sh), on one io
// thread. Pages are N bytes of text/html:
//
//   GET /constant/N  a Beast handler's constant response, its body a static
//                    buffer sent in place: the floor
//   GET /origin/N    the same page with Cache-Control: public, max-age=3600
//                    (nginx's and Varnish's upstream)
//   GET /cached/N    the same page through cache_page (--backend URL,
//                    default memory://; the awaitable front end, or --sync)
//   GET /calls       how many times the page handler ran
//
//   page_server [--port N] [--backend URL] [--sync]
#include "../../examples/common/http_session.hpp"

#include <custom_cache_page/custom_cache_page.hpp>
#include <custom_cache_page/redis.hpp>

#include <charconv>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace ccp = custom_cache_page;
using namespace std::chrono_literals;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

namespace {

std::uint64_t calls = 0; // one io thread

// "/origin/1024" -> 1024, for pages of at most 1 MiB.
std::optional<std::size_t> page_size(std::string_view target, std::string_view route) {
  if (!target.starts_with(route)) return std::nullopt;
  target.remove_prefix(route.size());
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(target.data(), target.data() + target.size(), n);
  if (ec != std::errc{} || end != target.data() + target.size() || n > (1u << 20)) return std::nullopt;
  return n;
}

response text(request const& req, http::status status, std::string body) {
  response res{status, req.version()};
  res.set(http::field::content_type, "text/html");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

response page(request const& req, std::size_t size) {
  auto res = text(req, http::status::ok, std::string(size, 'x'));
  res.set(http::field::cache_control, "public, max-age=3600");
  return res;
}

// N bytes that outlive every answer.
std::string_view constant_bytes(std::size_t size) {
  static std::string const bytes(1u << 20, 'x');
  return std::string_view(bytes).substr(0, size);
}

http::response<http::span_body<char const>> constant(request const& req, std::size_t size) {
  http::response<http::span_body<char const>> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/html");
  res.keep_alive(req.keep_alive());
  auto const bytes = constant_bytes(size);
  res.body() = {bytes.data(), bytes.size()};
  res.prepare_payload();
  return res;
}

// The handler behind /origin and /cached.
response origin(request const& req) {
  ++calls;
  return page(req, page_size(req.target(), "/origin/").value_or(page_size(req.target(), "/cached/").value_or(0)));
}

ccp::cache_options options() { return {.timeout = 3600s, .tags = {ccp::versioned("pages")}}; }

struct routes {
  ccp::cached_handler<response (*)(request const&)> sync_cached = ccp::cache_page(options(), &origin);
  ccp::cached_handler<asio::awaitable<response> (*)(request const&)> async_cached =
      ccp::cache_page(options(), +[](request const& req) -> asio::awaitable<response> { co_return origin(req); });
  bool sync = false;

  asio::awaitable<http::message_generator> operator()(request req) {
    auto const target = req.target();
    if (auto n = page_size(target, "/constant/")) co_return constant(req, *n);
    if (page_size(target, "/origin/")) co_return origin(req);
    if (!page_size(target, "/cached/")) co_return text(req, target == "/calls" ? http::status::ok : http::status::not_found,
                                                       target == "/calls" ? std::to_string(calls) + "\n" : "no such page\n");
    if (sync) co_return sync_cached(std::move(req));
    co_return co_await async_cached(std::move(req));
  }
};

} // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::string backend = "memory://";
  bool sync = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    if (arg == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::stoi(argv[++i]));
    else if (arg == "--backend" && i + 1 < argc) backend = argv[++i];
    else if (arg == "--sync") sync = true;
    else {
      std::cerr << "usage: page_server [--port N] [--backend URL] [--sync]\n";
      return 2;
    }
  }
  try {
    ccp::enable_redis();
    auto& registry = ccp::default_registry();
    registry.add("default", registry.make_backend(backend));
    registry.set_default("default");
  } catch (std::exception const& e) {
    std::cerr << "page_server: " << e.what() << '\n';
    return 2;
  }
  routes r;
  r.sync = sync;
  asio::io_context ioc(1);
  asio::ip::tcp::acceptor acceptor(ioc);
  boost::beast::error_code ec;
  if (!ccp_examples::listen(acceptor, port, ec)) {
    std::cerr << "page_server: cannot listen: " << ec.message() << '\n';
    return 1;
  }
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&ioc](boost::beast::error_code, int) { ioc.stop(); });
  std::cout << "page_server listening on http://127.0.0.1:" << acceptor.local_endpoint().port() << "/" << std::endl;
  asio::co_spawn(ioc, ccp_examples::accept(acceptor, r), asio::detached);
  ioc.run();
  return 0;
}
