// The request engine: every decision cache_page makes about one request,
// as a sans-io state machine (in the manner of Boost.Redis's detail/*_fsm).
//
// A front end starts it with the request and then performs each action it
// returns (look the key up, join the flight, take the fill lock, wait, run
// the handler, store, answer) and feeds the outcome back as an event. The
// engine does no I/O, takes no locks and never waits: time comes in with
// the events, so its transitions are tested as tables (engine_test.cpp),
// and the synchronous and awaitable front ends share every decision.
//
//   start ─► lookup ─► fresh: answer_entry
//              │       stale inside SWR: try_lead ─► lock ─► (lead) │ answer stale
//              │       another Vary variant: lookup under its variant key (once)
//              ▼
//            miss ─► join ─► following: wait_flight ─► lookup ─► answer │ fill
//                      │
//                      ▼ leading
//                    lock+lookup ─► held: answer │ fill
//                      │            elsewhere: pause ─► lookup ─► lock ... until the deadline
//                      ▼
//                    fill: snapshot? ─► call_handler ─► store ─► answer_entry
//                                                     └► (mark_pass) answer_response (not storable)
//
// A fill asks the handler for the whole representation; one that refills
// a stale entry with a validator asks conditionally, and the handler's 304
// stores that entry again, refreshed, with its body (revalidated).
//
// A pass marker (another process's fill found the response not storable a
// moment ago) makes a miss run the handler at once: no flight, no lock, no
// remote wait (Varnish's hit-for-miss).
#pragma once

#include <custom_cache_page/backend.hpp>
#include <custom_cache_page/cache_options.hpp>
#include <custom_cache_page/detail/digest.hpp>
#include <custom_cache_page/detail/http_semantics.hpp>
#include <custom_cache_page/fill_context.hpp>
#include <custom_cache_page/keys.hpp>
#include <custom_cache_page/request_view.hpp>
#include <custom_cache_page/stats.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace custom_cache_page::detail {

// What the front end does next.
enum class step : std::uint8_t {
  lookup,            // backend.lookup(key(), tags()) -> looked_up / lookup_failed
  join,              // join the process's flight for key() -> joined
  try_lead,          // lead key()'s flight if nobody does (no waiting) -> joined
  lock,              // backend.try_fill_lock(key(), coalesce_wait), with `read` the lookup under it
                     // in the same trip (try_fill_lock_and_lookup) -> locked
  wait_flight,       // wait for the flight joined, at most `wait` -> flight_done
  pause,             // let `wait` pass (another process fills) -> paused
  snapshot,          // backend.tag_versions(tags()) -> snapshot_taken / snapshot_failed
  call_handler,      // run the handler (with a live fill_context when `fill`) -> response / handler_threw
  store,             // backend.store(key(), `building`) after moving the body in -> stored
  mark_pass,         // backend.mark_pass(key(), `wait`): not storable, tell other processes -> pass_marked
  invalidate_target, // an unsafe request succeeded: bump guard() in the store, erase key() -> target_invalidated
  answer_entry,      // answer from `entry` as `kind`, Cache-Status params()
  answer_response,   // answer the handler's response, Cache-Status params()
  answer_unavailable,// answer 504: only-if-cached and nothing stored (RFC 9111 §5.2.1.7), Cache-Status params()
  rethrow,           // the handler's exception goes to the caller
};

// The steps that end a request's actions.
constexpr bool is_answer(step s) {
  return s == step::answer_entry || s == step::answer_response || s == step::answer_unavailable || s == step::rethrow;
}

enum class answer_kind : std::uint8_t { hit, stale, filled };
enum class lock_outcome : std::uint8_t { held, elsewhere, failed };
enum class store_outcome : std::uint8_t { stored, refused, too_large, failed, not_kept };
// How the front end resolved the request's backend.
enum class backend_state : std::uint8_t { ok, unknown, failed };

struct action {
  step what = step::rethrow;
  bool fill = false;                              // call_handler: the response may be stored
  std::chrono::milliseconds wait{0};              // wait_flight, pause
  std::shared_ptr<cached_response const> entry;   // answer_entry
  answer_kind kind = answer_kind::hit;            // answer_entry
  bool flight_stored = false;                     // answers: what the flight's followers learn
  std::shared_ptr<cached_response> building;      // store: the new entry, its body still to move in
  // answer_entry: answer now, then call detached() and go on performing
  // actions in the background, answering nobody (a stale-while-revalidate
  // refresh by a front end that can run one).
  bool background = false;
  bool read = false; // lock: look key() up under the lock too
  // call_handler with `fill`: the handler is asked for the whole
  // representation (Range and If-Range removed), and when `validate` is
  // set, only if it changed since that stored entry (its ETag as
  // If-None-Match, its Last-Modified as If-Modified-Since, in place of the
  // client's conditionals).
  bool whole = false;
  std::shared_ptr<cached_response const> validate;
  bool body_kept = false; // store: a revalidated entry, its body already in
};

