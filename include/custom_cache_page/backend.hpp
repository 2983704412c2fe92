// The backend concepts, and any_backend, the type-erased handle the
// registry and cache_page hold.
//
// Every backend purges by tag and decorates responses (`backend`):
//
// | expression                  | meaning                                                       |
// |-----------------------------|---------------------------------------------------------------|
// | b.invalidate_tag(tag, mode) | purges what the tag covers: hard, or soft (served only as     |
// |                             | stale); throws when it could not                              |
// | b.prepare_response(f, tags) | adds the backend's own headers (CDN tag headers) to a         |
// |                             | response carrying `tags` (std::span<std::string_view const>:  |
// |                             | the public tag names; internal tags never reach a backend)    |
//
// A CDN backend (Fastly, Cloudflare, Varnish, a user's) is exactly that. A
// store backend (`store_backend`: memory, Redis, composite, a user's) also
// keeps pages; decorating is optional for it:
//
// | b.lookup(key, tags)         | the entry under `key` (null when absent, past its             |
// |                             | retain_until(), or hard-invalidated) and the current counter  |
// |                             | of each tag, 0 for a counter that does not exist, read in ONE |
// |                             | trip to the store; `soft_purged` when a tag of the entry was  |
// |                             | soft-purged since it was built                                |
// | b.tag_versions(tags)        | the counters of `tags`; a missing one reads as a proposal     |
// |                             | (detail/generations.hpp) that a store creates it at; a        |
// |                             | `guard` tag reads 0 when missing                              |
// | b.store(key, entry)         | stores `entry` unless a counter differs from the version the  |
// |                             | entry recorded (a tag was invalidated meanwhile): then false; |
// |                             | indexes the key under each plain, non-guard tag; checked and  |
// |                             | stored atomically; throws cache_error(entry_too_large) for an |
// |                             | entry over the store's own limit                              |
// | b.erase(key)                | removes the entry; true if there was one                      |
// | b.invalidate_tag(tag, mode) | also bumps the tag's counter; hard removes the entries        |
// |                             | indexed under it                                              |
//
// Optionally, for stores shared by several processes, a fill lock and pass
// markers:
//
// | b.try_fill_lock(key, ttl)   | a token when this caller may refill `key` (held at most `ttl`),|
// |                             | nothing when another holds the lock                           |
// | b.release_fill_lock(key, t) | releases it if token `t` still holds it                       |
// | b.mark_pass(key, ttl)       | for `ttl`, lookups of `key` say pass_marked (the response was  |
// |                             | not storable: nobody should wait for an entry)                |
//
// and, for a store where each operation is a round trip, the lock taken
// with a lookup and a store that releases it, each in ONE trip (any_backend
// composes them from the operations above for a backend without them):
//
// | b.try_fill_lock_and_lookup(key, tags, ttl) | try_fill_lock, then, when granted, lookup  |
// | b.store_and_release_fill_lock(key, e, t)   | store, then release_fill_lock(key, t)      |
//
// Failures throw (cache_error or anything else); cache_page turns a throwing
// lookup or store into a pass-through, and invalidations propagate.
//
// A backend whose operations wait on the network also offers them as
// awaitables, named async_<operation> with the same arguments and results
// (async_lookup, async_tag_versions, async_store, async_erase,
// async_invalidate_tag, async_try_fill_lock, async_release_fill_lock,
// async_mark_pass): the awaitable front end of cache_page then never blocks
// an io_context thread on it. The others' operations are called as they
// are (the memory store takes a shard lock, no I/O).
#pragma once

#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/error.hpp>
#include <custom_cache_page/pending_invalidations.hpp>
#include <custom_cache_page/tags.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page {

struct lookup_result {
  std::shared_ptr<cached_response const> entry; // null: miss
  std::vector<std::uint64_t> versions;          // one per requested tag; 0: no counter
  // The entry was built before a soft purge of one of its tags: it is stale
  // whatever its expiry says, and its versions are older than `versions`.
  bool soft_purged = false;
  // No entry, but a fill (in another process) found the response not
  // storable a moment ago: run the handler without waiting for a fill.
  bool pass_marked = false;
  // The entry carries a tag whose invalidation failed and is being retried
  // (set by any_backend::screen): it must not be served.
  bool invalidation_pending = false;
};


