// Surrogate keys (tags) derived from requests and models, and the
// normalisation every tag goes through before it is stored or sent: no
// whitespace, no control byte (so no CR/LF header injection), bytes outside
// ASCII percent-encoded, so a tag is always printable ASCII (0x21-0x7E).
#pragma once

#include <custom_cache_page/request_view.hpp>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

inline std::string normalize_surrogate(std::string_view raw) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) continue; // whitespace and control bytes
    if (u >= 0x80) {
      out += '%';
      out += digits[u >> 4];
      out += digits[u & 0x0f];
    } else {
      out += c;
    }
  }
  return out;
}

namespace detail {
inline std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; });
  return out;
}
} // namespace detail

// "/api/products/" -> "path-api-products"; "/" -> "path-root".
inline std::string surrogate_from_path(request_view const& r) {
  std::string out = "path";
  std::string path = r.decoded_path();
  std::size_t i = 0;
  bool any = false;
  while (i < path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) {
      out += '-';
      out += path.substr(i, j - i);
      any = true;
    }
    i = j + 1;
  }
  if (!any) out += "-root";
  return normalize_surrogate(out);
}

// A named view or route: surrogate_from_view("product_list") -> "view-product_list".
inline std::string surrogate_from_view(std::string_view view_name) {
  return normalize_surrogate("view-" + std::string(view_name));
}

// surrogate_from_model("Product", 7) -> "product-7".
template <class Id>
std::string surrogate_from_model(std::string_view model, Id const& id) {
  std::string out = detail::lowercase(model);
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

// One tag per query parameter, "query-<name>-<value>", sorted and unique;
// restricted to `names` when given.
inline std::vector<std::string> surrogate_from_query_params(request_view const& r,
                                                           std::vector<std::string> const& names = {}) {
  std::vector<std::string> out;
  for (auto const& p : r.query_params()) {
    if (!names.empty() && std::find(names.begin(), names.end(), p.key) == names.end()) continue;
    std::string tag = normalize_surrogate("query-" + p.key + "-" + p.value);
    if (tag.size() > 6) out.push_back(std::move(tag));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
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

  std::string header_value(std::string_view separator = " ") const {
    std::string out;
    for (auto const& k : keys_) {
      if (!out.empty()) out += separator;
      out += k;
    }
    return out;
  }

private:
  std::vector<std::string> keys_;
};

} // namespace custom_cache_page
