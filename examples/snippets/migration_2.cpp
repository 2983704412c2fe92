// docs/migrating-from-python.md, "Tags, per-request control": the block is
// the start of migration_2() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

#include <optional>
#include <string>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// The signed-in user's id (here: the session cookie itself); nothing for an
// anonymous request.
std::optional<std::string> session_user_id(ccp::request_view const& r) {
  if (!r.has(http::field::cookie)) return std::nullopt;
  return std::string(r.header(http::field::cookie));
}

// What the Python service's middleware expressed with request._bust_cache.
bool is_staff_refresh(ccp::request_view const& r) { return r.has("X-Staff-Refresh"); }

std::string category_of(http::request<http::string_body> const& req) { return ccp::request_view(req).query("category"); }

http::response<http::string_body> render_product(http::request<http::string_body> const& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.body() = "<h1>A book</h1>";
  res.prepare_payload();
  return res;
}

} // namespace

namespace ccp_snippets::migration_2 {

http::message_generator migration_2(http::request<http::string_body> req) {
auto product_detail = ccp::cache_page(
    {.timeout    = 3600s,
     .key_func   = ccp::generate_cache_key,
     .tags       = {ccp::versioned("products"),
                    ccp::versioned([](ccp::request_view r) { return "store:" + std::string(r.header("X-Store-ID")); }),
                    ccp::surrogate_from_path,
                    [](ccp::request_view r) { return ccp::surrogate_from_model("Product", r.query("id")); }},
     .only_if    = [](ccp::request_view r) { return !session_user_id(r); },   // anonymous only
     .refresh_if = is_staff_refresh},                                          // was request._bust_cache
    [](http::request<http::string_body> const& req, ccp::fill_context& ctx) {
        if (ccp::request_view(req).has_query("preview")) ctx.do_not_cache();   // was request.do_not_cache
        ctx.add_tag("category-" + category_of(req));   // a tag learned while rendering
        return render_product(req);
    });
  return product_detail(std::move(req));
}

} // namespace ccp_snippets::migration_2
