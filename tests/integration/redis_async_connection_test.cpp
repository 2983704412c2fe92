// detail::redis_async_connection against a real redis-server: binary-safe
// round trips, many pipelined commands paired with their replies, a timeout
// that never blocks the io_context's thread, recovery after a server outage
// (with a connect backoff), per-operation cancellation, and scripts by SHA
// with a fallback to their source.
#include <custom_cache_page/detail/redis_async_connection.hpp>
#include <custom_cache_page/detail/redis_scripts.hpp>

#include "../support/redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <thread>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ccp = custom_cache_page;
namespace net = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using ccp::detail::redis_args;
using ccp::detail::redis_async_connection;

namespace {

ccp::redis_options options_for(ccp_test::redis_server const& server, std::chrono::milliseconds command_timeout = 2000ms) {
  ccp::redis_options o;
  o.port = server.port();
  o.command_timeout = command_timeout;
  o.connect_timeout = 500ms;
  return o;
}

std::string as_string(redisReply const* r) {
  if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
    throw std::runtime_error("not a string reply: type " + std::to_string(r->type));
  return std::string(r->str, r->len);
}

long long as_integer(redisReply const* r) {
  if (r->type != REDIS_REPLY_INTEGER) throw std::runtime_error("not an integer reply: type " + std::to_string(r->type));
  return r->integer;
}

// How a command failed, when it failed with a cache_error.
struct failure {
  std::error_code code;
  std::string what;
};

template <class T>
net::awaitable<std::optional<failure>> failure_of(net::awaitable<T> a) {
  try {
    co_await std::move(a);
  } catch (ccp::cache_error const& e) {
    co_return failure{e.code(), e.what()};
  }
  co_return std::nullopt;
}

// A command's arguments. Not redis_args{...}: GCC 12 cannot keep an
// initializer_list's array in a coroutine frame across a co_await.
template <class... Args>
redis_args cmd(Args const&... args) {
  redis_args a;
  (a.view(args), ...);
  return a;
}

net::awaitable<void> sleep_for(steady::duration d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(net::use_awaitable);
}

// Runs `body` on `ioc`'s one thread, then drops the connection: run()
// must then return by itself (nothing left waiting) well within `limit`.
template <class Body>
void drive(net::io_context& ioc, std::shared_ptr<redis_async_connection>& conn, Body body, steady::duration limit = 20s) {
  std::exception_ptr error;
  bool finished = false;
  net::co_spawn(
      ioc,
      [&]() -> net::awaitable<void> {
        try {
          co_await body();
        } catch (...) {
          error = std::current_exception();
        }
        conn.reset();
        finished = true;
      },
      net::detached);
  ioc.run_for(limit);
  REQUIRE(finished);
  CHECK(ioc.stopped()); // ran out of work: no handler left dangling
  if (error) std::rethrow_exception(error);
}

} // namespace

TEST_CASE("redis_async_connection: SET and GET of binary values (NUL bytes, 64 KiB), error replies", "[redis_async]") {
  auto& server = ccp_test::redis_server::shared();
  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server));
  std::string const small("a\0b\r\n\0c", 7);
  std::string big(64 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) % 256);

  drive(ioc, conn, [&]() -> net::awaitable<void> {
    auto ok = co_await conn->command("redis SET", cmd("SET", "ccpt:async:small", small), as_string);
    CHECK(ok == "OK");
    co_await conn->command("redis SET", cmd("SET", "ccpt:async:big", big), as_string);
    auto got_small = co_await conn->command("redis GET", cmd("GET", "ccpt:async:small"), as_string);
    auto got_big = co_await conn->command("redis GET", cmd("GET", "ccpt:async:big"), as_string);
    CHECK(got_small == small);
    CHECK(got_big.size() == big.size());
    CHECK(got_big == big);

    // An error reply fails the command, unless the parse function asks for it.
    auto f = co_await failure_of(conn->command("redis INCR", cmd("INCR", "ccpt:async:small"), as_integer));
    REQUIRE(f);
    CHECK(f->code == ccp::error::store_unavailable);
    CHECK_THAT(f->what, Catch::StartsWith("redis INCR: ERR"));
    auto text = co_await conn->command("redis INCR", cmd("INCR", "ccpt:async:small"),
                                       ccp::detail::error_replies_too{[](redisReply const* r) {
                                         return r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "?";
                                       }});
    CHECK_THAT(text, Catch::StartsWith("ERR"));
    // A parse function that throws fails its command only.
    auto thrown = co_await failure_of(conn->command("redis GET", cmd("GET", "ccpt:async:small"), [](redisReply const*) -> int {
      throw ccp::cache_error(ccp::error::corrupt_entry, "bad bytes");
    }));
    REQUIRE(thrown);
    CHECK(thrown->code == ccp::error::corrupt_entry);
    auto const r1 = co_await conn->command("redis PING", cmd("PING"), as_string);
    CHECK(r1 == "PONG");

    auto s = conn->stats();
    CHECK(s.connects == 1);
    CHECK(s.commands == 8);
    CHECK(s.failures == 0); // error replies and parse errors are not the store's failures
  });
}

