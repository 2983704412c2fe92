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

// What the entry answers this request with: all of it, a 304 when the
// request's validators match (they come before Range: RFC 9110 §13.2.2),
// one byte range as 206, or 416 for a range past its end (§14.2).
struct answer_shape {
  unsigned status;
  byte_span part{0, std::string::npos};
  bool validators_only = false;
};

inline answer_shape shape_of(cached_response const& e, http::request_header<> const& req) {
  if (e.status == 200 && not_modified(req, e)) return {304, {}, true};
  byte_range r;
  switch (requested_range(req, e, r)) {
  case range_outcome::partial: return {206, {r.first, r.last - r.first + 1}};
  case range_outcome::unsatisfiable: return {416, {0, 0}, true};
  default: return {e.status};
  }
}

// The fields computed for this answer, and the blank line that ends the header.
inline void write_tail(answer_text& out, cached_response const& e, unsigned version, answer_shape const& shape,
                       answer_spec const& spec) {
  using namespace std::chrono;
  // A fill sends Age only when the response came with an age of its own.
  auto const age = std::max<long long>(0, duration_cast<seconds>(cached_response::clock::now() - e.stored_at).count());
  if (spec.kind != answer_kind::filled || age > 0) out << "Age: " << age << "\r\n";
  auto const size = static_cast<long long>(e.body.size());
  if (shape.status == 206)
    out << "Content-Range: bytes " << static_cast<long long>(shape.part.offset) << "-"
        << static_cast<long long>(shape.part.offset + shape.part.length - 1) << "/" << size << "\r\n";
  if (shape.status == 416) out << "Content-Range: bytes */" << size << "\r\n";
  if (shape.status != 304) out << "Content-Length: " << static_cast<long long>(shape.part.of(e.body).size()) << "\r\n";
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
  auto const shape = shape_of(*e, req);
  replay_response res{static_cast<http::status>(shape.status), req.version()};
  res.validators_only = shape.validators_only;
  res.part = shape.part;
  res.send_body = shape.status != 304 && req.method() != http::verb::head;
  res.persistent = spec.keep_alive;
  write_tail(res.tail, *e, req.version(), shape, spec);
  res.entry = std::move(e);
  return http::message_generator(std::move(res));
}

} // namespace custom_cache_page::detail
