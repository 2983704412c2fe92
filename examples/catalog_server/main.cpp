// catalog_server: the demo of custom_cache_page.
#include <custom_cache_page/custom_cache_page.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

http::message_generator handle_request(http::request<http::string_body>&& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain");
  res.keep_alive(req.keep_alive());
  res.body() = "catalog\n";
  res.prepare_payload();
  return res;
}

class session : public std::enable_shared_from_this<session> {
public:
  explicit session(tcp::socket socket) : stream_(std::move(socket)) {}
  void run() { read(); }

private:
  void read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) return close();
    bool keep_alive = req_.keep_alive();
    beast::async_write(stream_, handle_request(std::move(req_)),
                       [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                         if (ec || !keep_alive) return self->close();
                         self->read();
                       });
  }
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept(asio::make_strand(acceptor.get_executor()), [&acceptor](beast::error_code ec, tcp::socket s) {
    if (!ec) std::make_shared<session>(std::move(s))->run();
    if (acceptor.is_open()) accept(acceptor);
  });
}

} // namespace

int main(int argc, char** argv) {
  unsigned short port = 8080;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::atoi(argv[++i]));
    else {
      std::cerr << "usage: catalog_server [--port N]\n";
      return 2;
    }
  }
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), port});
  std::cout << "catalog_server listening on http://127.0.0.1:" << acceptor.local_endpoint().port() << "/" << std::endl;
  accept(acceptor);
  ioc.run();
}
