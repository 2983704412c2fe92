// README.md, "Handler-side control": the block is the handler passed to
// cache_page below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;

namespace {

struct product {
  std::string name;
};

bool is_preview(http::request<http::string_body> const& req) { return req.target().ends_with("preview=1"); }
std::string product_id(http::request<http::string_body> const& req) { return std::string(req.target().substr(1)); }
std::string category_of(std::string const&) { return "books"; }
product load_product(std::string const& product_id) { return {"product " + product_id}; }
http::response<http::string_body> render(product const& p) {
  http::response<http::string_body> res{http::status::ok, 11};
  res.body() = p.name;
  res.prepare_payload();
  return res;
}

} // namespace

namespace ccp_snippets::readme_fill_context {

http::message_generator readme_fill_context(http::request<http::string_body> req) {
  auto product_page = ccp::cache_page({.tags = {"products"}},
[](http::request<http::string_body> const& req, ccp::fill_context& ctx) {
    if (is_preview(req)) ctx.do_not_cache();
    auto const id = product_id(req);
    auto category = category_of(id);          // cheap
    ctx.add_tag("category-" + category);      // BEFORE reading the data it stands for
    return render(load_product(id));          // the slow query
}
  );
  return product_page(std::move(req));
}

} // namespace ccp_snippets::readme_fill_context
