// One blocking hiredis connection: connect (AUTH, SELECT), commands and
// pipelines with a round-trip counter, scripts by SHA with a fallback to
// their source. Not thread-safe; the pool lends each connection to one
// thread at a time. Internal to the Redis component.
#pragma once

#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/error.hpp>

#include <hiredis.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

namespace custom_cache_page::detail {

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

struct redis_context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;

// The one place where a hiredis failure becomes an exception: a context
// error (refused, timed out, closed by the server), a missing reply, an
// error reply, or a reply of a type the caller cannot use.
// A reply the caller cannot use: missing, an error, or of another type.
inline cache_error redis_reply_error(std::string_view what, redisReply const* r) {
  std::string why;
  if (r == nullptr) why = "no reply";
  else if (r->type == REDIS_REPLY_ERROR) why.assign(r->str, r->len);
  else why = fmt::format("unexpected reply of type {}", r->type);
  return cache_error(error::store_unavailable, fmt::format("{}: {}", what, why));
}

inline cache_error redis_error(std::string_view what, redisContext const* c, redisReply const* r = nullptr) {
  if (c != nullptr && c->err == 0) return redis_reply_error(what, r);
  std::string why;
  if (c == nullptr) why = "cannot allocate a hiredis context";
  else {
    why = c->errstr;
    // hiredis reports SO_RCVTIMEO/SO_SNDTIMEO expiring as EAGAIN.
    if (c->err == REDIS_ERR_IO && why == std::strerror(EAGAIN)) why += " (timed out)";
  }
  return cache_error(error::store_unavailable, fmt::format("{}: {}", what, why));
}

inline std::string_view reply_string(redisReply const* r) {
  return r != nullptr && r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view{};
}

// Blocks SIGPIPE in this thread while hiredis writes (0.14 uses write(), not
// send(MSG_NOSIGNAL)), and swallows one raised meanwhile: a server that
// closed the connection must fail the command, not kill the process. The
// process's own SIGPIPE disposition is left alone.
class sigpipe_guard {
public:
  sigpipe_guard() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  sigpipe_guard(sigpipe_guard const&) = delete;
  sigpipe_guard& operator=(sigpipe_guard const&) = delete;
  ~sigpipe_guard() {
    int const saved = errno;
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved;
  }

private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

// The arguments of one command, as hiredis wants them. Views must outlive
// the call; add() copies. Movable, not copyable: the argument pointers may
// point into its own strings (a moved deque keeps its elements in place).
class redis_args {
public:
  redis_args() = default;
  redis_args(redis_args const&) = delete;
  redis_args& operator=(redis_args const&) = delete;
  redis_args(redis_args&&) noexcept = default;
  redis_args& operator=(redis_args&&) noexcept = default;
  redis_args(std::initializer_list<std::string_view> args) {
    for (auto a : args) view(a);
  }
  redis_args& view(std::string_view s) {
    ptrs_.push_back(s.data());
    lens_.push_back(s.size());
    return *this;
  }
  redis_args& add(std::string s) {
    owned_.push_back(std::move(s)); // a deque never moves its elements
    return view(owned_.back());
  }
  template <class Int>
    requires std::is_integral_v<Int>
  redis_args& add(Int n) {
    return add(std::to_string(n));
  }
  int argc() const { return static_cast<int>(ptrs_.size()); }
  char const** argv() const { return const_cast<char const**>(ptrs_.data()); }
  std::size_t const* lengths() const { return lens_.data(); }
  std::string_view operator[](std::size_t i) const { return {ptrs_[i], lens_[i]}; }
  void set(std::size_t i, std::string_view s) {
    ptrs_[i] = s.data();
    lens_[i] = s.size();
  }

private:
  std::vector<char const*> ptrs_;
  std::vector<std::size_t> lens_;
  std::deque<std::string> owned_;
};

// Counters shared by a client's connections.
struct redis_counters {
  std::atomic<std::uint64_t> round_trips{0};
  std::atomic<std::uint64_t> unsigned_entries{0};
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> connects{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> corrupt_entries{0};
  std::atomic<std::uint64_t> script_loads{0};
};

// A Lua script, called by SHA1 and sent whole only when Redis lacks it.
struct redis_script {
  std::string_view name;
  std::string source;
  std::string sha1; // lower-case hex
};

// Sends what hiredis has buffered for the socket, with MSG_NOSIGNAL:
// hiredis 0.14 writes with write(), which raises SIGPIPE on a connection
// the peer closed, and blocking the signal around every command cost four
// system calls, as much as the rest of a hit. True when all was sent, or
// (non-blocking) when the rest must wait for the socket; false, with the
// context's error set, when the send failed.
inline bool send_buffered(redisContext* c) {
  auto const len = sdslen(c->obuf);
  std::size_t sent = 0;
  while (sent < len) {
    auto const n = ::send(c->fd, c->obuf + sent, len - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && (c->flags & REDIS_BLOCK) == 0) break; // the rest when writable
    c->err = REDIS_ERR_IO;
    std::snprintf(c->errstr, sizeof c->errstr, "%s", n < 0 ? std::strerror(errno) : "connection closed");
    return false;
  }
  // What sdsrange(obuf, sent, -1) does, with sds.h's inline functions only
  // (hiredis 0.14 exports the others without C linkage).
  std::memmove(c->obuf, c->obuf + sent, len - sent);
  sdssetlen(c->obuf, len - sent);
  c->obuf[len - sent] = '\0';
  return true;
}

// hiredis frees its read buffer whenever it empties past 16 KiB, so every
// page larger than that grew a new one by doubling, copying as it grew;
// with the allocations going up and down by a page's size, glibc trimmed
// and re-faulted the heap on every hit (a 64 KiB hit cost 10x its bytes).
// A connection keeps the buffer its largest reply needed instead.
inline void keep_read_buffer(redisContext* c) {
  if (c != nullptr && c->reader != nullptr) c->reader->maxbuf = 0;
}

inline timeval to_timeval(std::chrono::milliseconds ms) {
  auto const us = std::chrono::duration_cast<std::chrono::microseconds>(ms).count();
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

class redis_connection {
public:
  redis_connection(redis_options const& o, redis_counters& counters) : counters_(&counters) {
    timeval const connect_tv = to_timeval(o.connect_timeout);
    std::string const where = o.connect              ? std::string("the application's connect function")
                              : o.unix_socket.empty() ? fmt::format("{}:{}", o.host, o.port)
                                                      : o.unix_socket;
    ctx_.reset(o.connect              ? o.connect()
               : o.unix_socket.empty() ? redisConnectWithTimeout(o.host.c_str(), o.port, connect_tv)
                                       : redisConnectUnixWithTimeout(o.unix_socket.c_str(), connect_tv));
    if (!ctx_ || ctx_->err != 0) throw redis_error(fmt::format("redis connect to {}", where), ctx_.get());
    keep_read_buffer(ctx_.get());
    if (redisSetTimeout(ctx_.get(), to_timeval(o.command_timeout)) != REDIS_OK)
      throw redis_error(fmt::format("redis command timeout on {}", where), ctx_.get());
    if (o.unix_socket.empty()) redisEnableKeepAlive(ctx_.get());
    if (!o.password.empty()) {
      redis_args auth{"AUTH"};
      if (!o.username.empty()) auth.view(o.username);
      auth.view(o.password);
      checked("redis AUTH", auth, REDIS_REPLY_STATUS);
    }
    if (o.db != 0) checked("redis SELECT", redis_args{"SELECT"}.add(o.db), REDIS_REPLY_STATUS);
    counters_->connects.fetch_add(1, std::memory_order_relaxed);
  }

  redis_connection(redis_connection const&) = delete;
  redis_connection& operator=(redis_connection const&) = delete;

  // The connection cannot be used again (I/O error, timeout, EOF), or the
  // server said it cannot serve (loading, busy script, read-only replica).
  bool broken() const { return ctx_->err != 0 || unavailable_; }

  // One command, one round trip. Throws on connection errors; an error
  // reply is returned to the caller.
  redis_reply_ptr call(std::string_view what, redis_args const& a) {
    void* raw = nullptr;
    if (redisAppendCommandArgv(ctx_.get(), a.argc(), a.argv(), a.lengths()) != REDIS_OK || !send_buffered(ctx_.get()))
      throw redis_error(what, ctx_.get());
    count(1);
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK) raw = nullptr;
    redis_reply_ptr reply(static_cast<redisReply*>(raw));
    if (!reply) throw redis_error(what, ctx_.get());
    note(reply.get());
    return reply;
  }

  // As call(), and an error reply throws.
  redis_reply_ptr command(std::string_view what, redis_args const& a) {
    auto reply = call(what, a);
    if (reply->type == REDIS_REPLY_ERROR) throw redis_error(what, ctx_.get(), reply.get());
    return reply;
  }

  // As call(), and an error reply or a reply not of `type` throws.
  redis_reply_ptr checked(std::string_view what, redis_args const& a, int type) {
    auto reply = call(what, a);
    if (reply->type != type) throw redis_error(what, ctx_.get(), reply.get());
    return reply;
  }

  // Several commands in one round trip; replies in order (error replies
  // included).
  std::vector<redis_reply_ptr> pipeline(std::string_view what, std::span<redis_args const> commands) {
    std::vector<redis_reply_ptr> replies;
    replies.reserve(commands.size());
    for (auto const& a : commands)
      if (redisAppendCommandArgv(ctx_.get(), a.argc(), a.argv(), a.lengths()) != REDIS_OK) throw redis_error(what, ctx_.get());
    if (!send_buffered(ctx_.get())) throw redis_error(what, ctx_.get());
    count(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) throw redis_error(what, ctx_.get());
      replies.emplace_back(static_cast<redisReply*>(raw));
      note(replies.back().get());
    }
    return replies;
  }

