// cache_page(options, handler): a Beast request handler that answers from
// the cache when it can and calls `handler` when it must.
//
//   auto cached = ccp::cache_page({.timeout = 60s, .tags = {"catalog"}}, handle);
//   http::message_generator msg = cached(std::move(req));
//
// `handler` takes the request (any body; by value, reference or rvalue, as
// it likes), optionally followed by a ccp::fill_context&, and returns an
// http::response<Body> whose body is contiguous bytes (string_body,
// vector_body<char>, ...). Every decision about a request is the engine's
// (detail/engine.hpp); this file holds the synchronous front end that
// performs its actions. A cache that fails never fails the request: the
// handler answers and the error is counted.
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

  template <class Request>
    requires detail::is_request<std::remove_cvref_t<Request>>::value
  http::message_generator operator()(Request&& req) const {
    sync_run<Request&&> run{*this, std::forward<Request>(req)};
    return run.drive();
  }

private:
  // What a backend name or the default resolved to, for one registry
  // generation: a snapshot that keeps the backend alive while requests use it.
  struct resolution {
    std::uint64_t generation;
    any_backend backend;
  };
  struct state {
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
  auto call(Request&& req, fill_context& ctx) const {
    using result = std::conditional_t<std::is_invocable_v<Handler const&, Request&&, fill_context&>,
                                      std::invoke_result<Handler const&, Request&&, fill_context&>,
                                      std::invoke_result<Handler const&, Request&&>>;
    static_assert(detail::is_response<typename result::type>::value,
                  "cache_page: the handler must return an http::response<Body>");
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

  // The synchronous front end: performs the engine's actions on the
  // calling thread. Its waits block that thread, each bounded by
  // coalesce_wait.
  template <class Request>
  class sync_run {
    using response_type = decltype(std::declval<cached_handler const&>().call(std::declval<Request>(),
                                                                              std::declval<fill_context&>()));
    using body_type = typename response_type::body_type;
    static_assert(detail::contiguous_bytes_body<body_type>,
                  "cache_page: the handler's response body must be contiguous bytes (string_body, vector_body<char>)");

  public:
    sync_run(cached_handler const& h, Request req)
        : h_(h), req_(std::forward<Request>(req)), en_(h.self_->options, h.stats()) {}

    http::message_generator drive() {
      using detail::step;
      keep_alive_ = req_.keep_alive();
      auto a = en_.start(request_view(req_), resolve());
      for (;;) {
        switch (a.what) {
        case step::lookup: a = look_up(); break;
        case step::join: a = join(); break;
        case step::try_lead:
          lease_ = h_.self_->flights.try_lead(en_.key());
          a = en_.joined(static_cast<bool>(lease_));
          break;
        case step::lock: a = en_.locked(take_lock()); break;
        case step::wait_flight: a = en_.flight_done(follow_->wait_stored(a.wait)); break;
        case step::pause:
          std::this_thread::sleep_for(a.wait);
          a = en_.paused();
          break;
        case step::snapshot: a = snapshot(); break;
        case step::call_handler: a = call(a.fill); break;
        case step::store: a = store(std::move(a.building)); break;
        case step::invalidate_target: a = en_.target_invalidated(invalidate_target()); break;
        case step::mark_pass: a = mark_pass(a.wait); break;
        case step::answer_entry: return answer(std::move(a));
        case step::answer_response: return h_.pass_through(std::move(*res_), en_.params());
        case step::rethrow: std::rethrow_exception(thrown_);
        }
      }
    }

  private:
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

    detail::action look_up() {
      lookup_result found;
      try {
        found = backend_.lookup(en_.key(), en_.tags());
      } catch (...) {
        return en_.lookup_failed(request());
      }
      return en_.looked_up(std::move(found), request());
    }

    detail::action join() {
      auto joined = h_.self_->flights.join(en_.key());
      lease_ = std::move(joined.lead);
      follow_ = std::move(joined.follow);
      return en_.joined(static_cast<bool>(lease_));
    }

    detail::lock_outcome take_lock() {
      try {
        auto token = backend_.try_fill_lock(en_.key(), h_.self_->options.coalesce_wait);
        if (!token) return detail::lock_outcome::elsewhere;
        lock_ = detail::fill_lock(backend_, en_.key(), std::move(*token));
        return detail::lock_outcome::held;
      } catch (...) {
        return detail::lock_outcome::failed;
      }
    }

    detail::action snapshot() {
      std::vector<std::uint64_t> versions;
      try {
        versions = backend_.tag_versions(en_.tags());
      } catch (...) {
        return en_.snapshot_failed();
      }
      return en_.snapshot_taken(std::move(versions));
    }

    detail::action call(bool fill) {
      if (fill) {
        kept_.emplace(req_.base());
        ctx_ = fill_context(backend_);
      }
      try {
        res_.emplace(h_.call(std::forward<Request>(req_), ctx_));
      } catch (...) {
        thrown_ = std::current_exception();
        return en_.handler_threw();
      }
      return en_.response(res_->base(), detail::body_bytes<body_type>(res_->body()), ctx_, request());
    }

    detail::action store(std::shared_ptr<cached_response> e) {
      e->body = detail::take_body<body_type>(res_->body());
      auto outcome = backend_.keeps_entries() ? detail::store_outcome::stored : detail::store_outcome::not_kept;
      try {
        if (outcome == detail::store_outcome::stored && !backend_.store(en_.key(), e)) outcome = detail::store_outcome::refused;
      } catch (cache_error const& err) {
        outcome = err.code() == error::entry_too_large ? detail::store_outcome::too_large : detail::store_outcome::failed;
      } catch (...) {
        outcome = detail::store_outcome::failed;
      }
      return en_.stored(outcome, std::move(e));
    }

    detail::action mark_pass(std::chrono::milliseconds ttl) {
      try {
        backend_.mark_pass(en_.key(), ttl);
      } catch (...) {
        h_.stats().error(); // the marker only shortens waits
      }
      return en_.pass_marked();
    }

    bool invalidate_target() {
      try {
        backend_.invalidate_internal_tag(en_.guard());
        backend_.erase(en_.key()); // frees it now; the guard already makes it a miss
        return true;
      } catch (...) {
        return false;
      }
    }

    http::message_generator answer(detail::action a) {
      if (lease_) lease_.finish(a.flight_stored);
      return detail::answer_from(std::move(a.entry), request(), backend_,
                                 {a.kind, en_.params(), h_.self_->options.cache_status_name, keep_alive_});
    }

    cached_handler const& h_;
    Request req_;
    detail::engine en_;
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

  std::shared_ptr<state> self_;
};

// Wraps `handler` (see cached_handler) with `options`.
template <class Handler>
cached_handler<std::decay_t<Handler>> cache_page(cache_options options, Handler&& handler) {
  return {std::move(options), std::forward<Handler>(handler)};
}

} // namespace custom_cache_page
