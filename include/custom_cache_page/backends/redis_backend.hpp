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
// | lock_and_read | the lock script, then when taken read's MGET (*)              | 1           |
// | write_if with | write_if, then the token-checked release                      | 1           |
// | a token       |                                                               |             |
// | mark_pass     | a script: SET pass PX when a waiter was noted (read with the  | 1           |
// |               | page)                                                         |             |
//
// A coalesced miss through cache_page is then lookup, lock with the
// re-read, store with the unlock: three round trips, against the handler
// it saves other processes.
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
#include <custom_cache_page/detail/entry_signature.hpp>
#include <custom_cache_page/detail/generations.hpp>
#include <custom_cache_page/detail/redis_async_connection.hpp>
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

// The store primitives (store_primitives.hpp) in Redis. Each also comes as
// an awaitable (async_read, ...) on the non-blocking connection of the
// caller's io_context (detail/redis_async_connection.hpp): the same
// arguments, keys, scripts and replies, and the same circuit breaker.
class redis_store {
public:
  using clock = cached_response::clock;

  explicit redis_store(redis_options options)
      : client_(std::make_shared<detail::redis_client>(std::move(options))), keys_{client_->options().prefix} {
    if (!client_->options().hmac_key.empty()) signer_.emplace(client_->options().hmac_key);
  }

private:
  // (First: the primitives below use them.)
  static constexpr std::string_view read_what = "redis lookup (MGET)";
  static constexpr std::string_view counters_what = "redis counters (MGET)";
  static constexpr std::string_view erase_what = "redis erase (UNLINK)";

  // A command or script on a pooled blocking connection, through the breaker.
  template <class Parse>
  auto command(std::string_view what, detail::redis_args a, Parse parse) {
    return client_->run(what, [&](detail::redis_connection& c) { return parse(c.command(what, a).get()); });
  }
  template <class Parse>
  auto eval(detail::redis_script const& script, std::size_t numkeys, detail::redis_args a, Parse parse) {
    return client_->run(script.name, [&](detail::redis_connection& c) { return parse(c.eval(script, numkeys, a).get()); });
  }

  // The same on the non-blocking connection of the caller's io_context.
  template <class Parse>
  boost::asio::awaitable<std::invoke_result_t<Parse&, redisReply const*>> async_command(std::string_view what, detail::redis_args a,
                                                                                        Parse parse) {
    detail::redis_client::attempt attempt(*client_, what);
    auto conn = async_connection(co_await boost::asio::this_coro::executor);
    auto result = co_await conn->command(what, std::move(a), std::move(parse));
    attempt.succeeded();
    client_->count_round_trip();
    co_return result;
  }
  template <class Parse>
  boost::asio::awaitable<std::invoke_result_t<Parse&, redisReply const*>> async_eval(detail::redis_script const& script,
                                                                                     std::size_t numkeys, detail::redis_args a,
                                                                                     Parse parse) {
    detail::redis_client::attempt attempt(*client_, script.name);
    auto conn = async_connection(co_await boost::asio::this_coro::executor);
    auto result = co_await conn->eval(script, numkeys, std::move(a), std::move(parse));
    attempt.succeeded();
    client_->count_round_trip();
    co_return result;
  }
  std::shared_ptr<detail::redis_async_connection> async_connection(boost::asio::any_io_executor const& ex) const {
    return detail::redis_async_connections::get(ex, client_->id(), client_->options());
  }

  // MGET [page pass] counter... floor... for `names`.
  detail::redis_args mget_args(std::optional<std::string_view> key, std::span<std::string_view const> names) const {
    detail::redis_args a{"MGET"};
    add_read_keys(a, key, names);
    return a;
  }
  // What read() fetches: [page pass] counter... floor...
  void add_read_keys(detail::redis_args& a, std::optional<std::string_view> key, std::span<std::string_view const> names) const {
    if (key) a.add(keys_.page(*key)).add(keys_.pass(*key));
    for (auto const n : names) a.add(keys_.counter(n));
    for (auto const n : names) a.add(keys_.floor(n));
  }

