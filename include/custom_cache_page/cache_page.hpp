// cache_page(options, handler): a Beast request handler that answers from
// the cache when it can and calls `handler` when it must.
//
//   auto cached = ccp::cache_page({.timeout = 60s, .tags = {"catalog"}}, handle);
//   http::message_generator msg = co_await cached(std::move(req)); // handle returns net::awaitable<response>
//   http::message_generator msg = cached(std::move(req));          // handle returns a response
//
// `handler` takes the request (any body; by value, reference or rvalue, as
// it likes), optionally followed by a ccp::fill_context&, and returns an
// http::response<Body> whose body is contiguous bytes (string_body,
// vector_body<char>, ...), or a net::awaitable of one. Every decision about
// a request is the engine's (detail/engine.hpp); this file holds the two
// front ends that perform its actions, the awaitable one and the
// synchronous one. A cache that fails never fails the request: the handler
// answers and the error is counted.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/cache_options.hpp>
#include <custom_cache_page/detail/answer.hpp>
#include <custom_cache_page/detail/coalescer.hpp>
#include <custom_cache_page/detail/engine.hpp>
#include <custom_cache_page/detail/fill_lock.hpp>
#include <custom_cache_page/detail/http_semantics.hpp>
#include <custom_cache_page/fill_context.hpp>
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/registry.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/stats.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <chrono>
#include <functional>
#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace custom_cache_page {

namespace detail {

template <class T>
struct is_response : std::false_type {};
template <class Body, class Fields>
struct is_response<http::response<Body, Fields>> : std::true_type {};

template <class T>
struct is_request : std::false_type {};
template <class Body>
struct is_request<http::request<Body>> : std::true_type {};

template <class Body>
concept contiguous_bytes_body = std::ranges::contiguous_range<typename Body::value_type> &&
    (sizeof(std::ranges::range_value_t<typename Body::value_type>) == 1);

template <class Body>
std::string_view body_bytes(typename Body::value_type const& v) {
  return {reinterpret_cast<char const*>(std::ranges::data(v)), std::ranges::size(v)};
}

template <class Body>
std::string take_body(typename Body::value_type& v) {
  if constexpr (std::is_same_v<typename Body::value_type, std::string>) return std::move(v);
  else return std::string(body_bytes<Body>(v));
}

template <class T>
struct is_awaitable : std::false_type {
  using value_type = T;
};
template <class T, class Executor>
struct is_awaitable<boost::asio::awaitable<T, Executor>> : std::true_type {
  using value_type = T;
};

// What a backend operation or the handler gave: its value, or what it threw.
template <class T>
using tried = std::variant<T, std::exception_ptr>;

template <class F>
auto try_call(F&& f) -> tried<decltype(f())> {
  try {
    return f();
  } catch (...) {
    return std::current_exception();
  }
}

// Throws operation_aborted when the calling coroutine has been cancelled:
// a client that went away is not a store failure, and nothing more is done
// for it.
inline boost::asio::awaitable<void> throw_if_cancelled() {
  auto const state = co_await boost::asio::this_coro::cancellation_state;
  if (state.cancelled() != boost::asio::cancellation_type::none)
    throw boost::system::system_error(boost::asio::error::operation_aborted);
}

template <class T>
boost::asio::awaitable<T> throw_if_cancelled(boost::asio::awaitable<T> op) {
  T value = co_await std::move(op);
  co_await throw_if_cancelled();
  co_return value;
}

template <class T>
boost::asio::awaitable<tried<T>> try_await(boost::asio::awaitable<T> op) {
  std::exception_ptr failed;
  try {
    co_return co_await std::move(op);
  } catch (...) {
    failed = std::current_exception();
  }
  co_await throw_if_cancelled();
  co_return failed;
}

inline store_outcome store_outcome_of(tried<bool> const& stored) {
  if (auto const* s = std::get_if<bool>(&stored)) return *s ? store_outcome::stored : store_outcome::refused;
  try {
    std::rethrow_exception(std::get<std::exception_ptr>(stored));
  } catch (cache_error const& err) {
    return err.code() == error::entry_too_large ? store_outcome::too_large : store_outcome::failed;
  } catch (...) {
    return store_outcome::failed;
  }
}

} // namespace detail

