// The HTTP decisions of one request (RFC 9111, RFC 9110, RFC 9211) as plain
// functions on headers: tested without I/O, used by cache_page.
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/cache_options.hpp>
#include <custom_cache_page/entry.hpp>
#include <custom_cache_page/stats.hpp>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/verb.hpp>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

namespace custom_cache_page::detail {

namespace beast = boost::beast;

inline bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Every field `name` of a header, as a range. (Not std::ranges::subrange:
// clang 14 with libstdc++ 12 cannot check its concepts over Beast's
// iterators.)
template <class Iterator>
struct field_range {
  Iterator first, last;
  Iterator begin() const { return first; }
  Iterator end() const { return last; }
};
template <class Fields, class Name>
auto all_of_field(Fields const& fields, Name const& name) {
  auto [first, last] = fields.equal_range(name);
  return field_range<decltype(first)>{first, last};
}

// Calls f(item) for each comma-separated, trimmed, non-empty item; commas
// inside a quoted string (no-cache="Set-Cookie, X-A") do not separate.
template <class F>
void for_each_list_item(std::string_view list, F&& f) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size()) {
      char c = list[i];
      if (quoted && c == '\\') {
        ++i;
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (quoted || c != ',') continue;
    }
    auto item = trim(list.substr(start, i - start));
    if (!item.empty()) f(item);
    start = i + 1;
  }
}

// The directive `name` of a Cache-Control value: nothing when absent, its
// argument (possibly empty, quotes removed) when present.
inline std::optional<std::string_view> cache_directive(std::string_view cache_control, std::string_view name) {
  std::optional<std::string_view> found;
  for_each_list_item(cache_control, [&](std::string_view item) {
    auto eq = item.find('=');
    if (found || !iequals(trim(item.substr(0, eq)), name)) return;
    std::string_view arg = eq == std::string_view::npos ? std::string_view{} : trim(item.substr(eq + 1));
    if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"') arg = arg.substr(1, arg.size() - 2);
    found = arg;
  });
  return found;
}

// The field whose directives govern this cache (RFC 9213): the targeted
// field named by cache_options::targeted_cache_control when the response
// has it, Cache-Control otherwise.
inline std::string_view governing_field(http::response_header<> const& res, cache_options const& o) {
  if (!o.targeted_cache_control.empty() && res.find(o.targeted_cache_control) != res.end()) return o.targeted_cache_control;
  return "Cache-Control";
}

// The directive `name` in any field `field` of a header.
template <class Fields>
std::optional<std::string_view> directive_in(Fields const& h, std::string_view field, std::string_view name) {
  for (auto const& f : all_of_field(h, field))
    if (auto arg = cache_directive(f.value(), name)) return arg;
  return std::nullopt;
}

// A number of digits only, capped at 2^31 (delta-seconds: RFC 9111 §1.2.2).
inline std::optional<long long> whole_number(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  constexpr long long cap = 2147483648LL;
  long long n = 0;
  for (char c : s) n = std::min(cap, n * 10 + (c - '0'));
  return n;
}
inline std::optional<long long> delta_seconds(std::optional<std::string_view> arg) {
  return arg ? whole_number(*arg) : std::nullopt;
}

// RFC 9111 §4.4: methods whose success invalidates what GET would return.
inline bool is_unsafe(http::verb m) {
  return m != http::verb::get && m != http::verb::head && m != http::verb::options && m != http::verb::trace;
}

// Why the request must not be answered from or stored in the cache; empty
// when it may. `method` is handled apart (unsafe methods invalidate).
inline std::optional<std::string_view> bypass_reason(request_view const& r, cache_options const& o) {
  if (!r.valid()) return "malformed-target";
  if (r.has(http::field::authorization) && !o.cache_authorized) return "authorization";
  return std::nullopt;
}

// Fields not replayed from a stored response (never_replayed, entry.hpp)
// and those named by Connection. An upstream Cache-Status is kept: ours is
// appended to it on every answer.
inline bool stored_field(http::response_header<> const& res, http::field f, std::string_view name) {
  if (never_replayed(f)) return false;
  bool listed = false;
  for (auto const& c : all_of_field(res, http::field::connection))
    for (auto const item : http::token_list(c.value())) listed = listed || iequals(item, name);
  return !listed;
}

