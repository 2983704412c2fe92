// README.md, "Writing a store, a surrogate index or a CDN backend": each
// block, line for line.
#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/custom_cache_page.hpp>
#include <custom_cache_page/store_primitives.hpp>

#include "../../tests/support/map_store.hpp"

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;

namespace ccp_snippets::readme_backends {

using ccp_test::map_store;

inline void purge_at_the_edge(std::string const&, bool) {}

struct my_cdn {
  ccp::invalidation_result invalidate_tag(std::string const& tag, ccp::purge_mode mode) {
    purge_at_the_edge(tag, mode == ccp::purge_mode::soft); // the CDN's own API
    ccp::invalidation_result r;
    r.tag = tag;
    r.mode = mode;
    return r;
  }
  void prepare_response(http::fields& f, std::span<std::string_view const> tags) {
    std::string value;
    for (auto const t : tags) value.append(value.empty() ? "" : " ").append(t);
    f.set("X-Edge-Tags", value);
  }
};
static_assert(ccp::cdn_backend<my_cdn>);

void readme_store() {
static_assert(ccp::store_primitives<map_store>);
ccp::default_registry().add(
    "mine", ccp::any_backend(std::make_shared<ccp::protocol_store<map_store>>(std::make_shared<map_store>())));
}

void readme_cdn() {
ccp::default_registry().add("site", ccp::any_backend(std::make_shared<ccp::composite_backend>(
                                         std::vector<ccp::composite_member>{
                                             {"memory", ccp::default_registry().make_backend("memory://")},
                                             {"edge", ccp::any_backend(std::make_shared<my_cdn>())}})));
}

} // namespace ccp_snippets::readme_backends