template <class Handler>
class cached_handler {
public:
  // Throws unknown_backend_error when `options` names a backend that the
  // default registry does not hold although it already holds others (it
  // has been configured). A registry still empty cannot tell yet: such a
  // name is checked on each request, which then bypasses the cache with
  // `detail=unknown-backend`, counted in stats::unknown_backends.
  cached_handler(cache_options options, Handler handler)
      : self_(std::make_shared<state>(std::move(options), std::move(handler))) {
    auto const* name = self_->options.backend.name();
    if (name != nullptr && !default_registry().names().empty()) default_registry().get(*name);
  }

  // A synchronous handler gives an http::message_generator. A handler
  // returning net::awaitable<http::response<Body>> gives
  // net::awaitable<http::message_generator>, whose waits suspend instead of
  // blocking; the awaitable owns the request and shares this handler's
  // state, so it may outlive this object.
  template <class Request>
    requires detail::is_request<std::remove_cvref_t<Request>>::value
  auto operator()(Request&& req) const {
    if constexpr (detail::is_awaitable<handler_result<Request&&>>::value) {
      return serve_async(*this, std::remove_cvref_t<Request>(std::forward<Request>(req)));
    } else {
      run<Request&&> r{*this, std::forward<Request>(req), false};
      return r.drive();
    }
  }

private:
  // What a backend name or the default resolved to, for one registry
  // generation: a snapshot that keeps the backend alive while requests use it.
  struct resolution {
    std::uint64_t generation;
    any_backend backend;
  };
  struct state {
    state(cache_options o, Handler h) : options(std::move(o)), handler(std::move(h)) {} // (clang 14: no parenthesised aggregates)
    cache_options options;
    Handler handler;
    mutable detail::coalescer flights;
    mutable std::atomic<std::shared_ptr<resolution const>> resolved;
  };
  custom_cache_page::stats& stats() const {
    return self_->options.statistics ? *self_->options.statistics : global_stats();
  }

  // The backend for this request. A backend object is used as is; a name or
  // the default is resolved through the registry once per registry
  // generation, so hits take no registry lock. Throws unknown_backend_error
  // for a name nobody registered.
  any_backend backend() const {
    auto const& choice = self_->options.backend;
    if (auto const* b = choice.object()) return *b;
    auto& reg = default_registry();
    auto const generation = reg.generation();
    auto r = self_->resolved.load(std::memory_order_acquire);
    if (r != nullptr && r->generation == generation) return r->backend;
    auto const* name = choice.name();
    auto next = std::make_shared<resolution const>(resolution{generation, name ? reg.get(*name) : reg.get_default()});
    self_->resolved.store(next, std::memory_order_release);
    return next->backend;
  }

  template <class Request>
  using handler_result = typename std::conditional_t<std::is_invocable_v<Handler const&, Request, fill_context&>,
                                                     std::invoke_result<Handler const&, Request, fill_context&>,
                                                     std::invoke_result<Handler const&, Request>>::type;

  template <class Request>
  handler_result<Request&&> call(Request&& req, fill_context& ctx) const {
    static_assert(detail::is_response<typename detail::is_awaitable<handler_result<Request&&>>::value_type>::value,
                  "cache_page: the handler must return an http::response<Body> or a net::awaitable of one");
    if constexpr (std::is_invocable_v<Handler const&, Request&&, fill_context&>)
      return std::invoke(self_->handler, std::forward<Request>(req), ctx);
    else
      return std::invoke(self_->handler, std::forward<Request>(req));
  }

  template <class Body>
  http::message_generator pass_through(http::response<Body> res, std::string_view params) const {
    res.set("Cache-Status", detail::cache_status(res["Cache-Status"], self_->options.cache_status_name, params));
    return http::message_generator(std::move(res));
  }

  // only-if-cached with nothing stored: 504 (RFC 9111 §5.2.1.7).
  http::message_generator unavailable(unsigned version, bool keep_alive, std::string_view params) const {
    http::response<http::empty_body> res{http::status::gateway_timeout, version};
    res.keep_alive(keep_alive);
    res.content_length(0);
    return pass_through(std::move(res), params);
  }

