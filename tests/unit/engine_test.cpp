// The request engine's transitions, table-driven: each row starts the
// engine on a request and feeds it a script of events, checking the action
// each event leads to. No threads, sockets, sleeps or stores: time and
// every outcome come in with the events.
#include <custom_cache_page/detail/engine.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

// Rows and events name only what differs from their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace ccp = custom_cache_page;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using ccp::detail::answer_kind;
using ccp::detail::backend_state;
using ccp::detail::lock_outcome;
using ccp::detail::step;
using ccp::detail::store_outcome;

namespace {

// An entry found by a lookup, relative to the row's clock: `fresh_for`
// seconds of freshness left (negative: stale for that long).
struct found {
  int fresh_for = 60;
  int swr = 0, sie = 0;
  bool soft = false;    // a tag of it was soft-purged
  bool moved = false;   // a counter moved since it was built
  std::string vary_language; // the Accept-Language it was built for; empty: no Vary
  bool etag = false;         // it has an ETag, and is kept 60 s past its expiry for revalidation
};
struct nothing_found {};
struct pass_found {}; // no entry, and another process's pass marker
struct lookup_error {};
struct joined { bool leading; };
struct locked { lock_outcome outcome; int at_ms = 0; std::optional<found> read = {}; }; // read: found under the lock
struct paused {};
struct flight_done { bool stored; };
struct snapshot { bool ok = true; };
struct responded { unsigned status = 200; std::string cache_control; };
struct threw {};
struct store_done { store_outcome outcome; };
struct target_done { bool ok = true; };
struct marked {};
using event = std::variant<found, nothing_found, pass_found, lookup_error, joined, locked, paused, flight_done, snapshot,
                           responded, threw, store_done, target_done, marked>;

struct expect {
  event in;
  step out;
};

struct row {
  char const* name;
  std::vector<expect> script;
  std::string params;                           // Cache-Status parameters of the answer
  step first = step::lookup;                    // the action start() returns
  http::verb method = http::verb::get;
  std::function<void(ccp::cache_options&)> configure = {};
  std::function<void(http::request<http::string_body>&)> request = {};
  backend_state backend = backend_state::ok;
  answer_kind kind = answer_kind::hit;          // when the last action answers from an entry
};

struct runner {
  ccp::cache_options options;
  ccp::stats counters;
  http::request<http::string_body> req{http::verb::get, "/products?page=2", 11};
  bool background = false; // the front end refreshes in the background
  ccp::detail::engine en{options, counters, background};
  ccp::fill_context ctx;
  ccp::cached_response::clock::time_point const t0 = ccp::cached_response::clock::now();
  std::shared_ptr<ccp::cached_response> pending; // the entry a store action carries

  std::shared_ptr<ccp::cached_response> entry(found const& f) const {
    auto e = std::make_shared<ccp::cached_response>();
    e->body = "stored";
    e->stored_at = t0 - 10s;
    e->expires_at = t0 + std::chrono::seconds(f.fresh_for);
    e->stale_while_revalidate = std::chrono::seconds(f.swr);
    e->stale_if_error = std::chrono::seconds(f.sie);
    for (auto const& t : en.tags()) e->tags.push_back({t.name, 7, t.versioned, t.guard});
    if (!f.vary_language.empty()) e->vary = {{"accept-language", f.vary_language}};
    if (f.etag) {
      e->headers = {{"ETag", "\"e1\""}, {"X-Old", "1"}, {"Date", ccp::detail::http_date(t0 - 1h)}};
      e->revalidate_for = 60s;
    }
    return e;
  }

  ccp::lookup_result lookup(found const& f) const {
    return {entry(f), std::vector<std::uint64_t>(en.tags().size(), f.moved ? 8 : 7), f.soft};
  }

