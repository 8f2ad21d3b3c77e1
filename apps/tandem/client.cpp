// `tandem client`: a client node (db_worker + peer_syncer, and live views for `watch`) on a
// local database file, synced with a Tandem server. Several `tandem client` processes on one
// --db form one node (actors/node.hpp, docs/node.md): the first is the leader, the others
// join it and write, query, watch and wait for the server through it.
//
//   exec SQL [PARAMS...]  write locally in one transaction, wait until the server acked it
//                         (without --server: write locally and exit at once)
//   query SQL             print the rows of the local database as JSON (no network)
// --schema is needed to sync and to create a database; local commands on an existing file
// do without.
//   sync                  connect, push and pull until caught up
//   mutate OP TABLE ARGS  an optimistic mutation through a view (insert/update/delete),
//                         shown at once in every view of the node, then settled
//   watch SQL [--json]    stay connected; print the live result as it changes
//   inspect [--json]      describe the database (client_inspect.cpp; no server, no --schema)
//   (no command)          an interactive shell with the same commands, plus help and
//                         unwatch (also fed by a pipe: exits with the last failure's status)
//
// Exit status: 0 success; 1 the database refused the statement or mutation, or a watch's query is
// outside the live-query subset; 2 bad arguments or files, or the database is held by a
// process that cannot be joined; 3 the server did not acknowledge in time, could not be reached, or
// refused the client (the write stays local), or (a follower) no process could lead the node
// again after its leader ended (a request in flight at the dead leader is sent again to the
// next one, a write running exactly once); 128 + N stopped by signal N (SIGINT, SIGTERM)
// before the command finished. `watch` ends with 0 on SIGINT or SIGTERM, its normal end.
#include "actors/system_config.hpp"
#include "apps/tandem/line_reader.hpp"
#include "actors/node.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/session.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <mutex>
#include <fstream>
#include <iostream>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/tandem/client_watch.hpp"
#include "apps/tandem/commands.hpp"
#include "apps/tandem/logging.hpp"
#include "apps/tandem/stop_signals.hpp"
#include "runtime/sqlite/value_json.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/sync/schema_sync.hpp"

