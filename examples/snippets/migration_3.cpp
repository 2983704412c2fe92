// docs/migrating-from-python.md, "Configuration and invalidation": the block
// is the body of migration_3() below, line for line. Needs
// custom_cache_page::cdn (the fastly:// scheme, Boost.JSON for config.hpp).
#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>
#include <custom_cache_page/custom_cache_page.hpp>

#include <fmt/core.h>

namespace ccp = custom_cache_page;

namespace ccp_snippets::migration_3 {

void migration_3() {
ccp::enable_cdn();                                             // the fastly:// scheme
ccp::configure_file(ccp::default_registry(), "cache.json");    // was settings.CUSTOM_CACHE_PAGE

ccp::invalidation_result r = ccp::invalidate_tag("products");  // throws if it was not done
fmt::print("{}: version {}, {} entries removed\n", r.tag, r.version, r.entries_removed);
for (auto const& each : ccp::invalidate_tags({"products", "catalog"}, "local"))
    fmt::print("{} in {}: {} entries removed\n", each.tag, each.backend, each.entries_removed);
}

} // namespace ccp_snippets::migration_3
