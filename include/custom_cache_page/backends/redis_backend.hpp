// redis_backend: pages, tag counters and the surrogate index in Redis
// (key layout in detail/redis_scripts.hpp; nothing outside the prefix is
// read or written). Requires Redis 7.0 or later (SET NX GET, EXPIRE GT).
//
// | operation      | Redis                                                        | round trips |
// |----------------|--------------------------------------------------------------|-------------|
// | lookup         | MGET page tagv:t1..tn                                        | 1 (*)       |
// | tag_versions   | pipeline of SET tagv NX GET EX + EXPIRE GT per tag (GET for  | 1           |
// |                | a guard tag, which only invalidation creates)                |             |
// | store          | one script: compare every counter, SET PX, index plain tags  | 1           |
// | erase          | UNLINK page                                                  | 1           |
// | invalidate_tag | one script: bump, first drain step (ZPOPMIN + UNLINK of      | 1 per       |
// |                | `drain_batch` members); further steps while members remain   | drain_batch |
// | fill lock      | SET lock NX PX; released by a token-checked script           | 1 + 1       |
//
// A coalesced miss through cache_page is then lookup, lock, re-read, store,
// unlock: five round trips, against the handler it saves other processes.
//
// (*) An entry that carries tags its handler added (fill_context::add_tag)
// needs their counters too, which a request does not name, and a tag
// bumped since the entry was built needs its soft-purge floor: such a
// lookup reads them in a second MGET.
//
// Failures throw cache_error(store_unavailable); cache_page then answers
// from the handler. A circuit breaker makes an unreachable Redis fail fast
// and lets one probe through per cooldown, so caching resumes by itself.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/backends/memory_backend.hpp>
#include <custom_cache_page/detail/generations.hpp>
#include <custom_cache_page/detail/redis_client.hpp>
#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/detail/redis_scripts.hpp>
#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/indexes/redis_index.hpp>
#include <custom_cache_page/tags.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

class redis_backend {
public:
  using clock = cached_response::clock;