  ccp::detail::action feed(event const& ev) {
    return std::visit([&](auto const& e) { return on(e); }, ev);
  }
  ccp::detail::action on(found const& f) { return en.looked_up(lookup(f), req.base(), t0); }
  ccp::detail::action on(nothing_found) { return en.looked_up({}, req.base(), t0); }
  ccp::detail::action on(pass_found) {
    ccp::lookup_result r;
    r.pass_marked = true;
    return en.looked_up(std::move(r), req.base(), t0);
  }
  ccp::detail::action on(marked) { return en.pass_marked(); }
  ccp::detail::action on(lookup_error) { return en.lookup_failed(req.base(), t0); }
  ccp::detail::action on(joined j) { return en.joined(j.leading); }
  ccp::detail::action on(locked const& l) {
    return en.locked(l.outcome, l.read ? lookup(*l.read) : ccp::lookup_result{}, req.base(), t0 + std::chrono::milliseconds(l.at_ms));
  }
  ccp::detail::action on(paused) { return en.paused(); }
  ccp::detail::action on(flight_done f) { return en.flight_done(f.stored); }
  ccp::detail::action on(snapshot s) {
    return s.ok ? en.snapshot_taken(std::vector<std::uint64_t>(en.tags().size(), 7)) : en.snapshot_failed();
  }
  ccp::detail::action on(responded const& r) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    if (!r.cache_control.empty()) res.set(http::field::cache_control, r.cache_control);
    res.body() = "fresh";
    return en.response(res.base(), res.body(), ctx, req.base(), t0);
  }
  ccp::detail::action on(threw) { return en.handler_threw(); }
  ccp::detail::action on(store_done s) { return en.stored(s.outcome, pending); }
  ccp::detail::action on(target_done t) { return en.target_invalidated(t.ok); }
};

char const* name_of(step s) {
  static char const* const names[] = {"lookup",       "join",  "try_lead",          "lock",         "wait_flight",
                                      "pause",        "snapshot", "call_handler",   "store",        "mark_pass",  "invalidate_target",
                                      "answer_entry", "answer_response", "answer_unavailable", "rethrow"};
  return names[static_cast<int>(s)];
}

// The miss that this process leads: no entry, lead the flight, hold the
// lock, nothing stored meanwhile.
std::vector<expect> leading_miss() {
  return {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::held}, step::snapshot},
          {snapshot{}, step::call_handler}};
}