  // One request through the engine: performs its actions and feeds their
  // outcomes back. Both front ends share everything but how an action
  // waits: drive() blocks the calling thread (each wait bounded by
  // coalesce_wait), drive_async() suspends the calling coroutine and
  // honours its cancellation (the flight's waiters are released and the
  // fill lock is released in the background).
  template <class Request>
  class run {
    using response_type = typename detail::is_awaitable<handler_result<Request>>::value_type;
    using body_type = typename response_type::body_type;
    static_assert(detail::contiguous_bytes_body<body_type>,
                  "cache_page: the handler's response body must be contiguous bytes (string_body, vector_body<char>)");

  public:
    run(cached_handler const& h, Request req, bool async)
        : h_(h), req_(std::forward<Request>(req)), en_(h.self_->options, h.stats(), async), async_(async) {}

    http::message_generator drive() {
      auto a = start();
      while (!detail::is_answer(a.what)) a = perform(std::move(a));
      return finish(std::move(a));
    }

    // Until the answer; with action::background set, the caller answers
    // and goes on with detached().
    boost::asio::awaitable<detail::action> drive_async() {
      executor_ = co_await boost::asio::this_coro::executor;
      auto a = start();
      while (!detail::is_answer(a.what)) a = co_await perform_async(std::move(a));
      co_return a;
    }

    // A stale-while-revalidate refresh after the stale answer: answers nobody.
    boost::asio::awaitable<void> refresh_detached() {
      auto a = en_.detached();
      while (!detail::is_answer(a.what)) a = co_await perform_async(std::move(a));
      finish(std::move(a));
    }

    // answer_entry, answer_response or rethrow.
    http::message_generator finish(detail::action a) {
      using detail::step;
      if (a.what == step::rethrow) std::rethrow_exception(thrown_);
      if (a.what == step::answer_response) return h_.pass_through(std::move(*res_), en_.params());
      if (a.what == step::answer_unavailable) return h_.unavailable(request().version(), keep_alive_, en_.params());
      if (lease_ && !a.background) lease_.finish(a.flight_stored);
      return detail::answer_from(std::move(a.entry), request(),
                                 {a.kind, en_.params(), h_.self_->options.cache_status_name, keep_alive_});
    }

  private:
    detail::action start() {
      keep_alive_ = req_.keep_alive();
      return en_.start(request_view(req_), resolve());
    }

    detail::action perform(detail::action a) {
      using detail::step;
      switch (a.what) {
      case step::lookup: return on_lookup(detail::try_call([&] { return backend_.lookup(en_.key(), en_.tags()); }));
      case step::lock: return on_lock(detail::try_call([&] { return lock(a.read); }));
      case step::wait_flight: return en_.flight_done(follow_->wait_stored(a.wait));
      case step::pause: std::this_thread::sleep_for(a.wait); return en_.paused();
      case step::snapshot: return on_snapshot(detail::try_call([&] { return backend_.tag_versions(en_.tags()); }));
      case step::call_handler:
        begin_call(a);
        return on_response(detail::try_call([&] { return respond(h_.call(std::forward<Request>(req_), ctx_)); }));
      case step::store: {
        auto e = std::move(a.building);
        if (!fill_body(*e, a.body_kept)) return en_.stored(detail::store_outcome::not_kept, std::move(e));
        auto const outcome = detail::store_outcome_of(
            detail::try_call([&] { return backend_.store_and_release_fill_lock(en_.key(), e, lock_.token()); }));
        return stored(outcome, std::move(e));
      }
      case step::invalidate_target:
        return en_.target_invalidated(ok(detail::try_call([&] {
          backend_.invalidate_internal_tag(en_.guard());
          return backend_.erase(en_.key()); // frees it now; the guard already makes it a miss
        })));
      case step::mark_pass: return on_mark_pass(detail::try_call([&] { return (backend_.mark_pass(en_.key(), a.wait), true); }));
      default: return perform_local(a);
      }
    }