// Why a handler's response must not be stored; empty when it may.
inline std::optional<not_stored_reason> not_storable(http::response_header<> const& res, std::size_t body_size,
                                                     cache_options const& o) {
  if (std::find(o.cacheable_statuses.begin(), o.cacheable_statuses.end(), res.result()) == o.cacheable_statuses.end())
    return not_stored_reason::status;
  if (res.find(http::field::set_cookie) != res.end()) return not_stored_reason::set_cookie;
  auto const governing = governing_field(res, o);
  if (directive_in(res, governing, "no-store")) return not_stored_reason::no_store;
  if (directive_in(res, governing, "private")) return not_stored_reason::private_response;
  for (auto const& f : all_of_field(res, http::field::vary)) {
    bool star = false;
    for_each_list_item(f.value(), [&](std::string_view item) { star = star || item == "*"; });
    if (star) return not_stored_reason::vary_star;
  }
  if (body_size > o.max_body_size) return not_stored_reason::too_large;
  for (auto const& f : res)
    if (stored_field(res, f.name(), f.name_string()) && !replayable_field(f.name_string(), f.value()))
      return not_stored_reason::invalid_field; // every lookup would find it corrupt
  return std::nullopt;
}

// Lower-case field names listed by Vary.
inline std::vector<std::string> vary_fields(http::response_header<> const& res) {
  std::vector<std::string> out;
  for (auto const& f : all_of_field(res, http::field::vary))
    for (auto const item : http::token_list(f.value())) {
      std::string name(item);
      for (auto& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
    }
  return out;
}

// Every value of the request field `name`, joined as one list.
inline std::string joined_field_values(http::request_header<> const& req, std::string const& name) {
  std::string value;
  for (auto const& f : all_of_field(req, name)) {
    if (!value.empty()) value += ", ";
    value.append(f.value().data(), f.value().size());
  }
  return value;
}

// A request field's value as Vary compares it (RFC 9111 §4.1: values may
// be normalised): list items trimmed and joined by ", ", and lower case in
// the Accept fields, whose tokens are case-insensitive. "en-GB ,fr" and
// "en-gb, fr" select the same variant.
inline std::string normalized_vary_value(std::string_view lower_name, std::string_view value) {
  bool const fold = lower_name == "accept" || lower_name == "accept-encoding" || lower_name == "accept-language" ||
                    lower_name == "accept-charset";
  std::string out;
  out.reserve(value.size());
  for_each_list_item(value, [&](std::string_view item) {
    if (!out.empty()) out += ", ";
    out += item;
  });
  if (fold)
    for (auto& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return out;
}

// The request's value for each varying field, normalised.
inline std::vector<std::pair<std::string, std::string>> vary_values(http::request_header<> const& req,
                                                                    std::vector<std::string> const& names) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto const& name : names) out.emplace_back(name, normalized_vary_value(name, joined_field_values(req, name)));
  return out;
}

// Whether the request selects the variant `e` was stored for.
inline bool vary_matches(cached_response const& e, http::request_header<> const& req) {
  for (auto const& [name, value] : e.vary)
    if (normalized_vary_value(name, joined_field_values(req, name)) != value) return false;
  return true;
}

// Which of `slots` variant keys the request's values for the fields `e`
// varies on select (FNV-1a: the same in every process that shares a store).
// Variants that share a slot replace each other; they never answer for
// each other, as each entry keeps its own values.
inline std::size_t vary_slot(cached_response const& e, http::request_header<> const& req, std::size_t slots) {
  std::uint64_t h = 14695981039346656037ull;
  auto const mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; // ends each value: ("a", "") differs from ("", "a")
  };
  for (auto const& item : e.vary) mix(normalized_vary_value(item.first, joined_field_values(req, item.first)));
  return static_cast<std::size_t>(h % slots);
}

