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
#include <custom_cache_page/detail/coalescer.hpp>
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
    } catch (unknown_backend_error const&) {
      stats().unknown_backend();
      return bypass(std::forward<Request>(req), "unknown-backend");
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
        found = p.backend.lookup(p.key, p.tags);
      } catch (...) {
        stats().error();
        store_down = true;
      }
    }
    // A stale entry that may stand in for a failing handler.
    std::shared_ptr<cached_response const> fallback;
    detail::coalescer::lease lead;
    fill_lock lock;
    if (found.entry) {
      if (detail::entry_answers(*found.entry, p.tags, found.versions, req, found.soft_purged)) {
        auto const judged = detail::judge(*found.entry, found.soft_purged, cached_response::clock::now());
        if (judged.state == detail::freshness::fresh) {
          stats().hit();
          return answer(found.entry, req, p.backend, answer_kind::hit);
        }
        if (judged.state == detail::freshness::revalidate_stale) {
          // One request refreshes; the others answer stale meanwhile.
          if (lead = self_->flights.try_lead(p.key); lead) lock = take_fill_lock(p);
          if (!lead || !lock.held) {
            stats().stale();
            return answer(found.entry, req, p.backend, answer_kind::stale, "; detail=revalidating");
          }
        }
        if (judged.state != detail::freshness::unusable && found.entry->stale_if_error > judged.stale_for)
          fallback = found.entry;
        fwd = "stale";
      } else {
        fwd = "vary-miss";
      }
    }

    stats().miss();
    // The handler may consume the request: keep what the answer needs.
    http::request<http::empty_body> const header(req.base());
    fill_context ctx(p.backend);
    if (method == http::verb::head) {
      stats().not_stored(not_stored_reason::head_request);
      return pass_through(call(std::forward<Request>(req), ctx), fmt::format("fwd={}; detail=head", fwd));
    }
    if (store_down) {
      stats().not_stored(not_stored_reason::store_failed);
      return pass_through(call(std::forward<Request>(req), ctx), fmt::format("fwd={}; detail=store-unavailable", fwd));
    }
    if (!lead && !refresh && self_->options.coalesce) {
      auto joined = self_->flights.join(p.key);
      if (joined.follow) {
        // Another request of this process is filling the key.
        if (joined.follow->wait_stored(self_->options.coalesce_wait))
          if (auto e = reread(p, header)) {
            stats().coalesced();
            return answer(std::move(e), header, p.backend, answer_kind::hit, "; detail=coalesced");
          }
      } else {
        lead = std::move(joined.lead);
        lock = take_fill_lock(p);
        // A fill that ended between the lookup and now (here or in another
        // process) left its entry; when another process holds the lock, its
        // entry is awaited, bounded.
        if (auto e = lock.held ? reread(p, header) : await_other_process(p, header, lock)) {
          lead.finish(true);
          stats().coalesced();
          return answer(std::move(e), header, p.backend, answer_kind::hit, "; detail=coalesced");
        }
      }
    }
    // The versions this fill is built under, read before the handler runs.
    bool snapshot_ok = true;
    bool missing_counter = found.versions.size() != p.tags.size();
    for (std::size_t i = 0; !missing_counter && i < p.tags.size(); ++i)
      missing_counter = found.versions[i] == 0 && !p.tags[i].guard;
    if (missing_counter) {
      try {
        found.versions = p.backend.tag_versions(p.tags);
      } catch (...) {
        stats().error();
        snapshot_ok = false;
      }
    }
    using response = decltype(call(std::forward<Request>(req), ctx));
    std::optional<response> res;
    try {
      res.emplace(call(std::forward<Request>(req), ctx));
    } catch (...) {
      if (!fallback) throw;
      stats().error();
      stats().stale();
      return answer(std::move(fallback), header, p.backend, answer_kind::stale, "; detail=stale-if-error");
    }
    if (fallback && res->result_int() >= 500) {
      stats().stale();
      return answer(std::move(fallback), header, p.backend, answer_kind::stale,
                    fmt::format("; fwd-status={}; detail=stale-if-error", res->result_int()));
    }
    return fill(std::move(*res), header, p, found.versions, snapshot_ok, ctx, fwd, lead);
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
  struct prepared {
    std::string key; // storage key
    std::vector<resolved_tag> tags;
    any_backend backend;
  };

  // A backend's fill lock, released when the fill is over. `held` is true
  // for backends without locks and when taking one failed (a store that is
  // down must not make requests wait).
  struct fill_lock {
    any_backend const* backend = nullptr;
    std::string key, token;
    bool held = false;
    fill_lock() = default;
    fill_lock(fill_lock&& o) noexcept
        : backend(std::exchange(o.backend, nullptr)), key(std::move(o.key)), token(std::move(o.token)), held(o.held) {}
    fill_lock& operator=(fill_lock&& o) noexcept {
      std::swap(backend, o.backend);
      std::swap(key, o.key);
      std::swap(token, o.token);
      std::swap(held, o.held);
      return *this;
    }
    ~fill_lock() {
      if (backend == nullptr || token.empty()) return;
      try {
        backend->release_fill_lock(key, token);
      } catch (...) {
        // It expires by itself.
      }
    }
  };

  fill_lock take_fill_lock(prepared const& p) const {
    fill_lock l;
    l.held = true;
    try {
      auto token = p.backend.try_fill_lock(p.key, self_->options.coalesce_wait);
      if (!token) {
        l.held = false;
        return l;
      }
      l.backend = &p.backend;
      l.key = p.key;
      l.token = std::move(*token);
    } catch (...) {
      stats().error();
    }
    return l;
  }

  // The entry under the key if it now answers this request fresh.
  std::shared_ptr<cached_response const> reread(prepared const& p, http::request_header<> const& req) const {
    try {
      auto found = p.backend.lookup(p.key, p.tags);
      if (found.entry && !found.soft_purged && detail::entry_answers(*found.entry, p.tags, found.versions, req) &&
          found.entry->expires_at > cached_response::clock::now())
        return found.entry;
    } catch (...) {
      stats().error();
    }
    return nullptr;
  }

  // Polls the store while another process fills the key, until its entry
  // appears, its lock comes free (this request then leads, holding `lock`)
  // or the wait is over (then this request runs the handler).
  std::shared_ptr<cached_response const> await_other_process(prepared const& p, http::request_header<> const& req,
                                                             fill_lock& lock) const {
    auto const deadline = std::chrono::steady_clock::now() + self_->options.coalesce_wait;
    auto pause = std::chrono::milliseconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
      if (auto e = reread(p, req)) return e;
      // A lock free again without an entry: that fill stored nothing (a
      // response that may not be shared, or it failed). Waiting longer
      // would wait for what never comes: lead instead.
      if (lock = take_fill_lock(p); lock.held) return reread(p, req);
    }
    return nullptr;
  }

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
    prepared p{{}, resolve_tags(o.tags, view), backend()};
    p.key = storage_key(o.prefix(view), o.key_func(view), p.tags);
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
    res.set("Cache-Status", detail::cache_status(res["Cache-Status"], self_->options.cache_status_name, params));
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
        p->backend.invalidate_tag(guard_name(p->key));
        p->backend.erase(p->key); // frees it now; the guard already makes it a miss
      } catch (...) {
        stats().error();
      }
    }
    return pass_through(std::move(res), "fwd=method");
  }

  template <class Body>
  http::message_generator fill(http::response<Body> res, http::request<http::empty_body> const& req, prepared const& p,
                               std::vector<std::uint64_t> const& versions, bool snapshot_ok, fill_context const& ctx,
                               std::string_view fwd, detail::coalescer::lease& lead) const {
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
    e->stale_while_revalidate = detail::stale_window(res, "stale-while-revalidate", o.stale_while_revalidate);
    e->stale_if_error = detail::stale_window(res, "stale-if-error", o.stale_if_error);
    // As Django's patch_response_headers: Expires unless set, and a max-age
    // no longer than the timeout.
    if (res.find(http::field::expires) == res.end()) res.set(http::field::expires, detail::http_date(e->expires_at));
    res.set(http::field::cache_control, detail::with_max_age(res[http::field::cache_control], ttl.count(), true));
    if (o.add_etag && res.find(http::field::etag) == res.end())
      res.set(http::field::etag, "\"" + detail::sha256_hex(detail::body_bytes<Body>(res.body())).substr(0, 32) + "\"");
    for (auto const& f : res)
      if (detail::stored_field(res, f.name(), f.name_string()))
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
      if (!p.backend.store(p.key, e)) refused = not_stored_reason::invalidated;
    } catch (cache_error const& err) {
      if (err.code() != error::entry_too_large) stats().error();
      refused = err.code() == error::entry_too_large ? not_stored_reason::too_large : not_stored_reason::store_failed;
    } catch (...) {
      stats().error();
      refused = not_stored_reason::store_failed;
    }
    if (refused) stats().not_stored(*refused);
    else stats().store();
    lead.finish(!refused);
    return answer(std::move(e), req, p.backend, answer_kind::filled,
                  refused ? fmt::format("fwd={}; detail={}", fwd, to_string(*refused)) : fmt::format("fwd={}; stored", fwd));
  }

  enum class answer_kind { hit, stale, filled };

  // An answer built from an entry: the full response, a HEAD's header, or
  // 304 when the request's validators match. A hit or a stale answer gets
  // Age and a Cache-Status with its ttl (negative when stale) and `params`
  // after it; a fill's Cache-Status is `params` alone.
  template <class Request>
  http::message_generator answer(std::shared_ptr<cached_response const> e, Request const& req, any_backend const& b,
                                 answer_kind kind, std::string_view params_in = {}) const {
    using namespace std::chrono;
    auto const now = cached_response::clock::now();
    bool const hit = kind != answer_kind::filled;
    auto const age = std::max<long long>(0, duration_cast<seconds>(now - e->stored_at).count());
    // In whole seconds from the same Age, so that ttl and Age agree.
    auto const lifetime = duration_cast<seconds>(e->expires_at - e->stored_at).count();
    auto const remaining = kind == answer_kind::stale ? std::min<long long>(-1, lifetime - age) : std::max<long long>(0, lifetime - age);
    auto const& name = self_->options.cache_status_name;

    auto fill_header = [&](auto& res, bool validators_only) {
      for (auto const& [field, value] : e->headers) {
        auto f = http::string_to_field(field);
        if (validators_only && !(f == http::field::etag || f == http::field::cache_control ||
                                 f == http::field::expires || f == http::field::vary ||
                                 f == http::field::last_modified || f == http::field::content_location))
          continue;
        // Cache-Control goes out as stored: Age says how old the copy is,
        // and a downstream cache subtracts it (RFC 9111 §4.2.3, §5.1).
        if (f != http::field::unknown) res.insert(f, value);
        else res.insert(field, value);
      }
      if (hit) res.set(http::field::age, std::to_string(age));
      std::string params;
      if (hit) {
        char ttl[24];
        params.reserve(32 + params_in.size());
        params.append(kind == answer_kind::stale ? "hit; fwd=stale; ttl=" : "hit; ttl=");
        params.append(ttl, std::to_chars(ttl, ttl + sizeof ttl, remaining).ptr);
        params.append(params_in);
      } else {
        params = params_in;
      }
      res.set("Cache-Status", detail::cache_status(res["Cache-Status"], name, params));
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