  // EVALSHA of `script`; after a NOSCRIPT (a restarted or flushed server),
  // EVAL of its source, which also caches it for the next EVALSHA.
  // `keys_and_args` holds the keys first, then the arguments.
  redis_reply_ptr eval(redis_script const& script, std::size_t numkeys, redis_args& call_args) {
    // call_args starts with three placeholders: command, sha/source, numkeys.
    std::string const n = std::to_string(numkeys);
    call_args.set(0, "EVALSHA");
    call_args.set(1, script.sha1);
    call_args.set(2, n);
    auto reply = call(script.name, call_args);
    if (reply->type == REDIS_REPLY_ERROR && reply_string(reply.get()).starts_with("NOSCRIPT")) {
      call_args.set(0, "EVAL");
      call_args.set(1, script.source);
      counters_->script_loads.fetch_add(1, std::memory_order_relaxed);
      reply = call(script.name, call_args);
    }
    if (reply->type == REDIS_REPLY_ERROR) throw redis_error(script.name, ctx_.get(), reply.get());
    return reply;
  }

  // Arguments for eval(): three placeholders, then keys and arguments.
  static redis_args script_args() { return redis_args{{}, {}, {}}; }

  redisContext* context() const { return ctx_.get(); }

private:
  void count(std::size_t commands) {
    counters_->round_trips.fetch_add(1, std::memory_order_relaxed);
    counters_->commands.fetch_add(commands, std::memory_order_relaxed);
  }

  // Error replies that say the server, not this request, is the problem.
  void note(redisReply const* r) {
    if (r->type != REDIS_REPLY_ERROR) return;
    auto const text = reply_string(r);
    for (std::string_view code : {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "NOAUTH"})
      if (text.starts_with(code)) unavailable_ = true;
  }

  redis_context_ptr ctx_;
  redis_counters* counters_;
  bool unavailable_ = false;
};

} // namespace custom_cache_page::detail
