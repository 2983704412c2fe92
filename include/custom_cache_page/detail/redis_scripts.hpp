// The Redis key layout and the server-side logic of the Redis component,
// in one place for redis_backend and redis_surrogate_index:
//
//   <prefix>page:<storage key>   the entry (encode_entry bytes), PX its TTL
//   <prefix>tagv:<tag>           the tag's counter (decimal), EX its lifetime
//   <prefix>lock:<storage key>   a fill lock: the holder's random token, PX
//                                its hold time
//   <prefix>lockw:<storage key>  set when a process found the fill lock held
//                                (someone waits for this fill), PX the lock's
//   <prefix>pass:<storage key>   a pass marker: the fill that others waited
//                                for found the response not storable, PX a
//                                short time. Only a waited-for fill leaves
//                                one, so requests nobody waits on write
//                                nothing
//   <prefix>tagf:<tag>           after a soft purge: the counter value at the
//                                last hard invalidation (entries built at or
//                                after it are stale, not gone); absent, the
//                                floor is the counter itself
//   <prefix>tagidx:<tag>         the surrogate index of a plain tag: a sorted
//                                set of storage keys scored by their entry's
//                                expiry (ms, Redis clock); it expires with
//                                its last member
//
// Scores and expiries are computed inside the scripts from Redis's own
// clock (TIME) and the entry's remaining TTL, so page, index and pruning
// agree however far the client's clock is off. Counter values are compared
// and returned as strings: Lua numbers are doubles and generations go up
// to 2^62.
#pragma once

#include <custom_cache_page/detail/digest.hpp>
#include <custom_cache_page/detail/redis_connection.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page::detail {

struct redis_keys {
  std::string prefix;

  std::string page(std::string_view key) const { return join("page:", key); }
  std::string counter(std::string_view tag) const { return join("tagv:", tag); }
  std::string index(std::string_view tag) const { return join("tagidx:", tag); }
  std::string floor(std::string_view tag) const { return join("tagf:", tag); }
  std::string lock(std::string_view key) const { return join("lock:", key); }
  std::string pass(std::string_view key) const { return join("pass:", key); }
  std::string waiters(std::string_view key) const { return join("lockw:", key); }
  std::string page_prefix() const { return prefix + "page:"; }
  std::string index_prefix() const { return prefix + "tagidx:"; }

private:
  std::string join(std::string_view kind, std::string_view name) const {
    std::string k;
    k.reserve(prefix.size() + kind.size() + name.size());
    k.append(prefix).append(kind).append(name);
    return k;
  }
};

// Expired members removed from an index per addition, at most: bounded work
// inside a script, and still more than one per addition, so an index never
// grows beyond its live members plus a shrinking backlog.
inline constexpr std::size_t redis_prune_budget = 256;

inline EVP_MD const* sha1_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md;
}

inline redis_script make_redis_script(std::string_view name, std::string source) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  std::string sha = to_hex(buf, digest(sha1_md(), source, buf));
  return {name, std::move(source), std::move(sha)};
}

// Lua shared by the scripts below.
inline constexpr std::string_view redis_lua_library = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x) return string.format('%.0f', x) end
-- Whether a counter value (a decimal string past a double's precision) is
-- even: created by a store and never invalidated (detail/generations.hpp).
local function even(v) return tonumber(string.sub(v, -1)) % 2 == 0 end
-- Adds `member` to the sorted set `index` until now + ttl, prunes up to
-- `budget` expired members, and makes the set expire with its last member.
local function index_add(index, member, ttl, now, budget)
  redis.call('ZADD', index, int(now + ttl), member)
  local stale = redis.call('ZCOUNT', index, '-inf', '(' .. int(now))
  if stale > 0 then redis.call('ZREMRANGEBYRANK', index, 0, math.min(stale, budget) - 1) end
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, int(tonumber(last[2])))
end
)lua";

// Fill locks: taken (or a waiter noted) and released by token.
inline constexpr std::string_view redis_lua_fill_lock = R"lua(
local function take_lock(lock, waiters, token, ms)
  if redis.call('SET', lock, token, 'NX', 'PX', ms) then return true end
  redis.call('SET', waiters, '1', 'PX', ms)
  return false
end
local function release_lock(lock, token)
  if redis.call('GET', lock) == token then return redis.call('DEL', lock) end
  return 0
end
)lua";

