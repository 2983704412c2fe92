#include "cdn_plugin.hpp"

#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>

std::string cdn_plugin_configure(std::string const& json_text) {
  namespace ccp = custom_cache_page;
  ccp::registry r;
  ccp::enable_cdn(r);
  ccp::configure(r, json_text);
  return r.default_name();
}