namespace tandem::app {
namespace {

struct ClientOptions {
  std::string server, token, token_file, db, schema_file, log_level, timeout = "10s", name, ca_file;
  std::vector<std::string> also_servers;  // other hosts of the same cluster (--also-server)
  bool insecure = false;
  // exec / query / watch
  std::string sql;
  std::vector<std::string> params;
  std::string mutate_op, mutate_table;
  bool json = false;
};

struct ExitError {
  int code;
  std::string message;
};

[[noreturn]] void fail(int code, const std::string& message) { throw ExitError{code, message}; }

// The message an actor put in its error, else CAF's rendering ("request_timeout").
std::string error_text(caf::actor_system& system, const caf::error& e) {
  if (e.context().match_elements<std::string>()) return e.context().get_as<std::string>(0);
  return system.render(e);
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(2, "cannot read " + what + " '" + path + "'");
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// A command-line parameter as a SQLite value: NULL, an integer, a real, x'hex' (a blob),
// 'quoted' (text, quotes removed), anything else text.
change::Value parse_param(const std::string& p) {
  change::Value v;
  if (p == "NULL" || p == "null") return v;
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(p.c_str(), &end, 10);
  if (!p.empty() && *end == '\0' && errno == 0) {
    v.set_integer(i);
    return v;
  }
  errno = 0;
  double d = std::strtod(p.c_str(), &end);
  if (!p.empty() && *end == '\0' && errno == 0 && p.find_first_of("0123456789") != std::string::npos) {
    v.set_real(d);
    return v;
  }
  if (p.size() >= 3 && (p[0] == 'x' || p[0] == 'X') && p[1] == '\'' && p.back() == '\'' && p.size() % 2 == 1) {
    std::string bytes;
    for (size_t k = 2; k + 1 < p.size(); k += 2) bytes.push_back(static_cast<char>(std::stoi(p.substr(k, 2), nullptr, 16)));
    v.set_blob(bytes);
    return v;
  }
  if (p.size() >= 2 && p.front() == '\'' && p.back() == '\'') {
    v.set_text(p.substr(1, p.size() - 2));
    return v;
  }
  v.set_text(p);
  return v;
}

// One client node: the actor system and the node on --db (leader or follower, actors/node.hpp).
class ClientNode {
 public:
  ClientNode(const ClientOptions& opts, bool online) : opts_(opts) {
    // The schema is what a sync declares to the server, and what makes a new file; a local
    // command on an existing file does without (its tables are recorded in it).
    if (!opts.schema_file.empty()) {
      auto schema_text = read_file(opts.schema_file, "--schema file");
      auto statements = sync_schema::split_statements(schema_text);
      if (!statements.ok()) fail(2, "--schema: " + statements.status().message());
      for (auto& s : *statements) schema_.push_back(sync_schema::if_not_exists(s));
      if (schema_.empty()) fail(2, "--schema file '" + opts.schema_file + "' holds no statement");
    } else if (online) {
      fail(2, "--schema is required for this command (it tells the server the tables this device syncs)");
    } else if (::access(opts.db.c_str(), F_OK) != 0) {
      fail(2, "--db '" + opts.db + "' does not exist; a new database needs --schema");
    }
    timeout_ = [&] {
      auto d = auth::parse_duration(opts.timeout);
      if (!d.ok()) fail(2, "--timeout: " + d.status().message());
      return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    }();

    // Arguments are checked before any actor exists: a failure after the db_worker started
    // would leave the actor system waiting for it.
    if (online) check_sync_options();

    configure_actor_system(cfg_);
    system_ = std::make_unique<caf::actor_system>(cfg_);

    nc_.database_path = opts.db;
    nc_.schema = schema_;
    nc_.name = opts.name.empty() ? "db_worker" : opts.name;
    if (online) nc_.sync = syncer_config();
    nc_.on_leader_lost = [this](const Status& why) {
      std::lock_guard<std::mutex> lock(lost_mu_);
      lost_ = why.message();
      leader_lost_ = true;
    };
    // The node takes over by itself (docs/node.md): say so, and how long it took.
    nc_.on_takeover = [](const TakeoverReport& r) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.took).count();
      if (!r.status.ok()) {
        std::cerr << "tandem client: " << r.status.message() << std::endl;
        return;
      }
      std::cerr << "tandem client: the node's leader process is gone; "
                << (r.leads ? std::string("this process now leads the node")
                            : "joined the new leader process (pid " + std::to_string(r.leader_pid) + ")")
                << " (" << ms << " ms)" << std::endl;
    };
    auto node = Node::open(*system_, nc_);
    if (!node.ok()) fail(2, "cannot open --db '" + opts.db + "': " + node.status().message());
    node_ = std::move(*node);
    if (!node_->is_leader()) spdlog::info("joined the leader process (pid {}) of '{}'", node_->leader_pid(), opts.db);
    // A stop signal answers the callers waiting on the node (exec, sync) at once.
    stop_callback_ = add_stop_callback([this] {
      std::lock_guard<std::mutex> lock(node_mu_);
      if (node_) node_->interrupt();
    });
  }

  // The view mutations go through (one per process: its mutation ids stay unique).
  ui_view_actor mutate_view() {
    if (!mutate_view_) {
      auto view = node_->spawn_view("mutate");
      if (!view.ok()) fail(2, "mutate: " + view.status().message());
      mutate_view_ = *view;
    }
    return mutate_view_;
  }

