// Backends from a JSON configuration, the equivalent of the Python
// package's CUSTOM_CACHE_PAGE setting:
//
//   {
//     "DEFAULT_BACKEND": "main",
//     "BACKENDS": {
//       "main":   {"BACKEND": "composite", "OPTIONS": {"backends": ["local", "cdn"], "read": 0}},
//       "local":  {"BACKEND": "memory", "OPTIONS": {"max_bytes": "256MiB"}},
//       "cdn":    {"BACKEND": "varnish://127.0.0.1:6081"},
//       "fastly": {"BACKEND": "fastly://SERVICE_ID", "OPTIONS": {"token_env": "FASTLY_API_TOKEN"}}
//     }
//   }
//
// - BACKEND is a URL ("varnish://127.0.0.1:6081") or a scheme ("memory",
//   read as "memory://"); registry::make_backend builds it.
// - OPTIONS become the URL's query parameters, percent-encoded: a string as
//   is, an integer in decimal, a boolean as true/false, an array as the
//   parameter repeated, {"ENV": "NAME"} as the environment variable NAME.
//   Secrets belong in the environment: their values are blanked ("***") in
//   every error this file throws.
// - A composite with OPTIONS "backends" (or "members"): a list whose items
//   are names of other BACKENDS (the same object is shared, not copied),
//   names registered in the registry before, URLs, or schemes; "read" (or
//   the Python package's "read_from") and "versions" are member indexes
//   (see composite_backend.hpp); an index out of range is an error here,
//   where the Python package would answer every lookup with a miss.
// - A backend without BACKEND is an in-memory store, as the Python
//   package's default ("django", the process's default cache).
// - DEFAULT_BACKEND names the default; without it the registry's rules
//   apply (a backend named "default", else an in-memory one).
//
// Everything is built before anything is registered: a configuration that
// fails registers nothing. Errors are cache_error(bad_configuration, or
// unknown_backend for an unknown scheme) naming the backend and the key:
//   CUSTOM_CACHE_PAGE: backend 'main', key 'OPTIONS.backends[1]': ...
//
// Link custom_cache_page::cdn, which links Boost.JSON (Boost::json).
#pragma once

#include <custom_cache_page/backends/composite_backend.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/registry.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <boost/url/url.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace custom_cache_page {

namespace detail {

class json_configuration {
public:
  json_configuration(registry& r, boost::json::object const& config) : registry_(r), config_(config) {}

  void apply() {
    for (auto const& [key, value] : config_)
      if (key != "DEFAULT_BACKEND" && key != "BACKENDS") fail({}, key, "unknown key; expected DEFAULT_BACKEND and BACKENDS");
    // As the Python package: {} is valid, and a missing BACKENDS is empty.
    static boost::json::object const none;
    auto const* backends = config_.if_contains("BACKENDS");
    if (backends != nullptr && !backends->is_object()) fail({}, "BACKENDS", "must be an object of backends by name");
    backends_ = backends != nullptr ? &backends->get_object() : &none;

    std::string default_name;
    if (auto const* d = config_.if_contains("DEFAULT_BACKEND")) {
      if (!d->is_string()) fail({}, "DEFAULT_BACKEND", "must be a backend name");
      default_name = d->get_string();
      if (!backends_->contains(default_name) && !registered(default_name))
        fail({}, "DEFAULT_BACKEND", "names no backend: '" + default_name + "'");
    }

    for (auto const& [name, spec] : *backends_) build(name);
    for (auto const& [name, spec] : *backends_) registry_.add(std::string(name), built_.at(std::string(name)));
    if (!default_name.empty()) registry_.set_default(default_name);
  }

private:
  [[noreturn]] void fail(std::string_view backend, std::string_view key, std::string const& why,
                         error code = error::bad_configuration) const {
    std::string where = "CUSTOM_CACHE_PAGE: ";
    if (!backend.empty()) where += "backend '" + std::string(backend) + "'" + (key.empty() ? "" : ", ");
    if (!key.empty()) where += "key '" + std::string(key) + "'";
    throw cache_error(code, where + ": " + blank_secrets(why));
  }

