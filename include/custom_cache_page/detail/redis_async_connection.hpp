// One non-blocking hiredis connection driven by Asio: many coroutines'
// commands pipelined on it, each with its own timeout and cancellation,
// replies decoded in place inside hiredis's callback. The connection is
// opened on the first command, and opened again after it broke (timeout,
// I/O error, server gone), with a backoff after failed connects. Internal
// to the Redis component.
//
// Threads: hiredis's async context is not thread-safe, so everything that
// touches it runs on one strand; callers may be on any executor and are
// resumed on their own.
#pragma once

#include <custom_cache_page/detail/redis_client.hpp>
#include <custom_cache_page/detail/redis_connection.hpp>
#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/error.hpp>

#include <async.h>
#include <hiredis.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace custom_cache_page::detail {

namespace net = boost::asio;

// Marks a parse function that reads error replies itself (a script's own
// error, say). Any other parse never sees one: the command fails with
// redis_error instead.
template <class Parse>
struct error_replies_too {
  Parse parse;
  decltype(auto) operator()(redisReply const* r) { return std::invoke(parse, r); }
};
template <class Parse>
error_replies_too(Parse) -> error_replies_too<Parse>;

template <class Parse>
inline constexpr bool sees_error_replies = false;
template <class Parse>
inline constexpr bool sees_error_replies<error_replies_too<Parse>> = true;

// When the next connect may be tried: after a failure, 50 ms, doubling to
// 1 s; a success resets it. An outage then costs refused connects at a
// bounded rate, and commands meanwhile fail at once instead of queueing.
class connect_backoff {
public:
  using clock = std::chrono::steady_clock;

  std::chrono::milliseconds remaining(clock::time_point now = clock::now()) const {
    return now < next_ ? std::chrono::ceil<std::chrono::milliseconds>(next_ - now) : std::chrono::milliseconds(0);
  }
  void failed(clock::time_point now = clock::now()) {
    delay_ = std::clamp(delay_ * 2, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
    next_ = now + delay_;
  }
  void succeeded() {
    delay_ = std::chrono::milliseconds(0);
    next_ = {};
  }

private:
  std::chrono::milliseconds delay_{0};
  clock::time_point next_{};
};

class redis_async_link;

// One command in flight, shared by hiredis (its callback's privdata), its
// timeout and its cancellation handler; whichever comes first completes it,
// the others find it done. Lives on the strand once submitted.
class redis_async_op : public std::enable_shared_from_this<redis_async_op> {
public:
  redis_async_op(net::any_io_executor strand, std::shared_ptr<redis_counters> counters, std::string what,
                 redis_args args, redis_script const* script, std::size_t numkeys, bool sees_errors)
      : what_(std::move(what)), args_(std::move(args)), script_(script), sees_errors_(sees_errors),
        counters_(std::move(counters)), timer_(std::move(strand)) {
    if (script_ == nullptr) return;
    // As redis_connection::eval: the three placeholders of script_args().
    numkeys_ = std::to_string(numkeys);
    args_.set(0, "EVALSHA");
    args_.set(1, script_->sha1);
    args_.set(2, numkeys_);
  }
  redis_async_op(redis_async_op const&) = delete;
  redis_async_op& operator=(redis_async_op const&) = delete;
  virtual ~redis_async_op() = default;

  bool done() const { return done_; }
  std::string const& what() const { return what_; }
  redis_args const& args() const { return args_; }

  // hiredis's reply callback; privdata is a heap shared_ptr, ours to free.
  // A null reply: the context is going away (error, timeout, destruction).
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) noexcept {
    std::unique_ptr<std::shared_ptr<redis_async_op>> const self(static_cast<std::shared_ptr<redis_async_op>*>(privdata));
    (*self)->handle(ac, static_cast<redisReply const*>(reply));
  }

  inline void start_timer(std::chrono::milliseconds after, std::weak_ptr<redis_async_link> link);

  // The store's side failed this command.
  void fail(std::exception_ptr e) {
    if (done_) return;
    counters_->failures.fetch_add(1, std::memory_order_relaxed);
    complete(std::move(e));
  }