// Whether a stored entry may answer this request: every requested tag was
// recorded (at its current version, unless the backend found the entry
// soft-purged: then it checked the versions against the floors), and every
// varying field matches.
inline bool entry_answers(cached_response const& e, std::span<resolved_tag const> tags,
                          std::span<std::uint64_t const> versions, http::request_header<> const& req,
                          bool soft_purged = false) {
  for (std::size_t i = 0; i < tags.size(); ++i) {
    auto it = std::find_if(e.tags.begin(), e.tags.end(), [&](tag_version const& t) { return t.name == tags[i].name; });
    if (it == e.tags.end() || i >= versions.size() || (it->version != versions[i] && !soft_purged)) return false;
  }
  return vary_matches(e, req);
}

// How an entry found by a lookup may be used at `now`.
enum class freshness { fresh, revalidate_stale, error_stale, unusable };
struct staleness {
  freshness state = freshness::unusable;
  std::chrono::seconds stale_for{0}; // how long it has been stale
};

// A soft-purged entry counts as stale from the purge (taken as now when it
// had not expired yet); the windows are the entry's own.
inline staleness judge(cached_response const& e, bool soft_purged, cached_response::clock::time_point now) {
  using namespace std::chrono;
  if (!soft_purged && now < e.expires_at) return {freshness::fresh, seconds(0)};
  auto const stale_for = now < e.expires_at ? nanoseconds(0) : duration_cast<nanoseconds>(now - e.expires_at);
  auto const whole = duration_cast<seconds>(stale_for);
  if (stale_for < e.stale_while_revalidate) return {freshness::revalidate_stale, whole};
  if (stale_for < e.stale_if_error) return {freshness::error_stale, whole};
  return {freshness::unusable, whole};
}

// A stale window from the governing field's directive, else the
// configured one; none at all for a response that must be revalidated
// once stale (must-revalidate, proxy-revalidate: RFC 9111 §5.2.2.2, §5.2.2.8).
inline std::chrono::seconds stale_window(http::response_header<> const& res, cache_options const& o,
                                         std::string_view directive, std::chrono::seconds configured) {
  auto const governing = governing_field(res, o);
  if (directive_in(res, governing, "must-revalidate") || directive_in(res, governing, "proxy-revalidate"))
    return std::chrono::seconds(0);
  if (auto n = delta_seconds(directive_in(res, governing, directive))) return std::chrono::seconds(*n);
  return configured;
}

// The cache's own freshness lifetime from a targeted field (RFC 9213
// §2.1: s-maxage, else max-age), when one governs and gives it.
inline std::optional<std::chrono::seconds> targeted_lifetime(http::response_header<> const& res, cache_options const& o) {
  auto const governing = governing_field(res, o);
  if (governing == "Cache-Control") return std::nullopt;
  auto n = delta_seconds(directive_in(res, governing, "s-maxage"));
  if (!n) n = delta_seconds(directive_in(res, governing, "max-age"));
  if (!n) return std::nullopt;
  return std::chrono::seconds(*n);
}

// Whether a stored response may answer only after the handler validated
// it (Cache-Control: no-cache without field names, RFC 9111 §5.2.2.4).
inline bool needs_validation(http::response_header<> const& res, cache_options const& o) {
  auto const arg = directive_in(res, governing_field(res, o), "no-cache");
  return arg && arg->empty();
}

inline bool has_validator(cached_response const& e) {
  return !e.header("ETag").empty() || !e.header("Last-Modified").empty();
}

// The stored header updated by a 304 (RFC 9111 §4.3.4): each field the 304
// carries replaces the stored ones of that name; the status stays.
inline http::response_header<> updated_header(cached_response const& e, http::response_header<> const& not_modified_res) {
  http::response_header<> out;
  out.result(e.status);
  for (auto const& [n, v] : e.headers) out.insert(n, v);
  for (auto const& f : not_modified_res)
    if (stored_field(not_modified_res, f.name(), f.name_string())) out.erase(f.name_string());
  for (auto const& f : not_modified_res)
    if (stored_field(not_modified_res, f.name(), f.name_string())) out.insert(f.name_string(), f.value());
  return out;
}

// IMF-fixdate (RFC 9110 §5.6.7).
inline std::string http_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  return fmt::format("{:%a, %d %b %Y %H:%M:%S} GMT", fmt::gmtime(tt));
}

