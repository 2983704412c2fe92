// redis_backend: pages, tag counters and the surrogate index in Redis
// (key layout in detail/redis_scripts.hpp; nothing outside the prefix is
// read or written): the store primitives of redis_store under protocol_store.
// Requires Redis 7.0 or later (SET NX GET, EXPIRE GT).
//
// | primitive     | Redis                                                         | round trips |
// |---------------|---------------------------------------------------------------|-------------|
// | read          | MGET page pass tagv:t1..tn tagf:t1..tn                        | 1 (*)       |
// | read_counters | MGET tagv:t1..tn tagf:t1..tn                                  | 1           |
// | write_if      | one script: compare every counter, create the missing ones a  | 1           |
// |               | fill proposed, SET PX, index plain tags                       |             |
// | bump          | one script: bump (floor kept for soft), and when hard the     | 1           |
// |               | first drain step (ZPOPMIN + UNLINK of `drain_batch` members)  |             |
// | drain         | one such step per call while steps come back full             | 1 each      |
// | erase         | UNLINK page                                                   | 1           |
// | fill lock     | a script: SET lock NX PX, or note a waiter; released by a     | 1 + 1       |
// |               | token-checked script                                          |             |
// | mark_pass     | a script: SET pass PX when a waiter was noted (read with the  | 1           |
// |               | page)                                                         |             |
//
// A coalesced miss through cache_page is then lookup, lock, re-read, store,
// unlock: five round trips, against the handler it saves other processes.
// Two first fills that race on a shared tag's counter cost the second one
// a read and a second write (it adopts the counter, see protocol_store).
//
// (*) An entry that carries tags its handler added (fill_context::add_tag)
// needs their counters too, which a request does not name: such a read
// fetches them in a second MGET.
//
// Failures throw cache_error(store_unavailable); cache_page then answers
// from the handler. A circuit breaker makes an unreachable Redis fail fast
// and lets one probe through per cooldown, so caching resumes by itself.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/generations.hpp>
#include <custom_cache_page/detail/redis_client.hpp>
#include <custom_cache_page/detail/redis_options.hpp>
#include <custom_cache_page/detail/redis_scripts.hpp>
#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/indexes/redis_index.hpp>
#include <custom_cache_page/store_primitives.hpp>
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

// The store primitives (store_primitives.hpp) in Redis.
class redis_store {
public:
  using clock = cached_response::clock;

  explicit redis_store(redis_options options)
      : client_(std::make_shared<detail::redis_client>(std::move(options))), keys_{client_->options().prefix} {}

