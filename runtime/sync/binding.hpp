// A device database is bound to one user and one server (docs/protocol.md, "Binding").
//
// A client's database holds that user's rows and the server's versions (its cursor in
// tandem_peers): synced with another user's token it would push the first user's rows into
// the second user's channel, and with another server it would skip that server's history
// (its cursor means nothing there). So the first successful hello records the user (from the
// welcome, which the server verified) and the server URL in tandem_meta ('sync_user',
// 'sync_server'), and a client checks them before it connects: another user's token or
// another server is refused before anything is sent.
#pragma once

#include <string>

#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"

namespace tandem::sync_binding {

struct Binding {
  std::string user;    // empty: never synced
  std::string server;  // the server URL, normalized (normalize_server_url)
  bool empty() const { return user.empty() && server.empty(); }
};

// What `store` is bound to (empty fields when it never synced).
Result<Binding> load(Store& store);

// Records `binding` when the database is not bound yet; refuses (PERMISSION_DENIED, as
// check()) a different one. Returns the binding in force.
Result<Binding> record(Store& store, const Binding& binding);

// OK when a connection as `user` to `server` may use a database bound to `stored`. An empty
// `user` (a token whose subject cannot be read) is not compared: the server refuses it.
Status check(const Binding& stored, const std::string& user, const std::string& server, const std::string& db_name = {});

// "ws://HOST:PORT/path" with the scheme and host lower-case and the default port written,
// so that spellings of one URL compare equal. Returns `url` unchanged when it does not parse.
std::string normalize_server_url(const std::string& url);

}  // namespace tandem::sync_binding
