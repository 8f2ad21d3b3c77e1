// Tokens and user ids: every way a token or a user id can be wrong is refused with a clear
// reason, and the right ones pass.
#include <catch2/catch.hpp>

#include <jwt.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "runtime/auth/token.hpp"
#include "runtime/auth/user_id.hpp"

using namespace tandem;
using namespace tandem::auth;

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";
constexpr int64_t kNow = 1700000000;

VerifyOptions at(int64_t now) {
  VerifyOptions o;
  o.now = now;
  return o;
}

// A token signed with libjwt directly, for shapes mint_token never produces.
std::string raw_token(jwt_alg_t alg, const std::string& key, const std::string& grants_json) {
  jwt_t* j = nullptr;
  REQUIRE(jwt_new(&j) == 0);
  REQUIRE(jwt_add_grants_json(j, grants_json.c_str()) == 0);
  REQUIRE(jwt_set_alg(j, alg, key.empty() ? nullptr : reinterpret_cast<const unsigned char*>(key.data()),
                      static_cast<int>(key.size())) == 0);
  char* s = jwt_encode_str(j);
  REQUIRE(s != nullptr);
  std::string out(s);
  std::free(s);
  jwt_free(j);
  return out;
}

std::string base64url(const std::string& in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(a[(buf >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(a[(buf << (6 - bits)) & 63]);
  return out;
}

void require_refused(const Result<TokenClaims>& r, const std::string& reason_part) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::unauthenticated);
  CHECK_THAT(r.status().message(), Catch::Contains(reason_part));
}

}  // namespace

TEST_CASE("a minted token verifies and names its user", "[auth]") {
  auto token = mint_token(kSecret, "alice", std::chrono::hours(1), kDefaultAudience, kNow);
  REQUIRE(token.ok());
  auto claims = verify_token(kSecret, *token, at(kNow + 10));
  REQUIRE(claims.ok());
  CHECK(claims->user == "alice");
  CHECK(claims->issued_at == kNow);
  CHECK(claims->expires_at == kNow + 3600);
  CHECK(claims->audience == kDefaultAudience);
}

TEST_CASE("missing, garbage and truncated tokens are refused", "[auth]") {
  require_refused(verify_token(kSecret, "", at(kNow)), "missing");
  require_refused(verify_token(kSecret, "garbage", at(kNow)), "compact");
  require_refused(verify_token(kSecret, "a.b.c.d", at(kNow)), "compact");
  require_refused(verify_token(kSecret, "!!!.e30.sig", at(kNow)), "base64url");
  require_refused(verify_token(kSecret, base64url("[1]") + ".e30.sig", at(kNow)), "JSON object");
  auto token = mint_token(kSecret, "alice", std::chrono::hours(1), kDefaultAudience, kNow);
  REQUIRE(token.ok());
  require_refused(verify_token(kSecret, token->substr(0, token->rfind('.') + 1), at(kNow)), "signature");
  require_refused(verify_token(kSecret, std::string(5000, 'a'), at(kNow)), "4096");
}

TEST_CASE("expired tokens are refused, within leeway accepted", "[auth]") {
  auto token = mint_token(kSecret, "alice", std::chrono::seconds(60), kDefaultAudience, kNow);
  REQUIRE(token.ok());
  CHECK(verify_token(kSecret, *token, at(kNow + 60 + 29)).ok());
  require_refused(verify_token(kSecret, *token, at(kNow + 60 + 30)), "expired");
  require_refused(verify_token(kSecret, *token, at(kNow + 86400)), "expired");
  // Issued in the future beyond the leeway: a clock that is far off or a forged iat.
  require_refused(verify_token(kSecret, *token, at(kNow - 3600)), "future");
}

TEST_CASE("forged tokens are refused", "[auth]") {
  auto token = mint_token(kSecret, "alice", std::chrono::hours(1), kDefaultAudience, kNow);
  REQUIRE(token.ok());
  SECTION("signed with another secret") {
    auto other = mint_token(kSecret + "x", "alice", std::chrono::hours(1), kDefaultAudience, kNow);
    REQUIRE(other.ok());
    require_refused(verify_token(kSecret, *other, at(kNow)), "signature");
  }
  SECTION("payload swapped for another user, signature kept") {
    const size_t d1 = token->find('.'), d2 = token->rfind('.');
    std::string payload = R"({"sub":"bob","aud":"tandem-sync","iat":1700000000,"exp":1700003600})";
    std::string forged = token->substr(0, d1 + 1) + base64url(payload) + token->substr(d2);
    require_refused(verify_token(kSecret, forged, at(kNow)), "signature");
  }
  SECTION("one signature byte flipped") {
    std::string forged = *token;
    char& c = forged[forged.size() - 3];
    c = c == 'A' ? 'B' : 'A';
    require_refused(verify_token(kSecret, forged, at(kNow)), "signature");
  }
  SECTION("alg none") {
    std::string header = base64url(R"({"alg":"none","typ":"JWT"})");
    std::string payload = base64url(R"({"sub":"alice","aud":"tandem-sync","iat":1700000000,"exp":1700003600})");
    require_refused(verify_token(kSecret, header + "." + payload + ".", at(kNow)), "not accepted");
    require_refused(verify_token(kSecret, header + "." + payload + ".x", at(kNow)), "not accepted");
  }
  SECTION("another HMAC algorithm with the right secret") {
    auto hs384 = raw_token(JWT_ALG_HS384, kSecret,
                           R"({"sub":"alice","aud":"tandem-sync","iat":1700000000,"exp":1700003600})");
    require_refused(verify_token(kSecret, hs384, at(kNow)), "HS384");
  }
}

