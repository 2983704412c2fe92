// The store conformance suite (tests/support/store_conformance.hpp) over
// redis_backend and a real redis-server, each test under a prefix of its
// own: once through the blocking operations, once through the awaitable
// ones (the non-blocking connection).
#include <custom_cache_page/backends/redis_backend.hpp>

#include "../support/awaited_backend.hpp"
#include "../support/redis_server.hpp"

#include <atomic>

namespace {

namespace ccp = custom_cache_page;

struct redis_store {
  static constexpr char const* name = "redis";
  static ccp::any_backend make(std::string const& test) {
    static std::atomic<int> made{0};
    ccp::redis_options o;
    o.port = ccp_test::redis_server::shared().port();
    o.prefix = "ccpt:conformance:" + test + ":" + std::to_string(made++) + ":";
    return ccp::any_backend(std::make_shared<ccp::redis_backend>(o));
  }
};

struct redis_store_awaited {
  static constexpr char const* name = "redis, awaitable";
  static ccp::any_backend make(std::string const& test) {
    return ccp::any_backend(std::make_shared<ccp_test::awaited_backend>(redis_store::make(test)));
  }
};

} // namespace

#define CCP_CONFORMANCE_STORES redis_store, redis_store_awaited
#include "../support/store_conformance.hpp"
