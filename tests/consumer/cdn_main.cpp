#include "cdn_plugin.hpp"

#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>

#include <iostream>

int main() {
  namespace ccp = custom_cache_page;
  ccp::registry r;
  ccp::enable_cdn(r);
  ccp::configure(r, R"({"DEFAULT_BACKEND": "main",
                        "BACKENDS": {"main": {"BACKEND": "composite://memory,varnish"}}})");
  std::cout << "custom_cache_page::cdn found; default backend '" << r.default_name() << "'\n";

  // The same JSON configuration, parsed inside the shared library.
  auto const from_plugin = cdn_plugin_configure(R"({"DEFAULT_BACKEND": "edge",
                        "BACKENDS": {"edge": {"BACKEND": "composite://memory,varnish"}}})");
  std::cout << "cdn_plugin (shared library): default backend '" << from_plugin << "'\n";
  if (r.default_name() != "main" || from_plugin != "edge") {
    std::cerr << "unexpected default backend\n";
    return 1;
  }
  return 0;
}
