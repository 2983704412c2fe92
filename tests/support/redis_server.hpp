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
#include <vector>

#include <hiredis.h>

#include "free_port.hpp"
#include "process.hpp"
#include "server_required.hpp"

namespace ccp_test {

struct redis_reply_free {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using redis_reply = std::unique_ptr<redisReply, redis_reply_free>;

// One command on a plain hiredis connection, arguments binary-safe; throws
// when the connection fails (an error reply is returned).
inline redis_reply command(redisContext* c, std::vector<std::string> const& args) {
  std::vector<char const*> argv;
  std::vector<std::size_t> lens;
  for (auto const& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redis_reply r(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
  if (!r) throw std::runtime_error(std::string("redis command failed: ") + c->errstr);
  return r;
}

// Every key matching `pattern` (SCAN).
inline std::vector<std::string> scan_keys(redisContext* c, std::string const& pattern = "*") {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto r = command(c, {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("SCAN did not answer an array");
    cursor.assign(r->element[0]->str, r->element[0]->len);
    for (std::size_t i = 0; i < r->element[1]->elements; ++i)
      keys.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
  } while (cursor != "0");
  return keys;
}

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

  // Starts, or starts again after stop(): a restart keeps the port, so that
  // clients configured with it reconnect (outage tests), and only moves to a
  // new port when the old one stays taken.
  void start() {
    bool const restart = port_ != 0;
    for (int attempt = 0; attempt < 10; ++attempt) {
      bool const keep = restart ? attempt < 6 : attempt == 0 && port_ != 0;
      if (!keep) port_ = free_loopback_port();
      process_ = std::make_unique<child_process>(std::vector<std::string>{
          program_, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no", "--dir", dir_.string(), "--logfile", (dir_ / "redis.log").string()});
      if (wait_until_ready()) return;
      process_.reset();
      if (keep) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("redis-server did not answer PING; see " + (dir_ / "redis.log").string());
  }

  bool running() const { return process_ != nullptr && process_->running(); }

  void stop() { process_.reset(); }

  // A plain hiredis connection to the server, for tests that inspect it.
  std::unique_ptr<redisContext, void (*)(redisContext*)> connect() const {
    timeval tv{1, 0};
    std::unique_ptr<redisContext, void (*)(redisContext*)> ctx(
        redisConnectWithTimeout("127.0.0.1", port_, tv), &redisFree);
    if (!ctx || ctx->err) throw std::runtime_error("cannot connect to the test redis-server");
    return ctx;
  }

  // The server's own view of `section` (INFO), e.g. "commandstats".
  std::string info(char const* section) const {
    auto ctx = connect();
    auto reply = command(ctx.get(), {"INFO", section});
    if (reply->type != REDIS_REPLY_STRING) throw std::runtime_error("INFO failed");
    return std::string(reply->str, reply->len);
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
