// The tag header of "header-emitting, purge-by-API" backends (Fastly,
// Cloudflare, Varnish xkey): each entry's tags, in the provider's syntax
// and within its limits, on every response a CDN may cache.
//
// A CDN copy that misses a tag can never be purged by it, so no tag is ever
// dropped: a tag longer than the provider takes is replaced by a fixed-length
// hash of it (and purges hash the same way, through cdn_tag), and when the
// whole set still does not fit, the response is marked uncacheable for the
// CDN instead of being sent with part of its tags.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/digest.hpp>
#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/surrogates.hpp>

#include <boost/beast/http/fields.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/grammar/lut_chars.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

// How one provider spells its tag header.
struct cdn_tag_syntax {
  std::string_view provider;           // "fastly", for messages
  std::string_view header;             // "Surrogate-Key"
  char separator = ' ';                // between tags in the header
  std::string_view reserved;           // further bytes that would split a tag: percent-encoded
  std::size_t max_tag_bytes = 1024;    // a longer tag is hashed
  std::size_t max_header_bytes = 16384; // the value, separators included
  std::string_view uncacheable_header; // what marks a response the CDN must not keep
  std::string_view uncacheable_value;
};

// Counts of what prepare_response did, readable while it runs.
struct cdn_header_counters {
  std::atomic<std::uint64_t> headers_emitted{0};
  std::atomic<std::uint64_t> headers_hashed{0};        // emitted with at least one tag hashed
  std::atomic<std::uint64_t> responses_uncacheable{0}; // tags did not fit: marked uncacheable
};

// Prefix of a hashed tag: "hash-" and the SHA-256 of the tag in hex.
inline constexpr std::string_view cdn_hashed_prefix = "hash-";
inline constexpr std::size_t cdn_hashed_tag_bytes = 5 + 64;

namespace detail {

inline std::string cdn_tag(std::string_view tag, cdn_tag_syntax const& syntax, bool& hashed) {
  std::string normal = normalize_surrogate(tag);
  if (!syntax.reserved.empty() && normal.find_first_of(syntax.reserved) != std::string::npos) {
    // Boost.URL encodes '%' as well. A tag without a reserved byte is sent
    // as it is, so "a,b" and a literal "a%2Cb" share a CDN key: purging one
    // purges both, which costs a refetch and never leaves a copy behind.
    auto const reserved = boost::urls::grammar::lut_chars(std::string(syntax.reserved).c_str()) + '%';
    normal = boost::urls::encode(normal, printable_ascii - reserved);
  }
  hashed = normal.size() > syntax.max_tag_bytes;
  if (!hashed) return normal;
  return std::string(cdn_hashed_prefix) + sha256_hex(normal);
}

} // namespace detail

// The form of `tag` this provider sees, in both the header and purges:
// normalised (no whitespace or control byte, non-ASCII percent-encoded),
// its reserved bytes percent-encoded, and hashed when still too long.
inline std::string cdn_tag(std::string_view tag, cdn_tag_syntax const& syntax) {
  bool hashed = false;
  return detail::cdn_tag(tag, syntax, hashed);
}

// The header value for `tags` (duplicates once, first-seen order); `fits`
// is false when it exceeds the provider's limit.
struct cdn_tag_header_value {
  std::string value;
  std::size_t tags = 0;
  std::size_t hashed = 0;
  bool fits = true;
};

