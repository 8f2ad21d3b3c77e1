// Access tokens for the sync edge: HS256 JSON Web Tokens (RFC 7519) minted by `tandem token`
// and checked by the server's session before anything is opened for the user.
//
// A token carries: sub (the user id, which must pass validate_user_id), aud (the audience,
// "tandem-sync" unless configured), iat (issued at) and exp (expiry), all in seconds since
// the epoch. verify() accepts a token only if its header says alg HS256 (nothing else: no
// "none", no HS384, no RS256 with a public key used as an HMAC secret), the signature is
// valid for the secret, the audience matches, it is not expired and not issued in the future
// (both with a small leeway for clock skew), and the subject is a valid user id.
// Thread-safe: every function is pure over its arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/common/status.hpp"

namespace tandem::auth {

inline constexpr const char* kDefaultAudience = "tandem-sync";
// RFC 7518 3.2: an HS256 key must be at least as long as the hash output (32 bytes).
inline constexpr size_t kMinSecretBytes = 32;

struct TokenClaims {
  std::string user;        // sub
  std::string audience;    // aud
  int64_t issued_at = 0;   // iat, seconds since the epoch
  int64_t expires_at = 0;  // exp, seconds since the epoch
};

struct VerifyOptions {
  std::string audience = kDefaultAudience;
  int64_t leeway_seconds = 30;  // tolerated clock skew for exp and iat
  int64_t now = -1;             // seconds since the epoch; -1: the system clock
};

// Reads a file holding one token or secret (an editor's final newline aside): its bytes with
// trailing whitespace removed. `what` names it in the error ("--token-file").
Result<std::string> read_trimmed_file(const std::string& path, const std::string& what);

// Reads a secret file: its bytes with trailing whitespace removed. Refuses a missing,
// unreadable or too short (< kMinSecretBytes) secret with a clear message.
Result<std::string> read_secret_file(const std::string& path);

// Signs a token for `user` valid for `ttl` from `now` (-1: the system clock).
Result<std::string> mint_token(const std::string& secret, const std::string& user, std::chrono::seconds ttl,
                               const std::string& audience = kDefaultAudience, int64_t now = -1);

// Checks everything listed above; UNAUTHENTICATED with the reason otherwise.
Result<TokenClaims> verify_token(const std::string& secret, const std::string& token,
                                 const VerifyOptions& options = {});

// The subject (sub) of a token, read WITHOUT verifying anything: only a client uses it, to
// refuse before connecting a token of another user than the one its database is bound to
// (the server verifies the token for real). UNAUTHENTICATED when there is no readable subject.
Result<std::string> unverified_subject(const std::string& token);

// Parses "90s", "15m", "12h", "30d" or a plain number of seconds; must be positive.
Result<std::chrono::seconds> parse_duration(const std::string& text);

}  // namespace tandem::auth
