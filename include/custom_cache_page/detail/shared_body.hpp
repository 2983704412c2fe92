// shared_body: a Beast body that serialises a stored entry's body in place.
// The entry is shared and immutable, so every hit sends the same bytes with
// no copy (http::span_body's idea, with ownership).
#pragma once

#include <custom_cache_page/entry.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional.hpp>

#include <memory>
#include <utility>

namespace custom_cache_page::detail {

struct shared_body {
  struct value_type {
    std::shared_ptr<cached_response const> entry;
    std::string_view bytes() const { return entry ? std::string_view(entry->body) : std::string_view{}; }
  };

  static std::uint64_t size(value_type const& v) { return v.bytes().size(); }

  class writer {
  public:
    using const_buffers_type = boost::asio::const_buffer;

    template <bool isRequest, class Fields>
    writer(boost::beast::http::header<isRequest, Fields> const&, value_type const& body) : body_(body) {}

    void init(boost::beast::error_code& ec) { ec = {}; }

    boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
      ec = {};
      if (done_) return boost::none;
      done_ = true;
      auto b = body_.bytes();
      if (b.empty()) return boost::none;
      return std::make_pair(const_buffers_type(b.data(), b.size()), false);
    }

  private:
    value_type const& body_;
    bool done_ = false;
  };
};

} // namespace custom_cache_page::detail
