// README.md, "Usage". The block is the body of readme_usage() below, line for
// line; its #include repeats the one above (#pragma once makes it a no-op).
#include <custom_cache_page/custom_cache_page.hpp>

#include <string>

namespace {

std::string render_products() { return "<ul><li>A book</li></ul>"; }

} // namespace

namespace ccp_snippets::readme_usage {

boost::beast::http::message_generator readme_usage(boost::beast::http::request<boost::beast::http::string_body> req) {
#include <custom_cache_page/custom_cache_page.hpp>
namespace ccp  = custom_cache_page;
namespace http = boost::beast::http;
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
    [](http::request<http::string_body> const& req) {       // your Beast handler, unchanged
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.body() = render_products();
        res.prepare_payload();
        return res;
    });

// In the session, where you called handle_request(std::move(req)):
http::message_generator msg = product_list(std::move(req));

// When products change:
ccp::invalidate_tag("products");
  return msg;
}

} // namespace ccp_snippets::readme_usage
