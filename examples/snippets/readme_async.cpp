// README.md, "Usage", the awaitable form. The block is the body of
// readme_async() below, line for line; its #include repeats the one above
// (#pragma once makes it a no-op).
#include <custom_cache_page/custom_cache_page.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>

namespace {

boost::asio::awaitable<std::string> render_products() {
  co_await boost::asio::post(co_await boost::asio::this_coro::executor, boost::asio::use_awaitable);
  co_return "<ul><li>A book</li></ul>";
}

} // namespace

namespace ccp_snippets::readme_async {

boost::asio::awaitable<boost::beast::http::message_generator> readme_async(
    boost::beast::http::request<boost::beast::http::string_body> req) {
#include <custom_cache_page/custom_cache_page.hpp>
namespace ccp  = custom_cache_page;
namespace http = boost::beast::http;
namespace net  = boost::asio;
using namespace std::chrono_literals;

auto product_list = ccp::cache_page(
    {
        .timeout  = 3600s,                                   // or a callable on the response header
        .key_func = ccp::generate_cache_key,                 // any callable(request_view) -> string
        .tags     = {ccp::versioned("products"),             // O(1) invalidation
                     "catalog",                              // plain tag: removed eagerly
                     [](ccp::request_view r) { return "category-" + r.query("cat"); }},
        .only_if  = [](ccp::request_view r) { return !r.has_query("preview"); },
    },
    [](http::request<http::string_body> req) -> net::awaitable<http::response<http::string_body>> {
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.body() = co_await render_products();            // your coroutine handler, unchanged
        res.prepare_payload();
        co_return res;
    });

// In the session coroutine, where you called co_await handle_request(std::move(req)):
http::message_generator msg = co_await product_list(std::move(req));

// When products change, from a coroutine:
co_await ccp::async_invalidate_tag("products");
  co_return msg;
}

} // namespace ccp_snippets::readme_async