  ~ClientNode() {
    remove_stop_callback(stop_callback_);
    if (mutate_view_) caf::anon_send_exit(mutate_view_, caf::exit_reason::user_shutdown);
    for (auto& w : watches_) {
      caf::anon_send_exit(w.watcher, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(w.view, caf::exit_reason::user_shutdown);
    }
    node_.reset();
    system_->await_all_actors_done();
    if (loop_) loop_->stop();
  }

  void check_sync_options() {
    if (opts_.server.empty()) fail(2, "--server is required for this command");
    token_ = opts_.token;
    if (token_.empty() && !opts_.token_file.empty()) {
      auto token = auth::read_trimmed_file(opts_.token_file, "--token-file");
      if (!token.ok()) fail(2, token.status().message());
      token_ = std::move(*token);
    }
    if (token_.empty()) fail(2, "--token (or --token-file) is required for this command");
    auto url = net::parse_url(opts_.server);
    if (!url.ok()) fail(2, "--server: " + url.status().message());
    for (const auto& also : opts_.also_servers)
      if (auto parsed = net::parse_url(also); !parsed.ok()) fail(2, "--also-server: " + parsed.status().message());
  }

  actors::PeerSyncerConfig syncer_config() {
    loop_ = std::make_shared<net::EventLoop>(1);
    actors::PeerSyncerConfig pc;
    pc.url = opts_.server;
    pc.also_urls = opts_.also_servers;
    pc.token = token_;
    pc.loop = loop_;
    pc.schema = schema_;
    pc.client_name = opts_.name.empty() ? std::string("tandem-client") : opts_.name;
    pc.client.ca_file = opts_.ca_file;
    pc.client.verify_peer = !opts_.insecure;
    return pc;
  }

  // Runs one SQL write; returns (db_version, rows_changed, changed).
  worker::WriteResponse write(const std::string& sql, const std::vector<std::string>& params) {
    caf::scoped_actor self{*system_};
    worker::WriteRequest req;
    auto* st = req.add_statements();
    st->set_sql(sql);
    for (const auto& p : params) *st->add_params() = parse_param(p);
    worker::WriteResponse out;
    self->request(node_->worker(), timeout_ + std::chrono::seconds(30), req)
        .receive([&](worker::WriteResponse& r) { out = std::move(r); },
                 [&](caf::error& e) { fail(connection_failed() ? 3 : 1, "write failed: " + error_text(*system_, e)); });
    return out;
  }

  worker::QueryResponse query(const std::string& sql, const std::vector<std::string>& params = {}) {
    caf::scoped_actor self{*system_};
    worker::QueryRequest req;
    req.set_sql(sql);
    for (const auto& p : params) *req.add_params() = parse_param(p);
    worker::QueryResponse out;
    self->request(node_->worker(), timeout_ + std::chrono::seconds(30), req)
        .receive([&](worker::QueryResponse& r) { out = std::move(r); },
                 [&](caf::error& e) { fail(connection_failed() ? 3 : 1, "query failed: " + error_text(*system_, e)); });
    return out;
  }

  // The server's acknowledged version, or nullopt (with why) when not within the timeout.
  std::optional<int64_t> wait_acked(int64_t version, std::string* why) {
    auto acked = node_->wait_acked(version, timeout_);
    if (acked.ok()) return *acked;
    *why = explain(acked.status());
    return std::nullopt;
  }

  std::optional<std::pair<int64_t, int64_t>> caught_up(std::string* why) {
    auto done = node_->caught_up(timeout_);
    if (done.ok()) return *done;
    *why = explain(done.status());
    return std::nullopt;
  }

  // Why a wait on the syncer failed: its own message, or for a timeout what the last
  // connection attempt hit.
  std::string explain(const Status& s) {
    if (s.message() != "request_timeout") return s.message();
    std::string last = node_->last_sync_error();
    return "no answer from the server within --timeout " + opts_.timeout + (last.empty() ? "" : "; last problem: " + last);
  }

  // A request failed on the way to the leader rather than in the database: the leader
  // process ended (or its connection broke) with the request in flight.
  bool connection_failed() { return leader_lost() || !node_->is_leader(); }

  // Follower only: the leader process ended at least once.
  bool leader_lost() {
    std::lock_guard<std::mutex> lock(lost_mu_);
    return leader_lost_;
  }
  caf::actor_system& system() { return *system_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  Node& node() { return *node_; }
  void keep(const Watch& w) { watches_.push_back(w); }
  // Stops every watch of this process (the shell's `unwatch`); returns how many there were.
  size_t stop_watches() {
    for (auto& w : watches_) {
      caf::anon_send_exit(w.watcher, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(w.view, caf::exit_reason::user_shutdown);
    }
    const size_t n = watches_.size();
    watches_.clear();
    return n;
  }

  bool syncs() const { return nc_.sync.has_value(); }  // this process was given a server

 private:
  ClientOptions opts_;
  std::vector<std::string> schema_;
  std::chrono::milliseconds timeout_{10000};
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> system_;
  std::shared_ptr<net::EventLoop> loop_;
  NodeConfig nc_;
  std::mutex node_mu_;  // node_ is reset at the end while a stop signal may interrupt it
  std::unique_ptr<Node> node_;
  std::vector<Watch> watches_;
  ui_view_actor mutate_view_;
  int stop_callback_ = 0;
  std::string token_;
  std::mutex lost_mu_;
  bool leader_lost_ = false;
  std::string lost_;
};

std::string rows_json(const worker::QueryResponse& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows()) {
    nlohmann::json obj = nlohmann::json::object();
    for (int i = 0; i < row.values_size() && i < r.columns_size(); ++i) obj[r.columns(i)] = value_to_json(from_proto(row.values(i)));
    rows.push_back(std::move(obj));
  }
  return rows.dump();
}

// Prints `out` once the server acknowledged `version` (exit 0), or says that it is kept
// locally (exit 3).
int report_acked(ClientNode& node, nlohmann::json out, int64_t version) {
  std::string why;
  auto acked = node.wait_acked(version, &why);
  if (!acked) {
    out["acknowledged"] = false;
    std::cout << out.dump() << std::endl;
    std::cerr << "tandem client: written locally at db_version " << version
              << "; NOT yet acknowledged by the server (" << (why.empty() ? "timed out" : why)
              << "). The write is kept in the local database and pushed on the next sync.\n";
    return 3;
  }
  out["acknowledged"] = true;
  out["server_acked_db_version"] = *acked;
  std::cout << out.dump() << std::endl;
  return 0;
}

// `online` false (no --server): the write stays local, for the next sync to push.
int do_exec(ClientNode& node, const std::string& sql, const std::vector<std::string>& params, bool online = true) {
  auto r = node.write(sql, params);
  if (r.error().code() != change::Error::OK) fail(1, "the database refused the write: " + r.error().message());
  nlohmann::json out{{"db_version", r.db_version()}, {"rows_changed", r.rows_changed()}};
  if (r.last_key() != 0) out["last_key"] = r.last_key();
  if (!online) {
    out["acknowledged"] = false;
    out["offline"] = true;
    std::cout << out.dump() << std::endl;
    return 0;
  }
  return report_acked(node, std::move(out), r.db_version());
}

// An optimistic mutation through a view of this process (docs/ivm.md, "Optimistic overlay"):
// every view of the node shows it at once, then its outcome. OP is insert (COL=VALUE...),
// update (KEY COL=VALUE...) or delete (KEY); KEY is the value of a one-column primary key.
int do_mutate(ClientNode& node, const std::string& op, const std::string& table, const std::vector<std::string>& args) {
  view::MutateRequest req;
  auto* m = req.add_mutations();
  m->set_table(table);
  auto assign = [&](size_t from, google::protobuf::RepeatedPtrField<std::string>* columns,
                    google::protobuf::RepeatedPtrField<change::Value>* values) {
    for (size_t i = from; i < args.size(); ++i) {
      const auto eq = args[i].find('=');
      if (eq == std::string::npos || eq == 0) fail(2, "mutate: '" + args[i] + "' is not COLUMN=VALUE");
      *columns->Add() = args[i].substr(0, eq);
      *values->Add() = parse_param(args[i].substr(eq + 1));
    }
  };
  if (op == "insert") {
    if (args.empty()) fail(2, "mutate insert: no COLUMN=VALUE");
    assign(0, m->mutable_insert()->mutable_columns(), m->mutable_insert()->mutable_values());
  } else if (op == "update") {
    if (args.size() < 2) fail(2, "mutate update: KEY and at least one COLUMN=VALUE are needed");
    *m->mutable_update()->add_pk() = parse_param(args[0]);
    assign(1, m->mutable_update()->mutable_columns(), m->mutable_update()->mutable_values());
  } else if (op == "delete") {
    if (args.size() != 1) fail(2, "mutate delete: exactly one KEY is needed");
    *m->mutable_delete_()->add_pk() = parse_param(args[0]);
  } else {
    fail(2, "mutate: the operation is insert, update or delete, not '" + op + "'");
  }
  auto view = node.mutate_view();
  view::MutateResponse r;
  std::string broken;
  {
    caf::scoped_actor self{node.system()};
    self->request(view, node.timeout() + std::chrono::seconds(30), req)
        .receive([&](view::MutateResponse& x) { r = std::move(x); }, [&](caf::error& e) { broken = error_text(node.system(), e); });
  }
  if (!broken.empty()) fail(3, "mutate: the view did not answer: " + broken);
  if (r.error().code() != change::Error::OK) {
    // UNAVAILABLE: the leader process died with the write in flight; the views show what
    // the database holds, whichever it was.
    const bool unknown = r.error().code() == change::Error::UNAVAILABLE;
    fail(unknown ? 3 : 1, (unknown ? "mutation " + r.mutation_id() + " did not complete: " : "the database refused mutation " + r.mutation_id() + ": ") +
                              r.error().message());
  }
  return report_acked(node, nlohmann::json{{"mutation_id", r.mutation_id()}, {"db_version", r.db_version()}}, r.db_version());
}

int do_query(ClientNode& node, const std::string& sql, const std::vector<std::string>& params) {
  auto r = node.query(sql, params);
  if (r.error().code() != change::Error::OK) fail(1, "query refused: " + r.error().message());
  std::cout << rows_json(r) << std::endl;
  return 0;
}

int do_sync(ClientNode& node) {
  std::string why;
  auto done = node.caught_up(&why);
  if (!done) {
    std::cerr << "tandem client: not caught up with the server: " << (why.empty() ? "timed out" : why) << "\n";
    return 3;
  }
  std::cout << nlohmann::json{{"server_acked_db_version", done->first}, {"server_cursor", done->second}}.dump() << std::endl;
  return 0;
}

int do_watch(ClientNode& node, const std::string& sql, const std::vector<std::string>& params, bool json,
             bool wait_for_signal) {
  std::vector<change::Value> values;
  for (const auto& p : params) values.push_back(parse_param(p));
  auto watch = start_watch(node.system(), node.node(), sql, values, json);
  if (!watch.ok()) fail(1, "cannot watch: " + watch.status().message());
  node.keep(*watch);
  if (!wait_for_signal) return 0;
  // The node keeps the watch across a change of leader (it takes over by itself).
  while (!wait_for_stop(std::chrono::milliseconds(200))) {
  }
  return 0;
}

// Splits the parameters of a shell line on spaces, except inside quotes: 'buy milk' stays
// one parameter, quotes kept (parse_param reads it as text); "buy milk" is one parameter
// without its double quotes (so "42" is the number 42). An unclosed quote is an error.
std::vector<std::string> split_params(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_token = false;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote) {
        quote = 0;
        if (c == '\'') cur += c;
      } else {
        cur += c;
      }
      continue;
    }
    if (c == ' ' || c == '\t') {
      if (in_token) out.push_back(std::move(cur));
      cur.clear();
      in_token = false;
      continue;
    }
    in_token = true;
    if (c == '\'' || c == '"') {
      quote = c;
      if (c == '\'') cur += c;
      continue;
    }
    cur += c;
  }
  if (quote) fail(2, std::string("unclosed ") + (quote == '"' ? "double quote" : "quote") + " in the parameters");
  if (in_token) out.push_back(std::move(cur));
  return out;
}

