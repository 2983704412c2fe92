// request_view: what key functions, tag callables and predicates see of a
// request. Not a template: it reads the header of any http::request<Body>.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace custom_cache_page {

namespace http = boost::beast::http;

class request_view {
public:
  // Any http::request<Body> converts to its header; the view refers to it and
  // must not outlive it.
  request_view(http::request_header<> const& header) : header_(&header) { // NOLINT: implicit by design
    // Origin-form ("/path?query", RFC 9112 §3.2.1) or absolute-form (to a
    // proxy). Not a URI reference: "//host/x" is a path here, not an authority.
    std::string_view const target = header.target();
    auto parsed = target.starts_with('/') ? boost::urls::parse_origin_form(target)
                                          : boost::urls::parse_absolute_uri(target);
    if (parsed) {
      url_ = *parsed;
      valid_ = true;
    }
  }

  http::verb method() const { return header_->method(); }
  std::string_view method_string() const { return header_->method_string(); }
  std::string_view target() const { return header_->target(); }

  // False when the target is not a URI reference; such requests bypass the cache.
  bool valid() const { return valid_; }

  // The path as sent (percent-encoded) and decoded.
  std::string_view path() const { return valid_ ? std::string_view(url_.encoded_path()) : std::string_view{}; }
  std::string decoded_path() const { return valid_ ? std::string(url_.path()) : std::string{}; }

  // Query parameters, percent-decoded by Boost.URL ("+" is a space).
  boost::urls::params_view query_params() const { return url_.params(); }
  bool has_query_string() const { return valid_ && url_.has_query(); }
  std::string_view encoded_query() const { return valid_ ? std::string_view(url_.encoded_query()) : std::string_view{}; }
  bool has_query(std::string_view name) const { return valid_ && url_.params().contains(name); }
  // The last value of `name`, decoded, as Django's request.GET.get; empty
  // when absent.
  std::string query(std::string_view name) const {
    if (!valid_) return {};
    auto params = url_.params();
    auto it = params.find_last(name);
    if (it == params.end()) return {};
    return (*it).value;
  }

  std::string_view header(http::field f) const { return (*header_)[f]; }
  std::string_view header(std::string_view name) const { return (*header_)[name]; }
  bool has(http::field f) const { return header_->find(f) != header_->end(); }
  bool has(std::string_view name) const { return header_->find(name) != header_->end(); }

  http::request_header<> const& fields() const { return *header_; }

private:
  http::request_header<> const* header_;
  boost::urls::url_view url_;
  bool valid_ = false;
};

} // namespace custom_cache_page