  // The caller gave up; a reply still to come is ignored.
  void abort() {
    complete(std::make_exception_ptr(boost::system::system_error(net::error::operation_aborted)));
  }

protected:
  // Hands the outcome to the caller: parse `r` in place when there is one.
  virtual void deliver(std::exception_ptr e, redisReply const* r) = 0;

private:
  inline void handle(redisAsyncContext* ac, redisReply const* r);
  inline bool fall_back_to_eval(redisAsyncContext* ac, redisReply const* r);

  void complete(std::exception_ptr e, redisReply const* r = nullptr) {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    deliver(std::move(e), r);
  }

  std::string what_;
  redis_args args_;
  redis_script const* script_;
  std::string numkeys_; // args_ views it
  bool sees_errors_;
  bool sent_source_ = false;
  bool done_ = false;
  std::shared_ptr<redis_counters> counters_; // may outlive the connection
  net::steady_timer timer_;
};

// One hiredis async context and the Asio side of its event hooks (the
// contract of hiredis's adapters/libevent.h): addRead/addWrite arm an
// async_wait on the socket, re-armed while hiredis still wants it;
// cleanup, called when hiredis frees the context (on an error, or from
// close()), cancels the waits and releases the descriptor without closing
// it, since hiredis owns the fd.
class redis_async_link : public std::enable_shared_from_this<redis_async_link> {
public:
  using strand_type = net::strand<net::any_io_executor>;
  using wait_type = net::posix::stream_descriptor::wait_type;
  // Told once whether the link became ready (connected, AUTH and SELECT
  // done) or failed before: the connection's backoff.
  using outcome_fn = std::function<void(bool ready)>;

  redis_async_link(strand_type const& strand, std::shared_ptr<redis_counters> counters, std::string where, outcome_fn outcome)
      : fd_(strand), connect_timer_(strand), counters_(std::move(counters)), where_(std::move(where)),
        outcome_(std::move(outcome)) {}
  redis_async_link(redis_async_link const&) = delete;
  redis_async_link& operator=(redis_async_link const&) = delete;

  // Only when the strand's handlers were dropped unrun (io_context shut
  // down): free what close() would have.
  ~redis_async_link() {
    if (ac_ == nullptr) return;
    why_ = "connection closed";
    redisAsyncFree(std::exchange(ac_, nullptr));
  }

  // Starts a connect; throws when it fails at once (refused, no memory).
  static std::shared_ptr<redis_async_link> open(strand_type const& strand, redis_options const& o,
                                                std::shared_ptr<redis_counters> counters, outcome_fn outcome) {
    std::string where = o.unix_socket.empty() ? fmt::format("{}:{}", o.host, o.port) : o.unix_socket;
    redisAsyncContext* ac = o.unix_socket.empty() ? redisAsyncConnect(o.host.c_str(), o.port)
                                                  : redisAsyncConnectUnix(o.unix_socket.c_str());
    if (ac == nullptr || ac->err != 0) {
      auto e = redis_error(fmt::format("redis connect to {}", where), ac != nullptr ? &ac->c : nullptr);
      if (ac != nullptr) redisAsyncFree(ac); // no hooks attached yet
      throw e;
    }
    auto link = std::make_shared<redis_async_link>(strand, std::move(counters), std::move(where), std::move(outcome));
    link->attach(ac, o);
    return link;
  }

  // Takes commands: not closed, not closing.
  bool alive() const { return ac_ != nullptr && !closing_; }
  bool ready() const { return ready_; }

  // Queues one command; hiredis writes it when the socket is writable.
  void send(std::shared_ptr<redis_async_op> const& op) {
    auto holder = std::make_unique<std::shared_ptr<redis_async_op>>(op);
    auto const& a = op->args();
    if (ac_ == nullptr ||
        redisAsyncCommandArgv(ac_, &redis_async_op::on_reply, holder.get(), a.argc(), a.argv(), a.lengths()) != REDIS_OK)
      throw cache_error(error::store_unavailable, fmt::format("{}: connection closing", op->what()));
    holder.release(); // hiredis hands it back to on_reply, exactly once
    counters_->commands.fetch_add(1, std::memory_order_relaxed);
  }

  // Drops the connection: every pending command fails (a null reply each)
  // with `why`. Deferred by hiredis until the current callback returns when
  // called from one.
  void close(std::string why) {
    if (!alive()) return;
    closing_ = true;
    why_ = std::move(why);
    auto const keep = shared_from_this(); // the callbacks and cleanup below still use this
    redisAsyncFree(ac_);
  }

