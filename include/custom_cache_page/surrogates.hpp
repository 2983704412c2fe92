// Surrogate keys (tags) derived from requests and models, with the strings
// of the Python package django-custom-cache-page 1.0, so that a Python and
// a C++ service tag and purge the same CDN objects by the same names. Every tag is normalised before it is stored or sent: the Python
// rules (surrounding whitespace stripped, each space turned into '-'), then
// our own safety on top: the remaining control bytes (0x00-0x1F, 0x7F: an
// inner tab, CR, LF) are removed and bytes outside ASCII percent-encoded,
// so a tag is always printable ASCII (0x21-0x7E) and cannot inject a header.
// For printable ASCII input the result is the Python package's.
#pragma once

#include <custom_cache_page/request_view.hpp>

#include <boost/url/grammar/lut_chars.hpp>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace custom_cache_page {

namespace detail {

// The bytes a tag may hold: printable ASCII.
inline constexpr boost::urls::grammar::lut_chars printable_ascii([](char c) { return c > 0x20 && c < 0x7f; });

inline bool is_python_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

inline std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; });
  return out;
}

} // namespace detail

// See the top of this file: Python's strip() and replace(" ", "-"), then no
// control bytes, and bytes outside ASCII percent-encoded.
inline std::string normalize_surrogate(std::string_view raw) {
  while (!raw.empty() && detail::is_python_space(raw.front())) raw.remove_prefix(1);
  while (!raw.empty() && detail::is_python_space(raw.back())) raw.remove_suffix(1);
  // By hand: Boost.URL's encoder always encodes '%', which would make a
  // normalised tag change when normalised again, and differ from Python's.
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    auto const u = static_cast<unsigned char>(c);
    if (c == ' ') out += '-';
    else if (u >= 0x80) out.append({'%', digits[u >> 4], digits[u & 0x0f]});
    else if (u >= 0x20 && u != 0x7f) out += c;
  }
  return out;
}

// "/api/products/123/" -> "path-api-products-123"; "/" -> "path-root" (the
// decoded path without its outer slashes, each inner '/' turned into '-').
inline std::string surrogate_from_path(request_view const& r) {
  std::string path = r.decoded_path();
  auto const first = path.find_first_not_of('/');
  path = first == std::string::npos ? std::string("root") : path.substr(first, path.find_last_not_of('/') - first + 1);
  std::replace(path.begin(), path.end(), '/', '-');
  return normalize_surrogate("path-" + path);
}

// A named view or route: surrogate_from_view("product_detail") -> "view-product_detail".
inline std::string surrogate_from_view(std::string_view view_name) {
  return normalize_surrogate("view-" + std::string(view_name));
}

// surrogate_from_model("Product") -> "model-product".
inline std::string surrogate_from_model(std::string_view model) {
  return normalize_surrogate("model-" + detail::lowercase(model));
}

// surrogate_from_model("Product", 123) -> "model-product-123".
template <class Id>
std::string surrogate_from_model(std::string_view model, Id const& id) {
  std::string out = "model-" + detail::lowercase(model);
  out += '-';
  if constexpr (std::is_arithmetic_v<Id>) out += std::to_string(id);
  else out += std::string_view(id);
  return normalize_surrogate(out);
}

// Beast has no notion of a user: `user_id` reads it from the request (a
// session cookie, a verified token). Returns a tag callable that yields
// "user-<id>", or nothing for an anonymous request.
template <class UserId>
auto surrogate_from_user(UserId user_id) {
  return [user_id = std::move(user_id)](request_view const& r) -> std::optional<std::string> {
    std::optional<std::string> id = user_id(r);
    if (!id || id->empty()) return std::nullopt;
    return normalize_surrogate("user-" + *id);
  };
}

namespace detail {

// The request's parameters as Django's QueryDict sees them: each name once,
// in the order it first appears, with its last value.
class last_query_values {
public:
  explicit last_query_values(request_view const& r) {
    for (auto const& p : r.query_params()) {
      auto [it, fresh] = index_.try_emplace(p.key, params_.size());
      if (fresh) params_.emplace_back(p.key, p.value);
      else params_[it->second].second = p.value;
    }
  }
  std::vector<std::pair<std::string, std::string>> const& all() const { return params_; }
  std::string_view get(std::string const& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? std::string_view{} : std::string_view(params_[it->second].second);
  }

private:
  std::vector<std::pair<std::string, std::string>> params_;
  std::unordered_map<std::string, std::size_t> index_;
};

inline void add_param_surrogate(std::vector<std::string>& out, std::string_view name, std::string_view value) {
  if (value.empty()) return; // as Python's `if value:`
  std::string tag = normalize_surrogate("param-" + std::string(name) + "-" + std::string(value));
  if (!tag.empty()) out.push_back(std::move(tag));
}

} // namespace detail

// "?category=shoes&brand=nike" -> {"param-category-shoes", "param-brand-nike"}:
// one tag per parameter name, in the request's order, with the name's last
// value; parameters with an empty value give none.
inline std::vector<std::string> surrogate_from_query_params(request_view const& r) {
  detail::last_query_values const values(r);
  std::vector<std::string> out;
  for (auto const& [name, value] : values.all()) detail::add_param_surrogate(out, name, value);
  return out;
}

// Only the parameters in `names`, in that list's order (an empty list: none).
inline std::vector<std::string> surrogate_from_query_params(request_view const& r, std::vector<std::string> const& names) {
  detail::last_query_values const values(r);
  std::vector<std::string> out;
  for (auto const& name : names) detail::add_param_surrogate(out, name, values.get(name));
  return out;
}

// An ordered set of normalised surrogate keys (empty keys dropped, duplicates
// kept once, first-insertion order), joined for a header on demand.
class surrogate_key_set {
public:
  surrogate_key_set() = default;
  surrogate_key_set(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) add(k);
  }

  bool add(std::string_view key) {
    std::string k = normalize_surrogate(key);
    if (k.empty() || contains(k)) return false;
    keys_.push_back(std::move(k));
    return true;
  }
  template <class Range>
  void add_all(Range const& keys) {
    for (auto const& k : keys) add(k);
  }
  bool contains(std::string_view key) const { return std::find(keys_.begin(), keys_.end(), key) != keys_.end(); }
  std::size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  auto begin() const { return keys_.begin(); }
  auto end() const { return keys_.end(); }
  std::vector<std::string> const& keys() const { return keys_; }

  // The keys joined by one space: a Surrogate-Key / Cache-Tag / xkey value.
  std::string to_header() const {
    std::string out;
    for (auto const& k : keys_) {
      if (!out.empty()) out += ' ';
      out += k;
    }
    return out;
  }

  // Parses a header value back: keys separated by whitespace.
  static surrogate_key_set from_header(std::string_view value) {
    surrogate_key_set set;
    while (!value.empty()) {
      auto const start = std::find_if_not(value.begin(), value.end(), detail::is_python_space);
      auto const stop = std::find_if(start, value.end(), detail::is_python_space);
      if (start != stop) set.add(std::string_view(start, stop));
      value = std::string_view(stop, value.end());
    }
    return set;
  }

private:
  std::vector<std::string> keys_;
};

} // namespace custom_cache_page