  std::string blank_secrets(std::string text) const {
    for (auto const& s : secrets_) {
      if (s.empty()) continue;
      for (auto at = text.find(s); at != std::string::npos; at = text.find(s, at + 3)) text.replace(at, s.size(), "***");
    }
    return text;
  }

  bool registered(std::string const& name) const {
    for (auto const& n : registry_.names())
      if (n == name) return true;
    return false;
  }

  // A scalar option as text; {"ENV": "NAME"} read from the environment.
  std::string option_text(std::string_view backend, std::string const& key, boost::json::value const& v) {
    if (v.is_string()) return std::string(v.get_string());
    if (v.is_int64()) return std::to_string(v.get_int64());
    if (v.is_uint64()) return std::to_string(v.get_uint64());
    if (v.is_bool()) return v.get_bool() ? "true" : "false";
    if (v.is_object() && v.get_object().size() == 1 && v.get_object().contains("ENV") &&
        v.get_object().at("ENV").is_string()) {
      std::string const var(v.get_object().at("ENV").get_string());
      char const* value = std::getenv(var.c_str());
      if (value == nullptr) fail(backend, key, "environment variable " + var + " is not set");
      std::string secret(value);
      secrets_.push_back(secret);
      secrets_.push_back(boost::urls::encode(secret, boost::urls::unreserved_chars));
      return secret;
    }
    fail(backend, key, R"(must be a string, an integer, a boolean or {"ENV": "VARIABLE"})");
  }

  any_backend build(std::string_view name_view) {
    std::string const name(name_view);
    if (auto it = built_.find(name); it != built_.end()) return it->second;
    if (building_.contains(name)) return {};
    building_.insert(name);

    auto const& spec_value = backends_->at(name_view);
    if (!spec_value.is_object()) fail(name, {}, R"(must be an object: {"BACKEND": ..., "OPTIONS": {...}})");
    auto const& spec = spec_value.get_object();
    for (auto const& [key, value] : spec)
      if (key != "BACKEND" && key != "OPTIONS") fail(name, key, "unknown key; expected BACKEND and OPTIONS");
    // Without BACKEND, the default store, as the Python package's "django".
    auto const* backend_value = spec.if_contains("BACKEND");
    if (backend_value != nullptr && (!backend_value->is_string() || backend_value->get_string().empty()))
      fail(name, "BACKEND", "must be a scheme (\"memory\") or a URL (\"varnish://127.0.0.1:6081\")");
    std::string url(backend_value != nullptr ? std::string_view(backend_value->get_string()) : "memory");
    if (url.find("://") == std::string::npos) url += "://";
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) fail(name, "BACKEND", "is not a URL");
    std::string const scheme(parsed->scheme());

    boost::json::object no_options;
    auto const* options_value = spec.if_contains("OPTIONS");
    if (options_value != nullptr && !options_value->is_object()) fail(name, "OPTIONS", "must be an object");
    auto const& options = options_value != nullptr ? options_value->get_object() : no_options;

    any_backend b;
    if (scheme == "composite" && (options.contains("backends") || options.contains("members")))
      b = composite(name, url, options);
    else
      b = from_url(name, *parsed, options);
    building_.erase(name);
    built_[name] = b;
    return b;
  }

  any_backend from_url(std::string const& name, boost::urls::url_view parsed, boost::json::object const& options) {
    boost::urls::url u(parsed);
    for (auto const& [key, value] : options) {
      std::string const option = "OPTIONS." + std::string(key);
      if (value.is_array()) {
        std::size_t i = 0;
        for (auto const& item : value.get_array())
          u.params().append({key, option_text(name, option + "[" + std::to_string(i++) + "]", item)});
      } else {
        u.params().append({key, option_text(name, option, value)});
      }
    }
    try {
      return registry_.make_backend(u.buffer());
    } catch (unknown_backend_error const& e) {
      fail(name, "BACKEND", e.what(), error::unknown_backend);
    } catch (cache_error const& e) {
      fail(name, {}, e.what(), static_cast<error>(e.code().value()));
    } catch (std::exception const& e) {
      fail(name, {}, e.what());
    }
  }

