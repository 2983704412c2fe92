// catalog_server: the demo of custom_cache_page. A Beast server of
// coroutines over a product catalog whose every query takes 20 ms (--query-ms);
// list and product pages are cached, tagged, and invalidated when the data
// changes.
//
//   catalog_server [--port N] [--threads N] [--sync] [--query-ms N] [--backend URL | --config FILE]
//   curl -si 'http://127.0.0.1:8080/products?category=books'   # miss, stored
//   curl -si 'http://127.0.0.1:8080/products?category=books'   # hit
//
// Behind Varnish (tests/varnish/catalog.vcl), pages kept in memory and
// tagged and purged in Varnish too:
//   catalog_server --backend composite://memory,varnish        # Varnish on 127.0.0.1:6081
//   catalog_server --backend 'composite://?member=memory://&member=varnish://127.0.0.1:6082'
#include "../common/http_session.hpp"
#include "catalog.hpp"

#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>
#include <custom_cache_page/custom_cache_page.hpp>
#if defined(CATALOG_WITH_REDIS)
#include <custom_cache_page/redis.hpp>
#endif

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp> // libboost_json, linked by custom_cache_page::cdn
#include <boost/locale/utf.hpp> // header-only, needs no Boost.Locale library
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace ccp = custom_cache_page;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

using catalog_demo::catalog;
using catalog_demo::product;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

// ---------------------------------------------------------------------------
// JSON

using traits = boost::locale::utf::utf_traits<char>;

bool is_code_point(boost::locale::utf::code_point c) {
  return c != boost::locale::utf::illegal && c != boost::locale::utf::incomplete;
}

// Boost.JSON writes a string's bytes as they are, so text that echoes a
// client's input (a category, a tag, an error quoting one) goes through
// here: each byte that is not part of well-formed UTF-8 becomes U+FFFD and
// the output stays valid JSON.
json::string utf8_text(std::string_view s) {
  json::string out;
  out.reserve(s.size());
  for (auto it = s.begin(); it != s.end();) {
    auto const start = it;
    if (is_code_point(traits::decode(it, s.end()))) {
      out.append(start, it);
    } else {
      out.append("\xEF\xBF\xBD");
      it = start + 1;
    }
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  for (auto it = s.begin(); it != s.end();)
    if (!is_code_point(traits::decode(it, s.end()))) return false;
  return true;
}

// Names and categories were checked on the way in; no need for utf8_text.
json::object product_json(product const& p) {
  return {{"id", p.id}, {"name", p.name}, {"category", p.category}, {"price_cents", p.price_cents}};
}

// ---------------------------------------------------------------------------
// Requests and responses

response make_response(request const& req, http::status status, std::string_view content_type, std::string body) {
  response res{status, req.version()};
  res.set(http::field::server, "catalog_server");
  res.set(http::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  // HEAD: the header a GET would have (its Content-Length), no body.
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

response json_response(request const& req, http::status status, json::value const& value) {
  std::string body = json::serialize(value);
  body += '\n';
  return make_response(req, status, "application/json", std::move(body));
}

response error(request const& req, http::status status, std::string_view message) {
  return json_response(req, status, json::object{{"error", utf8_text(message)}});
}

// What a page may show of a client's value: letters, digits and . _ : -,
// at most 64 bytes ("-" when nothing is left).
std::string visible(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64))
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-') out += c;
  return out.empty() ? "-" : out;
}

// The value of cookie `name` in a Cookie field.
std::string_view cookie(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto const end = std::min(header.find(';'), header.size());
    auto item = header.substr(0, end);
    while (item.starts_with(' ')) item.remove_prefix(1);
    if (item.starts_with(name) && item.substr(name.size()).starts_with('=')) return item.substr(name.size() + 1);
    header.remove_prefix(std::min(end + 1, header.size()));
  }
  return {};
}

