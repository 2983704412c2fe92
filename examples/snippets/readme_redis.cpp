// README.md, "Redis: one cache for several processes": the block is the body
// of readme_redis() below, line for line; its #include repeats the one above
// (#pragma once makes it a no-op). Needs custom_cache_page::redis.
#include <custom_cache_page/custom_cache_page.hpp>
#include <custom_cache_page/redis.hpp>

namespace ccp = custom_cache_page;

namespace ccp_snippets::readme_redis {

void readme_redis() {
#include <custom_cache_page/redis.hpp>            // link custom_cache_page::redis (adds hiredis)

ccp::enable_redis();                               // once, at start-up: the redis:// and unix:// schemes
auto& registry = ccp::default_registry();
registry.add("shared", "redis://127.0.0.1:6379/0?prefix=shop:&timeout_ms=100&pool=8");
registry.set_default("shared");
}

} // namespace ccp_snippets::readme_redis
