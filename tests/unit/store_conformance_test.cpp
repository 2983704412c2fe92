// The store conformance suite (tests/support/store_conformance.hpp) over
// the memory backend, the map_store exemplar through protocol_store, and a
// composite of a memory store and a CDN backend.
#include <custom_cache_page/backends/composite_backend.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/store_primitives.hpp>

#include "../support/map_store.hpp"

namespace {

namespace ccp = custom_cache_page;

// A CDN backend that purges nothing anywhere: the composite's other member.
struct quiet_cdn {
  ccp::invalidation_result invalidate_tag(std::string const& tag, ccp::purge_mode mode) {
    ccp::invalidation_result r;
    r.tag = tag;
    r.mode = mode;
    return r;
  }
  void prepare_response(boost::beast::http::fields&, std::span<std::string_view const>) {}
};

struct memory_store {
  static constexpr char const* name = "memory";
  static ccp::any_backend make(std::string const&) { return ccp::any_backend(std::make_shared<ccp::memory_backend>()); }
};

struct exemplar_store {
  static constexpr char const* name = "map_store";
  static ccp::any_backend make(std::string const&) {
    return ccp::any_backend(std::make_shared<ccp::protocol_store<ccp_test::map_store>>(std::make_shared<ccp_test::map_store>()));
  }
};

struct composite_store {
  static constexpr char const* name = "composite";
  static ccp::any_backend make(std::string const& test) {
    return ccp::any_backend(std::make_shared<ccp::composite_backend>(std::vector<ccp::composite_member>{
        {"memory", memory_store::make(test)}, {"cdn", ccp::any_backend(std::make_shared<quiet_cdn>())}}));
  }
};

} // namespace

#define CCP_CONFORMANCE_STORES memory_store, exemplar_store, composite_store
#include "../support/store_conformance.hpp"

// The concept says what a store must offer: a type missing one primitive
// is not a store.
struct store_without_drain {
  ccp::stored_read read(std::string const&, std::span<std::string_view const>);
  std::vector<ccp::counter_reading> read_counters(std::span<std::string_view const>);
  bool write_if(std::string const&, std::shared_ptr<ccp::cached_response const>, std::span<ccp::write_condition const>);
  ccp::bump_result bump(std::string const&, bool, std::uint64_t, std::chrono::seconds);
  bool erase(std::string const&);
};
static_assert(!ccp::store_primitives<store_without_drain>);
static_assert(ccp::store_primitives<ccp_test::map_store>);
