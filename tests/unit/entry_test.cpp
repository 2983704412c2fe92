// The binary encoding of stored entries (entry.hpp): exact round trips, and
// rejection (never a crash) of anything that is not exactly one entry.
#include <custom_cache_page/entry.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace ccp = custom_cache_page;
using namespace std::chrono_literals;

namespace {

using clock_type = ccp::cached_response::clock;

clock_type::time_point at_us(std::int64_t us) {
  return clock_type::time_point(std::chrono::duration_cast<clock_type::duration>(std::chrono::microseconds(us)));
}

ccp::cached_response sample_entry() {
  ccp::cached_response e;
  e.status = 203;
  for (int i = 0; i < 40; ++i) e.headers.emplace_back("X-Header-" + std::to_string(i), std::string(i, 'v'));
  e.headers.emplace_back("Content-Type", "application/octet-stream");
  e.headers.emplace_back("X-Empty", "");
  e.body = std::string("\0bin\0ary\xff\x00\x01 body", 17);
  e.stored_at = at_us(1'700'000'000'123'456);
  e.expires_at = at_us(1'700'000'300'654'321);
  e.stale_while_revalidate = std::chrono::seconds(30);
  e.stale_if_error = std::chrono::seconds(86400);
  e.revalidate_for = std::chrono::seconds(3600);
  e.tags = {{"products", 0xFEDCBA9876543210ull, true}, {"plain", 0, false}, {"", 1ull << 40, false}};
  ccp::tag_version guard;
  guard.name = "target-guard";
  guard.version = 3;
  guard.guard = true;
  e.tags.push_back(guard);
  e.vary = {{"accept-encoding", "gzip, br"}, {"accept-language", ""}};
  return e;
}

void check_equal(ccp::cached_response const& a, ccp::cached_response const& b) {
  CHECK(a.status == b.status);
  CHECK(a.headers == b.headers);
  CHECK(a.body == b.body);
  CHECK(a.stored_at == b.stored_at);
  CHECK(a.expires_at == b.expires_at);
  CHECK(a.stale_while_revalidate == b.stale_while_revalidate);
  CHECK(a.stale_if_error == b.stale_if_error);
  CHECK(a.revalidate_for == b.revalidate_for);
  CHECK(a.tags == b.tags);
  CHECK(a.vary == b.vary);
}

// Offsets in the version-3 layout.
constexpr std::size_t version_offset = 4;
constexpr std::size_t status_offset = 5;
constexpr std::size_t revalidate_offset = 4 + 1 + 2 + 8 + 8 + 4 + 4;
constexpr std::size_t header_area = revalidate_offset + 4; // up to n_headers

void put_u32(std::string& s, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// A decoded entry must at least be self-consistent.
void check_sane(std::optional<ccp::cached_response> const& e) {
  if (!e) return;
  CHECK(e->status >= 200);
  CHECK(e->status <= 599);
  for (auto const& [n, v] : e->headers) CHECK(ccp::detail::replayable_field(n, v));
}

} // namespace

TEST_CASE("encode_entry / decode_entry round trip", "[entry]") {
  auto e = sample_entry();
  auto bytes = ccp::encode_entry(e);
  CHECK(bytes.substr(0, 4) == "CCPE");
  auto d = ccp::decode_entry(bytes);
  REQUIRE(d);
  check_equal(*d, e);
  CHECK(d->header("content-type") == "application/octet-stream");
  CHECK(ccp::encode_entry(*d) == bytes); // canonical: re-encoding is identical
}

TEST_CASE("an empty entry and extreme values round trip", "[entry]") {
  ccp::cached_response e;
  e.status = 599;
  e.stored_at = at_us(-1); // before the epoch
  e.expires_at = at_us(0);
  auto d = ccp::decode_entry(ccp::encode_entry(e));
  REQUIRE(d);
  check_equal(*d, e);

  e.status = 200;
  e.body = std::string(100'000, '\0');
  d = ccp::decode_entry(ccp::encode_entry(e));
  REQUIRE(d);
  check_equal(*d, e);
}

TEST_CASE("timestamps keep microseconds", "[entry]") {
  ccp::cached_response e;
  e.stored_at = at_us(1'234'567'890'123'457);
  e.expires_at = e.stored_at + 1us;
  auto d = ccp::decode_entry(ccp::encode_entry(e));
  REQUIRE(d);
  CHECK(d->stored_at == e.stored_at);
  CHECK(d->expires_at - d->stored_at == 1us);
}

TEST_CASE("the clock's latest time point round trips to the microsecond", "[entry]") {
  ccp::cached_response e;
  e.expires_at = clock_type::time_point::max();
  e.stored_at = e.expires_at - std::chrono::hours(24 * 365);
  auto d = ccp::decode_entry(ccp::encode_entry(e));
  REQUIRE(d);
  CHECK(clock_type::time_point::max() - d->expires_at < 1us);
  CHECK(e.stored_at - d->stored_at < 1us);
}

TEST_CASE("a timestamp the clock cannot represent is rejected", "[entry]") {
  // system_clock counts nanoseconds in 64 bits (about +-292 years): a stored
  // microsecond count beyond that cannot be converted without signed
  // overflow (UB; UBSan aborts), so it does not decode exactly.
  auto bytes = ccp::encode_entry(sample_entry());
  constexpr std::size_t stored_at_offset = 7, expires_at_offset = 15;
  for (std::size_t at : {stored_at_offset, expires_at_offset}) {
    for (std::uint64_t us : {std::uint64_t{0x7FFFFFFFFFFFFFFF}, std::uint64_t{0x8000000000000000},
                             std::uint64_t{10'000'000'000'000'000} /* year 2286 */}) {
      auto wrong = bytes;
      for (std::size_t i = 0; i < 8; ++i) wrong[at + i] = static_cast<char>((us >> (8 * i)) & 0xff);
      INFO("i64 at " << at << " = " << static_cast<std::int64_t>(us));
      CHECK_FALSE(ccp::decode_entry(wrong).has_value());
    }
  }
}

TEST_CASE("every truncation of a valid encoding is rejected", "[entry]") {
  auto bytes = ccp::encode_entry(sample_entry());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    INFO("prefix of " << n << " bytes out of " << bytes.size());
    REQUIRE_FALSE(ccp::decode_entry(std::string_view(bytes).substr(0, n)).has_value());
  }
}

TEST_CASE("trailing bytes are rejected", "[entry]") {
  auto bytes = ccp::encode_entry(sample_entry());
  CHECK_FALSE(ccp::decode_entry(bytes + 'x').has_value());
  CHECK_FALSE(ccp::decode_entry(bytes + std::string(1, '\0')).has_value());
  CHECK_FALSE(ccp::decode_entry(bytes + bytes).has_value());
}

TEST_CASE("magic and format version are checked", "[entry]") {
  auto bytes = ccp::encode_entry(sample_entry());
  for (std::uint8_t v : {0, 1, 4, 255}) {
    auto wrong = bytes;
    wrong[version_offset] = static_cast<char>(v);
    CHECK_FALSE(ccp::decode_entry(wrong).has_value());
  }
  auto wrong = bytes;
  wrong[0] = 'X';
  CHECK_FALSE(ccp::decode_entry(wrong).has_value());
  CHECK_FALSE(ccp::decode_entry("").has_value());
  CHECK_FALSE(ccp::decode_entry("CCPE").has_value());
}

TEST_CASE("times this library never writes are rejected: expiry before storage, centuries apart (found by the fuzzer)", "[entry]") {
  using namespace std::chrono;
  auto const now = ccp::cached_response::clock::now();
  auto check = [](ccp::cached_response::clock::time_point stored, ccp::cached_response::clock::time_point expires) {
    auto e = sample_entry();
    e.stored_at = stored;
    e.expires_at = expires;
    return ccp::decode_entry(ccp::encode_entry(e)).has_value();
  };
  CHECK(check(now, now + hours(1)));
  CHECK(check(now - hours(24 * 365 * 60), now + hours(24 * 365 * 90))); // an old response, a long timeout
  CHECK_FALSE(check(now, now - seconds(1)));
  // Both ends representable, their difference not: Age and ttl would overflow.
  CHECK_FALSE(check(ccp::cached_response::clock::time_point(hours(-24 * 365 * 200)),
                    ccp::cached_response::clock::time_point(hours(24 * 365 * 200))));
}

TEST_CASE("a status this library never replays is rejected: outside 200..599, a body on 204 or 304", "[entry]") {
  auto bytes = ccp::encode_entry(sample_entry());
  for (std::uint16_t status : {0, 99, 100, 101, 199, 204, 304, 600, 999, 65535}) {
    auto wrong = bytes;
    wrong[status_offset] = static_cast<char>(status & 0xff);
    wrong[status_offset + 1] = static_cast<char>(status >> 8);
    INFO("status " << status);
    CHECK_FALSE(ccp::decode_entry(wrong).has_value());
  }
  ccp::cached_response empty;
  for (unsigned status : {204u, 304u}) {
    empty.status = status;
    CHECK(ccp::decode_entry(ccp::encode_entry(empty)).has_value());
  }
}

TEST_CASE("a stored field that could split or forge a response is rejected", "[entry][security]") {
  // A store others can write to: each entry still decodes as to its
  // layout, but holds what this library would never have stored.
  std::vector<std::pair<std::string, std::string>> const forged = {
      {"X-Evil", "a\r\nSet-Cookie: session=stolen"},
      {"X-Evil", "a\nb"},
      {"X-Evil", std::string("a\0b", 3)},
      {"Content-Type", "text\x0fhtml"}, // found by the fuzzer: other control bytes too (RFC 9110 5.5)
      {"X-Evil", "a\x7f"},
      {"X Evil", "v"},
      {"X-Evil:", "v"},
      {"", "v"},
      {std::string(300, 'n'), "v"},
      {"X-Long", std::string(20000, 'v')},
      {"Content-Length", "0"},
      {"Transfer-Encoding", "chunked"},
      {"Connection", "close"},
      {"Set-Cookie", "session=stolen"},
  };
  for (auto const& [name, value] : forged) {
    auto e = sample_entry();
    e.headers.emplace_back(name, value);
    INFO(name << ": " << value.substr(0, 40));
    CHECK_FALSE(ccp::decode_entry(ccp::encode_entry(e)).has_value());
  }
  auto fine = sample_entry();
  fine.headers.emplace_back("X-Fine", "tab\tand \x80 obs-text are field content");
  CHECK(ccp::decode_entry(ccp::encode_entry(fine)).has_value());
}

TEST_CASE("a decoded entry is sealed: validators first, the upstream Cache-Status apart", "[entry]") {
  ccp::cached_response e;
  e.headers = {{"Content-Type", "text/html"}, {"Cache-Status", "origin; hit"}, {"ETag", "\"x\""}, {"Vary", "Accept"}};
  auto const d = ccp::decode_entry(ccp::encode_entry(e));
  REQUIRE(d);
  CHECK(d->head == "ETag: \"x\"\r\nVary: Accept\r\nContent-Type: text/html\r\n");
  CHECK(d->head_validators == std::string_view("ETag: \"x\"\r\nVary: Accept\r\n").size());
  CHECK(d->upstream_cache_status == "origin; hit");
}

TEST_CASE("every single-byte corruption of the header area decodes or is rejected", "[entry]") {
  // Magic and version bytes must always reject; other bytes (status,
  // timestamps, header count) may yield another valid entry. Run under ASan.
  auto bytes = ccp::encode_entry(sample_entry());
  REQUIRE(bytes.size() > header_area + 4);
  for (std::size_t pos = 0; pos < header_area + 4; ++pos) {
    for (int v = 0; v < 256; ++v) {
      if (static_cast<char>(v) == bytes[pos]) continue;
      auto corrupt = bytes;
      corrupt[pos] = static_cast<char>(v);
      auto d = ccp::decode_entry(corrupt);
      if (pos <= version_offset) {
        INFO("byte " << pos << " set to " << v);
        REQUIRE_FALSE(d.has_value());
      }
      check_sane(d);
    }
  }
}

TEST_CASE("every single-byte corruption anywhere never crashes", "[entry]") {
  auto bytes = ccp::encode_entry(sample_entry());
  std::size_t accepted = 0;
  for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
    for (unsigned mask : {0x01u, 0x80u, 0xffu}) {
      auto corrupt = bytes;
      corrupt[pos] = static_cast<char>(static_cast<unsigned char>(corrupt[pos]) ^ mask);
      auto d = ccp::decode_entry(corrupt);
      check_sane(d);
      if (!d) continue;
      ++accepted;
      // What decodes is what the bytes say, nothing normalised away.
      CHECK(ccp::encode_entry(*d) == corrupt);
    }
  }
  // Body and value bytes are opaque, so those corruptions decode; the rest
  // (magic, version, lengths, counts) are refused.
  CHECK(accepted > 0);
  CHECK(accepted < 3 * bytes.size());
}

TEST_CASE("a huge count is rejected without reading or reserving", "[entry]") {
  ccp::cached_response e;
  auto bytes = ccp::encode_entry(e);
  // n_headers sits right after the fixed header area.
  auto huge = bytes;
  put_u32(huge, header_area, 0xFFFFFFFFu);
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(ccp::decode_entry(huge).has_value());
  CHECK(std::chrono::steady_clock::now() - start < 100ms);

  // Same for n_tags, n_vary and the body length.
  for (std::size_t at : {header_area + 4, header_area + 8, header_area + 12}) {
    auto wrong = bytes;
    put_u32(wrong, at, 0xFFFFFFFFu);
    INFO("u32 at " << at);
    CHECK_FALSE(ccp::decode_entry(wrong).has_value());
  }

  // A count just above what the remaining bytes could hold.
  e.headers = {{"a", "b"}};
  auto one = ccp::encode_entry(e);
  put_u32(one, header_area, 2);
  CHECK_FALSE(ccp::decode_entry(one).has_value());
}

TEST_CASE("unknown tag flag bits are rejected", "[entry]") {
  ccp::cached_response e;
  e.tags = {{"t", 5, true}};
  auto bytes = ccp::encode_entry(e);
  // flags: after n_headers(4) n_tags(4) len(4) "t"(1) version(8)
  std::size_t flag_at = header_area + 4 + 4 + 4 + 1 + 8;
  REQUIRE(bytes[flag_at] == 1);
  for (int flags : {0x04, 0x80, 0xff}) {
    auto wrong = bytes;
    wrong[flag_at] = static_cast<char>(flags);
    INFO("flags " << flags);
    CHECK_FALSE(ccp::decode_entry(wrong).has_value());
  }
}

TEST_CASE("footprint grows with the body", "[entry]") {
  ccp::cached_response small, large;
  small.body = std::string(10, 'x');
  large.body = std::string(100'000, 'x');
  CHECK(large.footprint() > small.footprint());
  CHECK(large.footprint() >= 100'000);
  auto with_headers = small;
  with_headers.headers.emplace_back("X-Long", std::string(1000, 'h'));
  CHECK(with_headers.footprint() >= small.footprint() + 1000);
}

TEST_CASE("version 2 entries, without revalidate_for, are still read", "[entry]") {
  auto e = sample_entry();
  auto v2 = ccp::encode_entry(e);
  v2[version_offset] = 2;
  v2.erase(revalidate_offset, 4);
  auto const decoded = ccp::decode_entry(v2);
  REQUIRE(decoded.has_value());
  e.revalidate_for = std::chrono::seconds(0);
  check_equal(*decoded, e);
  CHECK(decoded->retain_until() == e.expires_at + std::chrono::seconds(86400));
}