std::string_view trim(std::string_view s) {
  auto const space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

template <class Int>
std::optional<Int> parse_number(std::string_view text) {
  Int n{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return n;
}

// "/products/17" -> 17.
std::optional<int> product_id(std::string_view path) {
  constexpr std::string_view prefix = "/products/";
  if (!path.starts_with(prefix)) return std::nullopt;
  auto id = parse_number<int>(path.substr(prefix.size()));
  if (!id || *id <= 0) return std::nullopt;
  return id;
}

// Why a product name from a client cannot be stored; empty when it can.
std::optional<std::string_view> bad_name(std::string_view name) {
  if (name.empty()) return "the name is empty";
  if (name.size() > 200) return "the name is longer than 200 bytes";
  if (!valid_utf8(name)) return "the name is not UTF-8";
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Routes

// A handler coroutine run to completion on the calling thread: the
// synchronous form of a handler, whose database waits block that thread.
template <class Handler>
struct blocking {
  Handler handler;
  template <class... Context>
    requires std::is_invocable_v<Handler const&, request const&, Context&...>
  response operator()(request const& req, Context&... ctx) const {
    asio::io_context ioc;
    auto answer = asio::co_spawn(ioc, handler(req, ctx...), asio::use_future);
    // Until the answer, not until ioc runs out of work: a Redis connection
    // that async_add_tag opened on it keeps a read pending.
    while (answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ioc.run_one();
    return answer.get();
  }
};

// One cached route: the awaitable front end of cache_page, or with --sync
// the synchronous one (for comparison) over the same handler.
template <class Handler>
class cached_route {
public:
  cached_route(ccp::cache_options options, Handler handler, bool sync) {
    if (sync) sync_.emplace(ccp::cache_page(std::move(options), blocking<Handler>{std::move(handler)}));
    else async_.emplace(ccp::cache_page(std::move(options), std::move(handler)));
  }

  asio::awaitable<http::message_generator> operator()(request&& req) const {
    if (sync_) co_return (*sync_)(std::move(req));
    co_return co_await (*async_)(std::move(req));
  }

private:
  std::optional<ccp::cached_handler<Handler>> async_;
  std::optional<ccp::cached_handler<blocking<Handler>>> sync_;
};

class routes {
public:
  routes(catalog& db, bool sync)
      : db_(db),
        index_({}, plain_handler([this](request const& req) { return index(req); }), sync),
        list_(
            {.timeout = 300s,
             .key_func = ccp::generate_cache_key,
             // "products" changes with every product added: a versioned tag,
             // so that invalidating it costs O(1) however many pages exist.
             .tags = {ccp::versioned("products"),
                      [](ccp::request_view r) { return "category-" + r.query("category"); }},
             .add_etag = true,
             // A list that is a little old beats an error page.
             .stale_if_error = 3600s},
            plain_handler([this](request const& req) { return list(req); }), sync),
        // GET and HEAD are cached; PUT goes through the same wrapper so that
        // a successful one also drops the GET entry of its URL (RFC 9111 §4.4).
        product_(
            {.timeout = 300s,
             .key_func = ccp::generate_cache_key,
             .tags = {[](ccp::request_view r) -> std::optional<std::string> {
               auto id = product_id(r.decoded_path());
               if (!id) return std::nullopt;
               return ccp::surrogate_from_model("product", *id);
             }},
             .add_etag = true},
            filling_handler([this](request const& req, ccp::fill_context& ctx) { return one_product(req, ctx); }), sync),
        greeting_({}, plain_handler([this](request const& req) { return greeting(req); }), sync),
        account_({}, plain_handler([](request const& req) { return account(req); }), sync),
        hello_({}, plain_handler([](request const& req) { return hello(req); }), sync),
        links_({}, plain_handler([](request const& req) { return links(req); }), sync),
        news_({}, plain_handler([this](request const& req) { return news(req); }), sync) {}

  routes(routes const&) = delete;
  routes& operator=(routes const&) = delete;

  asio::awaitable<http::message_generator> operator()(request req) {
    ccp::request_view const view(req);
    if (!view.valid()) co_return error(req, http::status::bad_request, "the request target is not a URL");
    std::string const path = view.decoded_path();
    auto const method = req.method();
    bool const read = method == http::verb::get || method == http::verb::head;

    // (No co_await inside a conditional expression: GCC 12 miscompiles the temporaries.)
    if (path == "/") {
      if (read) co_return co_await index_(std::move(req));
      co_return not_allowed(req, "GET, HEAD");
    }
    if (path == "/products") {
      if (read) co_return co_await list_(std::move(req));
      if (method == http::verb::post) co_return co_await create(req);
      co_return not_allowed(req, "GET, HEAD, POST");
    }
    if (path.starts_with("/products/")) {
      if (read || method == http::verb::put) co_return co_await product_(std::move(req));
      co_return not_allowed(req, "GET, HEAD, PUT");
    }
    if (path == "/greeting") {
      if (read) co_return co_await greeting_(std::move(req));
      co_return not_allowed(req, "GET, HEAD");
    }
    if (auto* page = client_page(path)) {
      if (read) co_return co_await (*page)(std::move(req));
      co_return not_allowed(req, "GET, HEAD");
    }
    if (path == "/metrics") co_return read ? metrics(req) : not_allowed(req, "GET, HEAD");
    if (path == "/invalidate") {
      if (method == http::verb::post) co_return co_await invalidate(req);
      co_return not_allowed(req, "POST");
    }
    co_return error(req, http::status::not_found, "no such route; GET / lists them");
  }

private:
  using plain_handler = std::function<asio::awaitable<response>(request const&)>;
  using filling_handler = std::function<asio::awaitable<response>(request const&, ccp::fill_context&)>;

  static response not_allowed(request const& req, std::string_view allow) {
    auto res = error(req, http::status::method_not_allowed, "method not allowed");
    res.set(http::field::allow, allow);
    return res;
  }

  asio::awaitable<response> index(request const& req) const {
    std::string body =
        "catalog_server: a product catalog whose pages are cached by custom_cache_page\n"
        "\n"
        "GET  /products?category=C&page=N  a page of 20 products of a category (cached, ETag)\n"
        "GET  /products/<id>               one product (cached)\n"
        "PUT  /products/<id>               rename it; the body is the new name\n"
        "POST /products                    add one; the body is \"name,category\"\n"
        "POST /invalidate?tag=T            invalidate a tag (an admin route)\n"
        "GET  /greeting                    sets a cookie, so it is never served from the cache\n"
        "GET  /account                     the session cookie's user; private, never stored\n"
        "GET  /hello                       by Accept-Language (en, fr, de); Vary, one entry per language\n"
        "GET  /links                       absolute links to the host asked for (X-Forwarded-Host first)\n"
        "GET  /news                        no-store: never stored\n"
        "GET  /metrics                     cache and database counters (Prometheus)\n"
        "\n"
        "categories:";
    for (auto c : catalog_demo::categories) fmt::format_to(std::back_inserter(body), " {}", c);
    body += '\n';
    co_return make_response(req, http::status::ok, "text/plain; charset=utf-8", std::move(body));
  }

  asio::awaitable<response> list(request const& req) const {
    ccp::request_view const view(req);
    std::string const category = view.query("category");
    // Unknown categories are 404, which is not cached: a client cannot fill
    // the cache with pages and tags for categories that do not exist.
    if (!catalog_demo::is_category(category))
      co_return error(req, http::status::not_found,
                      fmt::format("unknown category; one of: {}", fmt::join(catalog_demo::categories, ", ")));
    std::size_t page = 1;
    if (view.has_query("page")) {
      auto n = parse_number<std::uint32_t>(view.query("page"));
      if (!n || *n == 0) co_return error(req, http::status::bad_request, "page must be a positive integer");
      page = *n;
    }
    auto const result = co_await db_.list(category, page);
    json::array products;
    products.reserve(result.products.size());
    for (auto const& p : result.products) products.emplace_back(product_json(p));
    co_return json_response(req, http::status::ok,
                         json::object{{"category", utf8_text(category)},
                                      {"page", page},
                                      {"per_page", catalog::page_size},
                                      {"total", result.total},
                                      {"products", std::move(products)}});
  }

  asio::awaitable<response> one_product(request const& req, ccp::fill_context& ctx) {
    auto const id = product_id(ccp::request_view(req).decoded_path());
    if (!id) co_return error(req, http::status::not_found, "no such product");
    if (req.method() == http::verb::put) co_return co_await rename(req, *id);

    // The category tag must be added before the product is read: a rename
    // that lands in between then keeps this response out of the cache.
    auto const category = db_.category_of(*id);
    if (!category) co_return error(req, http::status::not_found, "no such product");
    co_await ctx.async_add_tag("category-" + *category);
    auto const p = co_await db_.find(*id);
    if (!p) co_return error(req, http::status::not_found, "no such product");
    co_return json_response(req, http::status::ok, product_json(*p));
  }

  asio::awaitable<response> rename(request const& req, int id) {
    std::string_view const name = trim(req.body());
    if (auto why = bad_name(name)) co_return error(req, http::status::bad_request, *why);
    auto const p = co_await db_.rename(id, std::string(name));
    if (!p) co_return error(req, http::status::not_found, "no such product");
    // After the write: a page filled from the old data that is stored
    // later still recorded the old tag versions, and is refused. Both are
    // attempted even when one fails; a failure is retried in the
    // background, and answers 500 here.
    std::vector<std::string> tags{ccp::surrogate_from_model("product", id), "category-" + p->category};
    co_await ccp::async_invalidate_tags(std::move(tags)); // (GCC 12: no braced list inside a co_await)
    co_return json_response(req, http::status::ok, product_json(*p));
  }

  asio::awaitable<response> create(request const& req) {
    std::string_view const body = req.body();
    auto const comma = body.rfind(','); // the name may contain commas, a category cannot
    if (comma == std::string_view::npos)
      co_return error(req, http::status::bad_request, "the body must be \"name,category\"");
    std::string_view const name = trim(body.substr(0, comma));
    std::string_view const category = trim(body.substr(comma + 1));
    if (auto why = bad_name(name)) co_return error(req, http::status::bad_request, *why);
    if (!catalog_demo::is_category(category))
      co_return error(req, http::status::bad_request,
                      fmt::format("unknown category; one of: {}", fmt::join(catalog_demo::categories, ", ")));
    auto const p = co_await db_.create(std::string(name), std::string(category));
    co_await ccp::async_invalidate_tag("products"); // every list page may have changed
    auto res = json_response(req, http::status::created, product_json(p));
    res.set(http::field::location, fmt::format("/products/{}", p.id));
    co_return res;
  }

  // Real deployments must protect this route (authentication, or a listener
  // that only operators can reach): anyone who can call it can empty the cache.
  static asio::awaitable<response> invalidate(request const& req) {
    ccp::request_view const view(req);
    std::string const tag = view.query("tag");
    if (tag.empty()) co_return error(req, http::status::bad_request, "missing ?tag=");
    std::string failure;
    try {
      auto const r = co_await ccp::async_invalidate_tag(tag);
      co_return json_response(req, http::status::ok,
                              json::object{{"tag", utf8_text(r.tag)},
                                           {"backend", utf8_text(r.backend)},
                                           {"version", r.version},
                                           {"entries_removed", r.entries_removed}});
    } catch (std::exception const& e) {
      failure = e.what();
    }
    co_return error(req, http::status::internal_server_error, failure);
  }

  response metrics(request const& req) const {
    std::string body = ccp::global_stats().prometheus();
    fmt::format_to(std::back_inserter(body),
                   "# HELP catalog_db_queries_total Queries run against the simulated database.\n"
                   "# TYPE catalog_db_queries_total counter\n"
                   "catalog_db_queries_total {}\n",
                   db_.queries());
    auto res = make_response(req, http::status::ok, "text/plain; version=0.0.4; charset=utf-8", std::move(body));
    res.set(http::field::cache_control, "no-store");
    return res;
  }

  // Every answer sets a cookie; cache_page never stores such a response, so
  // each visitor gets a counter of their own.
  asio::awaitable<response> greeting(request const& req) {
    auto const n = visitors_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8",
                             fmt::format("Hello, visitor {}!\n", n));
    res.set(http::field::set_cookie, fmt::format("visitor={}; Path=/; HttpOnly", n));
    co_return res;
  }

  // The pages whose content depends on who asks: what the cache must never
  // hand to another client.
  cached_route<plain_handler>* client_page(std::string_view path) {
    if (path == "/account") return &account_;
    if (path == "/hello") return &hello_;
    if (path == "/links") return &links_;
    if (path == "/news") return &news_;
    return nullptr;
  }

  // The session cookie's user, marked private; or a bearer token's user,
  // unmarked: requests with Authorization are never answered from the
  // cache nor stored (RFC 9111 3.5).
  static asio::awaitable<response> account(request const& req) {
    std::string_view const bearer = "Bearer ";
    std::string_view const authorization = req[http::field::authorization];
    bool const by_token = authorization.starts_with(bearer);
    auto const user = visible(by_token ? authorization.substr(bearer.size()) : cookie(req[http::field::cookie], "session"));
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8", fmt::format("Account of {}\n", user));
    if (!by_token) res.set(http::field::cache_control, "private");
    co_return res;
  }

  // Negotiated: Vary names what chose the variant.
  static asio::awaitable<response> hello(request const& req) {
    std::string_view const accept = req[http::field::accept_language];
    std::string_view const lang = accept.starts_with("fr") ? "fr" : accept.starts_with("de") ? "de" : "en";
    std::string_view const text = lang == "fr" ? "Bonjour" : lang == "de" ? "Hallo" : "Hello";
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8",
                             fmt::format("{} ({}; encodings offered: {})\n", text, lang, visible(req[http::field::accept_encoding])));
    res.set(http::field::vary, "Accept-Language, Accept-Encoding");
    co_return res;
  }

  // Absolute links to the host the client asked for, a proxy's
  // X-Forwarded-Host first: the key holds the host, Vary the other field.
  static asio::awaitable<response> links(request const& req) {
    std::string_view host = req["X-Forwarded-Host"];
    if (host.empty()) host = req[http::field::host];
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8",
                             fmt::format("http://{}/products\n", visible(host)));
    res.set(http::field::vary, "X-Forwarded-Host");
    co_return res;
  }

  // Never stored (no-store): each client sees its own.
  asio::awaitable<response> news(request const& req) {
    auto const n = news_served_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8",
                             fmt::format("News {} for {}\n", n, visible(req["X-Client"])));
    res.set(http::field::cache_control, "no-store");
    co_return res;
  }

  catalog& db_;
  std::atomic<std::uint64_t> visitors_{0};
  std::atomic<std::uint64_t> news_served_{0};
  cached_route<plain_handler> index_;
  cached_route<plain_handler> list_;
  cached_route<filling_handler> product_;
  cached_route<plain_handler> greeting_;
  cached_route<plain_handler> account_;
  cached_route<plain_handler> hello_;
  cached_route<plain_handler> links_;
  cached_route<plain_handler> news_;
};

