// cache_options: everything cache_page can be told, as an aggregate for
// designated initialisers. Fields in the order a reader needs them.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/stats.hpp>
#include <custom_cache_page/tags.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace custom_cache_page {

// How long a response stays cached: a duration, or a callable that looks at
// the handler's response (its header) and returns one.
class cache_timeout {
public:
  using function = std::function<std::chrono::seconds(http::response_header<> const&)>;

  template <class Rep, class Period>
  cache_timeout(std::chrono::duration<Rep, Period> d) // NOLINT: implicit by design
      : fixed_(std::chrono::duration_cast<std::chrono::seconds>(d)) {}

  template <class F>
    requires std::is_invocable_r_v<std::chrono::seconds, F const&, http::response_header<> const&>
  cache_timeout(F f) : fn_(std::move(f)) {} // NOLINT

  std::chrono::seconds operator()(http::response_header<> const& res) const { return fn_ ? fn_(res) : fixed_; }

private:
  std::chrono::seconds fixed_{0};
  function fn_;
};

// A key prefix: a string, or a callable on the request.
class key_prefix {
public:
  key_prefix() = default;
  key_prefix(std::string s) : fixed_(std::move(s)) {}        // NOLINT
  key_prefix(char const* s) : fixed_(s) {}                   // NOLINT
  template <class F>
    requires std::is_invocable_r_v<std::string, F const&, request_view const&>
  key_prefix(F f) : fn_(std::move(f)) {} // NOLINT

  std::string operator()(request_view const& r) const { return fn_ ? fn_(r) : fixed_; }

private:
  std::string fixed_;
  std::function<std::string(request_view const&)> fn_;
};

// Where entries go: the registry's default backend, a registered name, or
// a backend object.
class backend_choice {
public:
  backend_choice() = default;
  backend_choice(std::string name) : choice_(std::move(name)) {} // NOLINT
  backend_choice(char const* name) : choice_(std::string(name)) {} // NOLINT
  backend_choice(any_backend b) : choice_(std::move(b)) {}          // NOLINT
  template <store_or_cdn_backend B>
  backend_choice(std::shared_ptr<B> b) : choice_(any_backend(std::move(b))) {} // NOLINT

  bool is_default() const { return std::holds_alternative<std::monostate>(choice_); }
  std::string const* name() const { return std::get_if<std::string>(&choice_); }
  any_backend const* object() const { return std::get_if<any_backend>(&choice_); }

private:
  std::variant<std::monostate, std::string, any_backend> choice_;
};

using request_predicate = std::function<bool(request_view const&)>;
using key_function = std::function<std::string(request_view const&)>;

struct cache_options {
  // How long a stored response is served. Zero or less: not stored.
  cache_timeout timeout = std::chrono::seconds(300);
  // What makes two requests the same page.
  key_function key_func = generate_cache_key;
  // Tags for invalidation: names, callables, versioned(...).
  std::vector<tag> tags = {};
  // Put in front of the key (namespaces pages of different handlers).
  key_prefix prefix = {};
  // The request's host (normalized_host(): lower case, no default port) is
  // part of every storage key, so that virtual hosts served by one process
  // never share an entry. Off: one entry for every host, as keys were
  // before (and as the Python package's first releases had them).
  bool key_includes_host = true;
  // Where entries live; the registry's default when left empty.
  backend_choice backend = {};
  // Cache only requests for which this holds (all when empty).
  request_predicate only_if = {};
  // Requests for which this holds skip the lookup, run the handler and
  // replace the stored entry (the Python package's _bust_cache).
  request_predicate refresh_if = {};
  // Statuses that may be stored.
  std::vector<http::status> cacheable_statuses = {http::status::ok};
  // Bodies larger than this are not stored.
  std::size_t max_body_size = std::size_t{8} << 20;
  // Store per Vary: only serve an entry to requests whose varying fields match.
  bool honour_vary = true;
  // Under Vary, a key keeps up to this many variants besides the first,
  // each stored apart (its key is the page's plus the slot its varying
  // values hash to): clients that alternate Accept-Language all hit, and
  // no header value can make one page take more. 0: one entry per key.
  std::size_t max_vary_variants = 8;
  // Cache requests that carry Authorization (RFC 9111 §3.5 says don't, unless
  // the response explicitly allows it; set only for responses that never depend on it).
  bool cache_authorized = false;
  // As Django's patch_response_headers (the Python package calls it): a
  // stored response gets Expires unless it has one, and a max-age no
  // longer than the timeout (added, or a larger one lowered in place; no
  // other directive touched). False: Cache-Control and Expires go out as
  // the handler wrote them.
  bool patch_response_headers = true;
  // Add a strong ETag (SHA-256 of the body) to stored responses without one.
  bool add_etag = false;
  // Stale responses (RFC 5861): for this long after its timeout an entry
  // answers at once while one request refreshes it; a response's own
  // Cache-Control stale-while-revalidate=N takes precedence.
  std::chrono::seconds stale_while_revalidate{0};
  // For this long after its timeout an entry answers in place of a handler
  // that throws or returns a 5xx status; stale-if-error=N likewise.
  std::chrono::seconds stale_if_error{0};
  // After its timeout, a stored response with an ETag or Last-Modified is
  // kept this long more and refreshed through the handler, called with
  // If-None-Match / If-Modified-Since from it: a 304 makes the entry fresh
  // again, its header updated and its body kept (RFC 9111 §4.3.4); a 200
  // replaces it. A stored Cache-Control: no-cache response is then
  // validated on every request (§5.2.2.4). 0: stale entries refill in full.
  std::chrono::seconds revalidate_for{0};
  // Honour the request's Cache-Control (no-store, no-cache, max-age,
  // min-fresh, max-stale, only-if-cached) and Pragma: no-cache as RFC 9111
  // §5.2.1 says. Off: they are ignored, as nginx and Varnish do, so that
  // no client can empty the cache or make every request reach the handler.
  bool honour_request_directives = false;
  // A targeted field (RFC 9213), for example "CCP-Cache-Control", or
  // "CDN-Cache-Control" for a cache at the edge: when a response has it, its
  // directives, not Cache-Control's, decide whether and how long this cache
  // stores it (s-maxage or max-age in place of the timeout), and
  // Cache-Control and Expires go downstream as the handler wrote them.
  std::string targeted_cache_control = {};
  // Concurrent misses on one key run the handler once: the others wait for
  // it (at most coalesce_wait, then run it themselves) and are answered from
  // the stored entry, or run the handler themselves when it was not stored.
  // A backend with fill locks (Redis) extends this across processes.
  bool coalesce = true;
  std::chrono::milliseconds coalesce_wait{5000};
  // The cache's name in Cache-Status (RFC 9211).
  std::string cache_status_name = "custom_cache_page";
  // Where counts go; global_stats() when null.
  std::shared_ptr<stats> statistics = nullptr;
};

} // namespace custom_cache_page