  // The failure of a command that got no reply, for on_reply.
  cache_error failure(std::string_view what, redisAsyncContext const* ac) const {
    if (!why_.empty()) return cache_error(error::store_unavailable, fmt::format("{}: {}", what, why_));
    return redis_error(what, &ac->c); // hiredis's own (I/O error, closed by the server)
  }

private:
  static redis_async_link& of(void* p) { return *static_cast<redis_async_link*>(p); }

  void attach(redisAsyncContext* ac, redis_options const& o) {
    ac_ = ac;
    ac->data = this;
    ac->ev.data = this;
    ac->ev.addRead = [](void* p) { of(p).want(wait_type::wait_read, true); };
    ac->ev.delRead = [](void* p) { of(p).want(wait_type::wait_read, false); };
    ac->ev.addWrite = [](void* p) { of(p).want(wait_type::wait_write, true); };
    ac->ev.delWrite = [](void* p) { of(p).want(wait_type::wait_write, false); };
    ac->ev.cleanup = [](void* p) { of(p).cleanup(); };
    fd_.assign(ac->c.fd);
    keep_read_buffer(&ac->c);
    redisAsyncSetConnectCallback(ac, &on_connect);
    handshake(o);
    want(wait_type::wait_write, true); // writable: the connect finished, one way or the other
    connect_timer_.expires_after(o.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), ms = o.connect_timeout.count()](boost::system::error_code ec) {
      if (!ec && !self->ready_) self->close(fmt::format("connect to {}: not ready within {} ms", self->where_, ms));
    });
  }

  // AUTH and SELECT go first in the pipeline; commands queue behind them.
  void handshake(redis_options const& o) {
    if (!o.password.empty()) {
      redis_args auth{"AUTH"};
      if (!o.username.empty()) auth.view(o.username);
      auth.view(o.password);
      queue_handshake("redis AUTH", auth);
    }
    if (o.db != 0) queue_handshake("redis SELECT", redis_args{"SELECT"}.add(o.db));
  }

  void queue_handshake(char const* what, redis_args const& a) {
    if (redisAsyncCommandArgv(ac_, &on_handshake, const_cast<char*>(what), a.argc(), a.argv(), a.lengths()) == REDIS_OK)
      ++handshake_left_;
  }

  static void on_handshake(redisAsyncContext* ac, void* reply, void* what) noexcept {
    auto& self = of(ac->data);
    auto const* r = static_cast<redisReply const*>(reply);
    if (r == nullptr) return; // the link is going; its commands fail on their own
    if (r->type != REDIS_REPLY_STATUS) return self.close(redis_error(static_cast<char const*>(what), &ac->c, r).what());
    if (--self.handshake_left_ == 0 && self.connected_) self.became_ready();
  }

  static void on_connect(redisAsyncContext const* ac, int status) noexcept {
    auto& self = of(ac->data);
    if (status != REDIS_OK) {
      // hiredis frees the context right after this; its commands fail with this.
      self.why_ = fmt::format("connect to {}: {}", self.where_, ac->c.errstr);
      return;
    }
    self.connected_ = true;
    if (self.handshake_left_ == 0) self.became_ready();
  }

  void became_ready() {
    ready_ = true;
    connect_timer_.cancel();
    counters_->connects.fetch_add(1, std::memory_order_relaxed);
    if (outcome_) outcome_(true);
  }

  void cleanup() {
    ac_ = nullptr;
    want_read_ = want_write_ = false;
    boost::system::error_code ignored;
    fd_.cancel(ignored);
    fd_.release(); // not close(): redisFree closes the fd after this
    connect_timer_.cancel();
    if (!ready_ && outcome_) outcome_(false);
  }

  void want(wait_type w, bool on) {
    (w == wait_type::wait_read ? want_read_ : want_write_) = on;
    if (on) arm(w);
  }

  void arm(wait_type w) {
    bool& waiting = w == wait_type::wait_read ? reading_ : writing_;
    if (waiting || ac_ == nullptr) return;
    waiting = true;
    fd_.async_wait(w, [self = shared_from_this(), w](boost::system::error_code ec) { self->on_event(w, ec); });
  }

  void on_event(wait_type w, boost::system::error_code ec) {
    bool const reading = w == wait_type::wait_read;
    (reading ? reading_ : writing_) = false;
    if (ec == net::error::operation_aborted || ac_ == nullptr) return;
    if (ec) return close(fmt::format("waiting on the socket: {}", ec.message()));
    if (!(reading ? want_read_ : want_write_)) return; // hiredis stopped wanting it meanwhile
    if (reading) redisAsyncHandleRead(ac_);
    else write_buffered();
    // hiredis may have freed the context (then ac_ is null) or asked again.
    if (ac_ != nullptr && (reading ? want_read_ : want_write_)) arm(w);
  }

  // Once connected, the commands go out through send_buffered (no SIGPIPE,
  // no signal-mask calls); hiredis then finds nothing left to write. The
  // connect itself is hiredis's, with SIGPIPE blocked around it.
  void write_buffered() {
    if ((ac_->c.flags & REDIS_CONNECTED) == 0) {
      sigpipe_guard guard;
      redisAsyncHandleWrite(ac_);
      return;
    }
    if (!send_buffered(&ac_->c)) return close(fmt::format("writing: {}", ac_->c.errstr));
    redisAsyncHandleWrite(ac_);
  }

  redisAsyncContext* ac_ = nullptr;
  net::posix::stream_descriptor fd_;
  net::steady_timer connect_timer_;
  std::shared_ptr<redis_counters> counters_;
  std::string where_;
  outcome_fn outcome_;
  std::string why_; // why we closed it; empty: hiredis's own error
  int handshake_left_ = 0;
  bool connected_ = false;
  bool ready_ = false;
  bool closing_ = false;
  bool want_read_ = false, want_write_ = false;
  bool reading_ = false, writing_ = false;
};