struct invalidation_result {
  std::string tag;
  std::string backend;            // which backend did it (set by the registry)
  std::uint64_t version = 0;      // the tag's counter after the bump
  std::size_t entries_removed = 0; // entries the surrogate index held under the tag (hard)
  purge_mode mode = purge_mode::hard;
  // A composite backend: one result per member, in member order; a member
  // that failed has `error` set (the others were still attempted).
  std::vector<invalidation_result> members;
  std::string error;
};

template <class B>
concept backend = requires(B& b, std::string const& tag, boost::beast::http::fields& fields,
                           std::span<std::string_view const> names) {
  { b.invalidate_tag(tag, purge_mode::hard) } -> std::same_as<invalidation_result>;
  b.prepare_response(fields, names);
};

template <class B>
concept store_backend = requires(B& b, std::string const& key, std::span<resolved_tag const> tags,
                                 std::shared_ptr<cached_response const> entry, std::string const& tag) {
  { b.lookup(key, tags) } -> std::same_as<lookup_result>;
  { b.tag_versions(tags) } -> std::same_as<std::vector<std::uint64_t>>;
  { b.store(key, entry) } -> std::same_as<bool>;
  { b.erase(key) } -> std::same_as<bool>;
  { b.invalidate_tag(tag, purge_mode::hard) } -> std::same_as<invalidation_result>;
};

// A backend that only purges and decorates: it keeps no pages.
template <class B>
concept cdn_backend = backend<B> && !store_backend<B>;

// What any_backend holds: a store or a CDN backend.
template <class B>
concept store_or_cdn_backend = store_backend<B> || backend<B>;

template <class B>
concept pass_marking = requires(B& b, std::string const& key, std::chrono::milliseconds ttl) { b.mark_pass(key, ttl); };

template <class B>
concept fill_locking = requires(B& b, std::string const& key, std::chrono::milliseconds ttl, std::string const& token) {
  { b.try_fill_lock(key, ttl) } -> std::same_as<std::optional<std::string>>;
  b.release_fill_lock(key, token);
};

// What try_fill_lock_and_lookup answers.
struct locked_lookup {
  std::optional<std::string> token; // as try_fill_lock
  lookup_result found;              // read under the lock; empty when not granted
};

template <class B>
concept fused_fill_locking = fill_locking<B> &&
    requires(B& b, std::string const& key, std::span<resolved_tag const> tags, std::chrono::milliseconds ttl,
             std::shared_ptr<cached_response const> entry, std::string const& token) {
  { b.try_fill_lock_and_lookup(key, tags, ttl) } -> std::same_as<locked_lookup>;
  { b.store_and_release_fill_lock(key, entry, token) } -> std::same_as<bool>;
};

// The public names among an entry's tags: what CDN backends and headers
// see. The one place internal (guard) tags are left out.
inline std::vector<std::string_view> public_tag_names(std::span<tag_version const> tags) {
  std::vector<std::string_view> names;
  names.reserve(tags.size());
  for (auto const& t : tags)
    if (!t.guard) names.emplace_back(t.name);
  return names;
}

// A copyable handle to any backend (shared ownership). A CDN backend held
// alone keeps nothing: its lookups miss and keeps_entries() is false.
class any_backend {
public:
  any_backend() = default;

  template <store_or_cdn_backend B>
  any_backend(std::shared_ptr<B> b) : self_(std::make_shared<model<B>>(std::move(b))) { // NOLINT: implicit
    self_->pending = std::make_shared<pending_invalidations>(retrier(self_));
  }

  explicit operator bool() const { return self_ != nullptr; }
  bool keeps_entries() const { return self_->keeps_entries(); }

