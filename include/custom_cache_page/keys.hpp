// Cache key helpers: readable, injective keys from a request, and hashes.
//
// generate_cache_key("/a/b?Z=1&a=2&a=3") == "/a/b?a:2&a:3&Z:1"
// Parameters are sorted by name, case-insensitively and stably (repeated
// names keep their order); names and values are decoded, then ':' '&' '%'
// (and '?' in the path) are percent-escaped so that no two different
// requests share a key.
#pragma once

#include <custom_cache_page/detail/digest.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/tags.hpp>

#include <boost/beast/core/string.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/grammar/lut_chars.hpp>

#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

namespace detail {

// What a key keeps as is: everything but '%' and the bytes that separate
// its parts (':' '&' between parameters, '?' in the path).
inline constexpr boost::urls::grammar::lut_chars query_key_chars = ~boost::urls::grammar::lut_chars("%:&");
inline constexpr boost::urls::grammar::lut_chars path_key_chars = ~boost::urls::grammar::lut_chars("%?");

// Appends `s`, percent-encoding what `kept` does not hold.
inline void append_escaped(std::string& out, std::string_view s, boost::urls::grammar::lut_chars const& kept) {
  auto const at = out.size();
  auto const n = boost::urls::encoded_size(s, kept);
  out.resize(at + n);
  boost::urls::encode(out.data() + at, n, s, kept);
}

inline bool needs_decoding(std::string_view s) {
  return s.find_first_of("%+") != std::string_view::npos;
}

// "k:v&k:v" from the decoded parameters; a parameter without '=' has no ':'.
// Every parameter, empty ones included, is separated by '&', so "?a" and
// "?a&" stay apart.
inline std::string canonical_query(request_view const& r) {
  struct param {
    std::string_view key, value;
    bool has_value;
  };
  std::vector<param> params;
  std::vector<std::string> decoded; // owns decoded text when the query has escapes
  auto encoded = r.encoded_query();
  if (!needs_decoding(encoded)) {
    // Nothing to decode: split the raw query as Boost.URL would, without copies.
    std::size_t start = 0;
    while (start <= encoded.size()) {
      auto end = std::min(encoded.find('&', start), encoded.size());
      auto item = encoded.substr(start, end - start);
      auto eq = item.find('=');
      params.push_back(eq == std::string_view::npos ? param{item, {}, false}
                                                    : param{item.substr(0, eq), item.substr(eq + 1), true});
      start = end + 1;
    }
  } else {
    decoded.reserve(2 * r.query_params().size());
    for (auto const& p : r.query_params()) {
      decoded.push_back(p.key);
      decoded.push_back(p.value);
      params.push_back({decoded[decoded.size() - 2], decoded.back(), p.has_value});
    }
  }
  std::stable_sort(params.begin(), params.end(), [](param const& a, param const& b) { return boost::beast::iless{}(a.key, b.key); });
  std::string out;
  out.reserve(encoded.size() + 8);
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i > 0) out += '&';
    append_escaped(out, params[i].key, query_key_chars);
    if (params[i].has_value) {
      out += ':';
      append_escaped(out, params[i].value, query_key_chars);
    }
  }
  return out;
}

} // namespace detail

// The decoded path, then '?' and the canonical query when there is one.
inline std::string generate_cache_key(request_view const& r) {
  std::string key;
  auto path = r.path();
  if (detail::needs_decoding(path)) detail::append_escaped(key, r.decoded_path(), detail::path_key_chars);
  else detail::append_escaped(key, path, detail::path_key_chars);
  if (r.has_query_string()) {
    key += '?';
    key += detail::canonical_query(r);
  }
  return key;
}

// The canonical query alone: the same page for every path.
inline std::string generate_query_params_cache_key(request_view const& r) { return detail::canonical_query(r); }

// MD5 hex of `key`, as the Python package's hash_key (compatibility only:
// stored keys use SHA-256).
inline std::string hash_key(std::string_view key) { return detail::md5_hex(key); }

// The host a request is for, as keys hold it: the authority of an
// absolute-form target, else the Host field (RFC 9112 3.2.2), in lower
// case, without a trailing dot or a default port (80, 443). Empty when
// there is none.
inline std::string normalized_host(request_view const& r) {
  boost::urls::authority_view authority;
  boost::urls::url_view target;
  if (r.valid() && !r.target().starts_with('/')) target = boost::urls::parse_absolute_uri(r.target()).value();
  if (target.has_authority()) {
    authority = target.authority();
  } else {
    auto parsed = boost::urls::parse_authority(r.header(http::field::host));
    if (!parsed) return std::string(r.header(http::field::host)); // kept as sent: still tells hosts apart
    authority = *parsed;
  }
  std::string host = authority.host_address(); // decoded; an IP literal keeps its brackets
  auto const type = authority.host_type();
  if (type == boost::urls::host_type::ipv6 || type == boost::urls::host_type::ipvfuture) host = "[" + host + "]";
  for (auto& c : host) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  if (host.ends_with('.')) host.pop_back();
  auto const port = authority.port();
  if (authority.has_port() && !port.empty() && port != "80" && port != "443") {
    host += ':';
    host += port;
  }
  return host;
}

// The key a backend stores under: SHA-256 of the prefix, the request's
// host (when keys include it), the names of the request's versioned tags
// and the key, each length-delimited so that no two of them can trade
// characters (the host's part starts with 'h', which no length does). The
// versioned names are in it as the Python package has them in its keys:
// `versioned([](request_view r) { return "store:" + ...; })` gives each
// store its own entry. Their versions are not: entries record them and
// lookups compare them.
inline std::string storage_key(std::string_view prefix, std::string_view key, std::span<resolved_tag const> tags = {},
                               std::optional<std::string_view> host = std::nullopt) {
  std::string versioned;
  for (auto const& t : tags) {
    if (!t.versioned) continue;
    if (!versioned.empty()) versioned += ' '; // never inside a normalised name
    versioned += t.name;
  }
  std::string material = std::to_string(prefix.size());
  material += ':';
  material += prefix;
  if (host) {
    material += 'h';
    material += std::to_string(host->size());
    material += ':';
    material += *host;
  }
  material += std::to_string(versioned.size());
  material += ':';
  material += versioned;
  material += key;
  return detail::sha256_hex(material);
}

} // namespace custom_cache_page
