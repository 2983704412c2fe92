// Opt-in umbrella for the Redis component (link custom_cache_page::redis,
// which adds hiredis):
//
//   #include <custom_cache_page/redis.hpp>
//   ccp::enable_redis();                                   // once, at start-up
//   ccp::default_registry().add("redis", "redis://127.0.0.1:6379/0?prefix=app:");
#pragma once

#include <custom_cache_page/custom_cache_page.hpp>

#include <custom_cache_page/backends/redis_backend.hpp>
#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/indexes/redis_index.hpp>
#include <custom_cache_page/registry.hpp>

#include <memory>

namespace custom_cache_page {

// Teaches `r` the "redis" and "unix" URL schemes (see redis_options.hpp),
// so that r.make_backend("redis://host:6379/0?prefix=app:") builds a
// redis_backend. Building one does not connect: connections open on first
// use, so a process can start while Redis is still down.
inline void enable_redis(registry& r = default_registry()) {
  auto factory = [](boost::urls::url_view const& u) {
    return any_backend(std::make_shared<redis_backend>(parse_redis_url(u)));
  };
  r.add_scheme("redis", factory);
  r.add_scheme("unix", factory);
}

} // namespace custom_cache_page
