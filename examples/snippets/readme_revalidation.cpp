// README.md, "HTTP semantics", revalidation: the block is the body of
// make_article() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

long article_version() { return 7; }
std::string render_article() { return "<article>...</article>"; }

} // namespace

namespace ccp_snippets::revalidation {

auto make_article() {
auto article = ccp::cache_page(
    {.timeout = 60s, .revalidate_for = 24h},
    [](http::request<http::string_body> const& req) {
        auto const etag = "\"" + std::to_string(article_version()) + "\"";  // one cheap query
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::etag, etag);
        if (req[http::field::if_none_match] == etag) {
            res.result(http::status::not_modified);                   // no render
        } else {
            res.body() = render_article();
        }
        res.prepare_payload();
        return res;
    });
  return article;
}

} // namespace ccp_snippets::revalidation