std::vector<expect> then(std::vector<expect> a, std::vector<expect> const& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<row> const& rows() {
  static std::vector<row> const table = {
      {"a fresh entry is a hit", {{found{}, step::answer_entry}}, ""},
      {"a miss leads, fills and stores",
       then(leading_miss(), {{responded{}, step::store}, {store_done{store_outcome::stored}, step::answer_entry}}),
       "fwd=miss; stored", step::lookup, http::verb::get, {}, {}, backend_state::ok, answer_kind::filled},
      {"a store refused because a counter moved answers the response unstored",
       then(leading_miss(), {{responded{}, step::store}, {store_done{store_outcome::refused}, step::answer_entry}}),
       "fwd=miss; detail=invalidated", step::lookup, http::verb::get, {}, {}, backend_state::ok, answer_kind::filled},
      {"a response that may not be shared is answered as is, and marked for other processes",
       then(leading_miss(), {{responded{200, "private"}, step::mark_pass}, {marked{}, step::answer_response}}),
       "fwd=miss; detail=private"},
      {"a 404 is not stored", then(leading_miss(), {{responded{404}, step::mark_pass}, {marked{}, step::answer_response}}),
       "fwd=miss; detail=status"},
      {"a pass marker: the miss runs the handler without a flight or a lock", {{pass_found{}, step::snapshot}}, ""},
      {"a pass marker ends the wait on another process's fill at once",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::elsewhere}, step::pause},
        {paused{}, step::lookup}, {pass_found{}, step::snapshot}},
       ""},
      {"a follower's own unstorable response leaves no marker (it did not lead)",
       {{nothing_found{}, step::join}, {joined{false}, step::wait_flight}, {flight_done{false}, step::snapshot},
        {snapshot{}, step::call_handler}, {responded{404}, step::answer_response}},
       "fwd=miss; detail=status"},
      {"a follower is answered from the entry its leader stored",
       {{nothing_found{}, step::join}, {joined{false}, step::wait_flight}, {flight_done{true}, step::lookup},
        {found{}, step::answer_entry}},
       "; detail=coalesced"},
      {"a follower whose leader stored nothing runs the handler itself",
       {{nothing_found{}, step::join}, {joined{false}, step::wait_flight}, {flight_done{false}, step::snapshot},
        {snapshot{}, step::call_handler}, {responded{}, step::store}},
       ""},
      {"a leader finds the entry a fill that just ended left",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::held, 0, found{}}, step::answer_entry}},
       "; detail=coalesced"},
      {"another process fills: pause, re-read, answer its entry",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::elsewhere}, step::pause},
        {paused{}, step::lookup}, {found{}, step::answer_entry}},
       "; detail=coalesced"},
      {"another process's lock comes free without an entry: this request leads",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::elsewhere}, step::pause},
        {paused{}, step::lookup}, {nothing_found{}, step::lock}, {locked{lock_outcome::held, 10}, step::snapshot}},
       ""},
      {"waiting on another process ends at coalesce_wait",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::elsewhere}, step::pause},
        {paused{}, step::lookup}, {nothing_found{}, step::lock}, {locked{lock_outcome::elsewhere, 5000}, step::snapshot}},
       ""},
      {"a lock that cannot be taken (store down) does not make the request wait",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::failed}, step::snapshot}}, ""},
      {"stale inside stale-while-revalidate: the leader refreshes",
       {{found{-5, 10}, step::try_lead}, {joined{true}, step::lock}, {locked{lock_outcome::held}, step::call_handler},
        {responded{}, step::store}},
       ""},
      {"stale inside stale-while-revalidate: the others answer stale at once",
       {{found{-5, 10}, step::try_lead}, {joined{false}, step::answer_entry}}, "; detail=revalidating", step::lookup,
       http::verb::get, {}, {}, backend_state::ok, answer_kind::stale},
      {"stale inside stale-while-revalidate, refreshed by another process: answer stale",
       {{found{-5, 10}, step::try_lead}, {joined{true}, step::lock}, {locked{lock_outcome::elsewhere}, step::answer_entry}},
       "; detail=revalidating", step::lookup, http::verb::get, {}, {}, backend_state::ok, answer_kind::stale},
      {"stale past stale-while-revalidate is a miss", {{found{-11, 10}, step::join}}, ""},
      {"a soft-purged entry is stale whatever its expiry", {{found{60, 10, 0, true}, step::try_lead}}, ""},
      {"an entry whose counter moved is a miss", {{found{60, 0, 0, false, true}, step::join}}, ""},
      {"a handler that throws inside stale-if-error is answered stale",
       {{found{-5, 0, 30}, step::join}, {joined{true}, step::lock},
        {locked{lock_outcome::held, 0, found{-5, 0, 30}}, step::call_handler}, {threw{}, step::answer_entry}},
       "; detail=stale-if-error", step::lookup, http::verb::get, {}, {}, backend_state::ok, answer_kind::stale},
      {"a 503 inside stale-if-error is answered stale",
       {{found{-5, 0, 30}, step::join}, {joined{true}, step::lock},
        {locked{lock_outcome::held, 0, found{-5, 0, 30}}, step::call_handler}, {responded{503}, step::answer_entry}},
       "; fwd-status=503; detail=stale-if-error", step::lookup, http::verb::get, {}, {}, backend_state::ok,
       answer_kind::stale},
      {"a handler that throws past stale-if-error: the exception goes to the caller",
       {{found{-31, 0, 30}, step::join}, {joined{true}, step::lock},
        {locked{lock_outcome::held, 0, found{-31, 0, 30}}, step::call_handler}, {threw{}, step::rethrow}},
       ""},
      {"a store that is down: the handler answers, nothing is stored",
       {{lookup_error{}, step::call_handler}, {responded{}, step::answer_response}}, "fwd=miss; detail=store-unavailable"},
      {"a versions snapshot that fails: the response is not stored",
       {{nothing_found{}, step::join}, {joined{true}, step::lock}, {locked{lock_outcome::held}, step::snapshot},
        {snapshot{false}, step::call_handler}, {responded{}, step::answer_response}},
       "fwd=miss; detail=store-failed"},
      {"a HEAD miss runs the handler and stores nothing",
       {{nothing_found{}, step::call_handler}, {responded{}, step::answer_response}}, "fwd=miss; detail=head",
       step::lookup, http::verb::head},
      {"a variant for another Accept-Language is looked up under its own key, and filled there (RFC 9111 §4.1)",
       then({{found{60, 0, 0, false, false, "fr"}, step::lookup}, {nothing_found{}, step::join}, {joined{true}, step::lock},
             {locked{lock_outcome::held}, step::snapshot}, {snapshot{}, step::call_handler},
             {responded{}, step::store}},
            {{store_done{store_outcome::stored}, step::answer_entry}}),
       "fwd=vary-miss; stored", step::lookup, http::verb::get, {},
       [](auto& r) { r.set(http::field::accept_language, "en"); }, backend_state::ok, answer_kind::filled},
      {"the variant's own key holds it: a hit",
       {{found{60, 0, 0, false, false, "fr"}, step::lookup}, {found{60, 0, 0, false, false, "en"}, step::answer_entry}}, "",
       step::lookup, http::verb::get, {}, [](auto& r) { r.set(http::field::accept_language, "en"); }},
      {"a variant key holding yet another variant is a miss, filled there",
       {{found{60, 0, 0, false, false, "fr"}, step::lookup}, {found{60, 0, 0, false, false, "de"}, step::join}}, "",
       step::lookup, http::verb::get, {}, [](auto& r) { r.set(http::field::accept_language, "en"); }},
      {"max_vary_variants = 0: one entry per key, replaced",
       {{found{60, 0, 0, false, false, "fr"}, step::join}}, "", step::lookup, http::verb::get,
       [](auto& o) { o.max_vary_variants = 0; }, [](auto& r) { r.set(http::field::accept_language, "en"); }},
      {"request directives are ignored by default: max-stale does not answer stale",
       {{found{-5}, step::join}}, "", step::lookup, http::verb::get, {},
       [](auto& r) { r.set(http::field::cache_control, "max-stale=10"); }},
      {"max-stale answers a stale entry within it (RFC 9111 §5.2.1.2)",
       {{found{-5}, step::answer_entry}}, "; detail=max-stale", step::lookup, http::verb::get,
       [](auto& o) { o.honour_request_directives = true; }, [](auto& r) { r.set(http::field::cache_control, "max-stale=10"); },
       backend_state::ok, answer_kind::stale},
      {"max-stale past its bound is a miss", {{found{-15}, step::join}}, "", step::lookup, http::verb::get,
       [](auto& o) { o.honour_request_directives = true; }, [](auto& r) { r.set(http::field::cache_control, "max-stale=10"); }},
      {"min-fresh refuses an entry fresh for less (RFC 9111 §5.2.1.3): a refill, as refresh_if", {{found{60}, step::call_handler}}, "", step::lookup,
       http::verb::get, [](auto& o) { o.honour_request_directives = true; },
       [](auto& r) { r.set(http::field::cache_control, "min-fresh=100"); }},
      {"request max-age refuses an older entry (RFC 9111 §5.2.1.1)", {{found{60}, step::call_handler}}, "", step::lookup,
       http::verb::get, [](auto& o) { o.honour_request_directives = true; },
       [](auto& r) { r.set(http::field::cache_control, "max-age=5"); }},
      {"only-if-cached with nothing stored answers 504 (RFC 9111 §5.2.1.7)", {{nothing_found{}, step::answer_unavailable}},
       "fwd=miss; detail=only-if-cached", step::lookup, http::verb::get, [](auto& o) { o.honour_request_directives = true; },
       [](auto& r) { r.set(http::field::cache_control, "only-if-cached"); }},
      {"Authorization bypasses the cache", {{responded{}, step::answer_response}}, "fwd=bypass; detail=authorization",
       step::call_handler, http::verb::get, {}, [](auto& r) { r.set(http::field::authorization, "Basic eDp5"); }},
      {"only_if false bypasses the cache", {{responded{}, step::answer_response}}, "fwd=bypass; detail=only-if",
       step::call_handler, http::verb::get, [](auto& o) { o.only_if = [](ccp::request_view const&) { return false; }; }},
      {"a throwing only_if bypasses the cache", {{responded{}, step::answer_response}}, "fwd=bypass; detail=error",
       step::call_handler, http::verb::get,
       [](auto& o) { o.only_if = [](ccp::request_view const&) -> bool { throw std::runtime_error("x"); }; }},
      {"an unknown backend bypasses the cache", {{responded{}, step::answer_response}},
       "fwd=bypass; detail=unknown-backend", step::call_handler, http::verb::get, {}, {}, backend_state::unknown},
      {"a backend that cannot be built bypasses the cache", {{responded{}, step::answer_response}},
       "fwd=bypass; detail=error", step::call_handler, http::verb::get, {}, {}, backend_state::failed},
      {"refresh_if: no lookup, a fresh fill", {{snapshot{}, step::call_handler}, {responded{}, step::store}}, "",
       step::snapshot, http::verb::get, [](auto& o) { o.refresh_if = [](ccp::request_view const&) { return true; }; }},
      {"coalescing off: a miss fills without a flight", {{nothing_found{}, step::snapshot}}, "", step::lookup,
       http::verb::get, [](auto& o) { o.coalesce = false; }},
      {"a successful PUT invalidates its target",
       {{responded{204}, step::invalidate_target}, {target_done{}, step::answer_response}}, "fwd=method",
       step::call_handler, http::verb::put},
      {"a failed PUT invalidates nothing", {{responded{409}, step::answer_response}}, "fwd=method", step::call_handler,
       http::verb::put},
      {"OPTIONS passes through", {{responded{}, step::answer_response}}, "fwd=method", step::call_handler,
       http::verb::options},
      {"a PUT whose backend is unknown still answers", {{responded{}, step::answer_response}}, "fwd=method",
       step::call_handler, http::verb::put, {}, {}, backend_state::unknown},
  };
  return table;
}

} // namespace

