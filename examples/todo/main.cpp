// todo: a small todo list on Tandem's public C++ API, with a live view.
//
//   todo --db FILE [--server URL --token TOKEN] [add TITLE | done ID | list]
//
// Opens the list (syncing with the server when given), prints the live view as it changes
// ("view: ..." lines: the initial rows, the optimistic write, its confirmation, changes
// merged from other devices), applies the command optimistically, waits until the server
// holds everything, and prints the final list ("final: ..." lines).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

namespace td = tandem::api;

namespace {

// The live view: the rows in order, kept by applying each event's changes.
class TodoView {
 public:
  void apply(const td::WatchEvent& event) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : event.changes) {
      switch (c.kind) {
        case td::RowChange::Kind::added: rows_.insert(rows_.begin() + c.position, c.row); break;
        case td::RowChange::Kind::removed: rows_.erase(rows_.begin() + c.position); break;
        case td::RowChange::Kind::changed:
          rows_.erase(rows_.begin() + c.old_position);
          rows_.insert(rows_.begin() + c.position, c.row);
          break;
      }
    }
    print("view", event.initial ? "initial" : "change");
  }
  void print(const char* prefix, const char* what) const {
    std::printf("%s: %s, %zu item(s)\n", prefix, what, rows_.size());
    for (const auto& r : rows_) {
      std::printf("%s: [%s] %lld %s\n", prefix, std::get<int64_t>(r[2]) ? "x" : " ",
                  static_cast<long long>(std::get<int64_t>(r[0])), std::get<std::string>(r[1]).c_str());
    }
    std::fflush(stdout);
  }
  void print_final() {
    std::lock_guard<std::mutex> lock(mu_);
    print("final", "synced");
  }

 private:
  mutable std::mutex mu_;
  std::vector<td::Row> rows_;
};

int usage() {
  std::cerr << "usage: todo --db FILE [--server URL --token TOKEN] [add TITLE | done ID | list]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  td::Options options;
  options.name = "todo";
  options.schema = {"CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER NOT NULL DEFAULT 0)"};
  std::string server, token;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--db" || arg == "--server" || arg == "--token") && i + 1 < argc) {
      (arg == "--db" ? options.path : arg == "--server" ? server : token) = argv[++i];
    } else {
      command.push_back(arg);
    }
  }
  if (options.path.empty() || (server.empty() != token.empty())) return usage();
  if (!server.empty()) options.sync = td::SyncOptions{server, token, "", true};

  auto db = td::Database::open(options);
  if (!db.ok()) {
    std::cerr << "todo: cannot open " << options.path << ": " << db.status().to_string() << "\n";
    return 1;
  }
  // Changes merged from the server show in the view as they arrive.
  if (options.sync) (void)(*db)->wait_synced(std::chrono::seconds(10));

  TodoView view;
  auto watch = (*db)->watch("SELECT id, title, done FROM todo ORDER BY id", {},
                            [&view](const td::WatchEvent& e) { view.apply(e); });
  if (!watch.ok()) {
    std::cerr << "todo: " << watch.status().to_string() << "\n";
    return 1;
  }

  td::Result<int64_t> outcome = int64_t{0};
  if (command.size() == 2 && command[0] == "add") {
    // An optimistic insert names its key (every view shows the row under it before the
    // commit); a random one keeps devices that add items offline from colliding.
    std::random_device random;
    const int64_t id = 1 + static_cast<int64_t>((uint64_t{random()} << 32 | random()) % 1000000000);
    outcome = (*db)->mutate({td::Mutation::insert("todo", {"id", "title"}, {id, command[1]})});
  } else if (command.size() == 2 && command[0] == "done") {
    outcome = (*db)->mutate({td::Mutation::update("todo", {int64_t{std::stoll(command[1])}}, {"done"}, {int64_t{1}})});
  } else if (!(command.empty() || (command.size() == 1 && command[0] == "list"))) {
    return usage();
  }
  if (!outcome.ok()) {
    std::cerr << "todo: rolled back: " << outcome.status().to_string() << "\n";
    return 1;
  }
  if (options.sync) {
    td::Status synced = (*db)->wait_synced(std::chrono::seconds(10));
    if (!synced.ok()) {
      std::cerr << "todo: not synced: " << synced.to_string() << "\n";
      return 1;
    }
    auto state = (*db)->sync_state();
    if (state.ok()) std::printf("sync: online=%d pending=%lld acked=%lld\n", state->online ? 1 : 0,
                                static_cast<long long>(state->pending_changes), static_cast<long long>(state->acked_version));
  }
  watch->stop();
  view.print_final();
  return (*db)->close().ok() ? 0 : 1;
}
