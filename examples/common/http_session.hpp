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

#include <chrono>

namespace ccp_examples {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// One connection: requests in turn until the client or an error ends it.
// Any read error, a malformed request included, ends the connection.
template <class Respond>
asio::awaitable<void> serve(tcp::socket socket, Respond& respond) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    stream.expires_after(std::chrono::seconds(30));
    auto [read_error, read] = co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
    if (read_error) break;
    http::message_generator msg = co_await respond(std::move(req));
    bool const keep_alive = msg.keep_alive();
    stream.expires_after(std::chrono::seconds(30));
    auto [write_error, written] = co_await beast::async_write(stream, std::move(msg), asio::as_tuple(asio::use_awaitable));
    if (write_error || !keep_alive) break;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

// Each connection on a strand of its own.
template <class Respond>
asio::awaitable<void> accept(tcp::acceptor& acceptor, Respond& respond) {
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()),
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec) continue;
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