TEST_CASE("wrong or missing audience and claims are refused", "[auth]") {
  auto other_aud = mint_token(kSecret, "alice", std::chrono::hours(1), "someone-else", kNow);
  REQUIRE(other_aud.ok());
  require_refused(verify_token(kSecret, *other_aud, at(kNow)), "audience");
  require_refused(verify_token(kSecret, raw_token(JWT_ALG_HS256, kSecret, R"({"sub":"alice","exp":1700003600})"),
                               at(kNow)),
                  "audience");
  require_refused(
      verify_token(kSecret, raw_token(JWT_ALG_HS256, kSecret, R"({"aud":"tandem-sync","exp":1700003600})"), at(kNow)),
      "subject");
  require_refused(
      verify_token(kSecret, raw_token(JWT_ALG_HS256, kSecret, R"({"sub":"alice","aud":"tandem-sync"})"), at(kNow)),
      "expiry");
  require_refused(verify_token(kSecret,
                               raw_token(JWT_ALG_HS256, kSecret,
                                         R"({"sub":"../etc","aud":"tandem-sync","exp":1700003600})"),
                               at(kNow)),
                  "subject");
  // An audience list that includes ours is accepted (RFC 7519 4.1.3).
  CHECK(verify_token(kSecret,
                     raw_token(JWT_ALG_HS256, kSecret,
                               R"({"sub":"alice","aud":["x","tandem-sync"],"exp":1700003600})"),
                     at(kNow))
            .ok());
}

TEST_CASE("minting refuses bad users, short secrets and non-positive lifetimes", "[auth]") {
  CHECK(mint_token("short", "alice", std::chrono::hours(1)).status().code() == StatusCode::invalid_argument);
  CHECK_FALSE(mint_token(kSecret, "../x", std::chrono::hours(1)).ok());
  CHECK_FALSE(mint_token(kSecret, "alice", std::chrono::seconds(0)).ok());
}

TEST_CASE("user ids that could name another file are refused", "[auth]") {
  for (const std::string& bad : std::vector<std::string>{"", "../x", "..", ".", "a/b", "a\\b", "/etc/passwd", ".hidden", "-rf", "a..b",
                                "a b", "a\nb", std::string("a\0b", 3), "caf\xc3\xa9", "a\x7f", "a:b", "a*b",
                                std::string(65, 'a')}) {
    INFO("user id: " << bad);
    CHECK_FALSE(validate_user_id(bad).ok());
    CHECK_FALSE(user_db_path("/data", bad).ok());
  }
  for (const std::string& good : std::vector<std::string>{"alice", "a", "Bob_2", "user@example.com", "x.y-z+tag", std::string(64, 'z')}) {
    INFO("user id: " << good);
    CHECK(validate_user_id(good).ok());
  }
  CHECK(*user_db_path("/data/", "alice") == "/data/users/alice.db");
  CHECK(*user_db_path("rel", "a.b") == "rel/users/a.b.db");
}

TEST_CASE("durations and secret files", "[auth]") {
  CHECK(parse_duration("90s")->count() == 90);
  CHECK(parse_duration("15m")->count() == 900);
  CHECK(parse_duration("12h")->count() == 43200);
  CHECK(parse_duration("30d")->count() == 2592000);
  CHECK(parse_duration("45")->count() == 45);
  for (const char* bad : {"", "0", "0s", "-5m", "5w", "h", "1.5h", "9999999999999d"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad).ok());
  }
  const std::string path = "auth_test_secret.txt";
  { std::ofstream(path) << kSecret << "\n"; }
  auto secret = read_secret_file(path);
  REQUIRE(secret.ok());
  CHECK(*secret == kSecret);
  { std::ofstream(path) << "tooshort\n"; }
  CHECK_FALSE(read_secret_file(path).ok());
  std::remove(path.c_str());
  CHECK_FALSE(read_secret_file("/nonexistent/secret").ok());
}

TEST_CASE("a client reads a token's subject without the secret, and nothing from a malformed token", "[auth][binding]") {
  auto token = mint_token(kSecret, "alice", std::chrono::hours(1), kDefaultAudience, kNow);
  REQUIRE(token.ok());
  auto subject = unverified_subject(*token);
  REQUIRE(subject.ok());
  CHECK(*subject == "alice");
  for (std::string bad : {"", "not-a-token", "eyJhbGciOiJIUzI1NiJ9.e30.x", "a.!!!.b"}) {
    INFO(bad);
    CHECK(unverified_subject(bad).status().code() == StatusCode::unauthenticated);
  }
}
