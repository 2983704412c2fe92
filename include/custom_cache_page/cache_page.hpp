// cache_page(options, handler): a Beast request handler that answers from
// the cache when it can and calls `handler` when it must.
//
//   auto cached = ccp::cache_page({.timeout = 60s, .tags = {"catalog"}}, handle);
//   http::message_generator msg = cached(std::move(req));
//
// `handler` takes the request (any body; by value, reference or rvalue, as
// it likes), optionally followed by a ccp::fill_context&, and returns an
// http::response<Body> whose body is contiguous bytes (string_body,
// vector_body<char>, ...). The request's decisions are in
// detail/http_semantics.hpp; this file only sequences them. A cache that
// fails never fails the request: the handler answers and the error is
// counted.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/cache_options.hpp>
#include <custom_cache_page/detail/digest.hpp>
#include <custom_cache_page/detail/http_semantics.hpp>
#include <custom_cache_page/detail/shared_body.hpp>
#include <custom_cache_page/fill_context.hpp>
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/registry.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/stats.hpp>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <charconv>
#include <chrono>
#include <functional>
#include <atomic>
#include <memory>
#include <mutex>
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
  cached_handler(cache_options options, Handler handler)
      : self_(std::make_shared<state>(std::move(options), std::move(handler))) {}

  template <class Request>
    requires detail::is_request<std::remove_cvref_t<Request>>::value
  http::message_generator operator()(Request&& req) const {
    auto const& o = self_->options;
    request_view const view(req);
    auto const method = req.method();

    if (method != http::verb::get && method != http::verb::head) return other_method(std::forward<Request>(req), view);
    if (auto why = detail::bypass_reason(view, o)) return bypass(std::forward<Request>(req), *why);
    bool wanted = true;
    try {
      wanted = !o.only_if || o.only_if(view);
    } catch (...) {
      return bypass(std::forward<Request>(req), "error", true);
    }
    if (!wanted) return bypass(std::forward<Request>(req), "only-if");

    prepared p;
    try {
      p = prepare(view);
    } catch (...) {
      return bypass(std::forward<Request>(req), "error", true);
    }

    bool refresh = false;
    try {
      refresh = o.refresh_if && o.refresh_if(view);
    } catch (...) {
      stats().error();
    }

    lookup_result found;
    bool store_down = false;
    std::string_view fwd = refresh ? "request" : "miss";
    if (!refresh) {
      try {
        found = p.backend->lookup(p.key, p.tags);
      } catch (...) {
        stats().error();
        store_down = true;
      }
    }
    if (found.entry) {
      if (detail::entry_answers(*found.entry, p.tags, found.versions, req)) {
        stats().hit();
        return answer(found.entry, req, *p.backend, true, "");
      }
      fwd = "vary-miss";
    }

    stats().miss();
    // The handler may consume the request: keep what the answer needs.
    http::request<http::empty_body> const header(req.base());
    fill_context ctx(*p.backend);
    if (method == http::verb::head) {
      stats().not_stored(not_stored_reason::head_request);
      return pass_through(call(std::forward<Request>(req), ctx), fmt::format("fwd={}; detail=head", fwd));
    }
    if (store_down) {
      stats().not_stored(not_stored_reason::store_failed);
      return pass_through(call(std::forward<Request>(req), ctx), fmt::format("fwd={}; detail=store-unavailable", fwd));
    }
    // The versions this fill is built under, read before the handler runs.
    bool snapshot_ok = true;
    bool missing_counter = found.versions.size() != p.tags.size();
    for (std::size_t i = 0; !missing_counter && i < p.tags.size(); ++i)
      missing_counter = found.versions[i] == 0 && !p.tags[i].guard;
    if (missing_counter) {
      try {
        found.versions = p.backend->tag_versions(p.tags);
      } catch (...) {
        stats().error();
        snapshot_ok = false;
      }
    }
    return fill(call(std::forward<Request>(req), ctx), header, p, found.versions, snapshot_ok, ctx, fwd);
  }