class engine {
public:
  using time_point = cached_response::clock::time_point;

  // The internal per-target tag (see start_other). It never reaches a
  // CDN backend or a header: guard tags are marked `guard`.
  static constexpr std::chrono::seconds guard_ttl{std::chrono::hours(24)};
  // A longer timeout is this: times past it would leave the clock's range.
  static constexpr std::chrono::seconds max_timeout{std::chrono::hours(24 * 365 * 100)};
  static std::string guard_name(std::string const& key) { return "~target:" + key; }

  // `background_refresh`: the front end can answer a stale entry at once
  // and refresh it in the background (see action::background).
  engine(cache_options const& options, custom_cache_page::stats& stats, bool background_refresh = false)
      : o_(options), stats_(stats), background_(background_refresh) {}

  // The request arrives; `backend` says whether its backend could be found.
  action start(request_view const& view, backend_state backend) {
    auto const m = view.method();
    if (m != http::verb::get && m != http::verb::head) return start_other(view, backend);
    head_ = m == http::verb::head;
    if (auto why = bypass_reason(view, o_)) return bypass(*why);
    bool wanted = false;
    try {
      wanted = !o_.only_if || o_.only_if(view);
    } catch (...) {
      return bypass("error", true);
    }
    if (!wanted) return bypass("only-if");
    if (backend == backend_state::unknown) {
      stats_.unknown_backend();
      return bypass("unknown-backend");
    }
    if (backend == backend_state::failed || !prepare(view)) return bypass("error", true);
    try {
      refresh_ = o_.refresh_if && o_.refresh_if(view);
    } catch (...) {
      stats_.error();
    }
    if (o_.honour_request_directives) asked_ = read_request_directives(view.fields());
    if (refresh_ || asked_.no_cache || asked_.max_age == 0) {
      refresh_ = true;
      fwd_ = "request";
      return miss();
    }
    phase_ = phase::reading;
    return {step::lookup};
  }

  action looked_up(lookup_result found, http::request_header<> const& req, time_point now = clock_now()) {
    pass_marked_ = pass_marked_ || found.pass_marked;
    if (phase_ == phase::reading) return first_look(std::move(found), req, now);
    if (answers_fresh(found, req, now)) {
      stats_.coalesced();
      params_ = "; detail=coalesced";
      return {step::answer_entry, false, {}, found.entry, answer_kind::hit, true};
    }
    if (phase_ == phase::rereading_remote && now < deadline_ && !pass_marked_) {
      phase_ = phase::relocking;
      return lock();
    }
    // The newest counters the fill can be built under (a failed read
    // leaves none: they are then read apart).
    found_.versions = std::move(found.versions);
    return fill_or_snapshot();
  }

  action lookup_failed(http::request_header<> const& req, time_point now = clock_now()) {
    stats_.error();
    if (phase_ == phase::reading) store_down_ = true;
    return looked_up({}, req, now);
  }

  // Whether this request leads key()'s flight (join or try_lead).
  action joined(bool leading) {
    if (phase_ == phase::revalidating && !leading) return stale_answer("; detail=revalidating");
    if (!leading) {
      phase_ = phase::following;
      return {step::wait_flight, false, o_.coalesce_wait};
    }
    leading_ = true;
    if (phase_ == phase::revalidating && background_) {
      auto a = stale_answer("; detail=revalidating");
      a.background = true;
      return a;
    }
    return lock();
  }

  // The stale entry has been answered; the refresh goes on.
  action detached() {
    detached_ = true;
    return lock();
  }

