// Turns an http::message_generator into a parsed response, as a client
// would receive it, and records where the body bytes came from.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ccp_test {

namespace http = boost::beast::http;

struct received {
  http::response<http::string_body> response;
  std::vector<char const*> buffer_addresses; // start of every buffer serialised
  int writes = 0; // buffer sequences prepared: the writes a socket would see
  std::string const& body() const { return response.body(); }
  std::string header(boost::beast::string_view name) const { return std::string(response[name]); }
  std::string cache_status() const { return header("Cache-Status"); }
};

// The bytes a socket would be sent, write by write (recorded in `out`).
inline std::string serialise(http::message_generator& gen, received& out) {
  std::string wire;
  boost::beast::error_code ec;
  while (!gen.is_done()) {
    auto buffers = gen.prepare(ec);
    ++out.writes;
    if (ec) throw std::runtime_error("serialising the response failed: " + ec.message());
    std::size_t n = 0;
    for (auto const& b : buffers) {
      out.buffer_addresses.push_back(static_cast<char const*>(b.data()));
      wire.append(static_cast<char const*>(b.data()), b.size());
      n += b.size();
    }
    gen.consume(n);
  }
  return wire;
}

// `head`: the response answers a HEAD request (the parser then reads no body).
inline received receive(http::message_generator gen, bool head = false) {
  received out;
  std::string const wire = serialise(gen, out);
  boost::beast::error_code ec;
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.skip(head);
  parser.put(boost::asio::buffer(wire), ec);
  if (ec && ec != http::error::need_more) throw std::runtime_error("parsing the response failed: " + ec.message());
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec) throw std::runtime_error("incomplete response: " + ec.message());
  }
  out.response = parser.release();
  return out;
}

inline http::request<http::string_body> make_request(http::verb method, std::string target,
                                                     std::vector<std::pair<std::string, std::string>> headers = {},
                                                     std::string body = {}) {
  http::request<http::string_body> req{method, target, 11};
  for (auto const& [name, value] : headers) req.insert(name, value);
  req.body() = std::move(body);
  if (!req.body().empty()) req.prepare_payload();
  return req;
}

// A GET of `target` through a cached handler, received.
received get(auto const& handler, std::string target, std::vector<std::pair<std::string, std::string>> headers = {}) {
  return receive(handler(make_request(http::verb::get, std::move(target), std::move(headers))));
}

// A request header with `target` (no body), for the key helpers.
inline http::request_header<> make_header(std::string_view target, http::verb method = http::verb::get) {
  http::request_header<> h;
  h.method(method);
  h.target(boost::beast::string_view(target.data(), target.size()));
  h.version(11);
  return h;
}

} // namespace ccp_test
