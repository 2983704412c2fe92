// Store primitives: the little a store must do itself, and protocol_store,
// which builds a store backend (backend.hpp) on them. A store that offers
// these is a page of code (tests/support/map_store.hpp is one); the
// invalidation protocol (generations, guards, soft-purge floors, counters
// created only when an entry is kept) is written once, here.
//
// | expression                     | meaning                                                     |
// |--------------------------------|-------------------------------------------------------------|
// | s.read(key, names)             | the entry under `key` (null when absent or past its          |
// |                                | retain_until()) and the counter of each name in `names`,    |
// |                                | then of each tag the entry recorded, in one trip            |
// | s.read_counters(names)         | the counter of each name                                     |
// | s.write_if(key, entry, conds)  | atomically: when every condition holds, creates the counters |
// |                                | a condition asks for, keeps them at least until the entry's |
// |                                | retain_until(), stores the entry and indexes `key` under     |
// |                                | each tag of the entry whose condition says `indexed`; true   |
// |                                | when stored. Throws cache_error(entry_too_large) for an      |
// |                                | entry over the store's own limit                             |
// | s.bump(name, hard, start, ttl) | atomically: the counter's value becomes the next odd number  |
// |                                | above it, and a hard bump sets the floor to it too; a        |
// |                                | missing counter starts at `start` (value and floor). It      |
// |                                | lives at least `ttl` more. Returns the new value and, for a  |
// |                                | store that drains in the same trip, the first drain step    |
// | s.drain(name)                  | one step: removes a batch of the keys indexed under `name`, |
// |                                | with their entries; says how many entries went and whether  |
// |                                | more may be left                                             |
// | s.erase(key)                   | removes the entry and its index members; true if it existed |
//
// A counter reads {0, 0} when missing. A condition {name, expected, create}
// holds when the counter's value is `expected`, or when it is missing and
// `create` is set (it is then created with value and floor `expected`).
// Optionally, fill locks and pass markers as in backend.hpp (try_fill_lock,
// release_fill_lock, mark_pass); a store with pass markers reports one in
// stored_read::passed. A store with fill locks may fuse them with its
// neighbours (fused_store_primitives), saving a coalesced miss two trips:
//
// | s.lock_and_read(key, names, ttl)     | try_fill_lock, then when granted read(key, names) |
// | s.write_if(key, entry, conds, token) | write_if, then release_fill_lock(key, token)      |
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/generations.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace custom_cache_page {

struct counter_reading {
  std::uint64_t value = 0; // 0: no counter
  std::uint64_t floor = 0; // the value at the last hard bump
  friend bool operator==(counter_reading const&, counter_reading const&) = default;
};

struct stored_read {
  std::shared_ptr<cached_response const> entry;
  std::vector<counter_reading> counters; // `names`, then the entry's tags in its order
  bool passed = false;                    // a pass marker is live under the key
};

struct drain_step {
  std::size_t entries_removed = 0;
  bool more = true; // another step may find more
};

struct bump_result {
  std::uint64_t value = 0;
  drain_step drained; // a hard bump's first step, when the store took one (else `more`)
};

struct write_condition {
  std::string_view name;
  std::uint64_t expected = 0;
  bool create = false;  // create a missing counter at `expected`
  bool indexed = false; // index the key under this tag
};

template <class S>
concept store_primitives = requires(S& s, std::string const& key, std::span<std::string_view const> names,
                                    std::shared_ptr<cached_response const> entry,
                                    std::span<write_condition const> conditions, std::chrono::seconds ttl) {
  { s.read(key, names) } -> std::same_as<stored_read>;
  { s.read_counters(names) } -> std::same_as<std::vector<counter_reading>>;
  { s.write_if(key, entry, conditions) } -> std::same_as<bool>;
  { s.bump(key, true, std::uint64_t{1}, ttl) } -> std::same_as<bump_result>;
  { s.drain(key) } -> std::same_as<drain_step>;
  { s.erase(key) } -> std::same_as<bool>;
};

// The primitives as awaitables, each named async_<primitive>: a store
// that waits on the network offers them, and protocol_store then offers
// the backend operations as awaitables too (see backend.hpp).
template <class S>
concept async_store_primitives = store_primitives<S> &&
    requires(S& s, std::string const& key, std::span<std::string_view const> names, std::shared_ptr<cached_response const> entry,
             std::span<write_condition const> conditions, std::chrono::seconds ttl) {
  { s.async_read(key, names) } -> std::same_as<boost::asio::awaitable<stored_read>>;
  { s.async_read_counters(names) } -> std::same_as<boost::asio::awaitable<std::vector<counter_reading>>>;
  { s.async_write_if(key, entry, conditions) } -> std::same_as<boost::asio::awaitable<bool>>;
  { s.async_bump(key, true, std::uint64_t{1}, ttl) } -> std::same_as<boost::asio::awaitable<bump_result>>;
  { s.async_drain(key) } -> std::same_as<boost::asio::awaitable<drain_step>>;
  { s.async_erase(key) } -> std::same_as<boost::asio::awaitable<bool>>;
};

struct locked_read {
  std::optional<std::string> token;
  stored_read read; // when granted
};

template <class S>
concept fused_store_primitives = store_primitives<S> && fill_locking<S> &&
    requires(S& s, std::string const& key, std::span<std::string_view const> names, std::chrono::milliseconds ttl,
             std::shared_ptr<cached_response const> entry, std::span<write_condition const> conditions) {
  { s.lock_and_read(key, names, ttl) } -> std::same_as<locked_read>;
  { s.write_if(key, entry, conditions, key) } -> std::same_as<bool>;
};

template <class S>
concept async_fused_store_primitives = fused_store_primitives<S> && async_store_primitives<S> &&
    requires(S& s, std::string const& key, std::span<std::string_view const> names, std::chrono::milliseconds ttl,
             std::shared_ptr<cached_response const> entry, std::span<write_condition const> conditions) {
  { s.async_lock_and_read(key, names, ttl) } -> std::same_as<boost::asio::awaitable<locked_read>>;
  { s.async_write_if(key, entry, conditions, key) } -> std::same_as<boost::asio::awaitable<bool>>;
};

// A store backend over a store's primitives.
template <store_primitives S>
class protocol_store {
public:
  explicit protocol_store(std::shared_ptr<S> store) : s_(std::move(store)) {}

  S& primitives() const { return *s_; }

  // The entry answers when every tag it recorded still has that version, or
  // was only soft-purged since (value moved, floor not past the version):
  // then it is stale.
  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) {
    auto const names = names_of(tags);
    return judged(s_->read(key, names), tags.size());
  }

  // A missing counter reads as a proposal that store() creates it at; a
  // guard reads 0 (fills never create it).
  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) {
    return proposed(s_->read_counters(names_of(tags)), tags);
  }

  // When the write finds a counter that another first fill created where
  // this entry proposed a value (both never invalidated), the entry adopts
  // it and is written again, once (detail/generations.hpp).
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) {
    return store_releasing(key, std::move(entry), {});
  }

  bool erase(std::string const& key) { return s_->erase(key); }

  // Hard: bumps value and floor, then removes what the index holds.
  // Soft: bumps the value only; entries built since the floor are stale.
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) {
    auto r = bumped(tag, mode, s_->bump(tag, mode == purge_mode::hard, detail::fresh_generation(), default_version_ttl));
    for (auto step = r.second; mode == purge_mode::hard && step.more;) {
      step = s_->drain(tag);
      r.first.entries_removed += step.entries_removed;
    }
    return r.first;
  }

  // The same operations as awaitables, for a store whose primitives have
  // them (async_read, ...): one decision each, written once above and below.
  boost::asio::awaitable<lookup_result> async_lookup(std::string const& key, std::span<resolved_tag const> tags)
    requires async_store_primitives<S>
  {
    auto const names = names_of(tags);
    co_return judged(co_await s_->async_read(key, names), tags.size());
  }
  boost::asio::awaitable<std::vector<std::uint64_t>> async_tag_versions(std::span<resolved_tag const> tags)
    requires async_store_primitives<S>
  {
    auto const names = names_of(tags);
    co_return proposed(co_await s_->async_read_counters(names), tags);
  }
  boost::asio::awaitable<bool> async_store(std::string const& key, std::shared_ptr<cached_response const> entry)
    requires async_store_primitives<S>
  {
    co_return co_await async_store_releasing(key, std::move(entry), {});
  }
  boost::asio::awaitable<bool> async_erase(std::string const& key)
    requires async_store_primitives<S>
  {
    co_return co_await s_->async_erase(key);
  }
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard)
    requires async_store_primitives<S>
  {
    auto const first = co_await s_->async_bump(tag, mode == purge_mode::hard, detail::fresh_generation(), default_version_ttl);
    auto r = bumped(tag, mode, first);
    for (auto step = r.second; mode == purge_mode::hard && step.more;) {
      step = co_await s_->async_drain(tag);
      r.first.entries_removed += step.entries_removed;
    }
    co_return r.first;
  }
  boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const& key, std::chrono::milliseconds ttl)
    requires async_store_primitives<S> && fill_locking<S>
  {
    co_return co_await s_->async_try_fill_lock(key, ttl);
  }
  boost::asio::awaitable<void> async_release_fill_lock(std::string const& key, std::string const& token)
    requires async_store_primitives<S> && fill_locking<S>
  {
    co_await s_->async_release_fill_lock(key, token);
  }
  boost::asio::awaitable<void> async_mark_pass(std::string const& key, std::chrono::milliseconds ttl)
    requires async_store_primitives<S> && pass_marking<S>
  {
    co_await s_->async_mark_pass(key, ttl);
  }

  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl)
    requires fill_locking<S>
  {
    return s_->try_fill_lock(key, ttl);
  }
  void release_fill_lock(std::string const& key, std::string const& token)
    requires fill_locking<S>
  {
    s_->release_fill_lock(key, token);
  }
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl)
    requires pass_marking<S>
  {
    s_->mark_pass(key, ttl);
  }

  // The fill lock with the lookup under it, and the store that releases
  // it: one trip each where the store fuses them.
  locked_lookup try_fill_lock_and_lookup(std::string const& key, std::span<resolved_tag const> tags, std::chrono::milliseconds ttl)
    requires fused_store_primitives<S>
  {
    auto const names = names_of(tags);
    auto locked = s_->lock_and_read(key, names, ttl);
    return granted(std::move(locked), tags.size());
  }
  bool store_and_release_fill_lock(std::string const& key, std::shared_ptr<cached_response const> entry, std::string const& token)
    requires fused_store_primitives<S>
  {
    return store_releasing(key, std::move(entry), token);
  }
  boost::asio::awaitable<locked_lookup> async_try_fill_lock_and_lookup(std::string const& key, std::span<resolved_tag const> tags,
                                                                       std::chrono::milliseconds ttl)
    requires async_fused_store_primitives<S>
  {
    auto const names = names_of(tags);
    co_return granted(co_await s_->async_lock_and_read(key, names, ttl), tags.size());
  }
  boost::asio::awaitable<bool> async_store_and_release_fill_lock(std::string const& key, std::shared_ptr<cached_response const> entry,
                                                                 std::string const& token)
    requires async_fused_store_primitives<S>
  {
    co_return co_await async_store_releasing(key, std::move(entry), token);
  }

