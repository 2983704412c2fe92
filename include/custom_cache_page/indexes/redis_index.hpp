// redis_surrogate_index: tag -> storage keys, as one Redis sorted set per
// tag (`<prefix>tagidx:<tag>`), each member scored by its entry's expiry.
// Adding prunes expired members (a bounded number per call) and sets the
// set's own expiry to its last member's, so an index neither outlives nor
// underlives its entries, whatever their TTLs. Taking drains the set in
// short server-side steps, so a tag with millions of keys does not stall
// Redis for other clients.
//
// Thread-safe (a pool of connections). Usable on its own, e.g. to give
// another store a shared index; redis_backend keeps the same sets through
// the same scripts (detail/redis_scripts.hpp) inside its store script.
#pragma once

#include <custom_cache_page/detail/redis_client.hpp>
#include <custom_cache_page/detail/redis_scripts.hpp>
#include <custom_cache_page/surrogate_index.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace custom_cache_page {

class redis_surrogate_index {
public:
  using clock = std::chrono::system_clock;

  // Where the index lives must be said, as the Python package's
  // RedisSurrogateIndex needs a client or a URL: there is no default server.
  explicit redis_surrogate_index(std::string_view url) : redis_surrogate_index(parse_redis_url(url)) {}
  explicit redis_surrogate_index(redis_options options)
      : redis_surrogate_index(std::make_shared<detail::redis_client>(std::move(options))) {}
  explicit redis_surrogate_index(std::shared_ptr<detail::redis_client> client)
      : client_(std::move(client)), keys_{checked(client_).options().prefix} {}

  void add(std::string const& tag, std::string const& key, clock::time_point expires) {
    auto const ttl = std::chrono::duration_cast<std::chrono::milliseconds>(expires - clock::now()).count();
    if (ttl <= 0) return; // already expired: nothing to find later
    client_->run("redis index add", [&](detail::redis_connection& c) {
      auto a = detail::redis_connection::script_args();
      a.add(keys_.index(tag)).view(key).add(ttl).add(detail::redis_prune_budget);
      c.eval(detail::redis_index_add_script(), 1, a);
      return true;
    });
  }

  void remove(std::string const& tag, std::string const& key) {
    client_->run("redis index remove (ZREM)", [&](detail::redis_connection& c) {
      c.checked("redis index remove (ZREM)", detail::redis_args{"ZREM"}.add(keys_.index(tag)).view(key), REDIS_REPLY_INTEGER);
      return true;
    });
  }

  // Removes every member of `tag`; returns those whose entries have not expired.
  std::vector<std::string> take(std::string const& tag) {
    return client_->run("redis index take", [&](detail::redis_connection& c) {
      std::vector<std::string> live;
      detail::redis_drain_index(c, keys_, tag, client_->options().drain_batch, false, &live);
      return live;
    });
  }

  // Members of all indexes under the prefix (SCAN: for tests and metrics,
  // not for request paths).
  std::size_t size() const {
    return client_->run("redis index size", [&](detail::redis_connection& c) {
      std::size_t total = 0;
      std::string cursor = "0";
      std::string const pattern = keys_.index_prefix() + "*";
      do {
        auto page = c.checked("redis index size (SCAN)",
                              detail::redis_args{"SCAN"}.view(cursor).view("MATCH").view(pattern).view("COUNT").view("1000"),
                              REDIS_REPLY_ARRAY);
        if (page->elements != 2 || page->element[1]->type != REDIS_REPLY_ARRAY)
          throw detail::redis_error("redis index size (SCAN)", c.context(), page.get());
        cursor = std::string(detail::reply_string(page->element[0]));
        std::vector<detail::redis_args> cards;
        for (std::size_t i = 0; i < page->element[1]->elements; ++i) {
          detail::redis_args card{"ZCARD"};
          card.add(std::string(detail::reply_string(page->element[1]->element[i])));
          cards.push_back(std::move(card));
        }
        for (auto const& r : c.pipeline("redis index size (ZCARD)", cards))
          if (r->type == REDIS_REPLY_INTEGER) total += static_cast<std::size_t>(r->integer);
      } while (cursor != "0");
      return total;
    });
  }

  // Members of one tag's index.
  std::size_t size(std::string const& tag) const {
    return client_->run("redis index size (ZCARD)", [&](detail::redis_connection& c) {
      auto r = c.checked("redis index size (ZCARD)", detail::redis_args{"ZCARD"}.add(keys_.index(tag)), REDIS_REPLY_INTEGER);
      return static_cast<std::size_t>(r->integer);
    });
  }

  redis_stats stats() const { return client_->stats(); }

private:
  static detail::redis_client const& checked(std::shared_ptr<detail::redis_client> const& client) {
    if (!client) throw cache_error(error::bad_configuration, "redis_surrogate_index needs a client or a URL");
    return *client;
  }
  std::shared_ptr<detail::redis_client> client_;
  detail::redis_keys keys_;
};

static_assert(surrogate_index<redis_surrogate_index>);

} // namespace custom_cache_page