  // `read`: what the lookup under a held lock found (empty otherwise).
  action locked(lock_outcome outcome, lookup_result read, http::request_header<> const& req, time_point now = clock_now()) {
    if (outcome == lock_outcome::failed) stats_.error(); // a store that is down must not make requests wait
    bool const held = outcome != lock_outcome::elsewhere;
    if (phase_ == phase::revalidating) return held ? classify_stale() : stale_answer("; detail=revalidating");
    if (held) {
      phase_ = phase::rereading; // a fill that ended meanwhile (here or elsewhere) left its entry
      return looked_up(std::move(read), req, now);
    }
    if (phase_ != phase::relocking) {
      deadline_ = now + o_.coalesce_wait;
      pause_ = std::chrono::milliseconds(5);
    } else {
      pause_ = std::min(pause_ * 2, std::chrono::milliseconds(50));
    }
    if (now >= deadline_) return fill_or_snapshot();
    phase_ = phase::waiting_remote;
    return {step::pause, false, pause_};
  }

  action paused() {
    phase_ = phase::rereading_remote;
    return {step::lookup};
  }

  action flight_done(bool stored) {
    if (!stored) return fill_or_snapshot();
    phase_ = phase::rereading;
    return {step::lookup};
  }

  action snapshot_taken(std::vector<std::uint64_t> versions) {
    found_.versions = std::move(versions);
    return call_filling();
  }

  action snapshot_failed() {
    stats_.error();
    snapshot_ok_ = false;
    return call_filling();
  }

  action handler_threw() {
    if (phase_ != phase::filling || !fallback_) return {step::rethrow};
    stats_.error();
    return stale_fallback("; detail=stale-if-error");
  }

  // The handler answered. `res` may be amended (what a stored response
  // replays); `body` is its body's bytes.
  action response(http::response_header<>& res, std::string_view body, fill_context const& ctx,
                  http::request_header<> const& req, time_point now = clock_now()) {
    if (phase_ == phase::unsafe) return unsafe_done(res.result_int());
    if (phase_ != phase::filling) return {step::answer_response};
    if (fallback_ && res.result_int() >= 500) return stale_fallback(fmt::format("; fwd-status={}; detail=stale-if-error", res.result_int()));
    if (validate_ && res.result_int() == 304) return revalidated(res, ctx, req, now);
    return fill(res, body, ctx, req, now);
  }

  action stored(store_outcome outcome, std::shared_ptr<cached_response const> entry) {
    if (outcome == store_outcome::stored) {
      stats_.store();
      params_ = fmt::format("fwd={}{}; stored", fwd_, fwd_status_);
    } else {
      auto const why = outcome == store_outcome::refused     ? not_stored_reason::invalidated
                       : outcome == store_outcome::too_large ? not_stored_reason::too_large
                       : outcome == store_outcome::not_kept  ? not_stored_reason::no_store_backend
                                                             : not_stored_reason::store_failed;
      if (outcome == store_outcome::failed) stats_.error();
      stats_.not_stored(why);
      params_ = fmt::format("fwd={}{}; detail={}", fwd_, fwd_status_, to_string(why));
    }
    return {step::answer_entry, false, {}, std::move(entry), answer_kind::filled, outcome == store_outcome::stored};
  }

  action pass_marked() { return {step::answer_response}; }

  action target_invalidated(bool ok) {
    if (!ok) stats_.error();
    return {step::answer_response};
  }

  std::string const& key() const { return key_; }
  std::vector<resolved_tag> const& tags() const { return tags_; }
  std::string const& guard() const { return tags_.back().name; }
  // The Cache-Status parameters of the answer, for answer_entry after the
  // hit's own ("hit; ttl=N") and for answer_response alone.
  std::string const& params() const { return params_; }

private:
  enum class phase : std::uint8_t {
    passing, unsafe, reading, revalidating, joining, following, rereading, waiting_remote, rereading_remote, relocking,
    snapshotting, filling
  };

  static time_point clock_now() { return cached_response::clock::now(); }

  action bypass(std::string_view why, bool error = false) {
    if (error) stats_.error();
    stats_.bypass();
    phase_ = phase::passing;
    params_ = fmt::format("fwd=bypass; detail={}", why);
    return {step::call_handler};
  }

  // Unsafe methods run the handler and, when it succeeds, invalidate what
  // a GET of the same target would hit (RFC 9111 §4.4) through the target
  // guard: a GET fill that started before is then not stored either.
  action start_other(request_view const& view, backend_state backend) {
    stats_.bypass();
    params_ = "fwd=method";
    phase_ = phase::passing;
    if (!is_unsafe(view.method()) || !view.valid()) return {step::call_handler};
    if (backend == backend_state::unknown) {
      stats_.unknown_backend();
      return {step::call_handler};
    }
    if (backend == backend_state::failed || !prepare(view)) {
      stats_.error();
      return {step::call_handler};
    }
    phase_ = phase::unsafe;
    return {step::call_handler};
  }

