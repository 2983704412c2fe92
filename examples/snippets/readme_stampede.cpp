// README.md, "Stampede protection": the block is the start of
// readme_stampede() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

http::response<http::string_body> render_list(http::request<http::string_body> const& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.body() = "<ul></ul>";
  res.prepare_payload();
  return res;
}

} // namespace

namespace ccp_snippets::readme_stampede {

http::message_generator readme_stampede(http::request<http::string_body> req) {
auto list = ccp::cache_page({.timeout = 60s,
                             .tags = {"products"},
                             .stale_while_revalidate = 30s,   // RFC 5861
                             .stale_if_error = 1h},
                            render_list);
ccp::invalidate_tag("products", ccp::purge_mode::soft);     // stale, not gone
  return list(std::move(req));
}

} // namespace ccp_snippets::readme_stampede
