// A loopback HTTP peer that accepts connections, reads and records each
// request's head, and never answers: a CDN or Varnish that hangs. Its
// connections close when it is destroyed.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ccp_test {

class silent_server {
public:
  silent_server() : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  silent_server(silent_server const&) = delete;
  silent_server& operator=(silent_server const&) = delete;
  ~silent_server() {
    ioc_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return port_; }
  // The request lines received so far ("PURGE / HTTP/1.1").
  std::vector<std::string> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

private:
  struct connection {
    explicit connection(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
    boost::asio::ip::tcp::socket socket;
    boost::asio::streambuf head;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      auto c = std::make_shared<connection>(std::move(s));
      boost::asio::async_read_until(c->socket, c->head, "\r\n\r\n", [this, c](boost::system::error_code e, std::size_t) {
        if (e) return;
        std::string line(boost::asio::buffers_begin(c->head.data()), boost::asio::buffers_end(c->head.data()));
        std::lock_guard lock(mutex_);
        requests_.push_back(line.substr(0, line.find("\r\n")));
        held_.push_back(c); // kept open, unanswered
      });
      accept();
    });
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::vector<std::shared_ptr<connection>> held_;
  std::thread thread_;
};

} // namespace ccp_test