  action unsafe_done(unsigned status) {
    if (status >= 400) return {step::answer_response};
    return {step::invalidate_target};
  }

  bool prepare(request_view const& view) {
    try {
      tags_ = resolve_tags(o_.tags, view);
      std::optional<std::string> host;
      if (o_.key_includes_host) host = normalized_host(view);
      key_ = storage_key(o_.prefix(view), o_.key_func(view), tags_, host);
      tags_.push_back({guard_name(key_), false, guard_ttl, true});
      return true;
    } catch (...) {
      return false;
    }
  }

  action first_look(lookup_result found, http::request_header<> const& req, time_point now) {
    found_ = std::move(found);
    if (!found_.entry) return miss();
    if (found_.invalidation_pending) {
      fwd_ = "stale"; // an invalidation that failed covers it: it is refreshed, never served
      return miss();
    }
    if (!entry_answers(*found_.entry, tags_, found_.versions, req, found_.soft_purged)) {
      fwd_ = "vary-miss";
      return other_variant(req) ? action{step::lookup} : miss();
    }
    judged_ = judge(*found_.entry, found_.soft_purged, now);
    if (judged_.state == freshness::fresh && !request_allows(*found_.entry, now)) {
      fwd_ = "request"; // fresh, but not fresh enough for the request (max-age, min-fresh): a refresh
      refresh_ = true;
      return classify_stale();
    }
    if (judged_.state == freshness::fresh) {
      stats_.hit();
      params_.clear();
      return {step::answer_entry, false, {}, found_.entry, answer_kind::hit};
    }
    if (allowed_stale()) return stale_answer("; detail=max-stale");
    if (judged_.state != freshness::revalidate_stale) return classify_stale();
    phase_ = phase::revalidating; // one request refreshes; the others answer stale meanwhile
    return {step::try_lead};
  }

  // The first entry under the key is for other values of the fields it
  // varies on: the request's variant is looked up (and filled) under a
  // key of its own, once.
  bool other_variant(http::request_header<> const& req) {
    auto const& e = *found_.entry;
    if (on_variant_ || o_.max_vary_variants == 0 || e.vary.empty() || vary_matches(e, req)) return false;
    on_variant_ = true;
    key_ += fmt::format(":v{}", vary_slot(e, req, o_.max_vary_variants));
    found_ = {};
    return true;
  }

  // A refresh of a stale entry needs no re-read: it refills.
  action lock() const {
    action a{step::lock};
    a.read = phase_ != phase::revalidating;
    return a;
  }

  // A stale entry that is not answered now may still stand in for a
  // failing handler.
  action classify_stale() {
    auto const& e = found_.entry;
    if (judged_.state != freshness::unusable && e->stale_if_error > judged_.stale_for) fallback_ = e;
    if (has_validator(*e) && judged_.stale_for < e->revalidate_for) validate_ = e;
    if (fwd_ != "request") fwd_ = "stale";
    return miss();
  }

  // RFC 9111 §5.2.1.1, §5.2.1.3: a fresh entry older than the request's
  // max-age, or fresh for less than its min-fresh, does not answer it.
  bool request_allows(cached_response const& e, time_point now) const {
    using namespace std::chrono;
    auto const age = duration_cast<seconds>(now - e.stored_at).count();
    auto const left = duration_cast<seconds>(e.expires_at - now).count();
    return !(asked_.max_age && age > *asked_.max_age) && !(asked_.min_fresh && left < *asked_.min_fresh);
  }

  // RFC 9111 §5.2.1.2: max-stale accepts a stale entry, unless the
  // response said it must be revalidated (§5.2.2.2) or it is soft-purged.
  bool allowed_stale() const {
    auto const& e = *found_.entry;
    if (!asked_.max_stale || found_.soft_purged || judged_.stale_for.count() > *asked_.max_stale) return false;
    auto const cc = e.header("Cache-Control");
    return !cache_directive(cc, "must-revalidate") && !cache_directive(cc, "proxy-revalidate") && !cache_directive(cc, "no-cache");
  }

  action stale_answer(std::string_view params) {
    if (!detached_) stats_.stale(); // a refresh in the background answers nobody
    params_ = params;
    return {step::answer_entry, false, {}, found_.entry, answer_kind::stale};
  }

