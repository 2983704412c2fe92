// A real redis-server for integration tests: its own free loopback port,
// a temporary directory, no persistence. Started on first use, stopped when
// the test process exits (or by stop() for outage tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <hiredis.h>

#include "free_port.hpp"
#include "process.hpp"
#include "server_required.hpp"

namespace ccp_test {

class redis_server {
public:
  redis_server() : program_(require_program("redis-server", "redis-server")) {
    char tmpl[] = "/tmp/ccp-redis-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    start();
  }
  redis_server(redis_server const&) = delete;
  redis_server& operator=(redis_server const&) = delete;
  ~redis_server() {
    process_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // The one server shared by the tests of this process.
  static redis_server& shared() {
    static redis_server server;
    return server;
  }

  std::uint16_t port() const { return port_; }
  std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }

  // Starts (again) on the same port: outage tests stop and restart it.
  void start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (port_ == 0 || attempt > 0) port_ = free_loopback_port();
      process_ = std::make_unique<child_process>(std::vector<std::string>{
          program_, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no", "--dir", dir_.string(), "--logfile", (dir_ / "redis.log").string()});
      if (wait_until_ready()) return;
      process_.reset();
    }
    throw std::runtime_error("redis-server did not answer PING; see " + (dir_ / "redis.log").string());
  }

  void stop() { process_.reset(); }

  // A plain hiredis connection to the server, for tests that inspect it.
  std::unique_ptr<redisContext, void (*)(redisContext*)> connect() const {
    timeval tv{1, 0};
    std::unique_ptr<redisContext, void (*)(redisContext*)> ctx(
        redisConnectWithTimeout("127.0.0.1", port_, tv), &redisFree);
    if (!ctx || ctx->err) throw std::runtime_error("cannot connect to the test redis-server");
    return ctx;
  }

private:
  bool wait_until_ready() {
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!process_->running()) return false;
      timeval tv{0, 200000};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      if (c != nullptr && c->err == 0) {
        auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
        bool ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS &&
                  std::string(reply->str, reply->len) == "PONG";
        if (reply) freeReplyObject(reply);
        redisFree(c);
        if (ok) return true;
      } else if (c != nullptr) {
        redisFree(c);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::string program_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<child_process> process_;
};

} // namespace ccp_test