TEST_CASE("engine transitions, table-driven", "[engine]") {
  for (auto const& r : rows()) {
    DYNAMIC_SECTION(r.name) {
      runner run;
      if (r.configure) r.configure(run.options);
      run.options.coalesce_wait = 5000ms;
      run.req.method(r.method);
      if (r.request) r.request(run.req);
      auto a = run.en.start(ccp::request_view(run.req), r.backend);
      CHECK(name_of(a.what) == std::string(name_of(r.first)));
      for (std::size_t i = 0; i < r.script.size(); ++i) {
        INFO("event " << i);
        REQUIRE(name_of(a.what) != std::string("rethrow"));
        if (a.what == step::store) run.pending = a.building;
        a = run.feed(r.script[i].in);
        REQUIRE(name_of(a.what) == std::string(name_of(r.script[i].out)));
      }
      bool const answered = a.what == step::answer_entry || a.what == step::answer_response || a.what == step::answer_unavailable;
      if (answered) CHECK(run.en.params() == r.params);
      if (a.what == step::answer_entry) CHECK(a.kind == r.kind);
    }
  }
}

TEST_CASE("engine: the fill's entry records the counters it was built under and the target guard", "[engine]") {
  runner run;
  run.options.tags = {"catalog"};
  REQUIRE(run.en.start(ccp::request_view(run.req), backend_state::ok).what == step::lookup);
  for (auto const& e : leading_miss()) REQUIRE(run.feed(e.in).what == e.out);
  auto a = run.feed(responded{200, "s-maxage=60"});
  REQUIRE(a.what == step::store);
  REQUIRE(run.en.tags().size() == 2);
  CHECK(run.en.tags()[0].name == "catalog");
  CHECK(run.en.tags()[1].guard);
  CHECK(run.en.guard() == "~target:" + run.en.key());
  REQUIRE(a.building->tags.size() == 2);
  CHECK(a.building->tags[0] == ccp::tag_version{"catalog", 7, false, false});
  CHECK(a.building->tags[1].guard);
  CHECK(a.building->expires_at - a.building->stored_at == std::chrono::seconds(300)); // the default timeout
  CHECK(a.building->body.empty()); // the front end moves the body in
  a = run.en.stored(store_outcome::stored, a.building);
  CHECK(a.flight_stored);
  CHECK(run.counters.snapshot().stored == 1);
  CHECK(run.counters.snapshot().misses == 1);
}