  explicit redis_backend(redis_options options = {})
      : client_(std::make_shared<detail::redis_client>(std::move(options))), keys_{client_->options().prefix} {}
  explicit redis_backend(std::string_view url) : redis_backend(parse_redis_url(url)) {}

  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) {
    detail::redis_args a{"MGET"};
    a.add(keys_.page(key));
    for (auto const& t : tags) a.add(keys_.counter(t.name));
    auto reply = client_->run("redis lookup (MGET)", [&](detail::redis_connection& c) {
      auto r = c.checked("redis lookup (MGET)", a, REDIS_REPLY_ARRAY);
      if (r->elements != tags.size() + 1) throw detail::redis_error("redis lookup (MGET)", c.context(), r.get());
      return r;
    });

    lookup_result out;
    out.versions.reserve(tags.size());
    for (std::size_t i = 0; i < tags.size(); ++i) out.versions.push_back(parse_counter(reply->element[i + 1]));
    redisReply const* page = reply->element[0];
    if (page->type != REDIS_REPLY_STRING) return out;
    auto entry = decode_entry(detail::reply_string(page));
    if (!entry) {
      client_->counters().corrupt_entries.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
    if (entry->retain_until() <= clock::now()) return out;

    // Every tag the entry recorded must still be at its version, or have
    // moved on by soft purges alone (then the entry is stale).
    std::vector<tag_version const*> unnamed;
    std::vector<tag_version const*> behind;
    for (auto const& t : entry->tags) {
      auto it = std::find_if(tags.begin(), tags.end(), [&](resolved_tag const& r) { return r.name == t.name; });
      if (it == tags.end()) {
        unnamed.push_back(&t);
        continue;
      }
      auto const now_at = out.versions[static_cast<std::size_t>(it - tags.begin())];
      if (now_at == t.version) continue;
      if (now_at == 0 || t.version > now_at) return out;
      behind.push_back(&t);
    }
    if (!unnamed.empty() || !behind.empty()) {
      auto state = settle(unnamed, behind);
      if (!state) return out;
      out.soft_purged = *state;
    }
    out.entry = std::make_shared<cached_response const>(std::move(*entry));
    return out;
  }

  // Reads only (one MGET): a missing counter gives its proposed generation
  // (or 0 for a guard), which the store script creates if the entry is kept.
  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    std::vector<std::uint64_t> out;
    if (tags.empty()) return out;
    detail::redis_args a{"MGET"};
    for (auto const& t : tags) a.add(keys_.counter(t.name));
    auto reply = client_->run("redis tag versions (MGET)", [&](detail::redis_connection& c) {
      auto r = c.checked("redis tag versions (MGET)", a, REDIS_REPLY_ARRAY);
      if (r->elements != tags.size()) throw detail::redis_error("redis tag versions (MGET)", c.context(), r.get());
      return r;
    });
    out.reserve(tags.size());
    for (std::size_t i = 0; i < tags.size(); ++i) {
      auto const v = parse_counter(reply->element[i]);
      out.push_back(v != 0 || tags[i].guard ? v : detail::proposed_generation());
    }
    return out;
  }

  // One script run; a second one only when another first fill created a
  // counter this entry proposed a value for (it then adopts that value, see
  // detail/generations.hpp).
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    auto const ttl = std::chrono::duration_cast<std::chrono::milliseconds>(entry->retain_until() - clock::now()).count();
    if (ttl <= 0) return true; // expired already: nothing to keep, nothing refused
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto const outcome = store_once(key, *entry, ttl);
      if (!outcome) return false;
      if (outcome->empty()) return true;
      entry = detail::with_versions(*entry, *outcome);
    }
    return false;
  }

  bool erase(std::string const& key) {
    detail::redis_args a{"UNLINK"};
    a.add(keys_.page(key));
    return client_->run("redis erase (UNLINK)", [&](detail::redis_connection& c) {
      return c.checked("redis erase (UNLINK)", a, REDIS_REPLY_INTEGER)->integer > 0;
    });
  }

  // Bumps the counter first, so that any fill whose snapshot predates this
  // call is refused by the store script; then drains the index in short
  // steps (the first one in the same script). A key stored meanwhile is
  // either drained or still indexed.
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    invalidation_result result;
    result.tag = tag;
    result.mode = mode;
    auto const lifetime = std::to_string(default_version_ttl.count());
    auto const batch = client_->options().drain_batch;
    return client_->run("redis invalidate", [&](detail::redis_connection& c) {
      auto a = detail::redis_connection::script_args();
      a.add(keys_.counter(tag)).add(keys_.index(tag)).add(keys_.floor(tag)).add(detail::fresh_generation());
      a.view(lifetime).add(batch).add(keys_.page_prefix()).view(mode == purge_mode::soft ? "soft" : "hard");
      auto r = c.eval(detail::redis_invalidate_script(), 3, a);
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
          r->element[2]->type != REDIS_REPLY_INTEGER || (result.version = parse_counter(r->element[0])) == 0)
        throw detail::redis_error("redis invalidate (EVALSHA)", c.context(), r.get());
      result.entries_removed = static_cast<std::size_t>(r->element[2]->integer);
      if (mode == purge_mode::hard && static_cast<std::size_t>(r->element[1]->integer) >= batch)
        result.entries_removed += detail::redis_drain_index(c, keys_, tag, batch, true).pages_removed;
      return result;
    });
  }


  // Fill locks (SET NX PX, released by a token-checked script), so that of
  // several processes one refreshes a key while the others wait and re-read.
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    detail::redis_args a{"SET"};
    a.add(keys_.lock(key)).view(token).view("NX").view("PX").add(std::max<std::int64_t>(1, ttl.count()));
    return client_->run("redis fill lock (SET NX PX)", [&](detail::redis_connection& c) -> std::optional<std::string> {
      auto r = c.call("redis fill lock (SET NX PX)", a);
      if (r->type == REDIS_REPLY_NIL) return std::nullopt;
      if (r->type != REDIS_REPLY_STATUS) throw detail::redis_error("redis fill lock (SET NX PX)", c.context(), r.get());
      return token;
    });
  }
  void release_fill_lock(std::string const& key, std::string const& token) {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.lock(key)).view(token);
    client_->run("redis fill unlock (EVALSHA)", [&](detail::redis_connection& c) {
      auto r = c.eval(detail::redis_unlock_script(), 1, a);
      if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_error("redis fill unlock (EVALSHA)", c.context(), r.get());
      return r->integer == 1;
    });
  }

  // The same index this backend keeps, over the same connections.
  redis_surrogate_index index() const { return redis_surrogate_index(client_); }
  redis_stats stats() const { return client_->stats(); }
  redis_options const& options() const { return client_->options(); }
  bool breaker_open() const { return client_->breaker_open(); }
  std::size_t open_connections() const { return client_->open_connections(); }

  // Where the entry under `key` lives, for tools and tests.
  std::string page_key(std::string_view key) const { return keys_.page(key); }
  std::string counter_key(std::string_view tag) const { return keys_.counter(tag); }
  std::string index_key(std::string_view tag) const { return keys_.index(tag); }

