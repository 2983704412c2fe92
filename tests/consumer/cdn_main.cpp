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
  return 0;
}