  lookup_result lookup(std::string const& key, std::span<resolved_tag const> tags) const { return self_->lookup(key, tags); }
  std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> tags) const { return self_->tag_versions(tags); }
  // False also when the backend keeps no entries.
  bool store(std::string const& key, std::shared_ptr<cached_response const> entry) const {
    return self_->store(key, std::move(entry));
  }
  bool erase(std::string const& key) const { return self_->erase(key); }
  // A failed invalidation throws, and is also kept and retried until it
  // succeeds (see pending_invalidations.hpp).
  invalidation_result invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) const {
    auto const started = pending_invalidations::clock::now();
    try {
      auto r = self_->invalidate_tag(tag, mode);
      self_->pending->succeeded(tag, mode, false, started);
      return r;
    } catch (...) {
      keep_failed(*self_, tag, mode, false);
    }
  }
  // Bumps an internal (guard) tag: stores only, never a CDN backend.
  void invalidate_internal_tag(std::string const& tag) const {
    auto const started = pending_invalidations::clock::now();
    try {
      self_->invalidate_internal_tag(tag);
      self_->pending->succeeded(tag, purge_mode::hard, true, started);
    } catch (...) {
      keep_failed(*self_, tag, purge_mode::hard, true);
    }
  }
  // The invalidations that failed and are being retried; the set lives as
  // long as the backend or this pointer.
  std::shared_ptr<pending_invalidations const> pending() const { return self_->pending; }
  // Marks what `found` holds when a pending invalidation covers it.
  void screen(lookup_result& found) const {
    if (found.entry && self_->pending->covers(found.entry->tags)) found.invalidation_pending = true;
  }
  // Whether prepare_response adds anything (CDN backends, composites of them).
  bool decorates() const { return self_->decorates(); }
  // Decorates a response carrying an entry's `tags`: the backend sees
  // their public names.
  void prepare_response(boost::beast::http::fields& f, std::span<tag_version const> tags) const {
    if (self_->decorates()) self_->prepare_response(f, public_tag_names(tags));
  }
  void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> names) const {
    if (self_->decorates()) self_->prepare_response(f, names);
  }
  // A backend without fill locks grants every one (an empty token): the
  // coalescing within the process is then all there is.
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) const {
    return self_->try_fill_lock(key, ttl);
  }
  void release_fill_lock(std::string const& key, std::string const& token) const { self_->release_fill_lock(key, token); }
  // A store without pass markers ignores it: its waiters are in this
  // process, and a flight tells them.
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) const { self_->mark_pass(key, ttl); }
  locked_lookup try_fill_lock_and_lookup(std::string const& key, std::span<resolved_tag const> tags,
                                         std::chrono::milliseconds ttl) const {
    return self_->try_fill_lock_and_lookup(key, tags, ttl);
  }
  // An empty token (no lock held) only stores.
  bool store_and_release_fill_lock(std::string const& key, std::shared_ptr<cached_response const> entry,
                                   std::string const& token) const {
    return self_->store_and_release_fill_lock(key, std::move(entry), token);
  }

  // The same operations as awaitables (see the top of this file).
  boost::asio::awaitable<lookup_result> async_lookup(std::string const& key, std::span<resolved_tag const> tags) const {
    return self_->async_lookup(key, tags);
  }
  boost::asio::awaitable<std::vector<std::uint64_t>> async_tag_versions(std::span<resolved_tag const> tags) const {
    return self_->async_tag_versions(tags);
  }
  boost::asio::awaitable<bool> async_store(std::string const& key, std::shared_ptr<cached_response const> entry) const {
    return self_->async_store(key, std::move(entry));
  }
  boost::asio::awaitable<bool> async_erase(std::string const& key) const { return self_->async_erase(key); }
  boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string const& tag, purge_mode mode = purge_mode::hard) const {
    return async_invalidate(self_, tag, mode);
  }
  boost::asio::awaitable<void> async_invalidate_internal_tag(std::string const& tag) const {
    return async_invalidate_internal(self_, tag);
  }
  boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) const {
    return self_->async_try_fill_lock(key, ttl);
  }
  boost::asio::awaitable<void> async_release_fill_lock(std::string const& key, std::string const& token) const {
    return self_->async_release_fill_lock(key, token);
  }
  boost::asio::awaitable<void> async_mark_pass(std::string const& key, std::chrono::milliseconds ttl) const {
    return self_->async_mark_pass(key, ttl);
  }
  boost::asio::awaitable<locked_lookup> async_try_fill_lock_and_lookup(std::string const& key, std::span<resolved_tag const> tags,
                                                                       std::chrono::milliseconds ttl) const {
    return self_->async_try_fill_lock_and_lookup(key, tags, ttl);
  }
  boost::asio::awaitable<bool> async_store_and_release_fill_lock(std::string const& key,
                                                                 std::shared_ptr<cached_response const> entry,
                                                                 std::string const& token) const {
    return self_->async_store_and_release_fill_lock(key, std::move(entry), token);
  }

  // The backend object, when it is a B.
  template <class B>
  B* target() const {
    auto* m = dynamic_cast<model<B>*>(self_.get());
    return m ? m->b.get() : nullptr;
  }