// The conditional write (store_primitives.hpp): when every counter holds
// its expected value, or is missing and may be created, creates those at
// their expected values, keeps every counter at least as long as the page,
// stores the page and indexes it under its plain tags.
// KEYS: page, the n counters, then the indexes, then with a token the lock.
// ARGV: n, the n expected values, the n create flags ('1' or '0'), value,
// ttl ms, member, prune budget, and a fill lock's token or '': the lock,
// when the token still holds it, is released after the write either way.
// Returns 1 when stored, 0 when a condition failed.
inline redis_script const& redis_write_if_script() {
  static redis_script const s = make_redis_script("redis write_if (EVALSHA)", std::string(redis_lua_library) + std::string(redis_lua_fill_lock) + R"lua(
local n = tonumber(ARGV[1])
local token = ARGV[2 * n + 6]
local last = #KEYS
if token ~= '' then last = last - 1 end
local function write()
  for i = 1, n do
    local current = redis.call('GET', KEYS[i + 1])
    local create = ARGV[n + i + 1] == '1'
    if (current or '0') ~= ARGV[i + 1] and not (not current and create) then return 0 end
  end
  local ttl = tonumber(ARGV[2 * n + 3])
  for i = 1, n do
    if ARGV[n + i + 1] == '1' then redis.call('SET', KEYS[i + 1], ARGV[i + 1], 'NX', 'PX', ttl) end
    redis.call('PEXPIRE', KEYS[i + 1], ttl, 'GT')
  end
  redis.call('SET', KEYS[1], ARGV[2 * n + 2], 'PX', ttl)
  local now = now_ms()
  local budget = tonumber(ARGV[2 * n + 5])
  for i = n + 2, last do index_add(KEYS[i], ARGV[2 * n + 4], ttl, now, budget) end
  return 1
end
local stored = write()
if token ~= '' then release_lock(KEYS[#KEYS], token) end
return stored
)lua");
  return s;
}

// The index alone: KEYS: index; ARGV: member, ttl ms, prune budget.
inline redis_script const& redis_index_add_script() {
  static redis_script const s = make_redis_script("redis index add (EVALSHA)", std::string(redis_lua_library) + R"lua(
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), now_ms(), tonumber(ARGV[3]))
return 1
)lua");
  return s;
}

// One bounded step of draining an index: pops up to `batch` members and,
// in the same atomic step, unlinks their pages, so no page is ever left
// cached but unindexed by a drain. Returns {popped, pages removed} and,
// when asked, the popped members that have not expired.
inline constexpr std::string_view redis_lua_drain_step = R"lua(
local function drain_step(index, batch, page_prefix, want_live)
  local popped = redis.call('ZPOPMIN', index, batch)
  local removed = 0
  if page_prefix ~= '' and #popped > 0 then
    local pages = {}
    for i = 1, #popped, 2 do pages[#pages + 1] = page_prefix .. popped[i] end
    removed = redis.call('UNLINK', unpack(pages))
  end
  local out = {#popped / 2, removed}
  if want_live then
    local now = now_ms()
    for i = 1, #popped, 2 do
      if tonumber(popped[i + 1]) > now then out[#out + 1] = popped[i] end
    end
  end
  return out
end
)lua";

// Invalidates a tag: bumps its counter (a missing or unreadable one first
// starts at the fresh generation the client drew; at least `lifetime`
// seconds of expiry are kept). Hard: drops the floor and takes the first
// drain step, so that a tag without an index costs one round trip. Soft:
// keeps (or sets) the floor at the value before the bump and drains
// nothing. A fresh counter never gets a floor: nothing built before it is
// served, not even as stale.
// KEYS: counter, index, floor; ARGV: fresh generation, lifetime s, batch,
// page prefix, 'soft' or 'hard'.
// Returns {new counter value as a string, popped, pages removed}.
inline redis_script const& redis_invalidate_script() {
  static redis_script const s = make_redis_script(
      "redis invalidate (EVALSHA)", std::string(redis_lua_library) + std::string(redis_lua_drain_step) + R"lua(
local v = redis.call('GET', KEYS[1])
local fresh = not v or not tonumber(v)
if fresh then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if ARGV[5] == 'soft' and not fresh then
  redis.call('SET', KEYS[3], v, 'NX', 'EX', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2], 'GT')
else
  redis.call('DEL', KEYS[3])
end
redis.call('INCRBY', KEYS[1], even(redis.call('GET', KEYS[1])) and 1 or 2)
redis.call('EXPIRE', KEYS[1], ARGV[2], 'GT')
if ARGV[5] == 'soft' then return {redis.call('GET', KEYS[1]), 0, 0} end
local step = drain_step(KEYS[2], ARGV[3], ARGV[4], false)
return {redis.call('GET', KEYS[1]), step[1], step[2]}
)lua");
  return s;
}

