// Tags of a cached page: a static name, or a callable on the request that
// returns a name, a list of names or nothing. versioned.hpp adds O(1)
// invalidation. Every name is normalised (surrogates.hpp) before use.
#pragma once

#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/surrogates.hpp>

#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace custom_cache_page {

// How long a tag's version counter lives unless bumped (the Python
// package's versioned() default: 10 days). A lost counter restarts at a
// fresh random generation, which only turns hits into misses.
inline constexpr std::chrono::seconds default_version_ttl{std::chrono::hours(24 * 10)};

// A tag after the request has been seen.
struct resolved_tag {
  std::string name;
  bool versioned = false;
  std::chrono::seconds version_ttl = default_version_ttl;
  // The target guard (see cache_page.hpp): a counter that only successful
  // unsafe requests create and bump. Fills read it and never create it (a
  // missing counter reads 0); it is not indexed and not sent to CDNs.
  bool guard = false;

  friend bool operator==(resolved_tag const&, resolved_tag const&) = default;
};

namespace detail {
struct versioned_access;
inline void add_tag_name(std::vector<std::string>& out, std::string_view name) { out.emplace_back(name); }
inline void add_tag_name(std::vector<std::string>& out, std::string name) { out.push_back(std::move(name)); }
inline void add_tag_name(std::vector<std::string>& out, char const* name) {
  if (name != nullptr) out.emplace_back(name);
}
inline void add_tag_name(std::vector<std::string>&, std::nullopt_t) {}
template <class T>
void add_tag_name(std::vector<std::string>& out, std::optional<T> name) {
  if (name) add_tag_name(out, std::move(*name));
}
template <class T>
void add_tag_name(std::vector<std::string>& out, std::vector<T> names) {
  for (auto& n : names) add_tag_name(out, std::move(n));
}
} // namespace detail

// What a tag callable may return.
template <class F>
concept tag_callable = std::invocable<F const&, request_view const&> &&
    requires(std::vector<std::string>& out, std::invoke_result_t<F const&, request_view const&> r) {
      detail::add_tag_name(out, std::move(r));
    };

class tag {
public:
  tag(std::string name) // NOLINT: implicit, so that {"a", f} builds a tag list
      : static_name_(normalize_surrogate(name)) {}
  tag(char const* name) : tag(std::string(name)) {} // NOLINT
  tag(std::string_view name) : tag(std::string(name)) {} // NOLINT

  template <tag_callable F>
    requires(!std::convertible_to<F, std::string>)
  tag(F f) // NOLINT
      : names_([f = std::move(f)](request_view const& r, std::vector<std::string>& out) {
          detail::add_tag_name(out, f(r));
        }) {}

  bool is_versioned() const { return versioned_; }
  std::chrono::seconds version_ttl() const { return version_ttl_; }

  // Appends this tag's names for `r`, normalised, empty ones dropped.
  void resolve(request_view const& r, std::vector<resolved_tag>& out) const {
    if (!names_) {
      if (!static_name_.empty()) out.push_back({static_name_, versioned_, version_ttl_});
      return;
    }
    std::vector<std::string> names;
    names_(r, names);
    for (auto& n : names) {
      std::string name = normalize_surrogate(n);
      if (!name.empty()) out.push_back({std::move(name), versioned_, version_ttl_});
    }
  }

private:
  friend struct detail::versioned_access;

  std::string static_name_; // normalised once; used when names_ is empty
  std::function<void(request_view const&, std::vector<std::string>&)> names_;
  bool versioned_ = false;
  std::chrono::seconds version_ttl_ = default_version_ttl;
};

// Resolves a tag list for one request: duplicates merged, a name that is
// versioned anywhere is versioned (with the longest counter lifetime).
inline std::vector<resolved_tag> resolve_tags(std::vector<tag> const& tags, request_view const& r) {
  std::vector<resolved_tag> raw;
  raw.reserve(tags.size());
  for (auto const& t : tags) t.resolve(r, raw);
  std::vector<resolved_tag> out;
  out.reserve(raw.size());
  for (auto& t : raw) {
    auto it = std::find_if(out.begin(), out.end(), [&](resolved_tag const& o) { return o.name == t.name; });
    if (it == out.end()) {
      out.push_back(std::move(t));
    } else {
      it->versioned = it->versioned || t.versioned;
      it->version_ttl = std::max(it->version_ttl, t.version_ttl);
    }
  }
  return out;
}

} // namespace custom_cache_page