  action stale_fallback(std::string params) {
    stats_.stale();
    params_ = std::move(params);
    return {step::answer_entry, false, {}, fallback_, answer_kind::stale};
  }

  action miss() {
    stats_.miss();
    if (asked_.only_if_cached) {
      params_ = fmt::format("fwd={}; detail=only-if-cached", fwd_);
      return {step::answer_unavailable};
    }
    if (head_ || store_down_ || asked_.no_store) {
      auto const why = head_ ? not_stored_reason::head_request
                       : store_down_ ? not_stored_reason::store_failed
                                     : not_stored_reason::request_no_store;
      stats_.not_stored(why);
      phase_ = phase::passing;
      params_ = fmt::format("fwd={}; detail={}", fwd_, head_ ? "head" : store_down_ ? "store-unavailable" : "request-no-store");
      return {step::call_handler, true};
    }
    if (leading_ || refresh_ || pass_marked_ || !o_.coalesce) return fill_or_snapshot(); // leading_: a stale-while-revalidate leader
    phase_ = phase::joining;
    return {step::join};
  }

  // The versions a fill is built under are read before its handler runs;
  // missing ones (a first fill, or a lookup that did not happen) first.
  action fill_or_snapshot() {
    bool missing = found_.versions.size() != tags_.size();
    for (std::size_t i = 0; !missing && i < tags_.size(); ++i) missing = found_.versions[i] == 0 && !tags_[i].guard;
    if (!missing) return call_filling();
    phase_ = phase::snapshotting;
    return {step::snapshot};
  }

  action call_filling() {
    phase_ = phase::filling;
    action a{step::call_handler, true};
    a.whole = true;
    a.validate = validate_;
    return a;
  }

  bool answers_fresh(lookup_result const& found, http::request_header<> const& req, time_point now) const {
    return found.entry && !found.soft_purged && !found.invalidation_pending && entry_answers(*found.entry, tags_, found.versions, req) &&
           found.entry->expires_at > now;
  }

  std::chrono::seconds timeout(http::response_header<> const& res) {
    if (auto targeted = targeted_lifetime(res, o_)) return *targeted;
    try {
      return o_.timeout(res);
    } catch (...) {
      stats_.error();
      return std::chrono::seconds(0);
    }
  }

  // A leader's response that may not be stored leaves a pass marker for
  // coalesce_wait: another process's waiters then stop waiting at once.
  action not_stored(not_stored_reason why) {
    stats_.not_stored(why);
    params_ = fmt::format("fwd={}; detail={}", fwd_, to_string(why));
    bool const property_of_response = why != not_stored_reason::store_failed;
    if (leading_ && property_of_response) return {step::mark_pass, false, o_.coalesce_wait};
    return {step::answer_response};
  }

  struct lifetime {
    std::chrono::seconds ttl{0};         // from the timeout (or a targeted field)
    std::chrono::seconds initial_age{0}; // the response's own age when it came
  };

  // Why a response may not be stored (nothing when it may), and its lifetime.
  std::optional<not_stored_reason> storable(http::response_header<> const& res, std::size_t body_size, fill_context const& ctx,
                                            time_point now, lifetime& life) {
    auto why = not_storable(res, body_size, o_);
    if (!why && ctx.declined()) why = not_stored_reason::handler_declined;
    if (!why && (!snapshot_ok_ || ctx.snapshot_failed())) why = not_stored_reason::store_failed;
    life = {why ? std::chrono::seconds(0) : std::min(timeout(res), max_timeout), initial_age(res, now)};
    if (!why && life.ttl <= life.initial_age) why = not_stored_reason::zero_timeout; // no freshness left
    return why;
  }

  action fill(http::response_header<>& res, std::string_view body, fill_context const& ctx, http::request_header<> const& req,
              time_point now) {
    lifetime life;
    if (auto why = storable(res, body.size(), ctx, now, life)) return not_stored(*why);
    action a{step::store};
    a.building = make_entry(res, body, ctx, req, life, now);
    return a;
  }

