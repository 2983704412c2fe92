// README.md, "Composite backend and configuration": the block is the body of
// readme_config() below, line for line; its #includes repeat the ones above
// (#pragma once makes them no-ops). Needs custom_cache_page::cdn.
#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>
#include <custom_cache_page/custom_cache_page.hpp>

namespace ccp = custom_cache_page;

namespace ccp_snippets::readme_config {

void readme_config() {
#include <custom_cache_page/cdn.hpp>      // link custom_cache_page::cdn
#include <custom_cache_page/config.hpp>
ccp::enable_cdn();                                              // fastly://, cloudflare://, varnish://
ccp::default_registry().add("main", "composite://memory,varnish");
ccp::configure_file(ccp::default_registry(), "cache.json");    // or from JSON
}

} // namespace ccp_snippets::readme_config