TEST_CASE("redis_async_connection: 1000 concurrent commands on one connection each get their own reply", "[redis_async]") {
  auto& server = ccp_test::redis_server::shared();
  constexpr int n = 1000;
  std::vector<std::string> keys;
  std::vector<std::string> mset{"MSET"};
  for (int i = 0; i < n; ++i) {
    keys.push_back("ccpt:async:n:" + std::to_string(i));
    mset.push_back(keys.back());
    mset.push_back(std::to_string(10 * i));
  }
  auto admin = server.connect();
  REQUIRE(ccp_test::command(admin.get(), mset)->type == REDIS_REPLY_STATUS);

  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server));
  std::vector<long long> results(n, -1);
  int completed = 0;
  int failed = 0;
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    for (int i = 0; i < n; ++i) {
      net::co_spawn(
          ioc,
          [&, i]() -> net::awaitable<void> {
            auto a = cmd("INCRBY", keys[i]);
            a.add(i);
            results[i] = co_await conn->command("redis INCRBY", std::move(a), as_integer);
          },
          [&](std::exception_ptr e) {
            ++completed;
            if (e) ++failed;
          });
    }
    auto const deadline = steady::now() + 10s;
    while (completed < n && steady::now() < deadline) co_await sleep_for(2ms);
  });
  REQUIRE(completed == n);
  CHECK(failed == 0);
  int mismatched = 0;
  for (int i = 0; i < n; ++i) mismatched += results[i] == 11LL * i ? 0 : 1;
  CHECK(mismatched == 0);
}

TEST_CASE("redis_async_connection: a stalled server fails a command after command_timeout, the thread stays free, and it reconnects",
          "[redis_async]") {
  ccp_test::redis_server server; // its own: it gets paused
  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server, 200ms));
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    auto const r2 = co_await conn->command("redis PING", cmd("PING"), as_string);
    CHECK(r2 == "PONG");
    auto admin = server.connect();
    REQUIRE(ccp_test::command(admin.get(), {"CLIENT", "PAUSE", "1500", "ALL"})->type == REDIS_REPLY_STATUS);
    auto const t0 = steady::now();

    std::optional<steady::time_point> ticked;
    net::steady_timer tick(ioc, 10ms);
    tick.async_wait([&](boost::system::error_code) { ticked = steady::now(); });
    auto f = co_await failure_of(conn->command("redis PING", cmd("PING"), as_string));
    auto const failed_at = steady::now();
    REQUIRE(f);
    CHECK(f->code == ccp::error::store_unavailable);
    CHECK_THAT(f->what, Catch::Contains("timed out"));
    CHECK(failed_at - t0 >= 190ms);
    CHECK(failed_at - t0 < 1000ms); // command_timeout, not the pause
    REQUIRE(ticked);                // the thread was not blocked meanwhile
    CHECK(*ticked < failed_at);
    CHECK(*ticked - t0 < 150ms);

    co_await sleep_for(t0 + 1600ms - steady::now()); // the pause is over
    auto const r3 = co_await conn->command("redis PING", cmd("PING"), as_string);
    CHECK(r3 == "PONG");
    CHECK(conn->stats().connects == 2); // the timed-out connection was dropped
    CHECK(conn->stats().failures == 1);
  });
}

TEST_CASE("redis_async_connection: a server outage fails commands, with a connect backoff, until it is back", "[redis_async]") {
  ccp_test::redis_server server; // its own: it gets stopped
  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server, 500ms));
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    auto const r4 = co_await conn->command("redis PING", cmd("PING"), as_string);
    CHECK(r4 == "PONG");
    server.stop();

    // The open connection fails; then connects are refused, then not even tried.
    std::vector<std::string> messages;
    for (int i = 0; i < 6; ++i) {
      auto f = co_await failure_of(conn->command("redis PING", cmd("PING"), as_string));
      REQUIRE(f);
      CHECK(f->code == ccp::error::store_unavailable);
      messages.push_back(f->what);
      if (f->what.find("backing off") != std::string::npos) break;
    }
    INFO(fmt::format("{}", fmt::join(messages, " | ")));
    CHECK(messages.back().find("backing off") != std::string::npos);

    server.start(); // the same port
    auto const restarted = steady::now();
    std::optional<std::string> pong;
    while (!pong && steady::now() - restarted < 5s) {
      try {
        pong = co_await conn->command("redis PING", cmd("PING"), as_string);
      } catch (ccp::cache_error const&) {
      }
      if (!pong) co_await sleep_for(10ms);
    }
    CHECK(pong == "PONG");
    CHECK(steady::now() - restarted < 1500ms); // within the backoff's bound (1 s)
    CHECK(conn->stats().connects == 2);
  });
}