    boost::asio::awaitable<detail::action> perform_async(detail::action a) {
      using detail::step;
      using detail::try_await;
      switch (a.what) {
      case step::lookup: co_return on_lookup(co_await try_await(backend_.async_lookup(en_.key(), en_.tags())));
      case step::lock: co_return on_lock(co_await try_await(lock_async(a.read)));
      case step::wait_flight: co_return en_.flight_done(co_await detail::throw_if_cancelled(follow_->async_wait_stored(a.wait)));
      case step::pause: {
        boost::asio::steady_timer timer(executor_, a.wait);
        co_await timer.async_wait(boost::asio::use_awaitable);
        co_return en_.paused();
      }
      case step::snapshot: co_return on_snapshot(co_await try_await(backend_.async_tag_versions(en_.tags())));
      case step::call_handler: begin_call(a); co_return on_response(co_await try_await(respond_async()));
      case step::store: {
        auto e = std::move(a.building);
        if (!fill_body(*e, a.body_kept)) co_return en_.stored(detail::store_outcome::not_kept, std::move(e));
        auto const outcome =
            detail::store_outcome_of(co_await try_await(backend_.async_store_and_release_fill_lock(en_.key(), e, lock_.token())));
        co_return stored(outcome, std::move(e));
      }
      case step::invalidate_target: co_return en_.target_invalidated(ok(co_await try_await(invalidate_target_async())));
      case step::mark_pass: co_return on_mark_pass(co_await try_await(mark_pass_async(a.wait)));
      default: co_return perform_local(a);
      }
    }

    // The actions that do no I/O.
    detail::action perform_local(detail::action const& a) {
      if (a.what == detail::step::try_lead) {
        lease_ = h_.self_->flights.try_lead(en_.key());
        return en_.joined(static_cast<bool>(lease_));
      }
      auto joined = h_.self_->flights.join(en_.key());
      lease_ = std::move(joined.lead);
      follow_ = std::move(joined.follow);
      return en_.joined(static_cast<bool>(lease_));
    }

    detail::backend_state resolve() {
      try {
        backend_ = h_.backend();
        return detail::backend_state::ok;
      } catch (unknown_backend_error const&) {
        return detail::backend_state::unknown;
      } catch (...) {
        return detail::backend_state::failed;
      }
    }

    // The request as the answers see it: once the handler may have
    // consumed it, the copy of its header taken before.
    http::request_header<> const& request() const { return kept_ ? *kept_ : req_.base(); }
    std::chrono::milliseconds wait() const { return h_.self_->options.coalesce_wait; }

    detail::action on_lookup(detail::tried<lookup_result> found) {
      if (auto* r = std::get_if<lookup_result>(&found)) {
        backend_.screen(*r);
        return en_.looked_up(std::move(*r), request());
      }
      return en_.lookup_failed(request());
    }

    // The fill lock, with the lookup under it when `read`.
    locked_lookup lock(bool read) {
      if (read) return backend_.try_fill_lock_and_lookup(en_.key(), en_.tags(), wait());
      return {backend_.try_fill_lock(en_.key(), wait()), {}};
    }
    boost::asio::awaitable<locked_lookup> lock_async(bool read) {
      if (read) co_return co_await backend_.async_try_fill_lock_and_lookup(en_.key(), en_.tags(), wait());
      locked_lookup out; // (no co_await inside a braced initialiser: GCC 12 mistranslates it)
      out.token = co_await backend_.async_try_fill_lock(en_.key(), wait());
      co_return out;
    }

    detail::action on_lock(detail::tried<locked_lookup> locked) {
      auto* l = std::get_if<locked_lookup>(&locked);
      if (l == nullptr) return en_.locked(detail::lock_outcome::failed, {}, request());
      if (!l->token) return en_.locked(detail::lock_outcome::elsewhere, {}, request());
      std::optional<boost::asio::any_io_executor> release_on;
      if (async_) release_on = executor_;
      lock_ = detail::fill_lock(backend_, en_.key(), std::move(*l->token), std::move(release_on));
      backend_.screen(l->found);
      return en_.locked(detail::lock_outcome::held, std::move(l->found), request());
    }

    // A store that answered (stored or refused) released the fill lock with
    // it; one that threw leaves it to the lock's destructor.
    detail::action stored(detail::store_outcome outcome, std::shared_ptr<cached_response> e) {
      if (outcome == detail::store_outcome::stored || outcome == detail::store_outcome::refused) lock_.released();
      return en_.stored(outcome, std::move(e));
    }

