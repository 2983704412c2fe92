// catalog_server: the demo of custom_cache_page. A multi-threaded Beast
// server over a product catalog whose every query takes 20 ms; list and
// product pages are cached, tagged, and invalidated when the data changes.
//
//   catalog_server [--port N] [--threads N] [--backend URL | --config FILE]
//   curl -si 'http://127.0.0.1:8080/products?category=books'   # miss, stored
//   curl -si 'http://127.0.0.1:8080/products?category=books'   # hit
//
// Behind Varnish (tests/varnish/catalog.vcl), pages kept in memory and
// tagged and purged in Varnish too:
//   catalog_server --backend composite://memory,varnish        # Varnish on 127.0.0.1:6081
//   catalog_server --backend 'composite://?member=memory://&member=varnish://127.0.0.1:6082'
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

#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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

class routes {
public:
  explicit routes(catalog& db)
      : db_(db),
        index_(ccp::cache_page({}, plain_handler([this](request const& req) { return index(req); }))),
        list_(ccp::cache_page(
            {.timeout = 300s,
             .key_func = ccp::generate_cache_key,
             // "products" changes with every product added: a versioned tag,
             // so that invalidating it costs O(1) however many pages exist.
             .tags = {ccp::versioned("products"),
                      [](ccp::request_view r) { return "category-" + r.query("category"); }},
             .add_etag = true,
             // A list that is a little old beats an error page.
             .stale_if_error = 3600s},
            plain_handler([this](request const& req) { return list(req); }))),
        // GET and HEAD are cached; PUT goes through the same wrapper so that
        // a successful one also drops the GET entry of its URL (RFC 9111 §4.4).
        product_(ccp::cache_page(
            {.timeout = 300s,
             .key_func = ccp::generate_cache_key,
             .tags = {[](ccp::request_view r) -> std::optional<std::string> {
               auto id = product_id(r.decoded_path());
               if (!id) return std::nullopt;
               return ccp::surrogate_from_model("product", *id);
             }},
             .add_etag = true},
            filling_handler([this](request const& req, ccp::fill_context& ctx) { return one_product(req, ctx); }))),
        greeting_(ccp::cache_page({}, plain_handler([this](request const& req) { return greeting(req); }))) {}

  routes(routes const&) = delete;
  routes& operator=(routes const&) = delete;

  http::message_generator operator()(request&& req) {
    ccp::request_view const view(req);
    if (!view.valid()) return error(req, http::status::bad_request, "the request target is not a URL");
    std::string const path = view.decoded_path();
    auto const method = req.method();
    bool const read = method == http::verb::get || method == http::verb::head;

    if (path == "/") return read ? index_(std::move(req)) : not_allowed(req, "GET, HEAD");
    if (path == "/products") {
      if (read) return list_(std::move(req));
      if (method == http::verb::post) return create(req);
      return not_allowed(req, "GET, HEAD, POST");
    }
    if (path.starts_with("/products/"))
      return read || method == http::verb::put ? product_(std::move(req)) : not_allowed(req, "GET, HEAD, PUT");
    if (path == "/greeting") return read ? greeting_(std::move(req)) : not_allowed(req, "GET, HEAD");
    if (path == "/metrics") return read ? metrics(req) : not_allowed(req, "GET, HEAD");
    if (path == "/invalidate") return method == http::verb::post ? invalidate(req) : not_allowed(req, "POST");
    return error(req, http::status::not_found, "no such route; GET / lists them");
  }

private:
  using plain_handler = std::function<response(request const&)>;
  using filling_handler = std::function<response(request const&, ccp::fill_context&)>;

  static response not_allowed(request const& req, std::string_view allow) {
    auto res = error(req, http::status::method_not_allowed, "method not allowed");
    res.set(http::field::allow, allow);
    return res;
  }

