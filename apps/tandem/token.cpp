// `tandem token`: mints an access token for one user (prints it on stdout).
#include <iostream>

#include "apps/tandem/commands.hpp"
#include "runtime/auth/token.hpp"

namespace tandem::app {

void add_token_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("token", "Mint a signed access token (HS256 JWT) for a user; prints it");
  struct Options {
    std::string secret_file, user, ttl = "30d", audience = auth::kDefaultAudience;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("--secret-file", opts->secret_file, "File holding the server's token secret (>= 32 bytes)")->required();
  cmd->add_option("--user", opts->user, "The user the token names (1-64 of [A-Za-z0-9_.@+-])")->required();
  cmd->add_option("--ttl", opts->ttl, "Lifetime: 90s, 15m, 12h, 30d or seconds")->capture_default_str();
  cmd->add_option("--audience", opts->audience, "Audience claim the server expects")->capture_default_str();
  cmd->callback([opts] {
    auto secret = auth::read_secret_file(opts->secret_file);
    if (!secret.ok()) {
      std::cerr << "tandem token: " << secret.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    auto ttl = auth::parse_duration(opts->ttl);
    if (!ttl.ok()) {
      std::cerr << "tandem token: --ttl: " << ttl.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    auto token = auth::mint_token(*secret, opts->user, *ttl, opts->audience);
    if (!token.ok()) {
      std::cerr << "tandem token: " << token.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    std::cout << *token << "\n";
  });
}

}  // namespace tandem::app