TEST_CASE("engine: a coalesced answer tells the flight's followers that the entry is there", "[engine]") {
  runner run;
  run.en.start(ccp::request_view(run.req), backend_state::ok);
  run.feed(nothing_found{});
  CHECK(run.feed(joined{true}).read); // the lock and the re-read in one trip
  auto a = run.feed(locked{lock_outcome::held, 0, found{}});
  REQUIRE(a.what == step::answer_entry);
  CHECK(a.flight_stored);
  CHECK(run.counters.snapshot().coalesced == 1);
}

TEST_CASE("engine: a front end that refreshes in the background answers the stale-while-revalidate leader at once",
          "[engine]") {
  runner run{.background = true};
  REQUIRE(run.en.start(ccp::request_view(run.req), backend_state::ok).what == step::lookup);
  REQUIRE(run.feed(found{-5, 10}).what == step::try_lead);
  auto a = run.feed(joined{true});
  REQUIRE(a.what == step::answer_entry);
  CHECK(a.background);
  CHECK(a.kind == answer_kind::stale);
  CHECK(run.en.params() == "; detail=revalidating");
  // Then the same run refreshes, answering nobody: a stale answer it might
  // reach (the lock held elsewhere) is not counted again.
  auto const lock = run.en.detached();
  REQUIRE(lock.what == step::lock);
  CHECK_FALSE(lock.read); // a refresh refills whatever is there
  CHECK(run.feed(locked{lock_outcome::elsewhere}).what == step::answer_entry);
  CHECK(run.counters.snapshot().stale == 1);
}

