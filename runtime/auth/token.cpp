#include "runtime/auth/token.hpp"

#include <jwt.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/auth/user_id.hpp"

namespace tandem::auth {
namespace {

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

int64_t now_seconds(int64_t now) {
  if (now >= 0) return now;
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Base64url without padding (RFC 7515 2). Returns false on any byte outside the alphabet.
bool base64url_decode(const std::string& in, std::string* out) {
  out->clear();
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-') v = 62;
    else if (c == '_') v = 63;
    else return false;
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return bits < 6;  // a single dangling sextet cannot come from any byte string
}

Status unauthenticated(const std::string& why) { return Status::Unauthenticated("token refused: " + why); }

}  // namespace

Result<std::string> read_trimmed_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read " + what + " '" + path + "': " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

Result<std::string> read_secret_file(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string secret, read_trimmed_file(path, "secret file"));
  if (secret.size() < kMinSecretBytes)
    return Status::InvalidArgument("secret file '" + path + "' holds " + std::to_string(secret.size()) +
                                   " bytes; an HS256 secret needs at least " + std::to_string(kMinSecretBytes) +
                                   " (e.g. `openssl rand -hex 32 > FILE`)");
  return secret;
}

Result<std::string> mint_token(const std::string& secret, const std::string& user, std::chrono::seconds ttl,
                               const std::string& audience, int64_t now) {
  if (secret.size() < kMinSecretBytes)
    return Status::InvalidArgument("secret too short: HS256 needs at least " + std::to_string(kMinSecretBytes) +
                                   " bytes");
  TANDEM_RETURN_IF_ERROR(validate_user_id(user));
  if (ttl.count() <= 0) return Status::InvalidArgument("token lifetime must be positive");
  if (audience.empty()) return Status::InvalidArgument("audience must not be empty");
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return Status::Internal("jwt_new failed");
  JwtPtr jwt(raw);
  const int64_t iat = now_seconds(now);
  if (jwt_add_grant(jwt.get(), "sub", user.c_str()) != 0 || jwt_add_grant(jwt.get(), "aud", audience.c_str()) != 0 ||
      jwt_add_grant_int(jwt.get(), "iat", static_cast<long>(iat)) != 0 ||
      jwt_add_grant_int(jwt.get(), "exp", static_cast<long>(iat + ttl.count())) != 0)
    return Status::Internal("cannot add token claims");
  if (jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()),
                  static_cast<int>(secret.size())) != 0)
    return Status::Internal("cannot set HS256 key");
  char* encoded = jwt_encode_str(jwt.get());
  if (encoded == nullptr) return Status::Internal("cannot encode token");
  std::string token(encoded);
  std::free(encoded);
  return token;
}

Result<std::string> unverified_subject(const std::string& token) {
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string::npos ? std::string::npos : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos || token.size() > 4096) return unauthenticated("not a compact JWS (header.payload.signature)");
  std::string payload;
  if (!base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), &payload)) return unauthenticated("payload is not base64url");
  auto claims = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!claims.is_object()) return unauthenticated("claims are not a JSON object");
  auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string() || sub->get<std::string>().empty()) return unauthenticated("no subject (sub)");
  return sub->get<std::string>();
}

Result<TokenClaims> verify_token(const std::string& secret, const std::string& token, const VerifyOptions& options) {
  if (token.empty()) return unauthenticated("missing token");
  if (token.size() > 4096) return unauthenticated("token longer than 4096 bytes");
  if (secret.size() < kMinSecretBytes) return Status::Internal("server secret too short");

  // Check the header ourselves before libjwt sees the token: only HS256 is acceptable, so
  // "none" and algorithm-confusion tokens are refused whatever the library would do.
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string::npos ? std::string::npos : token.find('.', dot1 + 1);
  if (dot1 == std::string::npos || dot2 == std::string::npos || token.find('.', dot2 + 1) != std::string::npos)
    return unauthenticated("not a compact JWS (header.payload.signature)");
  std::string header_json;
  if (!base64url_decode(token.substr(0, dot1), &header_json)) return unauthenticated("header is not base64url");
  auto header = nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return unauthenticated("header is not a JSON object");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return unauthenticated("header has no algorithm");
  if (alg->get<std::string>() != "HS256")
    return unauthenticated("algorithm '" + alg->get<std::string>() + "' is not accepted (only HS256)");
  if (dot2 + 1 >= token.size()) return unauthenticated("missing signature");

  jwt_t* raw = nullptr;
  const int rc = jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(secret.data()),
                            static_cast<int>(secret.size()));
  JwtPtr jwt(raw);
  if (rc != 0 || !jwt) return unauthenticated("bad signature or malformed token");
  if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return unauthenticated("algorithm is not HS256");

  char* grants_raw = jwt_get_grants_json(jwt.get(), nullptr);
  if (grants_raw == nullptr) return unauthenticated("no claims");
  auto claims_json = nlohmann::json::parse(grants_raw, nullptr, false);
  std::free(grants_raw);
  if (!claims_json.is_object()) return unauthenticated("claims are not a JSON object");

  TokenClaims claims;
  auto sub = claims_json.find("sub");
  if (sub == claims_json.end() || !sub->is_string()) return unauthenticated("no subject (sub)");
  claims.user = sub->get<std::string>();
  auto user_ok = validate_user_id(claims.user);
  if (!user_ok.ok()) return unauthenticated("subject: " + user_ok.message());

  auto aud = claims_json.find("aud");
  bool audience_ok = false;
  if (aud != claims_json.end()) {
    if (aud->is_string()) {
      audience_ok = aud->get<std::string>() == options.audience;
    } else if (aud->is_array()) {
      for (const auto& a : *aud) audience_ok = audience_ok || (a.is_string() && a.get<std::string>() == options.audience);
    }
  }
  if (!audience_ok) return unauthenticated("wrong or missing audience (expected '" + options.audience + "')");
  claims.audience = options.audience;

  auto exp = claims_json.find("exp");
  if (exp == claims_json.end() || !exp->is_number_integer()) return unauthenticated("no expiry (exp)");
  claims.expires_at = exp->get<int64_t>();
  auto iat = claims_json.find("iat");
  if (iat != claims_json.end()) {
    if (!iat->is_number_integer()) return unauthenticated("issued-at (iat) is not an integer");
    claims.issued_at = iat->get<int64_t>();
  }
  const int64_t now = now_seconds(options.now);
  if (now >= claims.expires_at + options.leeway_seconds) return unauthenticated("expired");
  if (claims.issued_at > now + options.leeway_seconds) return unauthenticated("issued in the future");
  auto nbf = claims_json.find("nbf");
  if (nbf != claims_json.end() && (!nbf->is_number_integer() || nbf->get<int64_t>() > now + options.leeway_seconds))
    return unauthenticated("not valid yet (nbf)");
  return claims;
}

Result<std::chrono::seconds> parse_duration(const std::string& text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12) return Status::InvalidArgument("bad duration '" + text + "' (e.g. 90s, 15m, 12h, 30d)");
  const int64_t n = std::stoll(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  int64_t scale;
  if (unit.empty() || unit == "s") scale = 1;
  else if (unit == "m") scale = 60;
  else if (unit == "h") scale = 3600;
  else if (unit == "d") scale = 86400;
  else return Status::InvalidArgument("bad duration unit in '" + text + "' (use s, m, h or d)");
  if (n <= 0) return Status::InvalidArgument("duration must be positive: '" + text + "'");
  return std::chrono::seconds(n * scale);
}

}  // namespace tandem::auth
