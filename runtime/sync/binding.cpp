#include "runtime/sync/binding.hpp"

#include <cctype>

namespace tandem::sync_binding {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Result<Binding> load(Store& store) {
  Binding b;
  TANDEM_ASSIGN_OR_RETURN(auto user, store.note("sync_user"));
  TANDEM_ASSIGN_OR_RETURN(auto server, store.note("sync_server"));
  if (user) b.user = *user;
  if (server) b.server = *server;
  return b;
}

Result<Binding> record(Store& store, const Binding& binding) {
  TANDEM_ASSIGN_OR_RETURN(Binding stored, load(store));
  TANDEM_RETURN_IF_ERROR(check(stored, binding.user, binding.server));
  if (!stored.user.empty() && !stored.server.empty()) return stored;
  if (binding.user.empty() || binding.server.empty()) return Status::InvalidArgument("a binding needs a user and a server");
  TANDEM_RETURN_IF_ERROR(store.put_notes({{"sync_user", binding.user}, {"sync_server", binding.server}}));
  return binding;
}

Status check(const Binding& stored, const std::string& user, const std::string& server, const std::string& db_name) {
  const std::string what = db_name.empty() ? "this database" : "database '" + db_name + "'";
  if (!stored.user.empty() && !user.empty() && user != stored.user)
    return Status::PermissionDenied(what + " belongs to user '" + stored.user + "' (it synced with " + stored.server +
                                    " as that user); the token is for user '" + user +
                                    "'. Nothing was sent. Each user needs a database of their own (another --db).");
  if (!stored.server.empty() && !server.empty() && normalize_server_url(server) != normalize_server_url(stored.server))
    return Status::PermissionDenied(what + " syncs with " + stored.server + ", not " + server +
                                    ": its sync state (versions, cursor) belongs to that server. Nothing was sent. "
                                    "Use another --db for another server.");
  return Status::Ok();
}

std::string normalize_server_url(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const std::string scheme = lower(url.substr(0, scheme_end));
  if (scheme != "ws" && scheme != "wss") return url;
  std::string rest = url.substr(scheme_end + 3);
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host = authority, port = scheme == "wss" ? "443" : "80";
  const auto bracket = authority.find(']');
  const auto colon = authority.rfind(':');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  return scheme + "://" + lower(host) + ":" + port + target;
}

}  // namespace tandem::sync_binding