inline void redis_async_op::start_timer(std::chrono::milliseconds after, std::weak_ptr<redis_async_link> link) {
  timer_.expires_after(after);
  timer_.async_wait([self = shared_from_this(), link = std::move(link), after](boost::system::error_code ec) {
    if (ec || self->done_) return;
    self->fail(std::make_exception_ptr(
        cache_error(error::store_unavailable, fmt::format("{}: timed out after {} ms", self->what_, after.count()))));
    // Its reply may still come, and everything queued behind it waits for
    // it: the connection is no longer worth keeping.
    if (auto l = link.lock()) l->close(fmt::format("connection dropped after '{}' timed out", self->what_));
  });
}

inline void redis_async_op::handle(redisAsyncContext* ac, redisReply const* r) {
  if (done_) return; // timed out or cancelled: this reply is nobody's
  if (r == nullptr) return fail(std::make_exception_ptr(static_cast<redis_async_link*>(ac->data)->failure(what_, ac)));
  if (fall_back_to_eval(ac, r)) return;
  if (r->type == REDIS_REPLY_ERROR && !sees_errors_) return complete(std::make_exception_ptr(redis_error(what_, &ac->c, r)));
  complete(nullptr, r);
}

// As redis_connection::eval: after a NOSCRIPT (a restarted or flushed
// server), EVAL of the source, which also caches it for the next EVALSHA.
inline bool redis_async_op::fall_back_to_eval(redisAsyncContext* ac, redisReply const* r) {
  if (script_ == nullptr || sent_source_ || r->type != REDIS_REPLY_ERROR || !reply_string(r).starts_with("NOSCRIPT"))
    return false;
  sent_source_ = true;
  args_.set(0, "EVAL");
  args_.set(1, script_->source);
  counters_->script_loads.fetch_add(1, std::memory_order_relaxed);
  try {
    static_cast<redis_async_link*>(ac->data)->send(shared_from_this());
  } catch (...) {
    fail(std::current_exception());
  }
  return true;
}

// The op of one caller: its completion handler and parse function. The
// handler runs on its own executor, which is kept busy (tracked work) while
// the command is pending.
template <class Handler, class Parse>
class redis_async_command_op final : public redis_async_op {
public:
  using result_type = std::invoke_result_t<Parse&, redisReply const*>;

