// A store backend whose operations run another backend's awaitable ones
// (async_lookup, ...) to completion on an io_context of their own: suites
// written against the synchronous operations (the store conformance suite)
// then test the awaitable ones too.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/detail/run_blocking.hpp>

#include <utility>

namespace ccp_test {

class awaited_backend {
public:
  explicit awaited_backend(custom_cache_page::any_backend inner) : inner_(std::move(inner)) {}

  custom_cache_page::lookup_result lookup(std::string const& key, std::span<custom_cache_page::resolved_tag const> tags) {
    return run(inner_.async_lookup(key, tags));
  }
  std::vector<std::uint64_t> tag_versions(std::span<custom_cache_page::resolved_tag const> tags) {
    return run(inner_.async_tag_versions(tags));
  }
  bool store(std::string const& key, std::shared_ptr<custom_cache_page::cached_response const> entry) {
    return run(inner_.async_store(key, std::move(entry)));
  }
  bool erase(std::string const& key) { return run(inner_.async_erase(key)); }
  custom_cache_page::invalidation_result invalidate_tag(std::string const& tag,
                                                       custom_cache_page::purge_mode mode = custom_cache_page::purge_mode::hard) {
    return run(inner_.async_invalidate_tag(tag, mode));
  }
  std::optional<std::string> try_fill_lock(std::string const& key, std::chrono::milliseconds ttl) {
    return run(inner_.async_try_fill_lock(key, ttl));
  }
  void release_fill_lock(std::string const& key, std::string const& token) {
    run(inner_.async_release_fill_lock(key, token));
  }
  void mark_pass(std::string const& key, std::chrono::milliseconds ttl) { run(inner_.async_mark_pass(key, ttl)); }
  custom_cache_page::locked_lookup try_fill_lock_and_lookup(std::string const& key,
                                                            std::span<custom_cache_page::resolved_tag const> tags,
                                                            std::chrono::milliseconds ttl) {
    return run(inner_.async_try_fill_lock_and_lookup(key, tags, ttl));
  }
  bool store_and_release_fill_lock(std::string const& key, std::shared_ptr<custom_cache_page::cached_response const> entry,
                                   std::string const& token) {
    return run(inner_.async_store_and_release_fill_lock(key, std::move(entry), token));
  }
  void prepare_response(boost::beast::http::fields& f, std::span<std::string_view const> names) {
    inner_.prepare_response(f, names);
  }

private:
  template <class T>
  static T run(boost::asio::awaitable<T> op) {
    return custom_cache_page::detail::run_blocking(std::move(op));
  }

  custom_cache_page::any_backend inner_;
};

static_assert(custom_cache_page::store_backend<awaited_backend>);
static_assert(custom_cache_page::fused_fill_locking<awaited_backend>);

} // namespace ccp_test