namespace http_dates {

inline constexpr std::string_view weekdays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
inline constexpr std::string_view long_weekdays[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                                     "Friday", "Saturday", "Sunday"};
inline constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

template <std::size_t N>
bool one_of(std::string_view s, std::string_view const (&names)[N]) {
  return std::find(std::begin(names), std::end(names), s) != std::end(names);
}

// Digits only, all of `s`.
inline std::optional<int> number(std::string_view s) {
  int n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || s.front() == '-' || s.front() == '+') return std::nullopt;
  return n;
}

// "Nov", 6, 1994, "08:49:37" to a time point; nothing for an impossible date.
inline std::optional<std::chrono::system_clock::time_point> compose(std::string_view month, std::optional<int> d,
                                                                    std::optional<int> year, std::string_view hms) {
  using namespace std::chrono;
  auto const m = std::find(std::begin(months), std::end(months), month) - std::begin(months) + 1;
  auto const h = number(hms.substr(0, 2)), mi = number(hms.substr(3, 2)), se = number(hms.substr(6, 2));
  if (m > 12 || !d || !year || !h || !mi || !se || hms.size() != 8 || hms[2] != ':' || hms[5] != ':') return std::nullopt;
  year_month_day const ymd{std::chrono::year{*year}, std::chrono::month{static_cast<unsigned>(m)},
                           std::chrono::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok() || *h > 23 || *mi > 59 || *se > 60) return std::nullopt;
  // In seconds, then clamped: system_clock's nanoseconds end in 2262.
  sys_seconds const t = sys_days{ymd} + hours{*h} + minutes{*mi} + seconds{*se};
  using clock = system_clock;
  if (t >= floor<seconds>(clock::time_point::max())) return clock::time_point::max();
  if (t <= ceil<seconds>(clock::time_point::min())) return clock::time_point::min();
  return time_point_cast<clock::duration>(t);
}

// RFC 850's two-digit year: the one within 50 years of now, never more
// than 50 years ahead (RFC 9110 §5.6.7).
inline std::optional<int> two_digit_year(std::string_view yy) {
  auto const n = yy.size() == 2 ? number(yy) : std::nullopt;
  if (!n) return std::nullopt;
  using namespace std::chrono;
  int const now = static_cast<int>(year_month_day{floor<days>(system_clock::now())}.year());
  int y = now - now % 100 + *n;
  if (y > now + 50) y -= 100;
  return y;
}

} // namespace http_dates

// An HTTP-date in any of its three forms (RFC 9110 §5.6.7): IMF-fixdate
// "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT"
// and asctime "Sun Nov  6 08:49:37 1994". Nothing for anything else.
inline std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view s) {
  using namespace http_dates;
  if (s.size() == 29 && one_of(s.substr(0, 3), weekdays) && s.substr(3, 2) == ", " && s[7] == ' ' && s[11] == ' ' &&
      s[16] == ' ' && s.substr(25) == " GMT")
    return compose(s.substr(8, 3), number(s.substr(5, 2)), number(s.substr(12, 4)), s.substr(17, 8));
  if (s.size() == 24 && one_of(s.substr(0, 3), weekdays) && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ')
    return compose(s.substr(4, 3), number(s[8] == ' ' ? s.substr(9, 1) : s.substr(8, 2)), number(s.substr(20, 4)),
                   s.substr(11, 8));
  auto const comma = s.find(", ");
  if (comma == std::string_view::npos || !one_of(s.substr(0, comma), long_weekdays)) return std::nullopt;
  auto const rest = s.substr(comma + 2); // "06-Nov-94 08:49:37 GMT"
  if (rest.size() != 22 || rest[2] != '-' || rest[6] != '-' || rest[9] != ' ' || rest.substr(18) != " GMT") return std::nullopt;
  return compose(rest.substr(3, 3), number(rest.substr(0, 2)), two_digit_year(rest.substr(7, 2)), rest.substr(10, 8));
}

// If-None-Match against an entity tag, weak comparison (RFC 9110 §13.1.2).
// "*" matches any current representation, with or without an ETag.
inline bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  auto opaque = [](std::string_view t) { return t.starts_with("W/") ? t.substr(2) : t; };
  bool match = false;
  for_each_list_item(if_none_match, [&](std::string_view item) {
    match = match || item == "*" || (!etag.empty() && opaque(item) == opaque(etag));
  });
  return match;
}