  any_backend composite(std::string const& name, std::string const& url, boost::json::object const& options) {
    if (url != "composite://") fail(name, "BACKEND", "a composite with OPTIONS.backends takes BACKEND \"composite\"");
    composite_backend_options o;
    std::vector<composite_member> members;
    auto index = [&](std::string const& key, boost::json::value const& v) -> std::size_t {
      if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::size_t>(v.get_int64());
      if (v.is_uint64()) return static_cast<std::size_t>(v.get_uint64());
      fail(name, key, "must be a member index (0, 1, ...)");
    };
    for (auto const& [key_view, value] : options) {
      std::string const key = "OPTIONS." + std::string(key_view);
      if (key_view == "read" || key_view == "read_from") { // read_from: the Python package's name
        o.read = index(key, value);
      } else if (key_view == "versions") {
        o.versions = index(key, value);
      } else if (key_view == "backends" || key_view == "members") {
        if (!value.is_array()) fail(name, key, "must be a list of backend names or URLs");
        std::size_t i = 0;
        for (auto const& item : value.get_array()) {
          std::string const item_key = key + "[" + std::to_string(i++) + "]";
          if (!item.is_string() || item.get_string().empty()) fail(name, item_key, "must be a backend name or URL");
          members.push_back(member(name, item_key, std::string(item.get_string())));
        }
      } else {
        fail(name, key, "unknown composite option; expected backends, read (or read_from), versions");
      }
    }
    try {
      return any_backend(std::make_shared<composite_backend>(std::move(members), o));
    } catch (std::exception const& e) {
      fail(name, "OPTIONS", e.what());
    }
  }

  composite_member member(std::string const& name, std::string const& key, std::string const& ref) {
    if (backends_->contains(ref)) {
      any_backend b = build(ref);
      if (!b) fail(name, key, "'" + ref + "' refers back to '" + name + "'");
      return {ref, b};
    }
    if (ref.find("://") == std::string::npos && registered(ref)) return {ref, registry_.get(ref)};
    std::string const url = ref.find("://") == std::string::npos ? ref + "://" : ref;
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) fail(name, key, "is neither a backend name nor a URL");
    try {
      return {std::string(parsed->scheme()), registry_.make_backend(url)};
    } catch (std::exception const& e) {
      auto const* ce = dynamic_cast<cache_error const*>(&e);
      fail(name, key, e.what(), ce != nullptr ? static_cast<error>(ce->code().value()) : error::bad_configuration);
    }
  }

  registry& registry_;
  boost::json::object const& config_;
  boost::json::object const* backends_ = nullptr;
  std::map<std::string, any_backend> built_;
  std::set<std::string> building_;
  std::vector<std::string> secrets_;
};

} // namespace detail

// Builds every backend of `config` and registers them in `r` (see above).
inline void configure(registry& r, boost::json::object const& config) {
  detail::json_configuration(r, config).apply();
}

// The same from JSON text.
inline void configure(registry& r, std::string_view json_text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(json_text, ec);
  if (ec) throw cache_error(error::bad_configuration, "CUSTOM_CACHE_PAGE: the configuration is not JSON: " + ec.message());
  if (!value.is_object()) throw cache_error(error::bad_configuration, "CUSTOM_CACHE_PAGE: the configuration must be a JSON object");
  configure(r, value.get_object());
}

// The same from a file.
inline void configure_file(registry& r, std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw cache_error(error::bad_configuration, "CUSTOM_CACHE_PAGE: cannot read the configuration file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  configure(r, text.str());
}

} // namespace custom_cache_page
