// libFuzzer targets in one executable (one build of the heavy headers);
// CCP_FUZZ_TARGET names the one a run exercises:
//
//   entry       arbitrary bytes from a store: decode_entry, and what a hit
//               replays from what decodes (one well-formed response)
//   request     targets, query strings, percent-encodings, Host and header
//               values: request_view, the key helpers, a cached handler
//   surrogates  normalize_surrogate and every CDN tag header emitter
//   config      backend URLs (registry, redis, CDNs) and the JSON configuration
//   engine      sequences of requests (four Accept-Language values, three
//               variants), invalidations (some failing) and unsafe requests
//               through cache_page: nothing served after an invalidation
//               may predate it, no variant answers for another
//
// A finding aborts (libFuzzer keeps the input); each becomes a test.
#include <custom_cache_page/cdn.hpp>
#include <custom_cache_page/config.hpp>
#include <custom_cache_page/custom_cache_page.hpp>
#include <custom_cache_page/detail/answer.hpp>
#include <custom_cache_page/detail/redis_options.hpp>

#include "../support/map_store.hpp"
#include "../support/messages.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;

namespace {

[[noreturn]] void finding(char const* what, std::string_view detail = {}) {
  std::fprintf(stderr, "FINDING: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Splits `data` at '\n' into at most `n` parts (the last keeps the rest).
std::vector<std::string_view> split(std::string_view data, std::size_t n) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    auto const at = data.find('\n');
    if (at == std::string_view::npos) break;
    parts.push_back(data.substr(0, at));
    data.remove_prefix(at + 1);
  }
  parts.push_back(data);
  parts.resize(n);
  return parts;
}

bool has_control(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

// The wire form of an answer must be exactly one response.
void check_one_response(http::message_generator gen, bool head, std::string_view what) {
  ccp_test::received written;
  std::string wire;
  try {
    wire = ccp_test::serialise(gen, written);
  } catch (std::exception const&) {
    finding("serialising failed", what);
  }
  boost::beast::error_code ec;
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.skip(head);
  parser.body_limit(boost::none);
  auto const used = parser.put(boost::asio::buffer(wire), ec);
  if (ec || !parser.is_done() || used != wire.size()) finding("a replay is not exactly one response", what);
}

void fuzz_entry(std::string_view data) {
  auto e = ccp::decode_entry(data);
  if (!e) return;
  if (ccp::decode_entry(ccp::encode_entry(*e)) == std::nullopt) finding("a decoded entry does not re-encode");
  auto entry = std::make_shared<ccp::cached_response const>(std::move(*e));
  for (auto method : {http::verb::get, http::verb::head}) {
    auto req = ccp_test::make_header("/", method);
    check_one_response(ccp::detail::answer_from(entry, req, {ccp::detail::answer_kind::hit, "", "fuzz", true}),
                       method == http::verb::head, "entry");
  }
  // Ranges: a 206's part, a 416, an If-Range against the entry's validators.
  for (char const* range : {"bytes=0-3", "bytes=-2", "bytes=5-", "bytes=4294967296-", "bytes=3-1"}) {
    auto req = ccp_test::make_header("/");
    req.set(http::field::range, range);
    req.set(http::field::if_range, entry->header("ETag"));
    check_one_response(ccp::detail::answer_from(entry, req, {ccp::detail::answer_kind::hit, "", "fuzz", true}), false,
                       "entry range");
  }
}

void fuzz_request(std::string_view data) {
  auto parts = split(data, 4);
  http::request<http::string_body> req{http::verb::get, boost::beast::string_view(parts[0].data(), parts[0].size()), 11};
  if (has_control(parts[1]) || has_control(parts[2]) || has_control(parts[3])) return; // Beast's parser refuses these
  req.set(http::field::host, boost::beast::string_view(parts[1].data(), parts[1].size()));
  req.set(http::field::if_none_match, boost::beast::string_view(parts[2].data(), parts[2].size()));
  req.set(http::field::accept_encoding, boost::beast::string_view(parts[3].data(), parts[3].size()));
  ccp::request_view view(req);
  auto const key = ccp::generate_cache_key(view);
  if (key != ccp::generate_cache_key(view)) finding("generate_cache_key is not deterministic");
  (void)ccp::generate_query_params_cache_key(view);
  (void)ccp::surrogate_from_path(view);
  (void)ccp::surrogate_from_query_params(view);
  (void)ccp::storage_key("p", key, {}, ccp::normalized_host(view));
  // Small, so that millions of distinct requests keep evicting rather than
  // growing the process.
  static auto backend = std::make_shared<ccp::memory_backend>(ccp::memory_backend_options{.max_bytes = std::size_t{4} << 20});
  static auto cached = ccp::cache_page({.timeout = std::chrono::seconds(60), .backend = backend, .add_etag = true},
                                       [](http::request<http::string_body> const& r) {
                                         http::response<http::string_body> res{http::status::ok, r.version()};
                                         res.set(http::field::vary, "Accept-Encoding");
                                         res.body() = "x";
                                         res.prepare_payload();
                                         return res;
                                       });
  check_one_response(cached(req), false, "request");
  check_one_response(cached(std::move(req)), false, "request, again");
}

void fuzz_surrogates(std::string_view data) {
  auto const normal = ccp::normalize_surrogate(data);
  if (ccp::normalize_surrogate(normal) != normal) finding("normalize_surrogate is not idempotent", data);
  auto parts = split(data, 8);
  std::vector<std::string_view> tags(parts.begin(), parts.end());
  for (auto const* syntax : {&ccp::fastly_tag_syntax, &ccp::cloudflare_tag_syntax, &ccp::varnish_tag_syntax}) {
    http::fields f;
    ccp::cdn_header_counters counters;
    ccp::emit_cdn_tag_header(f, tags, *syntax, counters);
    for (auto const& field : f)
      if (has_control(field.value()) || field.value().size() > syntax->max_header_bytes)
        finding("a CDN tag header could split the response or exceeds its limit", syntax->provider);
  }
}

template <class F>
void expect_clear_error(F f) {
  try {
    f();
  } catch (ccp::cache_error const&) {
    // a clear error: what bad configuration gets
  }
}

void fuzz_config(std::string_view data) {
  if (data.empty()) return;
  auto const rest = data.substr(1);
  ccp::registry r;
  switch (data[0] % 4) {
  case 0: expect_clear_error([&] { ccp::configure(r, rest); }); break;
  case 1: expect_clear_error([&] { (void)r.make_backend(rest); }); break;
  case 2: expect_clear_error([&] { (void)ccp::parse_redis_url(rest); }); break;
  default:
    expect_clear_error([&] {
      auto u = boost::urls::parse_uri(rest);
      if (!u) return;
      (void)ccp::detail::parse_fastly_url(*u);
      (void)ccp::detail::parse_cloudflare_url(*u);
      (void)ccp::detail::parse_varnish_url(*u);
    });
  }
}

// A store whose counters fail to bump while `down`: invalidations fail
// while lookups still work.
struct flaky_store : ccp_test::map_store {
  // Shared: the background retry may still read it after the run.
  std::shared_ptr<std::atomic<bool>> down = std::make_shared<std::atomic<bool>>(false);
  ccp::bump_result bump(std::string const& name, bool hard, std::uint64_t start, std::chrono::seconds ttl) {
    if (*down) throw ccp::cache_error(ccp::error::store_unavailable, "down");
    return map_store::bump(name, hard, start, ttl);
  }
};

// Three pages, each tagged with two of three tags; the data behind each
// tag has a generation, bumped before its invalidation as an application
// writes then invalidates; a PUT changes the page's own data. A 200 GET
// must show the current data.
struct catalog {
  std::array<int, 3> generation{};
  std::array<int, 3> local{};
  std::string render(int page) const {
    return fmt::format("page {} local {} t{}={} t{}={}", page, local[page], page, generation[page], (page + 1) % 3,
                       generation[(page + 1) % 3]);
  }
};

// Accept-Language values, some the same variant once normalised.
constexpr char const* languages[] = {"en", "fr", "EN ", "de ,fr"};
std::string language_of(http::request<http::string_body> const& req) {
  return ccp::detail::normalized_vary_value("accept-language", req[http::field::accept_language]);
}

void fuzz_engine(std::string_view data) {
  auto store = std::make_shared<flaky_store>();
  auto& down = *store->down;
  ccp::any_backend backend(std::make_shared<ccp::protocol_store<flaky_store>>(store));
  catalog db;
  auto handler = [&db](http::request<http::string_body> const& req, ccp::fill_context& ctx) {
    int const page = req.target().back() - '0';
    if (req.method() == http::verb::put) ++db.local[page];
    ctx.add_tag("t" + std::to_string(page));
    ctx.add_tag("t" + std::to_string((page + 1) % 3));
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::vary, "Accept-Language");
    res.body() = db.render(page) + " " + language_of(req);
    res.prepare_payload();
    return res;
  };
  auto cached = ccp::cache_page({.timeout = std::chrono::seconds(600), .tags = {ccp::versioned("all")}, .backend = backend}, handler);
  for (unsigned char op : data) {
    int const n = op % 3;
    std::string const target = "/page/" + std::to_string(n);
    switch ((op / 3) % 6) {
    case 0:
    case 1: {
      auto req = ccp_test::make_request(http::verb::get, target, {{"Accept-Language", languages[(op >> 5) % 4]}});
      auto const expected = db.render(n) + " " + language_of(req);
      auto got = ccp_test::receive(cached(std::move(req)));
      if (got.response.result() == http::status::ok && got.body() != expected)
        finding("served data older than an invalidation, or another variant's", got.body() + " instead of " + expected);
      break;
    }
    case 2:
      ++db.generation[n];
      try {
        backend.invalidate_tag("t" + std::to_string(n), op >= 128 ? ccp::purge_mode::soft : ccp::purge_mode::hard);
      } catch (ccp::cache_error const&) {
      }
      break;
    case 3: ccp_test::receive(cached(ccp_test::make_request(http::verb::put, target, {}, "x"))); break;
    case 4: down = !down.load(); break;
    default: ccp_test::receive(cached(ccp_test::make_request(http::verb::head, target)), true);
    }
  }
  down = false;
}

using target_function = void (*)(std::string_view);

target_function chosen() {
  char const* name = std::getenv("CCP_FUZZ_TARGET");
  std::string_view const n = name != nullptr ? name : "";
  if (n == "entry") return fuzz_entry;
  if (n == "request") return fuzz_request;
  if (n == "surrogates") return fuzz_surrogates;
  if (n == "config") return fuzz_config;
  if (n == "engine") return fuzz_engine;
  std::fprintf(stderr, "CCP_FUZZ_TARGET must be one of: entry request surrogates config engine\n");
  std::exit(2);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  static target_function const target = chosen();
  target(std::string_view(reinterpret_cast<char const*>(data), size));
  return 0;
}
