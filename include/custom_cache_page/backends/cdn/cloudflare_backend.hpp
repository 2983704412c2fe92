// cloudflare_backend: tags responses for Cloudflare and purges them through
// its API. It keeps no pages (see cdn_header_backend): put it in a composite
// next to a real store.
//
// | operation        | Cloudflare                                                   |
// |------------------|--------------------------------------------------------------|
// | prepare_response | Cache-Tag: t1,t2,... (see detail/cdn_tag_header.hpp)         |
// | invalidate_tag   | POST /client/v4/zones/{zone}/purge_cache {"tags": ["t"]}     |
// | purge_tags       | the same with up to 100 tags a call (Cloudflare's limit)     |
//
// Authorization: Bearer <token>. A 429 is retried once after its
// Retry-After (capped by max_retry_wait). Cloudflare has no soft purge by
// tag: purge_mode::soft purges hard, and the result says so.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/cdn_tag_header.hpp>
#include <custom_cache_page/detail/http_client.hpp>
#include <custom_cache_page/error.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace custom_cache_page {

struct cloudflare_backend_options {
  std::string zone_id;
  std::string api_token; // sent as a Bearer token; never logged nor put in errors
  std::string api_base = "https://api.cloudflare.com";
  std::chrono::milliseconds timeout{5000};        // each step of a purge request
  std::chrono::milliseconds max_retry_wait{5000}; // cap on a 429's Retry-After
  std::chrono::milliseconds deadline{15000};      // the whole purge, retry included
  // Cloudflare's documented maximum of operations (tags) per purge call.
  std::size_t max_tags_per_purge = 100;
};

class cloudflare_backend : public cdn_header_backend {
public:
  explicit cloudflare_backend(cloudflare_backend_options options)
      : cdn_header_backend(cloudflare_tag_syntax), options_(std::move(options)),
        client_(detail::parse_http_endpoint(options_.api_base, "cloudflare api"),
                {options_.timeout, options_.max_retry_wait, options_.deadline, options_.api_token}) {
    if (options_.zone_id.empty()) throw cache_error(error::bad_configuration, "cloudflare: no zone id");
    if (options_.api_token.empty()) throw cache_error(error::bad_configuration, "cloudflare: no API token");
    if (options_.max_tags_per_purge == 0)
      throw cache_error(error::bad_configuration, "cloudflare: max_tags_per_purge must be at least 1");
  }

  cloudflare_backend_options const& options() const { return options_; }

  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    return detail::run_blocking(async_invalidate_tag(tag, mode));
  }

  // The purge on the caller's executor: no thread waits on Cloudflare.
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string tag, purge_mode = purge_mode::hard) {
    std::vector<std::string> one(1, provider_tag(tag));
    if (one[0].empty()) throw invalidation_error(tag, "cloudflare: the tag is empty once normalised");
    co_await purge(std::move(one), tag);
    co_return result(tag);
  }

  // Purges `tags` in calls of up to max_tags_per_purge. Throws on the first
  // call that fails (the calls before it are purged).
  std::vector<invalidation_result> purge_tags(std::vector<std::string> const& tags, purge_mode mode = purge_mode::hard) {
    return detail::run_blocking(async_purge_tags(tags, mode));
  }

  boost::asio::awaitable<std::vector<invalidation_result>> async_purge_tags(std::vector<std::string> tags,
                                                                            purge_mode = purge_mode::hard) {
    std::vector<std::string> all;
    for (auto const& t : tags) {
      std::string p = provider_tag(t);
      if (!p.empty() && std::find(all.begin(), all.end(), p) == all.end()) all.push_back(std::move(p));
    }
    std::vector<invalidation_result> out;
    for (std::size_t first = 0; first < all.size(); first += options_.max_tags_per_purge) {
      auto const last = std::min(all.size(), first + options_.max_tags_per_purge);
      std::vector<std::string> batch(all.begin() + static_cast<std::ptrdiff_t>(first),
                                     all.begin() + static_cast<std::ptrdiff_t>(last));
      std::string what = detail::cdn_batch_name(batch);
      co_await purge(batch, std::move(what));
      for (auto& t : batch) out.push_back(result(std::move(t)));
    }
    co_return out;
  }

private:
  static invalidation_result result(std::string tag) {
    invalidation_result r;
    r.tag = std::move(tag);
    r.mode = purge_mode::hard;
    return r;
  }

  // One purge_cache call; throws invalidation_error (for `what`) unless
  // Cloudflare answered 2xx with "success": true.
  boost::asio::awaitable<void> purge(std::vector<std::string> tags, std::string what) const {
    namespace http = boost::beast::http;
    boost::json::array list;
    for (auto const& t : tags) list.emplace_back(t);
    detail::http_client::request req{
        http::verb::post,
        client_.target("/client/v4/zones/" + boost::urls::encode(options_.zone_id, boost::urls::unreserved_chars) +
                       "/purge_cache"),
        11};
    req.set(http::field::authorization, "Bearer " + options_.api_token);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json");
    req.body() = boost::json::serialize(boost::json::object{{"tags", std::move(list)}});

    detail::http_client::response res;
    try {
      res = co_await client_.async_send(req);
    } catch (detail::http_transport_error const& e) {
      throw invalidation_error(what, std::string("cloudflare: ") + e.what());
    }
    boost::system::error_code ec;
    auto body = boost::json::parse(res.body(), ec);
    auto const* o = ec ? nullptr : body.if_object();
    auto const* success = o ? o->if_contains("success") : nullptr;
    if (res.result_int() / 100 == 2 && success && success->is_bool() && success->get_bool()) co_return;

    std::string why = "cloudflare: " + client_.describe(req) + " answered " + std::to_string(res.result_int());
    // Cloudflare's errors: {"success": false, "errors": [{"code": 1234, "message": "..."}]}.
    std::string messages;
    auto const* errors = o ? o->if_contains("errors") : nullptr;
    if (errors && errors->is_array())
      for (auto const& e : errors->get_array()) {
        auto const* eo = e.if_object();
        auto const* m = eo ? eo->if_contains("message") : nullptr;
        if (m && m->is_string()) messages += (messages.empty() ? "" : "; ") + std::string(m->get_string());
      }
    why += ": " + (messages.empty() ? detail::body_excerpt(res.body()) : messages);
    throw invalidation_error(what, client_.redact(why));
  }

  cloudflare_backend_options options_;
  detail::http_client client_;
};

static_assert(cdn_backend<cloudflare_backend>);

} // namespace custom_cache_page