  // The handler found the stored entry current (RFC 9111 §4.3.4): the
  // entry, its header updated by the 304's fields, is stored again with
  // its body. One that may no longer be stored answers as it was.
  action revalidated(http::response_header<> const& res, fill_context const& ctx, http::request_header<> const& req,
                     time_point now) {
    fwd_status_ = "; fwd-status=304";
    auto merged = updated_header(*validate_, res);
    if (o_.patch_response_headers && res.find(http::field::expires) == res.end())
      merged.erase(http::field::expires); // the one patched in for the old expiry
    if (res.find(http::field::date) == res.end())
      merged.set(http::field::date, http_date(now)); // the 304's, as a recipient dates it (RFC 9110 §6.6.1)
    lifetime life;
    if (auto why = storable(merged, validate_->body.size(), ctx, now, life)) {
      stats_.not_stored(*why);
      stats_.stale();
      params_ = fmt::format("; fwd-status=304; detail={}", to_string(*why));
      return {step::answer_entry, false, {}, validate_, answer_kind::stale};
    }
    action a{step::store};
    a.building = make_entry(merged, validate_->body, ctx, req, life, now);
    a.building->body = validate_->body;
    a.body_kept = true;
    return a;
  }

  std::shared_ptr<cached_response> make_entry(http::response_header<>& res, std::string_view body, fill_context const& ctx,
                                              http::request_header<> const& req, lifetime life, time_point now) const {
    auto e = std::make_shared<cached_response>();
    e->status = res.result_int();
    // Age on a hit is now - stored_at: the response's own age, then its time here.
    e->stored_at = now - life.initial_age;
    e->expires_at = e->stored_at + life.ttl;
    e->stale_while_revalidate = stale_window(res, o_, "stale-while-revalidate", o_.stale_while_revalidate);
    e->stale_if_error = stale_window(res, o_, "stale-if-error", o_.stale_if_error);
    patch_header(res, *e, body, now, life);
    for (auto const& f : res)
      if (stored_field(res, f.name(), f.name_string())) e->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    if (has_validator(*e)) e->revalidate_for = o_.revalidate_for;
    if (e->revalidate_for.count() > 0 && needs_validation(res, o_)) {
      e->expires_at = e->stored_at; // validated before every answer
      e->stale_while_revalidate = e->stale_if_error = std::chrono::seconds(0);
    }
    for (std::size_t i = 0; i < tags_.size(); ++i)
      e->tags.push_back({tags_[i].name, found_.versions[i], tags_[i].versioned, tags_[i].guard});
    for (std::size_t i = 0; i < ctx.added_tags().size(); ++i) {
      auto const& t = ctx.added_tags()[i];
      if (std::none_of(e->tags.begin(), e->tags.end(), [&](tag_version const& x) { return x.name == t.name; }))
        e->tags.push_back({t.name, ctx.added_versions()[i], t.versioned});
    }
    if (o_.honour_vary) e->vary = vary_values(req, vary_fields(res));
    return e;
  }

  // What a stored response gains: Date (RFC 9110 §6.6.1), Expires and
  // max-age as Django patches them (unless a targeted field governs this
  // cache: Cache-Control is then the downstream caches' alone), an ETag.
  void patch_header(http::response_header<>& res, cached_response const& e, std::string_view body, time_point now,
                    lifetime life) const {
    if (res.find(http::field::date) == res.end()) res.set(http::field::date, http_date(now));
    if (o_.patch_response_headers && governing_field(res, o_) == "Cache-Control") {
      if (res.find(http::field::expires) == res.end()) res.set(http::field::expires, http_date(e.expires_at));
      res.set(http::field::cache_control, with_max_age(res[http::field::cache_control], life.ttl.count(), true));
    }
    if (o_.add_etag && res.find(http::field::etag) == res.end())
      res.set(http::field::etag, "\"" + sha256_hex(body).substr(0, 32) + "\"");
  }

  cache_options const& o_;
  custom_cache_page::stats& stats_;
  phase phase_ = phase::passing;
  std::string key_;
  std::vector<resolved_tag> tags_;
  std::string params_;
  std::string_view fwd_ = "miss";
  lookup_result found_;
  staleness judged_;
  std::shared_ptr<cached_response const> fallback_;
  time_point deadline_{};
  std::chrono::milliseconds pause_{5};
  bool head_ = false;
  bool refresh_ = false;
  bool store_down_ = false;
  bool leading_ = false;
  bool pass_marked_ = false;
  bool snapshot_ok_ = true;
  bool background_ = false;
  bool detached_ = false;
  bool on_variant_ = false;
  request_directives asked_;                      // honoured ones only: empty unless honour_request_directives
  std::shared_ptr<cached_response const> validate_; // the stale entry the fill asks the handler to validate
  std::string_view fwd_status_;                   // "; fwd-status=304" after a revalidation
};

} // namespace custom_cache_page::detail
