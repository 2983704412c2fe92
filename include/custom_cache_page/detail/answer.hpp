// An answer built from a stored entry, as the engine decided it: the full
// response, a HEAD's header, or 304 when the request's validators match.
// Shared by every front end: the entry's sealed header block goes out as
// is (detail/replay.hpp); what differs per answer is written here.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/engine.hpp>
#include <custom_cache_page/detail/http_semantics.hpp>
#include <custom_cache_page/detail/replay.hpp>

#include <boost/assert.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string_view>

namespace custom_cache_page::detail {

struct answer_spec {
  answer_kind kind;
  std::string_view params;      // after a hit's "hit; ttl=N", alone for a fill
  std::string_view status_name; // the Cache-Status cache name
  bool keep_alive;              // the request's
};

// A new entry before it is stored: the backend's own fields (CDN tag
// headers) join the handler's, and the whole is sealed into the block that
// every answer sends.
inline void seal(cached_response& e, any_backend const& b) {
  if (b.decorates()) {
    http::fields f;
    for (auto const& [n, v] : e.headers) f.insert(n, v);
    b.prepare_response(f, e.tags);
    e.headers.clear();
    for (auto const& field : f) e.headers.emplace_back(field.name_string(), field.value());
  }
  seal_head(e);
}

// Cache-Status for a hit: its ttl (negative when stale) from the same whole
// seconds as Age, so that the two agree.
inline void write_hit_status(answer_text& out, cached_response const& e, answer_kind kind, long long age) {
  using namespace std::chrono;
  auto const lifetime = duration_cast<seconds>(e.expires_at - e.stored_at).count();
  auto const remaining = kind == answer_kind::stale ? std::min<long long>(-1, lifetime - age) : std::max<long long>(0, lifetime - age);
  out << (kind == answer_kind::stale ? "hit; fwd=stale; ttl=" : "hit; ttl=") << remaining;
}

// The fields computed for this answer, and the blank line that ends the header.
inline void write_tail(answer_text& out, cached_response const& e, unsigned version, bool not_modified, answer_spec const& spec) {
  using namespace std::chrono;
  // A fill sends Age only when the response came with an age of its own.
  auto const age = std::max<long long>(0, duration_cast<seconds>(cached_response::clock::now() - e.stored_at).count());
  if (spec.kind != answer_kind::filled || age > 0) out << "Age: " << age << "\r\n";
  if (!not_modified) out << "Content-Length: " << static_cast<long long>(e.body.size()) << "\r\n";
  if (version >= 11 && !spec.keep_alive) out << "Connection: close\r\n";
  if (version < 11 && spec.keep_alive) out << "Connection: keep-alive\r\n";
  out << "Cache-Status: ";
  if (!e.upstream_cache_status.empty()) out << e.upstream_cache_status << ", ";
  out << spec.status_name << "; ";
  if (spec.kind != answer_kind::filled) write_hit_status(out, e, spec.kind, age);
  out << spec.params << "\r\n\r\n";
}

inline http::message_generator answer_from(std::shared_ptr<cached_response const> e, http::request_header<> const& req,
                                           answer_spec const& spec) {
  BOOST_ASSERT(e->headers.empty() || !e->head.empty()); // sealed
  bool const not_mod = e->status == 200 && not_modified(req, *e);
  replay_response res{static_cast<http::status>(not_mod ? 304 : e->status), req.version()};
  res.validators_only = not_mod;
  res.send_body = !not_mod && req.method() != http::verb::head;
  res.persistent = spec.keep_alive;
  write_tail(res.tail, *e, req.version(), not_mod, spec);
  res.entry = std::move(e);
  return http::message_generator(std::move(res));
}

} // namespace custom_cache_page::detail
