// fastly_backend: tags responses for Fastly and purges them through its API.
// It keeps no pages (see cdn_header_backend): put it in a composite next to
// a real store.
//
// | operation        | Fastly                                                        |
// |------------------|---------------------------------------------------------------|
// | prepare_response | Surrogate-Key: k1 k2 ... (see detail/cdn_tag_header.hpp)      |
// | invalidate_tag   | POST /service/{id}/purge/{key}, Fastly-Key: <token>           |
// | purge_tags       | POST /service/{id}/purge, Surrogate-Key: k1 k2 ... (<= 256)   |
//
// A soft purge (purge_mode::soft, or soft_purge in the options) adds
// Fastly-Soft-Purge: 1: Fastly then marks the objects stale instead of
// removing them.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/cdn_tag_header.hpp>
#include <custom_cache_page/detail/http_client.hpp>
#include <custom_cache_page/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

struct fastly_backend_options {
  std::string service_id;
  std::string api_token; // sent as Fastly-Key; never logged nor put in errors
  std::string api_base = "https://api.fastly.com";
  bool soft_purge = false;
  std::chrono::milliseconds timeout{5000};        // each step of a purge request
  std::chrono::milliseconds max_retry_wait{5000}; // cap on a 429's Retry-After
  std::chrono::milliseconds deadline{15000};      // the whole purge, retry included
};

class fastly_backend : public cdn_header_backend {
public:
  // Fastly takes at most this many keys in one batch purge.
  static constexpr std::size_t max_keys_per_purge = 256;

  explicit fastly_backend(fastly_backend_options options)
      : cdn_header_backend(fastly_tag_syntax), options_(std::move(options)),
        client_(detail::parse_http_endpoint(options_.api_base, "fastly api"),
                {options_.timeout, options_.max_retry_wait, options_.deadline, options_.api_token}) {
    if (options_.service_id.empty()) throw cache_error(error::bad_configuration, "fastly: no service id");
    if (options_.api_token.empty()) throw cache_error(error::bad_configuration, "fastly: no API token");
  }

  fastly_backend_options const& options() const { return options_; }

  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    return detail::run_blocking(async_invalidate_tag(tag, mode));
  }

  // The purge on the caller's executor: no thread waits on Fastly.
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, purge_mode mode = purge_mode::hard) {
    std::string const key = provider_tag(tag);
    if (key.empty()) throw invalidation_error(tag, "fastly: the tag is empty once normalised");
    auto req = request(client_.target("/service/" + encode(options_.service_id) + "/purge/" + encode(key)), mode);
    co_await check(std::move(req), tag, [](boost::json::value const& v) {
      auto const* o = v.if_object();
      auto const* status = o ? o->if_contains("status") : nullptr;
      return status && status->is_string() && status->get_string() == "ok";
    });
    co_return result(tag, mode);
  }

  // Purges `tags` in batches of up to 256 keys, each one call. Throws on the
  // first batch that fails (the batches before it are purged).
  std::vector<invalidation_result> purge_tags(std::vector<std::string> const& tags, purge_mode mode = purge_mode::hard) {
    return detail::run_blocking(async_purge_tags(tags, mode));
  }

  boost::asio::awaitable<std::vector<invalidation_result>> async_purge_tags(std::vector<std::string> tags,
                                                                            purge_mode mode = purge_mode::hard) {
    std::vector<std::string> keys;
    for (auto const& t : tags) {
      std::string k = provider_tag(t);
      if (!k.empty() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(std::move(k));
    }
    std::vector<invalidation_result> out;
    for (std::size_t first = 0; first < keys.size();) {
      // Bounded by count and, as a response's Surrogate-Key, by bytes.
      std::string header = keys[first];
      std::size_t last = first + 1;
      while (last < keys.size() && last - first < max_keys_per_purge &&
             header.size() + 1 + keys[last].size() <= syntax_.max_header_bytes)
        (header += ' ') += keys[last++];
      auto req = request(client_.target("/service/" + encode(options_.service_id) + "/purge"), mode);
      req.set("Surrogate-Key", header);
      co_await check(std::move(req), detail::cdn_batch_name(std::span(keys).subspan(first, last - first)),
                     [](boost::json::value const& v) { return v.is_object(); });
      for (std::size_t i = first; i < last; ++i) out.push_back(result(keys[i], mode));
      first = last;
    }
    co_return out;
  }

private:
  static std::string encode(std::string_view segment) { return boost::urls::encode(segment, boost::urls::unreserved_chars); }

  detail::http_client::request request(std::string target, purge_mode mode) const {
    namespace http = boost::beast::http;
    detail::http_client::request req{http::verb::post, target, 11};
    req.set("Fastly-Key", options_.api_token);
    req.set(http::field::accept, "application/json");
    if (mode == purge_mode::soft || options_.soft_purge) req.set("Fastly-Soft-Purge", "1");
    return req;
  }

  invalidation_result result(std::string const& tag, purge_mode mode) const {
    invalidation_result r;
    r.tag = tag;
    r.mode = mode == purge_mode::soft || options_.soft_purge ? purge_mode::soft : purge_mode::hard;
    return r;
  }

  // Sends `req`; throws invalidation_error unless the answer is a 2xx whose
  // JSON body `ok` accepts.
  template <class Ok>
  boost::asio::awaitable<void> check(detail::http_client::request req, std::string tag, Ok ok) const {
    detail::http_client::response res;
    try {
      res = co_await client_.async_send(req);
    } catch (detail::http_transport_error const& e) {
      throw invalidation_error(tag, std::string("fastly: ") + e.what());
    }
    boost::system::error_code ec;
    auto body = boost::json::parse(res.body(), ec);
    if (res.result_int() / 100 == 2 && !ec && ok(body)) co_return;
    std::string why = "fastly: " + client_.describe(req) + " answered " + std::to_string(res.result_int());
    // Fastly's errors: {"msg": "...", "detail": "..."}.
    auto const* o = ec ? nullptr : body.if_object();
    auto const* msg = o ? o->if_contains("msg") : nullptr;
    if (msg && msg->is_string()) why += ": " + std::string(msg->get_string());
    else why += ": " + detail::body_excerpt(res.body());
    throw invalidation_error(tag, client_.redact(why));
  }

  fastly_backend_options options_;
  detail::http_client client_;
};

static_assert(cdn_backend<fastly_backend>);

} // namespace custom_cache_page
