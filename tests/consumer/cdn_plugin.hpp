// A shared library that links custom_cache_page::cdn, as a plugin would.
#pragma once

#include <string>

// Configures a registry of its own from a CUSTOM_CACHE_PAGE JSON document
// (Boost.JSON parsing, CDN schemes) and returns its default backend's name.
std::string cdn_plugin_configure(std::string const& json_text);
