// The store conformance suite (tests/support/store_conformance.hpp) over
// redis_backend and a real redis-server, each test under a prefix of its own.
#include <custom_cache_page/backends/redis_backend.hpp>

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

} // namespace

#define CCP_CONFORMANCE_STORES redis_store
#include "../support/store_conformance.hpp"