inline cdn_tag_header_value cdn_tag_header(std::span<std::string const> raw, cdn_tag_syntax const& syntax) {
  cdn_tag_header_value out;
  std::vector<std::string> seen;
  for (auto const& r : raw) {
    bool hashed = false;
    std::string t = detail::cdn_tag(r, syntax, hashed);
    if (t.empty() || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
    if (hashed) ++out.hashed;
    if (!out.value.empty()) out.value += syntax.separator;
    out.value += t;
    seen.push_back(std::move(t));
  }
  out.tags = seen.size();
  out.fits = out.value.size() <= syntax.max_header_bytes;
  return out;
}

namespace detail {

// How an error names a batch of tags: "a", "a, b", "a and 41 more".
inline std::string cdn_batch_name(std::span<std::string const> tags) {
  if (tags.empty()) return {};
  if (tags.size() == 1) return tags[0];
  if (tags.size() == 2) return tags[0] + ", " + tags[1];
  return tags[0] + " and " + std::to_string(tags.size() - 1) + " more";
}

// The tags a response carries for the CDN: the entry's public tags, then
// those the handler already put in the provider's header (kept: a tag the
// application set by hand must be purgeable too).
inline std::vector<std::string> cdn_response_tags(boost::beast::http::fields const& f, std::span<std::string_view const> tags,
                                                  cdn_tag_syntax const& syntax) {
  std::vector<std::string> raw(tags.begin(), tags.end());
  std::string const header_name(syntax.header);
  std::string separators = " \t";
  separators += syntax.separator;
  separators += syntax.reserved;
  for (auto [it, end] = f.equal_range(header_name); it != end; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    std::size_t i = 0;
    while (i <= v.size()) {
      auto j = std::min(v.find_first_of(separators, i), v.size());
      if (j > i) raw.emplace_back(v.substr(i, j - i));
      i = j + 1;
    }
  }
  return raw;
}

} // namespace detail

// Sets the provider's tag header on `f` from `tags`,
// or, when they do not fit, removes it and marks the response uncacheable
// for the CDN. Nothing is added for a response without tags.
inline void emit_cdn_tag_header(boost::beast::http::fields& f, std::span<std::string_view const> tags,
                                cdn_tag_syntax const& syntax, cdn_header_counters& counters) {
  auto raw = detail::cdn_response_tags(f, tags, syntax);
  std::string const header_name(syntax.header);
  f.erase(header_name);
  if (raw.empty()) return;
  auto h = cdn_tag_header(raw, syntax);
  if (h.tags == 0) return;
  if (!h.fits) {
    f.set(std::string(syntax.uncacheable_header), std::string(syntax.uncacheable_value));
    counters.responses_uncacheable.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  f.set(header_name, h.value);
  counters.headers_emitted.fetch_add(1, std::memory_order_relaxed);
  if (h.hashed > 0) counters.headers_hashed.fetch_add(1, std::memory_order_relaxed);
}

// What every header-emitting CDN backend shares: it adds the tag header to
// responses; each provider purges through its own API. It keeps no pages:
// put it in a composite next to a store.
class cdn_header_backend {
public:
  explicit cdn_header_backend(cdn_tag_syntax syntax) : syntax_(syntax) {}
  cdn_header_backend(cdn_header_backend const&) = delete;
  cdn_header_backend& operator=(cdn_header_backend const&) = delete;

  void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> tags) {
    emit_cdn_tag_header(f, tags, syntax_, counters_);
  }

  // The form of `tag` in this provider's header and purges.
  std::string provider_tag(std::string_view tag) const { return cdn_tag(tag, syntax_); }
  cdn_tag_syntax const& tag_syntax() const { return syntax_; }

  std::uint64_t headers_emitted() const { return counters_.headers_emitted.load(std::memory_order_relaxed); }
  std::uint64_t headers_hashed() const { return counters_.headers_hashed.load(std::memory_order_relaxed); }
  std::uint64_t responses_uncacheable() const { return counters_.responses_uncacheable.load(std::memory_order_relaxed); }

protected:
  ~cdn_header_backend() = default;

  cdn_tag_syntax syntax_;
  cdn_header_counters counters_;
};

// Provider syntaxes, from their documentation:
// Fastly: keys space-separated, each at most 1024 bytes, the header at most
// 16,384 bytes; Surrogate-Control: no-store keeps a response out of its cache.
inline constexpr cdn_tag_syntax fastly_tag_syntax{"fastly", "Surrogate-Key", ' ', "", 1024, 16384,
                                                  "Surrogate-Control", "no-store"};
// Cloudflare: tags comma-separated without spaces, the header at most 16 KB
// (separators included); a purge call takes tags of at most 1,024 characters.
inline constexpr cdn_tag_syntax cloudflare_tag_syntax{"cloudflare", "Cache-Tag", ',', ",", 1024, 16384,
                                                      "CDN-Cache-Control", "no-store"};
// Varnish xkey: keys separated by spaces (recent vmods also by commas); the
// header must fit varnishd's http_resp_hdr_len (8k by default, name
// included). The builtin VCL does not cache Surrogate-Control: no-store.
inline constexpr cdn_tag_syntax varnish_tag_syntax{"varnish", "xkey", ' ', ",", 1024, 8000,
                                                   "Surrogate-Control", "no-store"};

} // namespace custom_cache_page