  redis_async_command_op(Handler handler, Parse parse, net::any_io_executor strand, std::shared_ptr<redis_counters> counters,
                         std::string what, redis_args args, redis_script const* script, std::size_t numkeys)
      : redis_async_op(strand, std::move(counters), std::move(what), std::move(args), script, numkeys,
                       sees_error_replies<Parse>),
        work_(net::prefer(net::get_associated_executor(handler, strand), net::execution::outstanding_work.tracked)),
        handler_(std::move(handler)), parse_(std::move(parse)) {}

private:
  void deliver(std::exception_ptr e, redisReply const* r) override {
    std::optional<result_type> value;
    if (r != nullptr) {
      try {
        value.emplace(std::invoke(parse_, r)); // inside hiredis's callback: r is freed after it
      } catch (...) {
        e = std::current_exception();
      }
    }
    auto work = std::move(work_); // released once the handler ran, not when hiredis lets go of this op
    net::post(work, [h = std::move(*handler_), work, e, value = std::move(value)]() mutable {
      net::get_associated_cancellation_slot(h).clear(); // cleared on the caller's executor, where it is emitted
      std::move(h)(e, std::move(value));
    });
    handler_.reset();
  }

  net::any_io_executor work_;
  std::optional<Handler> handler_;
  Parse parse_;
};

class redis_async_connection : public std::enable_shared_from_this<redis_async_connection> {
  struct private_tag {};

public:
  template <class Parse>
  using result_of = std::invoke_result_t<Parse&, redisReply const*>;

  redis_async_connection(private_tag, net::any_io_executor ex, redis_options options)
      : options_(std::move(options)), strand_(net::make_strand(std::move(ex))) {
    // hiredis 0.14 cannot make an async context from a blocking one.
    if (options_.connect)
      throw cache_error(error::bad_configuration, "redis async connection: redis_options::connect is not supported");
  }
  redis_async_connection(redis_async_connection const&) = delete;
  redis_async_connection& operator=(redis_async_connection const&) = delete;

  // Pending commands fail (store_unavailable) once the strand frees the
  // context; the strand's io_context must outlive this.
  ~redis_async_connection() {
    if (link_) net::post(strand_, [link = std::move(link_)] { link->close("connection closed"); });
  }

  // Closes the link at once; for an io_context shutting down, whose
  // threads no longer run (see redis_async_connections).
  void close_now() {
    if (link_) std::exchange(link_, nullptr)->close("connection closed");
  }

  static std::shared_ptr<redis_async_connection> create(net::any_io_executor ex, redis_options options) {
    return std::make_shared<redis_async_connection>(private_tag{}, std::move(ex), std::move(options));
  }

  // One command; completes with parse(reply), called in hiredis's reply
  // callback (decode in place: the reply is freed after it). Views in `args`
  // must stay valid until the command completes.
  template <class Parse>
    requires std::invocable<Parse&, redisReply const*>
  net::awaitable<result_of<Parse>> command(std::string_view what, redis_args args, Parse parse) {
    return run(weak_from_this(), std::string(what), std::move(args), nullptr, 0, std::move(parse));
  }

  // EVALSHA of `script`, EVAL of its source after a NOSCRIPT. `args` comes
  // from redis_connection::script_args(): placeholders, keys, arguments.
  template <class Parse>
    requires std::invocable<Parse&, redisReply const*>
  net::awaitable<result_of<Parse>> eval(redis_script const& script, std::size_t numkeys, redis_args args, Parse parse) {
    return run(weak_from_this(), std::string(script.name), std::move(args), &script, numkeys, std::move(parse));
  }

  // Round trips are not counted: pipelined replies share reads.
  redis_stats stats() const {
    redis_stats s;
    s.commands = counters_->commands.load(std::memory_order_relaxed);
    s.connects = counters_->connects.load(std::memory_order_relaxed);
    s.failures = counters_->failures.load(std::memory_order_relaxed);
    s.script_loads = counters_->script_loads.load(std::memory_order_relaxed);
    return s;
  }

private:
  using strand_type = redis_async_link::strand_type;