  // The page decoded (a miss when it does not decode, counted, or has
  // expired) and the counters of `n` names; the entry's other counters
  // are still to be read.
  stored_read read_reply(redisReply const* r, std::size_t n, std::string_view key) const {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 + 2 * n) throw detail::redis_reply_error(read_what, r);
    stored_read out{nullptr, counters_from(r, 2, n)};
    out.passed = r->element[1]->type == REDIS_REPLY_STRING;
    redisReply const* page = r->element[0];
    if (page->type != REDIS_REPLY_STRING) return out;
    auto value = verified(detail::reply_string(page), key);
    if (!value) {
      client_->counters().unsigned_entries.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
    auto entry = decode_entry(*value);
    if (!entry) {
      client_->counters().corrupt_entries.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
    if (entry->retain_until() <= clock::now()) return out;
    out.entry = std::make_shared<cached_response const>(std::move(*entry));
    return out;
  }

  // The stored bytes once their signature is checked (when entries are signed).
  std::optional<std::string_view> verified(std::string_view value, std::string_view key) const {
    if (!signer_) return value;
    return signer_->verify(value, key);
  }

  static auto counters_reply(std::size_t n) {
    return [n](redisReply const* r) {
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * n) throw detail::redis_reply_error(counters_what, r);
      return counters_from(r, 0, n);
    };
  }

  // Nothing when the entry has expired already.
  // A non-empty `token` releases the fill lock in the same script.
  std::optional<detail::redis_args> write_if_args(std::string const& key, cached_response const& entry,
                                                  std::span<write_condition const> conditions, std::string const& token,
                                                  std::size_t& numkeys) const {
    auto const ttl = std::chrono::duration_cast<std::chrono::milliseconds>(entry.retain_until() - clock::now()).count();
    if (ttl <= 0) return std::nullopt;
    std::string value = encode_entry(entry);
    if (signer_) signer_->sign(value, key);
    if (value.size() > client_->options().max_entry)
      throw cache_error(error::entry_too_large, fmt::format("entry of {} bytes exceeds the redis backend's max_entry of {}",
                                                            value.size(), client_->options().max_entry));
    auto a = detail::redis_connection::script_args();
    a.add(keys_.page(key));
    for (auto const& c : conditions) a.add(keys_.counter(c.name));
    numkeys = 1 + conditions.size();
    for (auto const& c : conditions)
      if (c.indexed) {
        a.add(keys_.index(c.name));
        ++numkeys;
      }
    if (!token.empty()) {
      a.add(keys_.lock(key));
      ++numkeys;
    }
    a.add(conditions.size());
    for (auto const& c : conditions) a.add(c.expected);
    for (auto const& c : conditions) a.view(c.create ? "1" : "0");
    a.add(std::move(value)).add(ttl).add(key).add(detail::redis_prune_budget).add(token);
    return a;
  }