// Whether a conditional GET/HEAD may be answered 304 from `e`. If-None-Match
// takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
inline bool not_modified(http::request_header<> const& req, cached_response const& e) {
  auto inm = req.find(http::field::if_none_match);
  if (inm != req.end()) return etag_matches(inm->value(), e.header("ETag"));
  auto ims = req.find(http::field::if_modified_since);
  auto last_modified = e.header("Last-Modified");
  if (ims == req.end() || last_modified.empty()) return false;
  auto since = parse_http_date(ims->value());
  auto modified = parse_http_date(last_modified);
  return since && modified && *modified <= *since;
}

// A request's Cache-Control directives (RFC 9111 §5.2.1), honoured with
// cache_options::honour_request_directives. Pragma: no-cache counts as
// no-cache when there is no Cache-Control (§5.4).
struct request_directives {
  bool no_store = false;
  bool no_cache = false;
  bool only_if_cached = false;
  std::optional<long long> max_age, min_fresh, max_stale; // max-stale without a value: any staleness
};

inline request_directives read_request_directives(http::request_header<> const& req) {
  request_directives d;
  constexpr std::string_view cc = "Cache-Control";
  d.no_store = directive_in(req, cc, "no-store").has_value();
  d.no_cache = directive_in(req, cc, "no-cache").has_value();
  d.only_if_cached = directive_in(req, cc, "only-if-cached").has_value();
  if (auto a = directive_in(req, cc, "max-age")) d.max_age = delta_seconds(a).value_or(0); // invalid: stale (§4.2.1)
  if (auto a = directive_in(req, cc, "min-fresh")) d.min_fresh = delta_seconds(a);
  if (auto a = directive_in(req, cc, "max-stale")) d.max_stale = a->empty() ? 2147483648LL : delta_seconds(a).value_or(0);
  if (req.find(http::field::cache_control) == req.end())
    for (auto const& f : all_of_field(req, http::field::pragma))
      d.no_cache = d.no_cache || cache_directive(f.value(), "no-cache").has_value();
  return d;
}

// A single byte range of a stored body (RFC 9110 §14.1.2), inclusive.
struct byte_range {
  std::size_t first = 0, last = 0;
};

// How a GET with Range is answered from a stored 200 (RFC 9110 §14.2):
// the whole body (no Range, several ranges, another unit, a syntax error,
// or an If-Range that does not match), one range as 206, or 416.
enum class range_outcome { whole, partial, unsatisfiable };

// If-Range holds when it is the entry's strong ETag, or its Last-Modified
// exactly (RFC 9110 §13.1.5: strong comparison).
inline bool if_range_holds(http::request_header<> const& req, cached_response const& e) {
  auto const it = req.find(http::field::if_range);
  if (it == req.end()) return true;
  auto const v = trim(it->value());
  if (v.starts_with("\"") || v.starts_with("W/")) return !v.starts_with("W/") && v == e.header("ETag");
  return !e.header("Last-Modified").empty() && v == e.header("Last-Modified");
}

inline range_outcome requested_range(http::request_header<> const& req, cached_response const& e, byte_range& out) {
  auto const it = req.find(http::field::range);
  if (it == req.end() || req.method() != http::verb::get || e.status != 200 || !if_range_holds(req, e)) return range_outcome::whole;
  auto spec = trim(it->value());
  if (spec.size() < 6 || !iequals(spec.substr(0, 6), "bytes=")) return range_outcome::whole;
  spec = trim(spec.substr(6));
  auto const dash = spec.find('-');
  if (dash == std::string_view::npos || spec.find(',') != std::string_view::npos) return range_outcome::whole;
  auto const first_text = trim(spec.substr(0, dash)), last_text = trim(spec.substr(dash + 1));
  auto const first = whole_number(first_text), last = whole_number(last_text);
  auto const size = e.body.size();
  if (first_text.empty()) { // a suffix: the last N bytes
    if (!last) return range_outcome::whole;
    if (*last == 0 || size == 0) return range_outcome::unsatisfiable;
    out = {size - std::min<std::size_t>(size, static_cast<std::size_t>(*last)), size - 1};
    return range_outcome::partial;
  }
  if (!first || (!last_text.empty() && (!last || *last < *first))) return range_outcome::whole; // invalid: ignored
  if (static_cast<std::size_t>(*first) >= size) return range_outcome::unsatisfiable;
  out = {static_cast<std::size_t>(*first), last ? std::min(size - 1, static_cast<std::size_t>(*last)) : size - 1};
  return range_outcome::partial;
}