  response index(request const& req) const {
    std::string body =
        "catalog_server: a product catalog whose pages are cached by custom_cache_page\n"
        "\n"
        "GET  /products?category=C&page=N  a page of 20 products of a category (cached, ETag)\n"
        "GET  /products/<id>               one product (cached)\n"
        "PUT  /products/<id>               rename it; the body is the new name\n"
        "POST /products                    add one; the body is \"name,category\"\n"
        "POST /invalidate?tag=T            invalidate a tag (an admin route)\n"
        "GET  /greeting                    sets a cookie, so it is never served from the cache\n"
        "GET  /metrics                     cache and database counters (Prometheus)\n"
        "\n"
        "categories:";
    for (auto c : catalog_demo::categories) fmt::format_to(std::back_inserter(body), " {}", c);
    body += '\n';
    return make_response(req, http::status::ok, "text/plain; charset=utf-8", std::move(body));
  }

  response list(request const& req) const {
    ccp::request_view const view(req);
    std::string const category = view.query("category");
    // Unknown categories are 404, which is not cached: a client cannot fill
    // the cache with pages and tags for categories that do not exist.
    if (!catalog_demo::is_category(category))
      return error(req, http::status::not_found,
                   fmt::format("unknown category; one of: {}", fmt::join(catalog_demo::categories, ", ")));
    std::size_t page = 1;
    if (view.has_query("page")) {
      auto n = parse_number<std::uint32_t>(view.query("page"));
      if (!n || *n == 0) return error(req, http::status::bad_request, "page must be a positive integer");
      page = *n;
    }
    auto const result = db_.list(category, page);
    json::array products;
    products.reserve(result.products.size());
    for (auto const& p : result.products) products.emplace_back(product_json(p));
    return json_response(req, http::status::ok,
                         json::object{{"category", utf8_text(category)},
                                      {"page", page},
                                      {"per_page", catalog::page_size},
                                      {"total", result.total},
                                      {"products", std::move(products)}});
  }

  response one_product(request const& req, ccp::fill_context& ctx) {
    auto const id = product_id(ccp::request_view(req).decoded_path());
    if (!id) return error(req, http::status::not_found, "no such product");
    if (req.method() == http::verb::put) return rename(req, *id);

    // The category tag must be added before the product is read: a rename
    // that lands in between then keeps this response out of the cache.
    auto const category = db_.category_of(*id);
    if (!category) return error(req, http::status::not_found, "no such product");
    ctx.add_tag("category-" + *category);
    auto const p = db_.find(*id);
    if (!p) return error(req, http::status::not_found, "no such product");
    return json_response(req, http::status::ok, product_json(*p));
  }

  response rename(request const& req, int id) {
    std::string_view const name = trim(req.body());
    if (auto why = bad_name(name)) return error(req, http::status::bad_request, *why);
    auto const p = db_.rename(id, std::string(name));
    if (!p) return error(req, http::status::not_found, "no such product");
    // After the write: a page filled from the old data that is stored
    // later still recorded the old tag versions, and is refused.
    ccp::invalidate_tag(ccp::surrogate_from_model("product", id));
    ccp::invalidate_tag("category-" + p->category);
    return json_response(req, http::status::ok, product_json(*p));
  }

  response create(request const& req) {
    std::string_view const body = req.body();
    auto const comma = body.rfind(','); // the name may contain commas, a category cannot
    if (comma == std::string_view::npos)
      return error(req, http::status::bad_request, "the body must be \"name,category\"");
    std::string_view const name = trim(body.substr(0, comma));
    std::string_view const category = trim(body.substr(comma + 1));
    if (auto why = bad_name(name)) return error(req, http::status::bad_request, *why);
    if (!catalog_demo::is_category(category))
      return error(req, http::status::bad_request,
                   fmt::format("unknown category; one of: {}", fmt::join(catalog_demo::categories, ", ")));
    auto const p = db_.create(std::string(name), std::string(category));
    ccp::invalidate_tag("products"); // every list page may have changed
    auto res = json_response(req, http::status::created, product_json(p));
    res.set(http::field::location, fmt::format("/products/{}", p.id));
    return res;
  }