TEST_CASE("redis_async_connection: a cancelled command completes at once, and its late reply goes to nobody", "[redis_async]") {
  using namespace net::experimental::awaitable_operators;
  ccp_test::redis_server server; // its own: it gets paused
  net::io_context ioc;
  // A long command timeout: only the cancellation can end the first command early.
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server, 5000ms));
  auto const started = steady::now();
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    auto const r5 = co_await conn->command("redis SET", cmd("SET", "ccpt:async:one", "one"), as_string);
    CHECK(r5 == "OK");
    auto const r6 = co_await conn->command("redis SET", cmd("SET", "ccpt:async:two", "two"), as_string);
    CHECK(r6 == "OK");
    auto admin = server.connect();
    REQUIRE(ccp_test::command(admin.get(), {"CLIENT", "PAUSE", "800", "ALL"})->type == REDIS_REPLY_STATUS);

    auto const t0 = steady::now();
    net::steady_timer timer(ioc, 100ms);
    auto r = co_await (conn->command("redis GET", cmd("GET", "ccpt:async:one"), as_string) ||
                       timer.async_wait(net::use_awaitable));
    CHECK(r.index() == 1); // the timer won
    CHECK(steady::now() - t0 < 400ms);

    // Queued behind the cancelled one: gets its own reply once the pause ends.
    auto two = co_await conn->command("redis GET", cmd("GET", "ccpt:async:two"), as_string);
    CHECK(two == "two");
    CHECK(conn->stats().connects == 1);
    CHECK(conn->stats().failures == 0);
  });
  CHECK(steady::now() - started < 3s); // no 5 s timer left behind by the cancelled command
}

TEST_CASE("redis_async_connection: destroying the connection fails its pending commands", "[redis_async]") {
  ccp_test::redis_server server; // its own: it gets paused
  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server, 5000ms));
  std::optional<failure> pending;
  bool done = false;
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    auto const r7 = co_await conn->command("redis PING", cmd("PING"), as_string);
    CHECK(r7 == "PONG");
    auto admin = server.connect();
    REQUIRE(ccp_test::command(admin.get(), {"CLIENT", "PAUSE", "1000", "ALL"})->type == REDIS_REPLY_STATUS);
    // Spawned as an awaitable, so that nothing but `conn` owns the connection.
    net::co_spawn(ioc, failure_of(conn->command("redis PING", cmd("PING"), as_string)),
                  [&](std::exception_ptr, std::optional<failure> f) {
                    pending = std::move(f);
                    done = true;
                  });
    co_await sleep_for(50ms); // sent and waiting
    // drive() drops the last reference to the connection after this
  });
  REQUIRE(done);
  REQUIRE(pending);
  CHECK(pending->code == ccp::error::store_unavailable);
  CHECK_THAT(pending->what, Catch::Contains("connection closed"));
}

TEST_CASE("redis_async_connection: EVALSHA falls back to EVAL after SCRIPT FLUSH, once", "[redis_async]") {
  auto& server = ccp_test::redis_server::shared();
  auto const script = ccp::detail::make_redis_script("redis test echo (EVALSHA)", "return KEYS[1] .. '=' .. ARGV[1]");
  auto admin = server.connect();
  REQUIRE(ccp_test::command(admin.get(), {"SCRIPT", "FLUSH"})->type == REDIS_REPLY_STATUS);

  net::io_context ioc;
  auto conn = redis_async_connection::create(ioc.get_executor(), options_for(server));
  std::vector<std::string> const values{"a", "b"};
  drive(ioc, conn, [&]() -> net::awaitable<void> {
    for (auto const& value : values) {
      auto a = ccp::detail::redis_connection::script_args();
      a.view("ccpt:async:k").view(value);
      auto got = co_await conn->eval(script, 1, std::move(a), as_string);
      CHECK(got == "ccpt:async:k=" + value);
    }
    auto s = conn->stats();
    CHECK(s.script_loads == 1);
    CHECK(s.commands == 3); // EVALSHA (NOSCRIPT), EVAL, EVALSHA
  });
}

TEST_CASE("send_buffered: writing to a connection the peer reset fails with EPIPE, never SIGPIPE", "[redis][sigpipe]") {
  // SIGPIPE keeps its default action in this process (terminate): hiredis
  // 0.14's own write() would end the run here.
  int const listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  int const client = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  int const server = ::accept(listener, nullptr, nullptr);
  linger const reset{1, 0};
  ::setsockopt(server, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(server); // an RST, as from a server that went away
  ::close(listener);
  std::this_thread::sleep_for(50ms);
  // The first send reports the reset; every later one is EPIPE.
  CHECK(::send(client, "x", 1, MSG_NOSIGNAL) == -1);

  std::unique_ptr<redisContext, void (*)(redisContext*)> c(redisConnectFd(client), &redisFree);
  REQUIRE(c);
  REQUIRE(redisAppendCommand(c.get(), "PING") == REDIS_OK);
  CHECK_FALSE(ccp::detail::send_buffered(c.get()));
  CHECK(c->err == REDIS_ERR_IO);
  CHECK(std::string(c->errstr) == std::strerror(EPIPE));
}