// ---------------------------------------------------------------------------
// Server

// The routes' answer, or a 500 that closes the connection if they throw
// (an invalidation that failed after a write, for one).
asio::awaitable<http::message_generator> respond(routes& r, request req) {
  auto const version = req.version();
  std::string failure;
  try {
    co_return co_await r(std::move(req));
  } catch (std::exception const& e) {
    failure = e.what();
  }
  response res{http::status::internal_server_error, version};
  res.set(http::field::server, "catalog_server");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = json::serialize(json::object{{"error", utf8_text(failure)}}) + '\n';
  res.prepare_payload();
  co_return res;
}

// ---------------------------------------------------------------------------
// Command line

constexpr char const* usage =
    "usage: catalog_server [--port N] [--threads N] [--sync] [--query-ms N] [--backend URL | --config FILE] [--help]";

struct options {
  unsigned short port = 8080;
  unsigned threads = 2;
  bool sync = false;
  unsigned query_ms = 20;
  std::optional<std::string> backend;
  std::optional<std::string> config;
};

// The options, or nothing after printing why they are wrong.
std::optional<options> parse_arguments(int argc, char** argv, bool& help) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    std::optional<std::string_view> value;
    if ((arg == "--port" || arg == "--threads" || arg == "--query-ms" || arg == "--backend" || arg == "--config") &&
        i + 1 < argc)
      value = argv[++i];
    if (arg == "--help" || arg == "-h") {
      help = true;
    } else if (arg == "--sync") {
      o.sync = true;
    } else if (arg == "--port" && value) {
      auto n = parse_number<unsigned short>(*value);
      if (!n) {
        std::cerr << "catalog_server: bad port '" << *value << "'\n";
        return std::nullopt;
      }
      o.port = *n;
    } else if (arg == "--threads" && value) {
      auto n = parse_number<unsigned>(*value);
      if (!n || *n == 0 || *n > 256) {
        std::cerr << "catalog_server: --threads takes 1 to 256\n";
        return std::nullopt;
      }
      o.threads = *n;
    } else if (arg == "--query-ms" && value) {
      auto n = parse_number<unsigned>(*value);
      if (!n || *n > 60'000) {
        std::cerr << "catalog_server: --query-ms takes 0 to 60000\n";
        return std::nullopt;
      }
      o.query_ms = *n;
    } else if (arg == "--backend" && value) {
      o.backend = std::string(*value);
    } else if (arg == "--config" && value) {
      o.config = std::string(*value);
    } else {
      std::cerr << "catalog_server: unexpected argument '" << arg << "'\n";
      return std::nullopt;
    }
  }
  if (o.backend && o.config) {
    std::cerr << "catalog_server: --backend and --config exclude each other\n";
    return std::nullopt;
  }
  return o;
}

