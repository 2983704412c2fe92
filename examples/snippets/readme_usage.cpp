// README.md, "Usage", the synchronous form. The block is the body of
// readme_usage() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

#include <string>

namespace {

std::string render_products() { return "<ul><li>A book</li></ul>"; }

} // namespace

namespace ccp_snippets::readme_usage {

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

boost::beast::http::message_generator readme_usage(boost::beast::http::request<boost::beast::http::string_body> req) {
auto product_list = ccp::cache_page(
    {.timeout = 3600s, .tags = {ccp::versioned("products"), "catalog"}},
    [](http::request<http::string_body> const& req) {       // returns a response: the synchronous form
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.body() = render_products();
        res.prepare_payload();
        return res;
    });

http::message_generator msg = product_list(std::move(req)); // blocks this thread while it waits
ccp::invalidate_tag("products");                             // for scripts, tests and thread-per-request servers
  return msg;
}

} // namespace ccp_snippets::readme_usage