private:
  // Runs the store script: stored (an empty vector), refused (nothing), or
  // the versions, one per entry tag, to adopt before trying again.
  std::optional<std::vector<std::uint64_t>> store_once(std::string const& key, cached_response const& entry, long long ttl) {
    std::string value = encode_entry(entry);
    if (value.size() > client_->options().max_entry)
      throw cache_error(error::entry_too_large, fmt::format("entry of {} bytes exceeds the redis backend's max_entry of {}",
                                                            value.size(), client_->options().max_entry));
    // Counters of ordinary tags first, then those of guard tags, whose
    // missing counter reads 0 (see the store script).
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < entry.tags.size(); ++i)
      if (!entry.tags[i].guard) order.push_back(i);
    std::size_t const guards = entry.tags.size() - order.size();
    for (std::size_t i = 0; i < entry.tags.size(); ++i)
      if (entry.tags[i].guard) order.push_back(i);

    auto a = detail::redis_connection::script_args();
    a.add(keys_.page(key));
    for (auto i : order) a.add(keys_.counter(entry.tags[i].name));
    std::size_t numkeys = 1 + order.size();
    for (auto const& t : entry.tags)
      if (indexed(t)) {
        a.add(keys_.index(t.name));
        ++numkeys;
      }
    a.add(order.size()).add(guards);
    for (auto i : order) a.add(entry.tags[i].version);
    a.add(std::move(value)).add(ttl).view(key).add(detail::redis_prune_budget);

    return client_->run("redis store (EVALSHA)", [&](detail::redis_connection& c) -> std::optional<std::vector<std::uint64_t>> {
      auto r = c.eval(detail::redis_store_script(), numkeys, a);
      if (r->type == REDIS_REPLY_INTEGER) return r->integer == 1 ? std::optional(std::vector<std::uint64_t>{}) : std::nullopt;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != order.size())
        throw detail::redis_error("redis store (EVALSHA)", c.context(), r.get());
      std::vector<std::uint64_t> adopted(entry.tags.size());
      for (std::size_t k = 0; k < order.size(); ++k) adopted[order[k]] = parse_counter(r->element[k]);
      return adopted;
    });
  }

  // Versioned tags and guards need no index: their counter alone
  // invalidates, in O(1).
  static bool indexed(tag_version const& t) { return !t.versioned && !t.guard; }

  // A counter reply: nil or anything but a decimal number reads as 0 (no
  // counter), which no entry records.
  static std::uint64_t parse_counter(redisReply const* r) {
    if (r->type != REDIS_REPLY_STRING) return 0;
    auto const s = detail::reply_string(r);
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size() ? v : 0;
  }

  // One more trip for what the first did not read: the counters of the
  // tags a request did not name (its handler added them), and the floors
  // of tags whose counter moved on. Nothing when the entry is gone; else
  // whether it is only stale (soft-purged).
  std::optional<bool> settle(std::vector<tag_version const*> const& unnamed, std::vector<tag_version const*> const& behind) {
    detail::redis_args a{"MGET"};
    for (auto const* t : unnamed) a.add(keys_.counter(t->name));
    for (auto const* t : unnamed) a.add(keys_.floor(t->name));
    for (auto const* t : behind) a.add(keys_.floor(t->name));
    auto const n = 2 * unnamed.size() + behind.size();
    auto reply = client_->run("redis lookup (MGET counters, floors)", [&](detail::redis_connection& c) {
      auto r = c.checked("redis lookup (MGET counters, floors)", a, REDIS_REPLY_ARRAY);
      if (r->elements != n) throw detail::redis_error("redis lookup (MGET counters, floors)", c.context(), r.get());
      return r;
    });
    // A missing floor is the counter itself: only a soft purge leaves one.
    auto floor_at = [&](std::size_t i) {
      auto f = parse_counter(reply->element[i]);
      return f == 0 ? std::numeric_limits<std::uint64_t>::max() : f;
    };
    bool stale = false;
    for (std::size_t i = 0; i < unnamed.size(); ++i) {
      auto const current = parse_counter(reply->element[i]);
      auto const version = unnamed[i]->version;
      if (current == version) continue;
      if (current == 0 || version > current || version < floor_at(unnamed.size() + i)) return std::nullopt;
      stale = true;
    }
    for (std::size_t i = 0; i < behind.size(); ++i) {
      if (behind[i]->version < floor_at(2 * unnamed.size() + i)) return std::nullopt;
      stale = true;
    }
    return stale;
  }

  std::shared_ptr<detail::redis_client> client_;
  detail::redis_keys keys_;
};

static_assert(store_backend<redis_backend>);
static_assert(fill_locking<redis_backend>);

} // namespace custom_cache_page
