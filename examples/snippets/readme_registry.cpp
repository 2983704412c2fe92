// README.md, "Backends and the registry": the block is the body of
// readme_registry() below, line for line.
#include <custom_cache_page/custom_cache_page.hpp>

namespace ccp = custom_cache_page;

namespace ccp_snippets::readme_registry {

void readme_registry() {
auto& registry = ccp::default_registry();
registry.add("local", "memory://?max_bytes=256MiB&max_entry=8MiB");
registry.set_default("local");
}

} // namespace ccp_snippets::readme_registry