  // Real deployments must protect this route (authentication, or a listener
  // that only operators can reach): anyone who can call it can empty the cache.
  static response invalidate(request const& req) {
    ccp::request_view const view(req);
    std::string const tag = view.query("tag");
    if (tag.empty()) return error(req, http::status::bad_request, "missing ?tag=");
    try {
      auto const r = ccp::invalidate_tag(tag);
      return json_response(req, http::status::ok,
                           json::object{{"tag", utf8_text(r.tag)},
                                        {"backend", utf8_text(r.backend)},
                                        {"version", r.version},
                                        {"entries_removed", r.entries_removed}});
    } catch (std::exception const& e) {
      return error(req, http::status::internal_server_error, e.what());
    }
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
  response greeting(request const& req) {
    auto const n = visitors_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto res = make_response(req, http::status::ok, "text/plain; charset=utf-8",
                             fmt::format("Hello, visitor {}!\n", n));
    res.set(http::field::set_cookie, fmt::format("visitor={}; Path=/; HttpOnly", n));
    return res;
  }

  catalog& db_;
  std::atomic<std::uint64_t> visitors_{0};
  ccp::cached_handler<plain_handler> index_;
  ccp::cached_handler<plain_handler> list_;
  ccp::cached_handler<filling_handler> product_;
  ccp::cached_handler<plain_handler> greeting_;
};

// ---------------------------------------------------------------------------
// Server

// The routes' answer, or a 500 that closes the connection if they throw
// (an invalidation that failed after a write, for one).
http::message_generator respond(routes& r, request&& req) {
  auto const version = req.version();
  try {
    return r(std::move(req));
  } catch (std::exception const& e) {
    response res{http::status::internal_server_error, version};
    res.set(http::field::server, "catalog_server");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(false);
    res.body() = json::serialize(json::object{{"error", utf8_text(e.what())}}) + '\n';
    res.prepare_payload();
    return res;
  }
}

class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, routes& r) : stream_(std::move(socket)), routes_(r) {}
  void run() { read(); }

private:
  void read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  // Any read error, a malformed request included, ends the connection.
  void on_read(beast::error_code ec) {
    if (ec) return close();
    http::message_generator msg = respond(routes_, std::move(req_));
    bool const keep_alive = msg.keep_alive();
    stream_.expires_after(std::chrono::seconds(30));
    beast::async_write(stream_, std::move(msg),
                       [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                         if (ec || !keep_alive) return self->close();
                         self->read();
                       });
  }
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  request req_;
  routes& routes_;
};

void accept(tcp::acceptor& acceptor, routes& r) {
  acceptor.async_accept(asio::make_strand(acceptor.get_executor()),
                        [&acceptor, &r](beast::error_code ec, tcp::socket s) {
                          if (!ec) std::make_shared<session>(std::move(s), r)->run();
                          if (acceptor.is_open()) accept(acceptor, r);
                        });
}

// ---------------------------------------------------------------------------
// Command line

constexpr char const* usage =
    "usage: catalog_server [--port N] [--threads N] [--backend URL | --config FILE] [--help]";

struct options {
  unsigned short port = 8080;
  unsigned threads = 2;
  std::optional<std::string> backend;
  std::optional<std::string> config;
};

// The options, or nothing after printing why they are wrong.
std::optional<options> parse_arguments(int argc, char** argv, bool& help) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    std::optional<std::string_view> value;
    if ((arg == "--port" || arg == "--threads" || arg == "--backend" || arg == "--config") && i + 1 < argc)
      value = argv[++i];
    if (arg == "--help" || arg == "-h") {
      help = true;
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

  catalog db;
  routes r(db);
  asio::io_context ioc(static_cast<int>(opts->threads));
  tcp::acceptor acceptor(ioc);
  beast::error_code ec;
  tcp::endpoint const endpoint(asio::ip::make_address_v4("127.0.0.1"), opts->port);
  if (acceptor.open(endpoint.protocol(), ec); !ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
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

  accept(acceptor, r);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < opts->threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  return 0;
}
