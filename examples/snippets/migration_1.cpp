// docs/migrating-from-python.md, "Quick translation": the block is the start
// of migration_1() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

std::string render_products() { return "<ul><li>A book</li></ul>"; }

} // namespace

namespace ccp_snippets::migration_1 {

http::message_generator migration_1(http::request<http::string_body> req) {
auto product_list = ccp::cache_page(
    {.timeout  = 3600s,
     .key_func = [](ccp::request_view r) { return r.decoded_path(); },   // request.path
     .tags     = {"products"}},
    [](http::request<http::string_body> const& req) {
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.body() = render_products();
        res.prepare_payload();
        return res;
    });

// When products change:
ccp::invalidate_tag("products");
  return product_list(std::move(req));
}

} // namespace ccp_snippets::migration_1