// The request a fill gives the handler: for the whole representation,
// whatever the client's Range and conditionals (the entry answers those),
// or when `stored` is set, conditional on its validators (RFC 9111 §4.3.1).
inline void ask_for_whole(http::request_header<>& req, cached_response const* stored) {
  for (auto f : {http::field::range, http::field::if_range, http::field::if_none_match, http::field::if_modified_since,
                 http::field::if_match, http::field::if_unmodified_since})
    req.erase(f);
  if (stored == nullptr) return;
  if (auto etag = stored->header("ETag"); !etag.empty()) req.set(http::field::if_none_match, etag);
  if (auto modified = stored->header("Last-Modified"); !modified.empty()) req.set(http::field::if_modified_since, modified);
}

// Cache-Control with a max-age of at most `max_age` seconds, as Django's
// patch_cache_control: added when missing, its value replaced in place when
// larger (or not a number, or whatever it was unless `keep_smaller`); every
// other byte as it was.
inline std::string with_max_age(std::string_view cache_control, long long max_age, bool keep_smaller) {
  max_age = std::max(0LL, max_age);
  std::optional<std::string_view> item_found, value; // within cache_control
  for_each_list_item(cache_control, [&](std::string_view item) {
    auto const eq = item.find('=');
    if (item_found || !iequals(trim(item.substr(0, eq)), "max-age")) return;
    item_found = item;
    if (eq != std::string_view::npos) value = trim(item.substr(eq + 1));
  });
  if (!item_found) return std::string(cache_control) + (trim(cache_control).empty() ? "" : ", ") + fmt::format("max-age={}", max_age);
  long long existing = 0;
  bool const numeric = value && !value->empty() &&
                       std::from_chars(value->data(), value->data() + value->size(), existing).ptr == value->data() + value->size();
  if (numeric && keep_smaller && existing >= 0 && existing <= max_age) return std::string(cache_control);
  auto const replaced = value ? *value : *item_found;
  auto const at = static_cast<std::size_t>(replaced.data() - cache_control.data());
  return std::string(cache_control.substr(0, at)) + (value ? fmt::format("{}", max_age) : fmt::format("max-age={}", max_age)) +
         std::string(cache_control.substr(at + replaced.size()));
}

// The corrected initial age of a response the handler just gave (RFC 9111
// §4.2.3, no transit delay): its Age, or how long before `now` its Date
// says it was generated, whichever is larger; delta-seconds capped at 2^31
// (§1.2.2).
inline std::chrono::seconds initial_age(http::response_header<> const& res, std::chrono::system_clock::time_point now) {
  constexpr long long cap = 2147483648LL;
  long long age = whole_number(trim(res[http::field::age])).value_or(0);
  if (auto const date = parse_http_date(res[http::field::date]); date && *date < now)
    age = std::max<long long>(age, std::min<long long>(cap, std::chrono::duration_cast<std::chrono::seconds>(now - *date).count()));
  return std::chrono::seconds(age);
}


// One Cache-Status member (RFC 9211), appended to what is already there.
inline std::string cache_status(std::string_view existing, std::string_view cache_name, std::string_view params) {
  std::string out;
  out.reserve(existing.size() + cache_name.size() + params.size() + 4);
  if (!trim(existing).empty()) {
    out.append(existing);
    out += ", ";
  }
  out += cache_name;
  out += "; ";
  out += params;
  return out;
}

} // namespace custom_cache_page::detail
