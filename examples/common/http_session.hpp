// The Beast server plumbing the demo and the end-to-end benchmark share:
// one coroutine per connection, reading requests in turn and writing each
// answer, and an accept loop that puts each connection on a strand.
//
//   asio::co_spawn(ioc, ccp_examples::accept(acceptor, respond), asio::detached);
//
// `respond` is called as co_await respond(std::move(req)) and gives an
// http::message_generator.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ccp_examples {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Why a request that parsed must still not be served, or nothing. Its
// framing must be what Beast read: a Transfer-Encoding other than chunked
// alone leaves the body's end unknown (RFC 9112 §6.3), and what follows the
// header would be read as a second request (request smuggling). And an
// HTTP/1.1 request has exactly one Host (RFC 9112 §3.2).
inline std::optional<std::string_view> malformed(http::request<http::string_body> const& req) {
  auto const encodings = req.count(http::field::transfer_encoding);
  if (encodings > 1 || (encodings == 1 && !beast::iequals(req[http::field::transfer_encoding], "chunked")))
    return "a Transfer-Encoding other than chunked";
  if (encodings == 1 && req.count(http::field::content_length) > 0) return "both Transfer-Encoding and Content-Length";
  auto const hosts = req.count(http::field::host);
  if (hosts > 1) return "more than one Host";
  if (hosts == 0 && req.version() >= 11) return "no Host";
  return std::nullopt;
}

// 400, and the connection closes after it: the bytes after the header
// cannot be trusted to start a request.
inline http::message_generator bad_request(unsigned version, std::string_view why) {
  http::response<http::string_body> res{http::status::bad_request, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(false);
  res.body() = "bad request: " + std::string(why) + "\n";
  res.prepare_payload();
  return http::message_generator(std::move(res));
}

// Whether a read failed on the request itself (Beast's parser rejected
// it), not on the connection: it then gets a 400.
inline bool unparsable(beast::error_code const& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() && ec != http::error::end_of_stream &&
         ec != http::error::partial_message;
}

// One connection: requests in turn until the client or an error ends it.
// A request that cannot be read or served as it is framed gets a 400,
// and the connection ends with it.
template <class Respond>
asio::awaitable<void> serve(tcp::socket socket, Respond& respond) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    stream.expires_after(std::chrono::seconds(30));
    auto [read_error, read] = co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
    if (unparsable(read_error)) {
      co_await beast::async_write(stream, bad_request(11, read_error.message()), asio::as_tuple(asio::use_awaitable));
      break;
    }
    if (read_error) break;
    // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
    std::optional<http::message_generator> msg;
    if (auto const why = malformed(req)) msg.emplace(bad_request(req.version(), *why));
    else {
      http::message_generator answer = co_await respond(std::move(req));
      msg.emplace(std::move(answer));
    }
    bool const keep_alive = msg->keep_alive();
    stream.expires_after(std::chrono::seconds(30));
    auto [write_error, written] = co_await beast::async_write(stream, std::move(*msg), asio::as_tuple(asio::use_awaitable));
    if (write_error || !keep_alive) break;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

// Whether an accept failed for want of descriptors or memory: the
// connection stays queued, and accepting again at once would spin.
inline bool out_of_resources(beast::error_code const& ec) {
  if (ec.category() != asio::error::get_system_category()) return false;
  return ec.value() == EMFILE || ec.value() == ENFILE || ec.value() == ENOBUFS || ec.value() == ENOMEM;
}

// Each connection on a strand of its own. Out of descriptors, it waits
// 100 ms before accepting again, rather than spin until some close.
template <class Respond>
asio::awaitable<void> accept(tcp::acceptor& acceptor, Respond& respond) {
  asio::steady_timer backoff(acceptor.get_executor());
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()),
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec) {
      // (ec is not read after the wait: GCC 12 does not keep a structured
      // binding alive across a co_await.)
      if (out_of_resources(ec)) {
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      continue;
    }
    // Small answers leave at once rather than wait for more to coalesce
    // with (Nagle): a response written in two parts (a handler's, with
    // more fields than a write takes) would wait for the client's delayed
    // ACK, 40 ms, before its second part.
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(socket.get_executor(), serve(tcp::socket(std::move(socket)), respond), asio::detached);
  }
}

// Listens on 127.0.0.1:`port` (0: a free one); false, with `ec` set, when it cannot.
inline bool listen(tcp::acceptor& acceptor, unsigned short port, beast::error_code& ec) {
  tcp::endpoint const endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  if (acceptor.open(endpoint.protocol(), ec); !ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  return !ec;
}

} // namespace ccp_examples