private:
  // The entry stored, the adopting retry (see store) included; a `token`
  // (when the store fuses it) is released by the first write, or after.
  bool store_releasing(std::string const& key, std::shared_ptr<cached_response const> entry, std::string token) {
    bool stored = false;
    for (int attempt = 0; attempt < 2 && !stored; ++attempt) {
      auto const conditions = conditions_of(*entry);
      if (!conditions) break;
      stored = write(key, entry, *conditions, std::exchange(token, {}));
      if (stored) break;
      auto adopted = adoptable(*entry, s_->read_counters(tag_names(*entry)));
      if (!adopted) break;
      entry = detail::with_versions(*entry, *adopted);
    }
    if constexpr (fused_store_primitives<S>) {
      if (!token.empty()) s_->release_fill_lock(key, token);
    }
    return stored;
  }
  boost::asio::awaitable<bool> async_store_releasing(std::string const& key, std::shared_ptr<cached_response const> entry,
                                                     std::string token) {
    bool stored = false;
    for (int attempt = 0; attempt < 2 && !stored; ++attempt) {
      auto const conditions = conditions_of(*entry);
      if (!conditions) break;
      stored = co_await async_write(key, entry, *conditions, std::exchange(token, {}));
      if (stored) break;
      auto const names = tag_names(*entry);
      auto const now = co_await s_->async_read_counters(names);
      auto adopted = adoptable(*entry, now);
      if (!adopted) break;
      entry = detail::with_versions(*entry, *adopted);
    }
    if constexpr (async_fused_store_primitives<S>) {
      if (!token.empty()) co_await s_->async_release_fill_lock(key, token);
    }
    co_return stored;
  }

  bool write(std::string const& key, std::shared_ptr<cached_response const> const& entry,
             std::span<write_condition const> conditions, std::string const& token) {
    if constexpr (fused_store_primitives<S>) {
      if (!token.empty()) return s_->write_if(key, entry, conditions, token);
    }
    return s_->write_if(key, entry, conditions);
  }
  boost::asio::awaitable<bool> async_write(std::string const& key, std::shared_ptr<cached_response const> const& entry,
                                           std::span<write_condition const> conditions, std::string const& token) {
    if constexpr (async_fused_store_primitives<S>) {
      if (!token.empty()) co_return co_await s_->async_write_if(key, entry, conditions, token);
    }
    co_return co_await s_->async_write_if(key, entry, conditions);
  }

  static locked_lookup granted(locked_read locked, std::size_t named) {
    locked_lookup out{std::move(locked.token), {}};
    if (out.token) out.found = judged(std::move(locked.read), named);
    return out;
  }

  // What a read says of the entry under its recorded versions.
  static lookup_result judged(stored_read read, std::size_t named) {
    lookup_result out;
    out.pass_marked = read.passed;
    for (std::size_t i = 0; i < named; ++i) out.versions.push_back(read.counters[i].value);
    if (!read.entry) return out;
    auto const& recorded = read.entry->tags;
    for (std::size_t i = 0; i < recorded.size(); ++i) {
      auto const now = read.counters[named + i];
      auto const v = recorded[i].version;
      if (now.value == v) continue;
      if (now.value == 0 || v > now.value || v < now.floor) return out;
      out.soft_purged = true;
    }
    out.entry = std::move(read.entry);
    return out;
  }

  static std::vector<std::uint64_t> proposed(std::vector<counter_reading> const& read, std::span<resolved_tag const> tags) {
    std::vector<std::uint64_t> out;
    for (std::size_t i = 0; i < tags.size(); ++i)
      out.push_back(read[i].value != 0 || tags[i].guard ? read[i].value : detail::proposed_generation());
    return out;
  }

  // Nothing when a version is missing (no snapshot): never stored.
  static std::optional<std::vector<write_condition>> conditions_of(cached_response const& e) {
    std::vector<write_condition> conditions;
    for (auto const& t : e.tags) {
      if (t.version == 0 && !t.guard) return std::nullopt;
      conditions.push_back({t.name, t.version, !t.guard, !t.versioned && !t.guard});
    }
    return conditions;
  }

  static std::vector<std::string_view> tag_names(cached_response const& e) {
    std::vector<std::string_view> names;
    for (auto const& t : e.tags) names.emplace_back(t.name);
    return names;
  }

  // The result of a bump, and whether a hard one must drain further.
  static std::pair<invalidation_result, drain_step> bumped(std::string const& tag, purge_mode mode, bump_result const& b) {
    invalidation_result r;
    r.tag = tag;
    r.mode = mode;
    r.version = b.value;
    r.entries_removed = mode == purge_mode::hard ? b.drained.entries_removed : 0;
    return {std::move(r), b.drained};
  }

  // The entry's versions with other first fills' counters (`now`) adopted;
  // nothing when a counter was invalidated (or a guard moved) since the snapshot.
  static std::optional<std::vector<std::uint64_t>> adoptable(cached_response const& e, std::vector<counter_reading> const& now) {
    std::vector<std::uint64_t> versions;
    for (std::size_t i = 0; i < e.tags.size(); ++i) {
      auto const& t = e.tags[i];
      bool const same = now[i].value == t.version || (now[i].value == 0 && !t.guard);
      bool const adopt = !t.guard && now[i].value != 0 && detail::never_invalidated(now[i].value) &&
                         detail::never_invalidated(t.version);
      if (!same && !adopt) return std::nullopt;
      versions.push_back(adopt ? now[i].value : t.version);
    }
    return versions;
  }

  // On the stack for the usual few tags: a hit allocates no name list.
  static boost::container::small_vector<std::string_view, 8> names_of(std::span<resolved_tag const> tags) {
    boost::container::small_vector<std::string_view, 8> names;
    names.reserve(tags.size());
    for (auto const& t : tags) names.emplace_back(t.name);
    return names;
  }

  std::shared_ptr<S> s_;
};

} // namespace custom_cache_page