const char* kShellHelp =
    "commands (one per line):\n"
    "  exec SQL [-- PARAMS]     write locally, wait until the server acknowledged it\n"
    "  query SQL [-- PARAMS]    print the rows of the local database as JSON\n"
    "  watch SQL [-- PARAMS]    print the live result as it changes (JSON lines)\n"
    "  unwatch                  stop every watch of this shell\n"
    "  mutate OP TABLE ARGS     an optimistic mutation (insert COL=V..., update KEY COL=V..., delete KEY)\n"
    "  sync                     push and pull until caught up\n"
    "  help                     this list\n"
    "  quit                     leave (also Ctrl-D)\n"
    "PARAMS: NULL, 42, 1.5, x'00ff', 'text' or text; quote a parameter with spaces: 'buy milk' or \"buy milk\"\n";

// The interactive shell, also fed by a pipe: one command per line (kShellHelp). A failed
// command prints its error and the shell goes on. Fed by a pipe (a script), the exit status
// is that of the last command that failed (1, 2 or 3 as for the commands), 0 when none did;
// on a terminal the user saw every error, and leaving is 0.
int run_shell(ClientNode& node) {
  LineReader input("tandem> ");
  const bool tty = input.interactive();
  if (tty) std::cerr << "tandem shell: type help for the commands, quit or Ctrl-D to leave\n";
  int failed = 0;
  while (true) {
    auto next = input.next();
    if (!next) break;
    std::string line = std::move(*next);
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    line = line.substr(first);
    auto space = line.find(' ');
    const std::string cmd = line.substr(0, space);
    std::string rest = space == std::string::npos ? std::string() : line.substr(space + 1);
    try {
      std::vector<std::string> params;
      auto sep = rest.find(" -- ");
      if (sep != std::string::npos) {
        params = split_params(rest.substr(sep + 4));
        rest = rest.substr(0, sep);
      }
      int code = 0;
      if (cmd == "quit" || cmd == "exit") break;
      if (cmd == "help") std::cout << kShellHelp << std::flush;
      else if (cmd == "exec") code = do_exec(node, rest, params, node.syncs());
      else if (cmd == "query") code = do_query(node, rest, params);
      else if (cmd == "sync") code = do_sync(node);
      else if (cmd == "watch") code = do_watch(node, rest, params, true, false);
      else if (cmd == "unwatch") std::cerr << "stopped " << node.stop_watches() << " watch(es)\n";
      else if (cmd == "mutate") {
        std::istringstream words(rest);
        std::string op, table;
        words >> op >> table;
        std::string args_text;
        std::getline(words, args_text);
        code = do_mutate(node, op, table, split_params(args_text));
      } else {
        std::cerr << "unknown command '" << cmd << "' (type help for the commands)\n";
        code = 2;
      }
      if (code != 0) failed = code;
    } catch (const ExitError& e) {
      // One write: a log line of another thread cannot land inside it.
      std::cerr << ("error: " + e.message + "\n");
      failed = e.code;
    }
  }
  if (tty && stop_signal() == 0) std::cerr << "\n";
  return tty ? 0 : failed;
}