// A backend URL fit for a log line: no password.
std::string printable_url(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || !parsed->has_password()) return std::string(url);
  boost::urls::url u(*parsed);
  u.set_password("***");
  return std::string(u.buffer());
}

} // namespace

int main(int argc, char** argv) {
  bool help = false;
  auto const opts = parse_arguments(argc, argv, help);
  if (!opts) {
    std::cerr << usage << '\n';
    return 2;
  }
  if (help) {
    std::cout << usage << "\n"
              << "  --port N       listen on 127.0.0.1:N (default 8080; 0 picks a free port)\n"
              << "  --threads N    threads running the server (default 2)\n"
              << "  --sync         cache_page's synchronous front end, whose waits (and the\n"
              << "                 handlers' database queries) block a server thread; for\n"
              << "                 comparison with the default, awaitable one\n"
              << "  --query-ms N   how long each simulated database query takes (default 20)\n"
              << "  --backend URL  where cached pages live (default memory://; also read from\n"
              << "                 the environment variable CUSTOM_CACHE_PAGE_BACKEND), e.g.\n"
              << "                 composite://memory,varnish (pages in memory, tagged and\n"
              << "                 purged in the Varnish at 127.0.0.1:6081)\n"
              << "  --config FILE  backends from a JSON file ({\"DEFAULT_BACKEND\": ...,\n"
              << "                 \"BACKENDS\": {...}}, see custom_cache_page/config.hpp)\n";
    return 0;
  }

  std::string backend = "memory";
  try {
#if defined(CATALOG_WITH_REDIS)
    ccp::enable_redis(); // the redis:// and unix:// URL schemes
#endif
    ccp::enable_cdn(); // varnish://, fastly://, cloudflare://
    auto& registry = ccp::default_registry();
    if (opts->config) {
      ccp::configure_file(registry, *opts->config);
      backend = registry.default_name(); // a name: the URLs may hold secrets
    } else if (opts->backend) {
      registry.add("default", registry.make_backend(*opts->backend));
      registry.set_default("default");
      backend = *opts->backend;
    } else if (char const* env = std::getenv("CUSTOM_CACHE_PAGE_BACKEND"); env != nullptr && *env != '\0') {
      backend = env;
    }
    registry.get_default(); // builds the default now: a bad URL fails at start-up, not on the first request
  } catch (std::exception const& e) {
    std::cerr << "catalog_server: " << e.what() << '\n' << usage << '\n';
    return 2;
  }

  catalog db(std::chrono::milliseconds(opts->query_ms));
  routes r(db, opts->sync);
  asio::io_context ioc(static_cast<int>(opts->threads));
  tcp::acceptor acceptor(ioc);
  beast::error_code ec;
  if (!ccp_examples::listen(acceptor, opts->port, ec)) {
    std::cerr << "catalog_server: cannot listen on 127.0.0.1:" << opts->port << ": " << ec.message() << '\n';
    return 1;
  }

  // Stopping the io_context and joining the threads lets every object be
  // destroyed in order, so leak checkers see a clean exit.
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });

  auto const port = acceptor.local_endpoint().port();
  std::cout << "catalog_server listening on http://127.0.0.1:" << port << "/ (backend: " << printable_url(backend)
            << ")\n"
            << "try: curl -si http://127.0.0.1:" << port << "/products?category=books" << std::endl;

  auto answer = [&r](request req) { return respond(r, std::move(req)); };
  asio::co_spawn(ioc, ccp_examples::accept(acceptor, answer), asio::detached);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < opts->threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  return 0;
}
