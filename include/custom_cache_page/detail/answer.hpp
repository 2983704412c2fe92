// An answer built from a stored entry, as the engine decided it: the full
// response, a HEAD's header, or 304 when the request's validators match.
// Shared by every front end; pure apart from the backend's decoration.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/engine.hpp>
#include <custom_cache_page/detail/http_semantics.hpp>
#include <custom_cache_page/detail/shared_body.hpp>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <charconv>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace custom_cache_page::detail {

struct answer_spec {
  answer_kind kind;
  std::string_view params;      // after a hit's "hit; ttl=N", alone for a fill
  std::string_view status_name; // the Cache-Status cache name
  bool keep_alive;              // the request's
};

// The Cache-Status parameters of a hit: its ttl (negative when stale) from
// the same whole seconds as Age, so that the two agree.
inline std::string hit_params(cached_response const& e, answer_kind kind, long long age, std::string_view tail) {
  using namespace std::chrono;
  auto const lifetime = duration_cast<seconds>(e.expires_at - e.stored_at).count();
  auto const remaining = kind == answer_kind::stale ? std::min<long long>(-1, lifetime - age) : std::max<long long>(0, lifetime - age);
  char ttl[24];
  std::string params;
  params.reserve(32 + tail.size());
  params.append(kind == answer_kind::stale ? "hit; fwd=stale; ttl=" : "hit; ttl=");
  params.append(ttl, std::to_chars(ttl, ttl + sizeof ttl, remaining).ptr);
  params.append(tail);
  return params;
}

inline bool validator_field(http::field f) {
  return f == http::field::etag || f == http::field::cache_control || f == http::field::expires || f == http::field::vary ||
         f == http::field::last_modified || f == http::field::content_location;
}

template <class Fields>
void replay_header(Fields& res, cached_response const& e, http::request_header<> const& req, any_backend const& b,
                   answer_spec const& spec, bool validators_only) {
  using namespace std::chrono;
  for (auto const& [field, value] : e.headers) {
    auto f = http::string_to_field(field);
    if (validators_only && !validator_field(f)) continue;
    // Cache-Control goes out as stored: Age says how old the copy is, and
    // a downstream cache subtracts it (RFC 9111 §4.2.3, §5.1).
    if (f != http::field::unknown) res.insert(f, value);
    else res.insert(field, value);
  }
  std::string params(spec.params);
  if (spec.kind != answer_kind::filled) {
    auto const age = std::max<long long>(0, duration_cast<seconds>(cached_response::clock::now() - e.stored_at).count());
    res.set(http::field::age, std::to_string(age));
    params = hit_params(e, spec.kind, age, spec.params);
  }
  res.set("Cache-Status", cache_status(res["Cache-Status"], spec.status_name, params));
  res.version(req.version());
  res.keep_alive(spec.keep_alive);
  b.prepare_response(res.base(), e.tags);
}

inline http::message_generator answer_from(std::shared_ptr<cached_response const> e, http::request_header<> const& req,
                                           any_backend const& b, answer_spec const& spec) {
  if (e->status == 200 && not_modified(req, *e)) {
    http::response<http::empty_body> res{http::status::not_modified, req.version()};
    replay_header(res, *e, req, b, spec, true);
    return http::message_generator(std::move(res));
  }
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> res{static_cast<http::status>(e->status), req.version()};
    replay_header(res, *e, req, b, spec, false);
    res.content_length(e->body.size());
    return http::message_generator(std::move(res));
  }
  http::response<shared_body> res{static_cast<http::status>(e->status), req.version()};
  replay_header(res, *e, req, b, spec, false);
  res.content_length(e->body.size());
  res.body().entry = std::move(e);
  return http::message_generator(std::move(res));
}

} // namespace custom_cache_page::detail
