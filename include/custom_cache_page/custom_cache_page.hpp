// Umbrella header: the core and the in-memory backend. The Redis component
// is opt-in (custom_cache_page/redis.hpp) so the core never needs hiredis.
#pragma once

#include <custom_cache_page/version.hpp>

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/cache_options.hpp>
#include <custom_cache_page/cache_page.hpp>
#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/fill_context.hpp>
#include <custom_cache_page/freshness.hpp>
#include <custom_cache_page/indexes/memory_index.hpp>
#include <custom_cache_page/indexes/null_index.hpp>
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/pending_invalidations.hpp>
#include <custom_cache_page/registry.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/stats.hpp>
#include <custom_cache_page/surrogate_index.hpp>
#include <custom_cache_page/surrogates.hpp>
#include <custom_cache_page/tags.hpp>
#include <custom_cache_page/versioned.hpp>