  detail::redis_args bump_args(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) const {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.counter(name)).add(keys_.index(name)).add(keys_.floor(name)).add(start);
    a.add(static_cast<long long>(ttl.count())).add(client_->options().drain_batch).add(keys_.page_prefix()).view(hard ? "hard" : "soft");
    return a;
  }

  auto bump_reply() const {
    return [batch = client_->options().drain_batch](redisReply const* r) {
      bump_result out;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
          r->element[2]->type != REDIS_REPLY_INTEGER || (out.value = parse_counter(r->element[0])) == 0)
        throw detail::redis_reply_error(detail::redis_invalidate_script().name, r);
      out.drained = {static_cast<std::size_t>(r->element[2]->integer), static_cast<std::size_t>(r->element[1]->integer) >= batch};
      return out;
    };
  }

  detail::redis_args drain_args(std::string const& name) const {
    return detail::redis_drain_args(keys_, name, client_->options().drain_batch, true, false);
  }
  auto drain_reply() const {
    return [batch = client_->options().drain_batch](redisReply const* r) {
      auto const step = detail::redis_drain_reply(r, nullptr);
      return drain_step{step.pages_removed, step.popped >= batch};
    };
  }

  detail::redis_args erase_args(std::string const& key) const {
    detail::redis_args a{"UNLINK"};
    a.add(keys_.page(key));
    return a;
  }

  detail::redis_args lock_args(std::string const& key, std::string const& token, std::chrono::milliseconds ttl) const {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.lock(key)).add(keys_.waiters(key)).add(token).add(std::max<std::int64_t>(1, ttl.count()));
    return a;
  }
  // The lock's keys, then the MGET's of read().
  detail::redis_args lock_read_args(std::string const& key, std::span<std::string_view const> names, std::string const& token,
                                    std::chrono::milliseconds ttl) const {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.lock(key)).add(keys_.waiters(key));
    add_read_keys(a, key, names);
    a.add(token).add(std::max<std::int64_t>(1, ttl.count()));
    return a;
  }
  auto lock_read_reply(std::string_view key, std::string token, std::size_t n) const {
    return [this, key, token = std::move(token), n](redisReply const* r) {
      if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER ||
          (r->element[0]->integer == 1) != (r->elements == 2))
        throw detail::redis_reply_error(detail::redis_lock_read_script().name, r);
      if (r->element[0]->integer != 1) return locked_read{};
      return locked_read{token, read_reply(r->element[1], n, key)};
    };
  }

  static auto lock_reply(std::string token) {
    return [token = std::move(token)](redisReply const* r) -> std::optional<std::string> {
      if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_reply_error(detail::redis_lock_script().name, r);
      if (r->integer == 0) return std::nullopt;
      return token;
    };
  }
  detail::redis_args unlock_args(std::string const& key, std::string const& token) const {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.lock(key)).add(token);
    return a;
  }
  detail::redis_args pass_args(std::string const& key, std::chrono::milliseconds ttl) const {
    auto a = detail::redis_connection::script_args();
    a.add(keys_.pass(key)).add(keys_.waiters(key)).add(std::max<std::int64_t>(1, ttl.count()));
    return a;
  }

  static bool integer_is_one(redisReply const* r) {
    if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_reply_error("redis script", r);
    return r->integer == 1;
  }
  static bool integer_positive(redisReply const* r) {
    if (r->type != REDIS_REPLY_INTEGER) throw detail::redis_reply_error(erase_what, r);
    return r->integer > 0;
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

  // The tags the entry recorded that `names` does not hold.
  static std::vector<std::string_view> unnamed_tags(stored_read const& out, std::span<std::string_view const> names) {
    std::vector<std::string_view> unnamed;
    for (auto const& t : out.entry->tags)
      if (std::find(names.begin(), names.end(), t.name) == names.end()) unnamed.emplace_back(t.name);
    return unnamed;
  }

  // The counters of the entry's tags, in its order: from those read with
  // the page when named, the others from `extra` (unnamed_tags' order).
  static void append_entry_counters(stored_read& out, std::span<std::string_view const> names,
                                    std::vector<counter_reading> const& extra) {
    std::size_t next = 0;
    for (auto const& t : out.entry->tags) {
      auto it = std::find(names.begin(), names.end(), t.name);
      out.counters.push_back(it != names.end() ? out.counters[static_cast<std::size_t>(it - names.begin())] : extra[next++]);
    }
  }

  // The counters of an entry's tags that `names` does not hold: a second trip.
  void complete(stored_read& out, std::span<std::string_view const> names) {
    if (out.entry) append_entry_counters(out, names, read_counters(unnamed_tags(out, names)));
  }
  boost::asio::awaitable<void> async_complete(stored_read& out, std::span<std::string_view const> names) {
    if (!out.entry) co_return;
    auto const unnamed = unnamed_tags(out, names);
    auto const extra = co_await async_read_counters(unnamed);
    append_entry_counters(out, names, extra);
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

public:

  // MGET page, then each name's counter and floor: one trip; a second one
  // only for tags the entry recorded that `names` does not hold.
  stored_read read(std::string const& key, std::span<std::string_view const> names) {
    auto out = command(read_what, mget_args(key, names), [&](redisReply const* r) { return read_reply(r, names.size(), key); });
    complete(out, names);
    return out;
  }
  boost::asio::awaitable<stored_read> async_read(std::string const& key, std::span<std::string_view const> names) {
    auto out = co_await async_command(read_what, mget_args(key, names), [&](redisReply const* r) { return read_reply(r, names.size(), key); });
    co_await async_complete(out, names);
    co_return out;
  }

  std::vector<counter_reading> read_counters(std::span<std::string_view const> names) {
    if (names.empty()) return {};
    return command(counters_what, mget_args(std::nullopt, names), counters_reply(names.size()));
  }
  boost::asio::awaitable<std::vector<counter_reading>> async_read_counters(std::span<std::string_view const> names) {
    if (names.empty()) co_return std::vector<counter_reading>{};
    co_return co_await async_command(counters_what, mget_args(std::nullopt, names), counters_reply(names.size()));
  }

  bool write_if(std::string const& key, std::shared_ptr<cached_response const> entry, std::span<write_condition const> conditions) {
    return write_if(key, std::move(entry), conditions, {});
  }
  boost::asio::awaitable<bool> async_write_if(std::string const& key, std::shared_ptr<cached_response const> entry,
                                              std::span<write_condition const> conditions) {
    co_return co_await async_write_if(key, std::move(entry), conditions, {});
  }
  // The same, releasing the fill lock `token` holds in the same script.
  bool write_if(std::string const& key, std::shared_ptr<cached_response const> entry, std::span<write_condition const> conditions,
                std::string const& token) {
    std::size_t numkeys = 0;
    auto a = write_if_args(key, *entry, conditions, token, numkeys);
    if (!a) { // expired already: nothing to keep, nothing refused
      if (!token.empty()) release_fill_lock(key, token);
      return true;
    }
    return eval(detail::redis_write_if_script(), numkeys, std::move(*a), integer_is_one);
  }
  boost::asio::awaitable<bool> async_write_if(std::string const& key, std::shared_ptr<cached_response const> entry,
                                              std::span<write_condition const> conditions, std::string const& token) {
    std::size_t numkeys = 0;
    auto a = write_if_args(key, *entry, conditions, token, numkeys);
    if (!a) {
      if (!token.empty()) co_await async_release_fill_lock(key, token);
      co_return true;
    }
    co_return co_await async_eval(detail::redis_write_if_script(), numkeys, std::move(*a), integer_is_one);
  }

  // One script: the bump and, when hard, the first drain step.
  bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    return eval(detail::redis_invalidate_script(), 3, bump_args(name, hard, start, ttl), bump_reply());
  }
  boost::asio::awaitable<bump_result> async_bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    co_return co_await async_eval(detail::redis_invalidate_script(), 3, bump_args(name, hard, start, ttl), bump_reply());
  }

  // A step pops `drain_batch` members and unlinks their pages; a step that
  // found fewer is the last (members added since belong to fills that
  // began after the bump, which are valid).
  drain_step drain(std::string const& name) {
    return eval(detail::redis_drain_script(), 1, drain_args(name), drain_reply());
  }
  boost::asio::awaitable<drain_step> async_drain(std::string const& name) {
    co_return co_await async_eval(detail::redis_drain_script(), 1, drain_args(name), drain_reply());
  }

  bool erase(std::string const& key) { return command(erase_what, erase_args(key), integer_positive); }
  boost::asio::awaitable<bool> async_erase(std::string const& key) {
    co_return co_await async_command(erase_what, erase_args(key), integer_positive);
  }

  // Fill locks (SET NX PX, released by a token-checked script), so that of
  // several processes one refreshes a key while the others wait and re-read.
  // A process that finds the lock held is noted as waiting (see mark_pass).
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    return eval(detail::redis_lock_script(), 2, lock_args(key, token, ttl), lock_reply(token));
  }
  boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    co_return co_await async_eval(detail::redis_lock_script(), 2, lock_args(key, token, ttl), lock_reply(token));
  }
  // The lock and, when taken, read(key, names) in one script.
  locked_read lock_and_read(std::string const& key, std::span<std::string_view const> names, std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    auto out = eval(detail::redis_lock_read_script(), 4 + 2 * names.size(), lock_read_args(key, names, token, ttl),
                    lock_read_reply(key, token, names.size()));
    complete(out.read, names);
    return out;
  }
  boost::asio::awaitable<locked_read> async_lock_and_read(std::string const& key, std::span<std::string_view const> names,
                                                          std::chrono::milliseconds ttl) {
    auto token = fmt::format("{:016x}", detail::fresh_generation());
    auto out = co_await async_eval(detail::redis_lock_read_script(), 4 + 2 * names.size(), lock_read_args(key, names, token, ttl),
                                   lock_read_reply(key, token, names.size()));
    co_await async_complete(out.read, names);
    co_return out;
  }
  void release_fill_lock(std::string const& key, std::string const& token) {
    eval(detail::redis_unlock_script(), 1, unlock_args(key, token), integer_is_one);
  }
  boost::asio::awaitable<void> async_release_fill_lock(std::string const& key, std::string const& token) {
    co_await async_eval(detail::redis_unlock_script(), 1, unlock_args(key, token), integer_is_one);
  }

  // Only when another process waited for this fill: a response nobody
  // waits for leaves nothing in Redis.
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) {
    eval(detail::redis_pass_script(), 2, pass_args(key, ttl), integer_is_one);
  }
  boost::asio::awaitable<void> async_mark_pass(std::string const& key, std::chrono::milliseconds ttl) {
    co_await async_eval(detail::redis_pass_script(), 2, pass_args(key, ttl), integer_is_one);
  }

  std::shared_ptr<detail::redis_client> const& client() const { return client_; }
  detail::redis_keys const& keys() const { return keys_; }

private:
  std::shared_ptr<detail::redis_client> client_;
  detail::redis_keys keys_;
  std::optional<detail::entry_signer> signer_; // when entries are signed
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
static_assert(async_fused_store_primitives<redis_store>);
static_assert(store_backend<redis_backend>);
static_assert(fused_fill_locking<redis_backend> && pass_marking<redis_backend>);

} // namespace custom_cache_page