// Takes a fill lock, or notes that a fill is waited for.
// KEYS: lock, waiters; ARGV: token, hold time ms. Returns 1 when taken.
inline redis_script const& redis_lock_script() {
  static redis_script const s = make_redis_script("redis fill lock (EVALSHA)", std::string(redis_lua_fill_lock) + R"lua(
return take_lock(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) and 1 or 0
)lua");
  return s;
}

// The fill lock as above and, when taken, the read under it (the MGET of
// redis_store::read): KEYS: lock, waiters, then the MGET's keys; ARGV:
// token, hold time ms. Returns {1, {MGET's reply}} when taken, else {0}.
inline redis_script const& redis_lock_read_script() {
  static redis_script const s = make_redis_script("redis fill lock and read (EVALSHA)", std::string(redis_lua_fill_lock) + R"lua(
if take_lock(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return {1, redis.call('MGET', unpack(KEYS, 3))} end
return {0}
)lua");
  return s;
}

// Leaves a pass marker if another process waited for this fill.
// KEYS: pass, waiters; ARGV: ttl ms. Returns 1 when marked.
inline redis_script const& redis_pass_script() {
  static redis_script const s = make_redis_script("redis pass marker (EVALSHA)", R"lua(
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
)lua");
  return s;
}

// Releases a fill lock if the caller's token still holds it (an expired
// lock may have passed to another process). KEYS: lock; ARGV: token.
inline redis_script const& redis_unlock_script() {
  static redis_script const s = make_redis_script("redis fill unlock (EVALSHA)", std::string(redis_lua_fill_lock) + R"lua(
return release_lock(KEYS[1], ARGV[1])
)lua");
  return s;
}

// Further drain steps. KEYS: index; ARGV: batch, page prefix ('' leaves
// pages alone), '1' to return the live members.
inline redis_script const& redis_drain_script() {
  static redis_script const s = make_redis_script(
      "redis drain (EVALSHA)", std::string(redis_lua_library) + std::string(redis_lua_drain_step) + R"lua(
return drain_step(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1')
)lua");
  return s;
}

struct redis_drain_result {
  std::size_t popped = 0;
  std::size_t pages_removed = 0;
};

// One drain step (redis_drain_script): its arguments, and its reply read.
inline redis_args redis_drain_args(redis_keys const& keys, std::string_view tag, std::size_t batch, bool unlink_pages,
                                   bool want_live) {
  auto a = redis_connection::script_args();
  a.add(keys.index(tag)).add(batch).add(unlink_pages ? keys.page_prefix() : std::string());
  a.view(want_live ? "1" : "0");
  return a;
}

inline redis_drain_result redis_drain_reply(redisReply const* reply, std::vector<std::string>* live_members) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 || reply->element[0]->type != REDIS_REPLY_INTEGER ||
      reply->element[1]->type != REDIS_REPLY_INTEGER)
    throw redis_reply_error(redis_drain_script().name, reply);
  if (live_members != nullptr)
    for (std::size_t i = 2; i < reply->elements; ++i) live_members->emplace_back(reply_string(reply->element[i]));
  return {static_cast<std::size_t>(reply->element[0]->integer), static_cast<std::size_t>(reply->element[1]->integer)};
}

inline redis_drain_result redis_drain_step(redis_connection& c, redis_keys const& keys, std::string_view tag,
                                           std::size_t batch, bool unlink_pages,
                                           std::vector<std::string>* live_members = nullptr) {
  auto a = redis_drain_args(keys, tag, batch, unlink_pages, live_members != nullptr);
  return redis_drain_reply(c.eval(redis_drain_script(), 1, a).get(), live_members);
}

// Empties `tag`'s index in steps of `batch`, each a short script, so other
// clients are served between steps. With `unlink_pages` the pages go with
// their members; with `live_members` the members still unexpired are
// collected. Stops when a step finds fewer than `batch` members: members
// added after that belong to fills that began after the caller's counter
// bump, which are valid.
inline redis_drain_result redis_drain_index(redis_connection& c, redis_keys const& keys, std::string_view tag,
                                            std::size_t batch, bool unlink_pages,
                                            std::vector<std::string>* live_members = nullptr) {
  redis_drain_result result;
  for (;;) {
    auto const step = redis_drain_step(c, keys, tag, batch, unlink_pages, live_members);
    result.popped += step.popped;
    result.pages_removed += step.pages_removed;
    if (step.popped < batch) return result;
  }
}

} // namespace custom_cache_page::detail