// RFC 9111 §4.3.1, §4.3.4: a stale entry with a validator is refilled
// conditionally; the handler's 304 makes a new entry from the stored one,
// its fields updated by the 304's, its body the stored one.
TEST_CASE("engine: a 304 from the handler refreshes the stale entry it validated", "[engine][rfc9111]") {
  runner run;
  REQUIRE(run.en.start(ccp::request_view(run.req), backend_state::ok).what == step::lookup);
  found const stale{-5, 0, 0, false, false, "", true};
  REQUIRE(run.feed(stale).what == step::join);
  REQUIRE(run.feed(joined{true}).what == step::lock);
  auto call = run.feed(locked{lock_outcome::held, 0, stale});
  REQUIRE(call.what == step::call_handler);
  CHECK(call.whole);
  REQUIRE(call.validate != nullptr);
  CHECK(call.validate->header("ETag") == "\"e1\"");

  http::response<http::string_body> res{http::status::not_modified, 11};
  res.set("X-Old", "2");
  res.set(http::field::cache_control, "max-age=30");
  auto a = run.en.response(res.base(), "", run.ctx, run.req.base(), run.t0);
  REQUIRE(a.what == step::store);
  CHECK(a.body_kept);
  CHECK(a.building->status == 200);
  CHECK(a.building->body == "stored");
  CHECK(a.building->header("X-Old") == "2");
  CHECK(a.building->header("ETag") == "\"e1\"");
  CHECK(a.building->header("Cache-Control") == "max-age=30");
  // The 304 carried no Date: it is dated on receipt (RFC 9110 §6.6.1), not
  // left with the stored one (an hour old, past the timeout).
  CHECK(a.building->header("Date") == ccp::detail::http_date(run.t0));
  CHECK(a.building->stored_at == run.t0);
  CHECK(a.building->expires_at == run.t0 + 300s); // the timeout
  a = run.en.stored(store_outcome::stored, a.building);
  CHECK(run.en.params() == "fwd=stale; fwd-status=304; stored");

  SECTION("without a validator, or past revalidate_for, the refill is unconditional") {
    runner plain;
    plain.en.start(ccp::request_view(plain.req), backend_state::ok);
    plain.feed(found{-5});
    plain.feed(joined{true});
    CHECK(plain.feed(locked{lock_outcome::held, 0, found{-5}}).validate == nullptr);
    runner late;
    late.en.start(ccp::request_view(late.req), backend_state::ok);
    found const old{-61, 0, 0, false, false, "", true};
    late.feed(old);
    late.feed(joined{true});
    CHECK(late.feed(locked{lock_outcome::held, 0, old}).validate == nullptr);
  }
}
