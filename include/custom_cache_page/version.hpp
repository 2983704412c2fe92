// The single source of the library version; CMake reads it from here.
#pragma once

#define CUSTOM_CACHE_PAGE_VERSION_MAJOR 0
#define CUSTOM_CACHE_PAGE_VERSION_MINOR 1
#define CUSTOM_CACHE_PAGE_VERSION_PATCH 0

#define CUSTOM_CACHE_PAGE_VERSION                                                                  \
  (CUSTOM_CACHE_PAGE_VERSION_MAJOR * 10000 + CUSTOM_CACHE_PAGE_VERSION_MINOR * 100 +                \
   CUSTOM_CACHE_PAGE_VERSION_PATCH)

namespace custom_cache_page {
inline constexpr char const* version_string = "0.1.0";
} // namespace custom_cache_page
