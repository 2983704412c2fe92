#include <custom_cache_page/custom_cache_page.hpp>

#include <iostream>

int main() {
  std::cout << "custom_cache_page " << custom_cache_page::version_string << " found\n";
  return 0;
}