  // MGET page, then each name's counter and floor: one trip; a second one
  // only for tags the entry recorded that `names` does not hold.
  stored_read read(std::string const& key, std::span<std::string_view const> names) {
    auto reply = mget("redis lookup (MGET)", key, names);
    stored_read out{nullptr, counters_from(reply.get(), 2, names.size())};
    out.passed = reply->element[1]->type == REDIS_REPLY_STRING;
    redisReply const* page = reply->element[0];
    if (page->type != REDIS_REPLY_STRING) return out;
    auto entry = decode_entry(detail::reply_string(page));
    if (!entry) {
      client_->counters().corrupt_entries.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
    if (entry->retain_until() <= clock::now()) return out;
    out.entry = std::make_shared<cached_response const>(std::move(*entry));
    append_entry_counters(out, names);
    return out;
  }

  std::vector<counter_reading> read_counters(std::span<std::string_view const> names) {
    if (names.empty()) return {};
    auto reply = mget("redis counters (MGET)", std::nullopt, names);
    return counters_from(reply.get(), 0, names.size());
  }

  bool write_if(std::string const& key, std::shared_ptr<cached_response const> entry,
                std::span<write_condition const> conditions) {
    auto const ttl = std::chrono::duration_cast<std::chrono::milliseconds>(entry->retain_until() - clock::now()).count();
    if (ttl <= 0) return true; // expired already: nothing to keep, nothing refused
    std::string value = encode_entry(*entry);
    if (value.size() > client_->options().max_entry)
      throw cache_error(error::entry_too_large, fmt::format("entry of {} bytes exceeds the redis backend's max_entry of {}",
                                                            value.size(), client_->options().max_entry));
    auto a = detail::redis_connection::script_args();
    a.add(keys_.page(key));
    for (auto const& c : conditions) a.add(keys_.counter(c.name));
    std::size_t numkeys = 1 + conditions.size();
    for (auto const& c : conditions)
      if (c.indexed) {
        a.add(keys_.index(c.name));
        ++numkeys;
      }
    a.add(conditions.size());
    for (auto const& c : conditions) a.add(c.expected);
    for (auto const& c : conditions) a.view(c.create ? "1" : "0");
    a.add(std::move(value)).add(ttl).view(key).add(detail::redis_prune_budget);
    return client_->run("redis write_if (EVALSHA)", [&](detail::redis_connection& c) {
      auto r = c.eval(detail::redis_write_if_script(), numkeys, a);
      if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_error("redis write_if (EVALSHA)", c.context(), r.get());
      return r->integer == 1;
    });
  }

  // One script: the bump and, when hard, the first drain step.
  bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    auto const batch = client_->options().drain_batch;
    return client_->run("redis invalidate (EVALSHA)", [&](detail::redis_connection& c) {
      auto a = detail::redis_connection::script_args();
      a.add(keys_.counter(name)).add(keys_.index(name)).add(keys_.floor(name)).add(start);
      a.add(static_cast<long long>(ttl.count())).add(batch).add(keys_.page_prefix()).view(hard ? "hard" : "soft");
      auto r = c.eval(detail::redis_invalidate_script(), 3, a);
      bump_result out;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
          r->element[2]->type != REDIS_REPLY_INTEGER || (out.value = parse_counter(r->element[0])) == 0)
        throw detail::redis_error("redis invalidate (EVALSHA)", c.context(), r.get());
      out.drained = {static_cast<std::size_t>(r->element[2]->integer), static_cast<std::size_t>(r->element[1]->integer) >= batch};
      return out;
    });
  }

  // A step pops `drain_batch` members and unlinks their pages; a step that
  // found fewer is the last (members added since belong to fills that
  // began after the bump, which are valid).
  drain_step drain(std::string const& name) {
    auto const batch = client_->options().drain_batch;
    return client_->run("redis drain (EVALSHA)", [&](detail::redis_connection& c) {
      auto const r = detail::redis_drain_step(c, keys_, name, batch, true);
      return drain_step{r.pages_removed, r.popped >= batch};
    });
  }

  bool erase(std::string const& key) {
    detail::redis_args a{"UNLINK"};
    a.add(keys_.page(key));
    return client_->run("redis erase (UNLINK)", [&](detail::redis_connection& c) {
      return c.checked("redis erase (UNLINK)", a, REDIS_REPLY_INTEGER)->integer > 0;
    });
  }

  // Fill locks (SET NX PX, released by a token-checked script), so that of
  // several processes one refreshes a key while the others wait and re-read.
  // A process that finds the lock held is noted as waiting (see mark_pass).
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    auto a = detail::redis_connection::script_args();
    a.add(keys_.lock(key)).add(keys_.waiters(key)).view(token).add(std::max<std::int64_t>(1, ttl.count()));
    return client_->run("redis fill lock (EVALSHA)", [&](detail::redis_connection& c) -> std::optional<std::string> {
      auto r = c.eval(detail::redis_lock_script(), 2, a);
      if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_error("redis fill lock (EVALSHA)", c.context(), r.get());
      if (r->integer == 0) return std::nullopt;
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

  // Only when another process waited for this fill: a response nobody
  // waits for leaves nothing in Redis.
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.pass(key)).add(keys_.waiters(key)).add(std::max<std::int64_t>(1, ttl.count()));
    client_->run("redis pass marker (EVALSHA)", [&](detail::redis_connection& c) {
      auto r = c.eval(detail::redis_pass_script(), 2, a);
      if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_error("redis pass marker (EVALSHA)", c.context(), r.get());
      return r->integer == 1;
    });
  }

  std::shared_ptr<detail::redis_client> const& client() const { return client_; }
  detail::redis_keys const& keys() const { return keys_; }