  // Holds no reference to the connection while waiting, so that it can be
  // destroyed with commands pending.
  template <class Parse>
  static net::awaitable<result_of<Parse>> run(std::weak_ptr<redis_async_connection> weak, std::string what,
                                              redis_args args, redis_script const* script, std::size_t numkeys, Parse parse) {
    using R = result_of<Parse>;
    static_assert(std::is_object_v<R>, "parse must return a value");
    auto result = co_await net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr, std::optional<R>)>(
        [&](auto handler) {
          start(weak.lock(), std::move(handler), std::move(what), std::move(args), script, numkeys, std::move(parse));
        },
        net::use_awaitable);
    co_return std::move(*result);
  }

  template <class Handler, class Parse>
  static void start(std::shared_ptr<redis_async_connection> self, Handler handler, std::string what, redis_args args,
                    redis_script const* script, std::size_t numkeys, Parse parse) {
    if (!self) {
      auto ex = net::get_associated_executor(handler);
      auto e = std::make_exception_ptr(cache_error(error::store_unavailable, fmt::format("{}: connection closed", what)));
      return net::post(ex, [h = std::move(handler), e]() mutable { std::move(h)(e, std::optional<result_of<Parse>>()); });
    }
    auto slot = net::get_associated_cancellation_slot(handler);
    auto op = std::make_shared<redis_async_command_op<Handler, Parse>>(std::move(handler), std::move(parse), self->strand_,
                                                                       self->counters_, std::move(what), std::move(args),
                                                                       script, numkeys);
    if (slot.is_connected()) {
      // Emitted on the caller's executor: hop to the strand. Total
      // cancellation is not honoured: the command may already be sent.
      slot.assign([weak = std::weak_ptr<redis_async_op>(op), strand = self->strand_](net::cancellation_type type) {
        if ((type & (net::cancellation_type::terminal | net::cancellation_type::partial)) == net::cancellation_type::none)
          return;
        net::post(strand, [weak] {
          if (auto op = weak.lock()) op->abort();
        });
      });
    }
    net::dispatch(self->strand_, [self, op = std::shared_ptr<redis_async_op>(std::move(op))] { self->submit(op); });
  }

  void submit(std::shared_ptr<redis_async_op> const& op) {
    if (op->done()) return; // cancelled on its way here
    try {
      auto& link = usable_link();
      // A command queued behind a connect also waits for it.
      auto const timeout = options_.command_timeout + (link->ready() ? std::chrono::milliseconds(0) : options_.connect_timeout);
      link->send(op);
      op->start_timer(timeout, link);
    } catch (...) {
      op->fail(std::current_exception());
    }
  }

  // The open link, or a new one; throws while backing off or when the
  // connect fails at once.
  std::shared_ptr<redis_async_link>& usable_link() {
    if (link_ && link_->alive()) return link_;
    if (auto wait = backoff_.remaining(); wait.count() > 0)
      throw cache_error(error::store_unavailable,
                        fmt::format("redis connect: backing off for {} ms after a failed attempt", wait.count()));
    link_.reset();
    try {
      link_ = redis_async_link::open(strand_, options_, counters_, [weak = weak_from_this()](bool ready) {
        if (auto self = weak.lock()) ready ? self->backoff_.succeeded() : self->backoff_.failed();
      });
    } catch (...) {
      backoff_.failed();
      throw;
    }
    return link_;
  }

  redis_options const options_;
  strand_type strand_;
  std::shared_ptr<redis_counters> counters_ = std::make_shared<redis_counters>();
  connect_backoff backoff_;                // strand only
  std::shared_ptr<redis_async_link> link_; // strand only
};

// The non-blocking connections of an io_context, one per Redis client,
// kept as a service of that io_context: a connection lives exactly as long
// as the io_context its strand runs on, however long the client (held by
// a process-wide registry, say) lives.
class redis_async_connections : public net::execution_context::service {
public:
  using key_type = redis_async_connections;
  static inline net::execution_context::id id;

  explicit redis_async_connections(net::execution_context& ctx) : service(ctx) {}

  // The connection of client `client_id` on `ex`'s io_context.
  static std::shared_ptr<redis_async_connection> get(net::any_io_executor const& ex, std::uint64_t client_id,
                                                     redis_options const& options) {
    auto& self = net::use_service<redis_async_connections>(net::query(ex, net::execution::context));
    std::lock_guard lock(self.mutex_);
    auto& c = self.connections_[client_id];
    if (!c) c = redis_async_connection::create(ex, options);
    return c;
  }

private:
  void shutdown() override {
    std::lock_guard lock(mutex_);
    for (auto& [id, c] : connections_) c->close_now();
    connections_.clear();
  }

  std::mutex mutex_;
  std::map<std::uint64_t, std::shared_ptr<redis_async_connection>> connections_;
};

} // namespace custom_cache_page::detail
