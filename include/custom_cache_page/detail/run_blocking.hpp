// Runs an awaitable to completion on an io_context of its own, on the
// calling thread: how the synchronous forms of operations written once, as
// coroutines (purges, for one), block their caller, and theirs alone.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <utility>

namespace custom_cache_page::detail {

// Runs until `op` is done, not until the io_context runs out of work: a
// Redis connection opened on it keeps a read pending while idle. Its
// destruction then closes what `op` opened.
template <class T>
T run_blocking(boost::asio::awaitable<T> op) {
  boost::asio::io_context ioc(1);
  auto result = boost::asio::co_spawn(ioc, std::move(op), boost::asio::use_future);
  while (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ioc.run_one();
  return result.get();
}

} // namespace custom_cache_page::detail
