// Umbrella header: the core and the in-memory backend. The Redis component
// is opt-in (custom_cache_page/redis.hpp) so the core never needs hiredis.
#pragma once

#include <custom_cache_page/version.hpp>
