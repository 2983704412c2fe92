// Small helpers shared by the unit test suites.
#pragma once

#include <custom_cache_page/entry.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ccp_test {

// The message of what `fn` throws.
template <class Fn>
std::string what_of(Fn&& fn) {
  try {
    fn();
  } catch (std::exception const& e) {
    return e.what();
  }
  return "<no exception>";
}

// A fresh entry (60 s) recording `tags`.
inline std::shared_ptr<custom_cache_page::cached_response> entry_with(std::vector<custom_cache_page::tag_version> tags) {
  auto e = std::make_shared<custom_cache_page::cached_response>();
  e->body = "page";
  e->stored_at = custom_cache_page::cached_response::clock::now();
  e->expires_at = e->stored_at + std::chrono::seconds(60);
  e->tags = std::move(tags);
  return e;
}

} // namespace ccp_test