int run_client(const ClientOptions& opts, const std::string& command) {
  // Before any thread exists: every thread inherits the blocked mask (stop_signals.hpp).
  install_stop_signals();
  if (!setup_logging("client", opts.log_level)) return 2;
  int code = 0;
  try {
    // query never syncs; sync needs --server; exec, mutate, watch and the shell without it
    // work on the local file (exec says so). The node still syncs when another process of
    // it names a server (docs/node.md).
    const bool online = command == "sync" || (command != "query" && !opts.server.empty());
    if (!online && command != "query" && command != "exec")
      std::cerr << "tandem client: no --server: " << command << " works on the local file; the node syncs while a process of it names a server\n";
    ClientNode node(opts, online);
    if (command == "exec") code = do_exec(node, opts.sql, opts.params, online);
    else if (command == "query") code = do_query(node, opts.sql, opts.params);
    else if (command == "sync") code = do_sync(node);
    else if (command == "mutate") code = do_mutate(node, opts.mutate_op, opts.mutate_table, opts.params);
    else if (command == "watch") code = do_watch(node, opts.sql, opts.params, opts.json, true);
    else code = run_shell(node);
  } catch (const ExitError& e) {
    std::cerr << "tandem client: " << e.message << "\n";
    code = e.code;
  }
  if (const int sig = stop_signal(); sig != 0 && command != "watch") {
    std::cerr << "tandem client: stopped by " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << "\n";
    return 128 + sig;
  }
  return code;
}

}  // namespace