private:
  struct concept_ {
    virtual ~concept_() {
      if (pending) pending->stop();
    }
    std::shared_ptr<pending_invalidations> pending;
    virtual bool keeps_entries() const = 0;
    virtual lookup_result lookup(std::string const&, std::span<resolved_tag const>) = 0;
    virtual std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const>) = 0;
    virtual bool store(std::string const&, std::shared_ptr<cached_response const>) = 0;
    virtual bool erase(std::string const&) = 0;
    virtual invalidation_result invalidate_tag(std::string const&, purge_mode) = 0;
    virtual void invalidate_internal_tag(std::string const&) = 0;
    virtual bool decorates() const = 0;
    virtual void prepare_response(boost::beast::http::fields&, std::span<std::string_view const>) = 0;
    virtual std::optional<std::string> try_fill_lock(std::string const&, std::chrono::milliseconds) = 0;
    virtual void release_fill_lock(std::string const&, std::string const&) = 0;
    virtual void mark_pass(std::string const&, std::chrono::milliseconds) = 0;
    virtual locked_lookup try_fill_lock_and_lookup(std::string const&, std::span<resolved_tag const>, std::chrono::milliseconds) = 0;
    virtual bool store_and_release_fill_lock(std::string const&, std::shared_ptr<cached_response const>, std::string const&) = 0;
    virtual boost::asio::awaitable<lookup_result> async_lookup(std::string const&, std::span<resolved_tag const>) = 0;
    virtual boost::asio::awaitable<std::vector<std::uint64_t>> async_tag_versions(std::span<resolved_tag const>) = 0;
    virtual boost::asio::awaitable<bool> async_store(std::string const&, std::shared_ptr<cached_response const>) = 0;
    virtual boost::asio::awaitable<bool> async_erase(std::string const&) = 0;
    virtual boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string const&, purge_mode) = 0;
    virtual boost::asio::awaitable<void> async_invalidate_internal_tag(std::string const&) = 0;
    virtual boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const&, std::chrono::milliseconds) = 0;
    virtual boost::asio::awaitable<void> async_release_fill_lock(std::string const&, std::string const&) = 0;
    virtual boost::asio::awaitable<void> async_mark_pass(std::string const&, std::chrono::milliseconds) = 0;
    virtual boost::asio::awaitable<locked_lookup> async_try_fill_lock_and_lookup(std::string const&, std::span<resolved_tag const>,
                                                                                 std::chrono::milliseconds) = 0;
    virtual boost::asio::awaitable<bool> async_store_and_release_fill_lock(std::string const&,
                                                                           std::shared_ptr<cached_response const>,
                                                                           std::string const&) = 0;
  };
  template <class B>
  struct model final : concept_ {
    static constexpr bool stores = store_backend<B>;
    explicit model(std::shared_ptr<B> p) : b(std::move(p)) {}
    bool keeps_entries() const override {
      if constexpr (requires { b->keeps_entries(); }) return b->keeps_entries();
      else return stores;
    }
    lookup_result lookup(std::string const& k, std::span<resolved_tag const> t) override {
      if constexpr (stores) return b->lookup(k, t);
      else return {nullptr, std::vector<std::uint64_t>(t.size(), 0)};
    }
    std::vector<std::uint64_t> tag_versions(std::span<resolved_tag const> t) override {
      if constexpr (stores) return b->tag_versions(t);
      else return std::vector<std::uint64_t>(t.size(), 0);
    }
    bool store(std::string const& k, std::shared_ptr<cached_response const> e) override {
      if constexpr (stores) return b->store(k, std::move(e));
      else return false;
    }
    bool erase(std::string const& k) override {
      if constexpr (stores) return b->erase(k);
      else return false;
    }
    invalidation_result invalidate_tag(std::string const& t, purge_mode m) override { return b->invalidate_tag(t, m); }
    void invalidate_internal_tag(std::string const& t) override {
      if constexpr (requires { b->invalidate_internal_tag(t); }) b->invalidate_internal_tag(t);
      else if constexpr (stores) b->invalidate_tag(t, purge_mode::hard);
    }
    bool decorates() const override { return backend<B>; }
    void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> names) override {
      if constexpr (backend<B>) b->prepare_response(f, names);
    }
    std::optional<std::string> try_fill_lock(std::string const& k, std::chrono::milliseconds ttl) override {
      if constexpr (fill_locking<B>) return b->try_fill_lock(k, ttl);
      else return std::string();
    }
    void release_fill_lock(std::string const& k, std::string const& token) override {
      if constexpr (fill_locking<B>) {
        if (!token.empty()) b->release_fill_lock(k, token);
      }
    }
    void mark_pass(std::string const& k, std::chrono::milliseconds ttl) override {
      if constexpr (pass_marking<B>) b->mark_pass(k, ttl);
    }
    // The fused forms: the backend's own, else the two operations in turn.
    locked_lookup try_fill_lock_and_lookup(std::string const& k, std::span<resolved_tag const> t,
                                           std::chrono::milliseconds ttl) override {
      if constexpr (fused_fill_locking<B>) return b->try_fill_lock_and_lookup(k, t, ttl);
      locked_lookup out{try_fill_lock(k, ttl), {}};
      if (out.token) out.found = lookup(k, t);
      return out;
    }
    bool store_and_release_fill_lock(std::string const& k, std::shared_ptr<cached_response const> e,
                                     std::string const& token) override {
      if constexpr (fused_fill_locking<B>) {
        if (!token.empty()) return b->store_and_release_fill_lock(k, std::move(e), token);
      }
      bool const stored = store(k, std::move(e));
      release_fill_lock(k, token);
      return stored;
    }
    // The awaitable forms: the backend's own when it has them (a backend
    // that waits on the network), else the operations above. A CDN
    // backend's purge is its own awaitable or runs as is.
    boost::asio::awaitable<lookup_result> async_lookup(std::string const& k, std::span<resolved_tag const> t) override {
      if constexpr (requires { b->async_lookup(k, t); }) co_return co_await b->async_lookup(k, t);
      else co_return lookup(k, t);
    }
    boost::asio::awaitable<std::vector<std::uint64_t>> async_tag_versions(std::span<resolved_tag const> t) override {
      if constexpr (requires { b->async_tag_versions(t); }) co_return co_await b->async_tag_versions(t);
      else co_return tag_versions(t);
    }
    boost::asio::awaitable<bool> async_store(std::string const& k, std::shared_ptr<cached_response const> e) override {
      if constexpr (requires { b->async_store(k, e); }) co_return co_await b->async_store(k, std::move(e));
      else co_return store(k, std::move(e));
    }
    boost::asio::awaitable<bool> async_erase(std::string const& k) override {
      if constexpr (requires { b->async_erase(k); }) co_return co_await b->async_erase(k);
      else co_return erase(k);
    }
    boost::asio::awaitable<invalidation_result> async_invalidate_tag(std::string const& t, purge_mode m) override {
      if constexpr (requires { b->async_invalidate_tag(t, m); }) co_return co_await b->async_invalidate_tag(t, m);
      else co_return invalidate_tag(t, m);
    }
    boost::asio::awaitable<void> async_invalidate_internal_tag(std::string const& t) override {
      if constexpr (requires { b->async_invalidate_internal_tag(t); }) co_await b->async_invalidate_internal_tag(t);
      else if constexpr (stores && requires { b->async_invalidate_tag(t, purge_mode::hard); })
        co_await b->async_invalidate_tag(t, purge_mode::hard);
      else invalidate_internal_tag(t);
    }
    boost::asio::awaitable<std::optional<std::string>> async_try_fill_lock(std::string const& k, std::chrono::milliseconds ttl) override {
      if constexpr (requires { b->async_try_fill_lock(k, ttl); }) co_return co_await b->async_try_fill_lock(k, ttl);
      else co_return try_fill_lock(k, ttl);
    }
    boost::asio::awaitable<void> async_release_fill_lock(std::string const& k, std::string const& token) override {
      if constexpr (requires { b->async_release_fill_lock(k, token); }) {
        if (!token.empty()) co_await b->async_release_fill_lock(k, token);
      } else {
        release_fill_lock(k, token);
      }
    }
    boost::asio::awaitable<void> async_mark_pass(std::string const& k, std::chrono::milliseconds ttl) override {
      if constexpr (requires { b->async_mark_pass(k, ttl); }) co_await b->async_mark_pass(k, ttl);
      else mark_pass(k, ttl);
    }
    boost::asio::awaitable<locked_lookup> async_try_fill_lock_and_lookup(std::string const& k, std::span<resolved_tag const> t,
                                                                         std::chrono::milliseconds ttl) override {
      if constexpr (requires { b->async_try_fill_lock_and_lookup(k, t, ttl); })
        co_return co_await b->async_try_fill_lock_and_lookup(k, t, ttl);
      locked_lookup out; // (GCC 12 mistranslates a co_await inside a braced initialiser)
      out.token = co_await async_try_fill_lock(k, ttl);
      if (out.token) out.found = co_await async_lookup(k, t);
      co_return out;
    }
    boost::asio::awaitable<bool> async_store_and_release_fill_lock(std::string const& k, std::shared_ptr<cached_response const> e,
                                                                   std::string const& token) override {
      if constexpr (requires { b->async_store_and_release_fill_lock(k, e, token); }) {
        if (!token.empty()) co_return co_await b->async_store_and_release_fill_lock(k, std::move(e), token);
      }
      bool const stored = co_await async_store(k, std::move(e));
      co_await async_release_fill_lock(k, token);
      co_return stored;
    }
    std::shared_ptr<B> b;
  };

  // Retries through the backend while it exists; once it is gone, nothing
  // is served from it and the retry has nothing left to do.
  static pending_invalidations::retry_function retrier(std::shared_ptr<concept_> const& self) {
    return [weak = std::weak_ptr<concept_>(self)](pending_invalidation const& p) {
      auto s = weak.lock();
      if (!s) return;
      if (p.internal) s->invalidate_internal_tag(p.tag);
      else s->invalidate_tag(p.tag, p.mode);
    };
  }

  // Inside a catch handler: records the failure and rethrows it, or says
  // that it could not be kept.
  [[noreturn]] static void keep_failed(concept_& self, std::string const& tag, purge_mode mode, bool internal) {
    std::string why = "failed";
    try {
      throw;
    } catch (std::exception const& e) {
      why = e.what();
    } catch (...) {
    }
    if (self.pending->add(tag, mode, internal, why)) throw;
    throw invalidation_error(tag, why + " (and it could not be kept for retrying: " +
                                      std::to_string(self.pending->size()) + " invalidations are pending already)");
  }

  static boost::asio::awaitable<invalidation_result> async_invalidate(std::shared_ptr<concept_> self, std::string tag, purge_mode mode) {
    std::exception_ptr failed;
    auto const started = pending_invalidations::clock::now();
    try {
      auto r = co_await self->async_invalidate_tag(tag, mode);
      self->pending->succeeded(tag, mode, false, started);
      co_return r;
    } catch (...) {
      failed = std::current_exception();
    }
    rethrow_kept(*self, tag, mode, false, failed);
  }

  static boost::asio::awaitable<void> async_invalidate_internal(std::shared_ptr<concept_> self, std::string tag) {
    std::exception_ptr failed;
    auto const started = pending_invalidations::clock::now();
    try {
      co_await self->async_invalidate_internal_tag(tag);
      self->pending->succeeded(tag, purge_mode::hard, true, started);
      co_return;
    } catch (...) {
      failed = std::current_exception();
    }
    rethrow_kept(*self, tag, purge_mode::hard, true, failed);
  }

  [[noreturn]] static void rethrow_kept(concept_& self, std::string const& tag, purge_mode mode, bool internal, std::exception_ptr failed) {
    try {
      std::rethrow_exception(failed);
    } catch (...) {
      keep_failed(self, tag, mode, internal);
    }
  }

  std::shared_ptr<concept_> self_;
};

} // namespace custom_cache_page
