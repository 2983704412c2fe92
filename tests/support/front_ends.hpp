// The two front ends of cache_page, for behaviour tests parameterised over
// both (TEMPLATE_TEST_CASE(..., ccp_test::sync_front, ccp_test::async_front)):
// wrap(options, handler) takes a synchronous handler and gives a callable
// answering an http::message_generator, so one test body drives either.
#pragma once

#include <custom_cache_page/cache_page.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <optional>
#include <type_traits>
#include <utility>

namespace ccp_test {

namespace net = boost::asio;

struct sync_front {
  static constexpr char const* name = "sync";
  template <class Handler>
  static auto wrap(custom_cache_page::cache_options options, Handler handler) {
    return custom_cache_page::cache_page(std::move(options), std::move(handler));
  }
};

// The handler as a coroutine returning what it returned, with the same
// parameters (the fill_context only when it takes one).
template <class Handler>
struct as_awaitable {
  Handler h;
  template <class Request>
    requires std::is_invocable_v<Handler const&, Request&&, custom_cache_page::fill_context&>
  auto operator()(Request&& req, custom_cache_page::fill_context& ctx) const
      -> net::awaitable<std::invoke_result_t<Handler const&, Request&&, custom_cache_page::fill_context&>> {
    co_return h(std::forward<Request>(req), ctx);
  }
  template <class Request>
    requires(!std::is_invocable_v<Handler const&, Request&&, custom_cache_page::fill_context&> &&
             std::is_invocable_v<Handler const&, Request &&>)
  auto operator()(Request&& req) const -> net::awaitable<std::invoke_result_t<Handler const&, Request&&>> {
    co_return h(std::forward<Request>(req));
  }
};

// The awaitable front end; each call runs on an io_context of its own
// until everything it started (a background refresh too) is done.
struct async_front {
  static constexpr char const* name = "awaitable";
  template <class Handler>
  static auto wrap(custom_cache_page::cache_options options, Handler handler) {
    auto cached = custom_cache_page::cache_page(std::move(options), as_awaitable<Handler>{std::move(handler)});
    return [cached](auto&& req) {
      net::io_context ioc;
      // co_spawn needs a result it can default-construct.
      auto answer = net::co_spawn(
          ioc,
          [&]() -> net::awaitable<std::optional<boost::beast::http::message_generator>> {
            co_return co_await cached(std::forward<decltype(req)>(req));
          },
          net::use_future);
      // Until the answer, then until nothing is left to do: a Redis
      // connection opened here keeps a read pending while idle, so 50 ms
      // without work end it too.
      while (answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ioc.run_one();
      while (ioc.run_one_for(std::chrono::milliseconds(50)) > 0) {
      }
      return std::move(*answer.get());
    };
  }
};

} // namespace ccp_test