void add_client_command(CLI::App& app) {
  auto opts = std::make_shared<ClientOptions>();
  auto* cmd = app.add_subcommand("client", "A client node on a local database file, synced with a server");
  cmd->add_option("--server", opts->server, "Server URL: ws://HOST:PORT/sync or wss://... (needed by sync; without it query, exec, mutate, watch and the shell work on the local file, and the node syncs while another process of it names one)");
  cmd->add_option("--also-server", opts->also_servers,
                  "Another host of the same server cluster, tried when a connection fails (repeat; docs/cluster.md)");
  cmd->add_option("--token", opts->token, "Access token from `tandem token`");
  cmd->add_option("--token-file", opts->token_file, "File holding the access token (instead of --token)");
  cmd->add_option("--db", opts->db, "The node's SQLite file (created if missing)")->required();
  cmd->add_option("--schema", opts->schema_file, "File of CREATE TABLE statements of the replicated tables (needed to sync and to create --db; not for inspect)");
  cmd->add_option("--timeout", opts->timeout, "How long exec and sync wait for the server")->capture_default_str();
  cmd->add_option("--name", opts->name, "This node's name in logs");
  cmd->add_option("--ca-file", opts->ca_file, "PEM certificate to trust for wss:// (default: system store)");
  cmd->add_flag("--insecure", opts->insecure, "Do not verify the server's TLS certificate (tests only)");
  add_log_level_option(cmd, &opts->log_level, "warn");

  auto* exec = cmd->add_subcommand("exec", "Write locally in one transaction, wait until the server acked it (without --server: write locally and exit)");
  exec->add_option("sql", opts->sql, "The SQL statement")->required();
  exec->add_option("params", opts->params, "Parameters: NULL, 42, 1.5, x'00ff', 'text' or text");
  auto* query = cmd->add_subcommand("query", "Print the rows of the local database as JSON");
  query->add_option("sql", opts->sql, "The SELECT statement")->required();
  query->add_option("params", opts->params, "Parameters, as for exec");
  cmd->add_subcommand("sync", "Connect, push and pull until caught up, exit");
  auto* mutate = cmd->add_subcommand("mutate", "An optimistic mutation: shown at once in every view of the node, then settled; waits until the server acked it");
  mutate->add_option("op", opts->mutate_op, "insert, update or delete")->required();
  mutate->add_option("table", opts->mutate_table, "The replicated table")->required();
  mutate->add_option("args", opts->params, "insert: COL=VALUE...; update: KEY COL=VALUE...; delete: KEY (values as for exec)");
  auto* watch = cmd->add_subcommand("watch", "Stay connected; print the live result as it changes");
  watch->add_option("sql", opts->sql, "The query (the live-query subset)")->required();
  watch->add_option("params", opts->params, "Parameters, as for exec");
  watch->add_flag("--json", opts->json, "One JSON line per change instead of a table");
  add_client_inspect(*cmd, &opts->db);
  cmd->require_subcommand(0, 1);
  cmd->callback([opts, cmd] {
    std::string command;
    for (auto* sub : cmd->get_subcommands()) command = sub->get_name();
    if (command == "inspect") return;  // done by its own callback (client_inspect.cpp)
    int code = run_client(*opts, command);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tandem::app
