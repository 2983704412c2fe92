// A stored response answered as bytes. The entry's header block (sealed
// once, entry.hpp), a small part written for this answer and the entry's
// body go out as four buffers: one write, whatever the number of fields
// (Beast's own fields give a buffer per field, and http::message_generator
// passes at most 12 buffers per write: a body behind them waits a round
// trip, and a delayed ACK, on a socket without TCP_NODELAY).
//
// replay_fields and replay_body model Beast's Fields and Body concepts, so
// the answer is an http::response that http::message_generator serialises.
#pragma once

#include <custom_cache_page/entry.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/optional.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace custom_cache_page::detail {

// Text kept inline up to a size that fits every usual answer, so that
// writing it allocates nothing; longer text moves to the heap once.
class answer_text {
public:
  answer_text& operator<<(std::string_view s) {
    if (!on_heap_ && size_ + s.size() <= inline_.size()) {
      std::memcpy(inline_.data() + size_, s.data(), s.size());
      size_ += s.size();
      return *this;
    }
    if (!on_heap_) heap_.assign(inline_.data(), size_);
    on_heap_ = true;
    heap_.append(s);
    return *this;
  }
  answer_text& operator<<(long long n) {
    char digits[24];
    return *this << std::string_view(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
  }
  std::string_view view() const { return on_heap_ ? std::string_view(heap_) : std::string_view(inline_.data(), size_); }

private:
  std::array<char, 192> inline_;
  std::size_t size_ = 0;
  bool on_heap_ = false;
  std::string heap_;
};

// Which bytes of a stored body an answer sends.
struct byte_span {
  std::size_t offset = 0, length = std::string::npos;
  std::string_view of(std::string_view body) const { return body.substr(std::min(offset, body.size()), length); }
};

// The header of a replayed answer: the entry's block, or its validators'
// part for a 304, then `tail` (the fields of this answer and the blank line).
class replay_fields {
public:
  std::shared_ptr<cached_response const> entry;
  bool validators_only = false; // a 304 or a 416
  bool send_body = true;        // false for HEAD and 304
  byte_span part{0, std::string::npos}; // the part of the body sent (a 206)
  bool persistent = true;      // the connection stays open after this answer
  answer_text tail;

  std::string_view block() const {
    return validators_only ? std::string_view(entry->head).substr(0, entry->head_validators) : std::string_view(entry->head);
  }

  class writer {
  public:
    using const_buffers_type = std::array<boost::asio::const_buffer, 3>;

    writer(replay_fields const& f, unsigned version, unsigned code) : f_(f) {
      auto const reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(code));
      line_ << "HTTP/" << static_cast<long long>(version / 10) << "." << static_cast<long long>(version % 10) << " "
           << static_cast<long long>(code) << " " << reason << "\r\n";
    }

    const_buffers_type get() const {
      auto const line = line_.view();
      auto const block = f_.block();
      auto const tail = f_.tail.view();
      return {boost::asio::const_buffer(line.data(), line.size()), boost::asio::const_buffer(block.data(), block.size()),
              boost::asio::const_buffer(tail.data(), tail.size())};
    }

  private:
    replay_fields const& f_;
    answer_text line_;
  };

protected:
  // What Beast's message and serializer ask of a Fields type. The answer is
  // built whole by answer_from and handed out inside a message_generator,
  // so the setters are never reached: the start line comes from the
  // message, Content-Length and Connection are in `tail`.
  std::string_view get_method_impl() const { return {}; }
  std::string_view get_target_impl() const { return {}; }
  std::string_view get_reason_impl() const { return {}; }
  bool get_chunked_impl() const { return false; }
  bool get_keep_alive_impl(unsigned) const { return persistent; }
  bool has_content_length_impl() const { return true; }
  void set_method_impl(std::string_view) {}
  void set_target_impl(std::string_view) {}
  void set_reason_impl(std::string_view) {}
  void set_chunked_impl(bool) {}
  void set_content_length_impl(boost::optional<std::uint64_t> const&) {}
  void set_keep_alive_impl(unsigned, bool k) { persistent = k; }
};

// The entry's body, in place: the entry is shared and immutable, so every
// answer sends the same bytes with no copy.
struct replay_body {
  struct value_type {};

  class writer {
  public:
    using const_buffers_type = boost::asio::const_buffer;

    // (A template: Beast checks the concept with a model of its own Fields.)
    template <bool isRequest, class Fields>
    writer(boost::beast::http::header<isRequest, Fields> const& h, value_type const&) : f_(h) {}

    void init(boost::beast::error_code& ec) { ec = {}; }

    boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
      ec = {};
      auto const bytes = f_.part.of(f_.entry->body);
      if (done_ || !f_.send_body || bytes.empty()) return boost::none;
      done_ = true;
      return std::make_pair(const_buffers_type(bytes.data(), bytes.size()), false);
    }

  private:
    replay_fields const& f_;
    bool done_ = false;
  };
};

using replay_response = boost::beast::http::response<replay_body, replay_fields>;

} // namespace custom_cache_page::detail