    detail::action on_snapshot(detail::tried<std::vector<std::uint64_t>> versions) {
      if (auto* v = std::get_if<std::vector<std::uint64_t>>(&versions)) return en_.snapshot_taken(std::move(*v));
      return en_.snapshot_failed();
    }

    // A fill keeps the client's header for the answer, and asks the
    // handler for what the cache needs (action::whole, action::validate).
    // A request the caller passed as const is given as it came.
    void begin_call(detail::action const& a) {
      if (!a.fill) return;
      kept_.emplace(req_.base());
      ctx_ = fill_context(backend_);
      if constexpr (!std::is_const_v<std::remove_reference_t<Request>>)
        if (a.whole) detail::ask_for_whole(req_.base(), a.validate.get());
    }

    bool respond(response_type res) {
      res_.emplace(std::move(res));
      return true;
    }

    boost::asio::awaitable<bool> respond_async() {
      co_return respond(co_await h_.call(std::forward<Request>(req_), ctx_));
    }

    detail::action on_response(detail::tried<bool> called) {
      if (auto* e = std::get_if<std::exception_ptr>(&called)) {
        thrown_ = *e;
        return en_.handler_threw();
      }
      return en_.response(res_->base(), detail::body_bytes<body_type>(res_->body()), ctx_, request());
    }

    // The response's body moves into the entry, which is sealed; false
    // when the backend keeps no entries (it is then not asked to store).
    bool fill_body(cached_response& e, bool body_kept) {
      if (!body_kept) e.body = detail::take_body<body_type>(res_->body());
      detail::seal(e, backend_);
      return backend_.keeps_entries();
    }

    boost::asio::awaitable<bool> invalidate_target_async() {
      co_await backend_.async_invalidate_internal_tag(en_.guard());
      co_return co_await backend_.async_erase(en_.key());
    }

    boost::asio::awaitable<bool> mark_pass_async(std::chrono::milliseconds ttl) {
      co_await backend_.async_mark_pass(en_.key(), ttl);
      co_return true;
    }

    static bool ok(detail::tried<bool> const& done) { return std::holds_alternative<bool>(done); }

    detail::action on_mark_pass(detail::tried<bool> marked) {
      if (!ok(marked)) h_.stats().error(); // the marker only shortens waits
      return en_.pass_marked();
    }

    cached_handler const& h_;
    Request req_;
    detail::engine en_;
    bool async_;
    boost::asio::any_io_executor executor_;
    any_backend backend_;
    std::optional<http::request_header<>> kept_;
    bool keep_alive_ = true;
    fill_context ctx_;
    std::optional<response_type> res_;
    std::exception_ptr thrown_;
    detail::coalescer::lease lease_;
    std::shared_ptr<detail::coalescer::flight> follow_;
    detail::fill_lock lock_; // after backend_: released before it goes
  };

  // The awaitable front end. The run lives on the heap with a handle on
  // this handler, so that a stale-while-revalidate refresh can go on after
  // the stale answer (on the same executor, answering nobody).
  template <class Request>
  struct async_job {
    async_job(cached_handler h, Request req) : handler(std::move(h)), r(handler, std::move(req), true) {}
    cached_handler handler;
    run<Request> r;
  };

  template <class Request>
  static boost::asio::awaitable<http::message_generator> serve_async(cached_handler h, Request req) {
    auto job = std::make_unique<async_job<Request>>(std::move(h), std::move(req));
    auto a = co_await job->r.drive_async();
    if (!a.background) co_return job->r.finish(std::move(a));
    auto answer = job->r.finish(a);
    boost::asio::co_spawn(co_await boost::asio::this_coro::executor, refresh(std::move(job)), boost::asio::detached);
    co_return answer;
  }

  template <class Request>
  static boost::asio::awaitable<void> refresh(std::unique_ptr<async_job<Request>> job) {
    try {
      co_await job->r.refresh_detached();
    } catch (...) {
      job->handler.stats().error(); // nobody to tell but the counters
    }
  }

  std::shared_ptr<state> self_;
};

// Wraps `handler` (see cached_handler) with `options`.
template <class Handler>
cached_handler<std::decay_t<Handler>> cache_page(cache_options options, Handler&& handler) {
  return {std::move(options), std::forward<Handler>(handler)};
}

} // namespace custom_cache_page
