// varnish_backend: tags responses for Varnish's xkey vmod and purges them
// through a PURGE request that the VCL hands to xkey. It keeps no pages (see
// cdn_header_backend): put it in a composite next to a real store.
//
// | operation        | Varnish                                                    |
// |------------------|------------------------------------------------------------|
// | prepare_response | xkey: k1 k2 ... (see detail/cdn_tag_header.hpp)            |
// | invalidate_tag   | PURGE / with xkey-purge: <key> (hard) or                   |
// |                  | xkey-softpurge: <key> (soft), to host:port                 |
//
// The VCL must answer a handled purge with a 2xx, also when no object
// carried the key; any other answer throws.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/cdn_tag_header.hpp>
#include <custom_cache_page/detail/http_client.hpp>
#include <custom_cache_page/error.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace custom_cache_page {

struct varnish_backend_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6081;
  std::chrono::milliseconds timeout{5000};   // each step of a purge request
  std::chrono::milliseconds deadline{15000}; // the whole purge, retry included
  bool soft_purge = false; // every purge soft, whatever the mode asked
  // The xkey header value's limit: varnishd refuses a backend response
  // header longer than its http_resp_hdr_len (8k by default).
  std::size_t max_header_bytes = varnish_tag_syntax.max_header_bytes;
};

class varnish_backend : public cdn_header_backend {
public:
  explicit varnish_backend(varnish_backend_options options = {})
      : cdn_header_backend(syntax_for(options)), options_(std::move(options)),
        client_(endpoint_for(options_), {options_.timeout, std::chrono::milliseconds(0), options_.deadline, {}}) {}

  varnish_backend_options const& options() const { return options_; }

  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    return detail::run_blocking(async_invalidate_tag(tag, mode));
  }

  // The purge on the caller's executor: no thread waits on Varnish.
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, purge_mode mode = purge_mode::hard) {
    namespace http = boost::beast::http;
    std::string const key = provider_tag(tag);
    if (key.empty()) throw invalidation_error(tag, "varnish: the tag is empty once normalised");
    bool const soft = mode == purge_mode::soft || options_.soft_purge;
    detail::http_client::request req{http::verb::purge, client_.target("/"), 11};
    req.set(soft ? "xkey-softpurge" : "xkey-purge", key);

    detail::http_client::response res;
    try {
      res = co_await client_.async_send(req);
    } catch (detail::http_transport_error const& e) {
      throw invalidation_error(tag, std::string("varnish: ") + e.what());
    }
    if (res.result_int() / 100 != 2)
      throw invalidation_error(tag, "varnish: " + client_.describe(req) + " answered " + std::to_string(res.result_int()) +
                                        ": " + detail::body_excerpt(res.body()));
    invalidation_result r;
    r.tag = tag;
    r.mode = soft ? purge_mode::soft : purge_mode::hard;
    co_return r;
  }

private:
  static cdn_tag_syntax syntax_for(varnish_backend_options const& o) {
    cdn_tag_syntax s = varnish_tag_syntax;
    s.max_header_bytes = o.max_header_bytes;
    return s;
  }
  static detail::http_endpoint endpoint_for(varnish_backend_options const& o) {
    if (o.host.empty()) throw cache_error(error::bad_configuration, "varnish: no host");
    if (o.port == 0) throw cache_error(error::bad_configuration, "varnish: no port");
    detail::http_endpoint e;
    e.host = o.host;
    e.port = std::to_string(o.port);
    return e;
  }

  varnish_backend_options options_;
  detail::http_client client_;
};

static_assert(cdn_backend<varnish_backend>);

} // namespace custom_cache_page
