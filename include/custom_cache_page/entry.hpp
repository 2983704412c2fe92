// cached_response: one stored page, and its binary encoding for stores that
// keep bytes (Redis). The encoding is versioned and length-checked: any
// value that does not decode exactly is rejected (a miss, never a crash).
#pragma once

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace custom_cache_page {

// The version of a tag's counter that an entry was built under.
struct tag_version {
  std::string name;
  std::uint64_t version = 0;
  bool versioned = false;
  bool guard = false; // the target guard: see resolved_tag::guard

  friend bool operator==(tag_version const&, tag_version const&) = default;
};

struct cached_response {
  using clock = std::chrono::system_clock;

  unsigned status = 200;
  // Response header fields as the handler set them, less hop-by-hop fields,
  // Set-Cookie and the fields recomputed on every answer (Age, Date,
  // Content-Length, Cache-Status).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  clock::time_point stored_at{};
  clock::time_point expires_at{};
  // After expires_at the entry is stale. It may still answer a request
  // while another refreshes it (stale-while-revalidate), or when the
  // handler fails (stale-if-error), for these windows (RFC 5861).
  std::chrono::seconds stale_while_revalidate{0};
  std::chrono::seconds stale_if_error{0};
  // After expires_at an entry with a validator (ETag, Last-Modified) is
  // kept this long more, for the handler to revalidate it (a 304 makes it
  // fresh again without a new body: RFC 9111 §4.3.4).
  std::chrono::seconds revalidate_for{0};
  // Every tag of the entry with the counter version it was built under.
  std::vector<tag_version> tags;
  // With Vary honoured: each varying request field (lower case) and the
  // value it had for the request this response was built for.
  std::vector<std::pair<std::string, std::string>> vary;

  // `headers` as they go out, serialised once (detail::seal_head): every
  // answer sends this block as one buffer. The validators a 304 repeats
  // come first (head_validators bytes); an upstream Cache-Status is kept
  // apart, ours is appended to it on each answer.
  std::string head;
  std::size_t head_validators = 0;
  std::string upstream_cache_status;

  // Until when a store keeps the entry: its freshness plus the longest
  // window after it.
  clock::time_point retain_until() const {
    auto const window =
        std::chrono::duration_cast<clock::duration>(std::max({stale_while_revalidate, stale_if_error, revalidate_for}));
    return expires_at > clock::time_point::max() - window ? clock::time_point::max() : expires_at + window;
  }

  std::string_view header(std::string_view name) const {
    for (auto const& [n, v] : headers)
      if (boost::beast::iequals(n, name)) return v;
    return {};
  }

  // What the entry occupies in memory, counted for byte budgets.
  std::size_t footprint() const {
    std::size_t n = sizeof(cached_response) + body.capacity() + head.capacity() + upstream_cache_status.capacity();
    for (auto const& [k, v] : headers) n += sizeof(std::pair<std::string, std::string>) + k.capacity() + v.capacity();
    for (auto const& t : tags) n += sizeof(tag_version) + t.name.capacity();
    for (auto const& [k, v] : vary) n += sizeof(std::pair<std::string, std::string>) + k.capacity() + v.capacity();
    return n;
  }
};

namespace detail {

// A copy of `e` recorded under `versions` (one per tag of e): a fill that
// adopts counters another first fill created (detail/generations.hpp).
inline std::shared_ptr<cached_response const> with_versions(cached_response const& e,
                                                            std::span<std::uint64_t const> versions) {
  auto copy = std::make_shared<cached_response>(e);
  for (std::size_t i = 0; i < versions.size() && i < copy->tags.size(); ++i) copy->tags[i].version = versions[i];
  return copy;
}

// Encoding, version 3 (all integers little-endian):
//   "CCPE" u8 version=3
//   u16 status  i64 stored_at_us  i64 expires_at_us
//   u32 stale_while_revalidate_s  u32 stale_if_error_s  u32 revalidate_for_s
//   u32 n_headers  { u32 len name  u32 len value }*
//   u32 n_tags     { u32 len name  u64 version  u8 flags (1: versioned, 2: guard) }*
//   u32 n_vary     { u32 len name  u32 len value }*
//   u32 len body
// and nothing after. Version 2, read still, lacks revalidate_for_s.
inline constexpr std::string_view entry_magic = "CCPE";
inline constexpr std::uint8_t entry_format_version = 3;

class entry_writer {
public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  template <class T>
  void integer(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
  }
  void bytes(std::string_view s) {
    integer(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }
  std::string& raw() { return out_; }

private:
  std::string out_;
};

class entry_reader {
public:
  explicit entry_reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  std::string_view take(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <class T>
  T integer() {
    auto s = take(sizeof(T));
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < s.size(); ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
    return static_cast<T>(v);
  }
  std::string bytes() { return std::string(take(integer<std::uint32_t>())); }
  // A count of items each at least `min_item` bytes long: bounded by what is
  // left, so a corrupt count cannot make us reserve gigabytes.
  std::uint32_t count(std::size_t min_item) {
    auto n = integer<std::uint32_t>();
    if (ok_ && static_cast<std::uint64_t>(n) * min_item > in_.size() - pos_) ok_ = false;
    return ok_ ? n : 0;
  }

private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

inline std::int64_t to_us(cached_response::clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
// Whether the clock can hold `us` microseconds (the conversion would
// overflow otherwise: a corrupt value must be rejected, not wrapped).
inline bool representable_us(std::int64_t us) {
  using namespace std::chrono;
  constexpr auto lo = duration_cast<microseconds>(cached_response::clock::duration::min()).count();
  constexpr auto hi = duration_cast<microseconds>(cached_response::clock::duration::max()).count();
  return us >= lo && us <= hi;
}
// Whether an entry's times are ones this library could have written: a
// fill stores at most a century back (a response's own age) and keeps at
// most two centuries, so that Age, ttl and retention stay within the
// clock's range (found by the fuzzer: far-apart times overflowed them).
inline bool plausible_times_us(std::int64_t stored_us, std::int64_t expires_us) {
  constexpr std::int64_t century = std::int64_t{100} * 366 * 24 * 3600 * 1000000;
  return representable_us(stored_us) && representable_us(expires_us) && stored_us >= -century &&
         expires_us >= stored_us && expires_us - stored_us <= 2 * century;
}
inline cached_response::clock::time_point from_us(std::int64_t us) {
  return cached_response::clock::time_point(
      std::chrono::duration_cast<cached_response::clock::duration>(std::chrono::microseconds(us)));
}

// Fields never replayed from a stored response: hop-by-hop (RFC 9110
// §7.6.1), Set-Cookie, and those computed for each answer. (Date is the
// response's own, replayed with Age beside it: RFC 9111 §4.2.3.)
inline bool never_replayed(boost::beast::http::field f) {
  using boost::beast::http::field;
  switch (f) {
  case field::connection: case field::keep_alive: case field::proxy_authenticate: case field::proxy_authorization:
  case field::proxy_connection: case field::te: case field::trailer: case field::transfer_encoding: case field::upgrade:
  case field::set_cookie: case field::age: case field::content_length:
    return true;
  default:
    return false;
  }
}

// What a 304 repeats of the 200 (RFC 9110 §15.4.5, RFC 9111 §4.3.4).
inline bool validator_field(std::string_view name) {
  using boost::beast::iequals;
  return iequals(name, "ETag") || iequals(name, "Cache-Control") || iequals(name, "Expires") || iequals(name, "Vary") ||
         iequals(name, "Last-Modified") || iequals(name, "Content-Location") || iequals(name, "Date");
}

// Limits a decoded field must keep: no store can make us replay more.
inline constexpr std::size_t max_field_name = 256;
inline constexpr std::size_t max_field_value = 16384;

// A field this library would have stored and may send as is: a token for a
// name (RFC 9110 §5.1), a value of visible bytes, obs-text, spaces and tabs
// (§5.5: no CR, LF, NUL nor any other control byte), not one that is never
// replayed. Anything else in a stored entry is tampering.
inline bool replayable_field(std::string_view name, std::string_view value) {
  static constexpr std::string_view tchar = "!#$%&'*+-.^_`|~";
  auto const is_tchar = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tchar.find(c) != std::string_view::npos;
  };
  if (name.empty() || name.size() > max_field_name || value.size() > max_field_value) return false;
  if (!std::all_of(name.begin(), name.end(), is_tchar)) return false;
  auto const control = [](char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f; };
  if (std::any_of(value.begin(), value.end(), control)) return false;
  return !never_replayed(boost::beast::http::string_to_field(name));
}

// A status a stored entry may have, with a body only where one is allowed
// (RFC 9110 §15.3.5, §15.4.5).
inline bool replayable_status(unsigned status, std::size_t body_size) {
  if (status < 200 || status > 599) return false;
  return body_size == 0 || (status != 204 && status != 304);
}

inline void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

// Fills e.head, e.head_validators and e.upstream_cache_status from
// e.headers (see cached_response).
inline void seal_head(cached_response& e) {
  std::size_t size = 0;
  for (auto const& [n, v] : e.headers) size += n.size() + v.size() + 4;
  e.head.clear();
  e.head.reserve(size);
  e.upstream_cache_status.clear();
  for (bool validators : {true, false}) {
    for (auto const& [n, v] : e.headers) {
      if (boost::beast::iequals(n, "Cache-Status")) {
        if (!validators) e.upstream_cache_status.append(e.upstream_cache_status.empty() ? "" : ", ").append(v);
      } else if (validator_field(n) == validators) {
        append_field(e.head, n, v);
      }
    }
    if (validators) e.head_validators = e.head.size();
  }
}

} // namespace detail

inline std::string encode_entry(cached_response const& e) {
  detail::entry_writer w;
  w.raw().reserve(64 + e.body.size() + e.headers.size() * 32);
  w.raw().append(detail::entry_magic);
  w.u8(detail::entry_format_version);
  w.integer(static_cast<std::uint16_t>(e.status));
  w.integer(detail::to_us(e.stored_at));
  w.integer(detail::to_us(e.expires_at));
  w.integer(static_cast<std::uint32_t>(std::clamp<std::int64_t>(e.stale_while_revalidate.count(), 0, UINT32_MAX)));
  w.integer(static_cast<std::uint32_t>(std::clamp<std::int64_t>(e.stale_if_error.count(), 0, UINT32_MAX)));
  w.integer(static_cast<std::uint32_t>(std::clamp<std::int64_t>(e.revalidate_for.count(), 0, UINT32_MAX)));
  w.integer(static_cast<std::uint32_t>(e.headers.size()));
  for (auto const& [n, v] : e.headers) {
    w.bytes(n);
    w.bytes(v);
  }
  w.integer(static_cast<std::uint32_t>(e.tags.size()));
  for (auto const& t : e.tags) {
    w.bytes(t.name);
    w.integer(t.version);
    w.u8(static_cast<std::uint8_t>((t.versioned ? 1 : 0) | (t.guard ? 2 : 0)));
  }
  w.integer(static_cast<std::uint32_t>(e.vary.size()));
  for (auto const& [n, v] : e.vary) {
    w.bytes(n);
    w.bytes(v);
  }
  w.bytes(e.body);
  return w.take();
}

// The entry, or nothing when `bytes` is not exactly one well-formed entry of
// a format version this library reads, or holds what this library would
// never have stored (a field that is not replayable, a status outside
// 200-599, a body on a 204 or 304): a store others can write to cannot make
// it split or forge a response.
inline std::optional<cached_response> decode_entry(std::string_view bytes) {
  detail::entry_reader r(bytes);
  if (r.take(detail::entry_magic.size()) != detail::entry_magic) return std::nullopt;
  auto const version = r.integer<std::uint8_t>();
  if (version != detail::entry_format_version && version != 2) return std::nullopt;
  cached_response e;
  e.status = r.integer<std::uint16_t>();
  auto const stored_us = r.integer<std::int64_t>();
  auto const expires_us = r.integer<std::int64_t>();
  if (!detail::plausible_times_us(stored_us, expires_us)) return std::nullopt;
  e.stored_at = detail::from_us(stored_us);
  e.expires_at = detail::from_us(expires_us);
  e.stale_while_revalidate = std::chrono::seconds(r.integer<std::uint32_t>());
  e.stale_if_error = std::chrono::seconds(r.integer<std::uint32_t>());
  if (version >= 3) e.revalidate_for = std::chrono::seconds(r.integer<std::uint32_t>());
  for (auto n = r.count(8); n > 0 && r.ok(); --n) {
    auto name = r.bytes();
    auto value = r.bytes();
    if (!detail::replayable_field(name, value)) return std::nullopt;
    e.headers.emplace_back(std::move(name), std::move(value));
  }
  for (auto n = r.count(13); n > 0 && r.ok(); --n) {
    tag_version t;
    t.name = r.bytes();
    t.version = r.integer<std::uint64_t>();
    auto flag = r.integer<std::uint8_t>();
    if (flag > 3) return std::nullopt;
    t.versioned = (flag & 1) != 0;
    t.guard = (flag & 2) != 0;
    e.tags.push_back(std::move(t));
  }
  for (auto n = r.count(8); n > 0 && r.ok(); --n) {
    auto name = r.bytes();
    auto value = r.bytes();
    e.vary.emplace_back(std::move(name), std::move(value));
  }
  e.body = r.bytes();
  if (!r.ok() || !r.at_end() || !detail::replayable_status(e.status, e.body.size())) return std::nullopt;
  detail::seal_head(e);
  return e;
}

} // namespace custom_cache_page
