#include <custom_cache_page/version.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("the version string matches the version macros", "[version]") {
  CHECK(std::string(custom_cache_page::version_string) ==
        std::to_string(CUSTOM_CACHE_PAGE_VERSION_MAJOR) + "." + std::to_string(CUSTOM_CACHE_PAGE_VERSION_MINOR) +
            "." + std::to_string(CUSTOM_CACHE_PAGE_VERSION_PATCH));
}