private:
  // MGET [page pass] counter... floor... for `names`.
  detail::redis_reply_ptr mget(char const* what, std::optional<std::string_view> key, std::span<std::string_view const> names) {
    detail::redis_args a{"MGET"};
    if (key) a.add(keys_.page(*key)).add(keys_.pass(*key));
    for (auto const n : names) a.add(keys_.counter(n));
    for (auto const n : names) a.add(keys_.floor(n));
    std::size_t const expected = (key ? 2 : 0) + 2 * names.size();
    return client_->run(what, [&](detail::redis_connection& c) {
      auto r = c.checked(what, a, REDIS_REPLY_ARRAY);
      if (r->elements != expected) throw detail::redis_error(what, c.context(), r.get());
      return r;
    });
  }

  // n counters from `first`, their floors after them. A missing floor is
  // the counter itself: only a soft purge leaves one.
  static std::vector<counter_reading> counters_from(redisReply const* r, std::size_t first, std::size_t n) {
    std::vector<counter_reading> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto const v = parse_counter(r->element[first + i]);
      auto const f = parse_counter(r->element[first + n + i]);
      out.push_back({v, f == 0 ? v : f});
    }
    return out;
  }

  // The counters of the entry's tags, in its order: from those read with
  // the page when named, the others in one more trip.
  void append_entry_counters(stored_read& out, std::span<std::string_view const> names) {
    std::vector<std::string_view> unnamed;
    for (auto const& t : out.entry->tags)
      if (std::find(names.begin(), names.end(), t.name) == names.end()) unnamed.emplace_back(t.name);
    auto const extra = read_counters(unnamed);
    std::size_t next = 0;
    for (auto const& t : out.entry->tags) {
      auto it = std::find(names.begin(), names.end(), t.name);
      out.counters.push_back(it != names.end() ? out.counters[static_cast<std::size_t>(it - names.begin())] : extra[next++]);
    }
  }

  // A counter reply: nil or anything but a decimal number reads as 0 (no
  // counter), which no entry records.
  static std::uint64_t parse_counter(redisReply const* r) {
    if (r->type != REDIS_REPLY_STRING) return 0;
    auto const s = detail::reply_string(r);
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size() ? v : 0;
  }

  std::shared_ptr<detail::redis_client> client_;
  detail::redis_keys keys_;
};

// The Redis backend: the invalidation protocol (protocol_store) over
// redis_store.
class redis_backend : public protocol_store<redis_store> {
public:
  explicit redis_backend(redis_options options = {})
      : protocol_store<redis_store>(std::make_shared<redis_store>(std::move(options))) {}
  explicit redis_backend(std::string_view url) : redis_backend(parse_redis_url(url)) {}

  // The same index this backend keeps, over the same connections.
  redis_surrogate_index index() const { return redis_surrogate_index(client()); }
  redis_stats stats() const { return client()->stats(); }
  redis_options const& options() const { return client()->options(); }
  bool breaker_open() const { return client()->breaker_open(); }
  std::size_t open_connections() const { return client()->open_connections(); }

  // Where the entry under `key` lives, for tools and tests.
  std::string page_key(std::string_view key) const { return primitives().keys().page(key); }
  std::string counter_key(std::string_view tag) const { return primitives().keys().counter(tag); }
  std::string index_key(std::string_view tag) const { return primitives().keys().index(tag); }

private:
  std::shared_ptr<detail::redis_client> const& client() const { return primitives().client(); }
};

static_assert(store_primitives<redis_store>);
static_assert(store_backend<redis_backend>);
static_assert(fill_locking<redis_backend> && pass_marking<redis_backend>);

} // namespace custom_cache_page