private:
  struct resolution {
    std::uint64_t generation;
    any_backend const* backend; // owned by the registry, never destroyed before it
  };
  struct state {
    cache_options options;
    Handler handler;
    mutable std::atomic<resolution const*> resolved{nullptr};
    mutable std::mutex resolving;
    mutable std::vector<std::unique_ptr<resolution>> resolutions; // one per registry change seen
  };
  struct prepared {
    std::string key; // storage key
    std::vector<resolved_tag> tags;
    any_backend const* backend = nullptr;
  };

  custom_cache_page::stats& stats() const {
    return self_->options.statistics ? *self_->options.statistics : global_stats();
  }

  // The backend for this request. A backend object is used as is; a name or
  // the default is resolved through the registry once per registry
  // generation, so hits take no registry lock.
  any_backend const& backend() const {
    auto const& choice = self_->options.backend;
    if (auto const* b = choice.object()) return *b;
    auto& reg = default_registry();
    auto const generation = reg.generation();
    auto const* r = self_->resolved.load(std::memory_order_acquire);
    if (r != nullptr && r->generation == generation) return *r->backend;
    std::lock_guard lock(self_->resolving);
    auto const* name = choice.name();
    auto& next = self_->resolutions.emplace_back(
        std::make_unique<resolution>(resolution{generation, name ? &reg.ref(*name) : &reg.default_ref()}));
    self_->resolved.store(next.get(), std::memory_order_release);
    return *next->backend;
  }

  // The target guard closes the race between a successful unsafe request
  // and a GET fill of the same target that started before it: the unsafe
  // request bumps the guard after its handler returns, so the older fill's
  // snapshot no longer matches and its response is not stored. A long life
  // is not needed: a fill lasts seconds, and a guard that expires only turns
  // the entries built after it into misses once.
  static constexpr std::chrono::seconds guard_ttl{std::chrono::hours(24)};
  static std::string guard_name(std::string const& key) { return "~target:" + key; }

  prepared prepare(request_view const& view) const {
    auto const& o = self_->options;
    prepared p{storage_key(o.prefix(view), o.key_func(view)), resolve_tags(o.tags, view), &backend()};
    p.tags.push_back({guard_name(p.key), false, guard_ttl, true});
    return p;
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
    res.set("Cache-Status", detail::cache_status(detail::sv(res["Cache-Status"]), self_->options.cache_status_name, params));
    return http::message_generator(std::move(res));
  }

  template <class Request>
  http::message_generator bypass(Request&& req, std::string_view why, bool error = false) const {
    if (error) stats().error();
    stats().bypass();
    fill_context inert;
    return pass_through(call(std::forward<Request>(req), inert), fmt::format("fwd=bypass; detail={}", why));
  }

  // Unsafe methods run the handler and, when it succeeds, remove the entry
  // that a GET of the same target would hit (RFC 9111 §4.4).
  template <class Request>
  http::message_generator other_method(Request&& req, request_view const& view) const {
    stats().bypass();
    std::optional<prepared> p;
    if (detail::is_unsafe(req.method()) && view.valid()) {
      try {
        p = prepare(view);
      } catch (...) {
        stats().error();
      }
    }
    fill_context inert;
    auto res = call(std::forward<Request>(req), inert);
    if (p && res.result_int() < 400) {
      try {
        p->backend->invalidate_tag(guard_name(p->key));
        p->backend->erase(p->key); // frees it now; the guard already makes it a miss
      } catch (...) {
        stats().error();
      }
    }
    return pass_through(std::move(res), "fwd=method");
  }

  template <class Body>
  http::message_generator fill(http::response<Body> res, http::request<http::empty_body> const& req, prepared const& p,
                               std::vector<std::uint64_t> const& versions, bool snapshot_ok, fill_context const& ctx,
                               std::string_view fwd) const {
    static_assert(detail::contiguous_bytes_body<Body>,
                  "cache_page: the handler's response body must be contiguous bytes (string_body, vector_body<char>)");
    auto const& o = self_->options;
    auto why = detail::not_storable(res, detail::body_bytes<Body>(res.body()).size(), o);
    if (!why && ctx.declined()) why = not_stored_reason::handler_declined;
    if (!why && (!snapshot_ok || ctx.snapshot_failed())) why = not_stored_reason::store_failed;
    std::chrono::seconds ttl{0};
    if (!why) {
      try {
        ttl = o.timeout(res);
      } catch (...) {
        stats().error();
      }
      if (ttl.count() <= 0) why = not_stored_reason::zero_timeout;
    }
    if (why) {
      stats().not_stored(*why);
      return pass_through(std::move(res), fmt::format("fwd={}; detail={}", fwd, to_string(*why)));
    }

    auto const now = cached_response::clock::now();
    auto e = std::make_shared<cached_response>();
    e->status = res.result_int();
    e->stored_at = now;
    e->expires_at = now + ttl;
    // As Django's patch_response_headers: Expires unless set, and a max-age
    // no longer than the timeout.
    if (res.find(http::field::expires) == res.end()) res.set(http::field::expires, detail::http_date(e->expires_at));
    res.set(http::field::cache_control, detail::with_max_age(detail::sv(res[http::field::cache_control]), ttl.count(), true));
    if (o.add_etag && res.find(http::field::etag) == res.end())
      res.set(http::field::etag, "\"" + detail::sha256_hex(detail::body_bytes<Body>(res.body())).substr(0, 32) + "\"");
    for (auto const& f : res)
      if (detail::stored_field(res, f.name(), detail::sv(f.name_string())))
        e->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    for (std::size_t i = 0; i < p.tags.size(); ++i)
      e->tags.push_back({p.tags[i].name, versions[i], p.tags[i].versioned, p.tags[i].guard});
    for (std::size_t i = 0; i < ctx.added_tags().size(); ++i) {
      auto const& t = ctx.added_tags()[i];
      if (std::none_of(e->tags.begin(), e->tags.end(), [&](tag_version const& x) { return x.name == t.name; }))
        e->tags.push_back({t.name, ctx.added_versions()[i], t.versioned});
    }
    if (o.honour_vary) e->vary = detail::vary_values(req, detail::vary_fields(res));
    e->body = detail::take_body<Body>(res.body());

    std::optional<not_stored_reason> refused;
    try {
      if (!p.backend->store(p.key, e)) refused = not_stored_reason::invalidated;
    } catch (cache_error const& err) {
      if (err.code() != error::entry_too_large) stats().error();
      refused = err.code() == error::entry_too_large ? not_stored_reason::too_large : not_stored_reason::store_failed;
    } catch (...) {
      stats().error();
      refused = not_stored_reason::store_failed;
    }
    if (refused) stats().not_stored(*refused);
    else stats().store();
    return answer(std::move(e), req, *p.backend, false,
                  refused ? fmt::format("fwd={}; detail={}", fwd, to_string(*refused)) : fmt::format("fwd={}; stored", fwd));
  }

  // An answer built from a stored entry: the full response, a HEAD's header,
  // or 304 when the request's validators match.
  template <class Request>
  http::message_generator answer(std::shared_ptr<cached_response const> e, Request const& req,
                                 any_backend const& b, bool hit, std::string_view miss_params) const {
    using namespace std::chrono;
    auto const now = cached_response::clock::now();
    auto const age = std::max<long long>(0, duration_cast<seconds>(now - e->stored_at).count());
    // In whole seconds from the same Age, so that ttl and max-age agree.
    auto const remaining = std::max<long long>(0, duration_cast<seconds>(e->expires_at - e->stored_at).count() - age);
    auto const& name = self_->options.cache_status_name;

    auto fill_header = [&](auto& res, bool validators_only) {
      for (auto const& [field, value] : e->headers) {
        auto f = http::string_to_field(field);
        if (validators_only && !(f == http::field::etag || f == http::field::cache_control ||
                                 f == http::field::expires || f == http::field::vary ||
                                 f == http::field::last_modified || f == http::field::content_location))
          continue;
        if (f == http::field::cache_control && hit) res.insert(f, detail::counted_down(value, age));
        else if (f != http::field::unknown) res.insert(f, value);
        else res.insert(field, value);
      }
      if (hit) res.set(http::field::age, std::to_string(age));
      std::string params;
      if (hit) {
        char ttl[24];
        params.reserve(32);
        params.append("hit; ttl=");
        params.append(ttl, std::to_chars(ttl, ttl + sizeof ttl, remaining).ptr);
      } else {
        params = miss_params;
      }
      res.set("Cache-Status", detail::cache_status(detail::sv(res["Cache-Status"]), name, params));
      res.version(req.version());
      res.keep_alive(req.keep_alive());
      b.prepare_response(res.base(), e->tags);
    };

    if (e->status == 200 && detail::not_modified(req, *e)) {
      http::response<http::empty_body> res{http::status::not_modified, req.version()};
      fill_header(res, true);
      return http::message_generator(std::move(res));
    }
    if (req.method() == http::verb::head) {
      http::response<http::empty_body> res{static_cast<http::status>(e->status), req.version()};
      fill_header(res, false);
      res.content_length(e->body.size());
      return http::message_generator(std::move(res));
    }
    http::response<detail::shared_body> res{static_cast<http::status>(e->status), req.version()};
    fill_header(res, false);
    res.content_length(e->body.size());
    res.body().entry = std::move(e);
    return http::message_generator(std::move(res));
  }

  std::shared_ptr<state> self_;
};

// Wraps `handler` (see cached_handler) with `options`.
template <class Handler>
cached_handler<std::decay_t<Handler>> cache_page(cache_options options, Handler&& handler) {
  return {std::move(options), std::forward<Handler>(handler)};
}

} // namespace custom_cache_page
