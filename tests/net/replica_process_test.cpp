// Server hosts keeping each user's channel on two of them (docs/cluster.md), with the real
// binary: a push is acknowledged once two hosts hold it; a host killed with -9 loses no
// acknowledged write, its users are served by the next host within seconds, and when it
// comes back it catches up before it serves. Every wait is bounded.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/sqlite/database.hpp"
#include "runtime/sync/placement.hpp"
#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

namespace {

// The ids in a host's copy of a user's file (empty when the host has none), and whether
// SQLite finds the file sound.
std::set<int64_t> ids_on_host(const std::string& path, bool* sound = nullptr) {
  std::set<int64_t> ids;
  if (!std::ifstream(path).good()) return ids;
  tandem::OpenOptions ro;
  ro.create = false;
  auto db = tandem::Database::open(path, ro);
  REQUIRE(db.ok());
  auto st = (*db)->prepare("SELECT id FROM todo");
  if (!st.ok()) return ids;  // the table is not there yet
  for (;;) {
    auto row = (*st)->step();
    REQUIRE(row.ok());
    if (!*row) break;
    ids.insert((*st)->column_int64(0));
  }
  if (sound) {
    auto check = (*db)->prepare("PRAGMA integrity_check");
    REQUIRE(check.ok());
    REQUIRE((*check)->step().ok());
    *sound = (*check)->column(0).bytes() == "ok";
  }
  return ids;
}

struct Host {
  std::string name;
  std::string member;  // its --cluster-listen
  std::unique_ptr<Process> process;
  std::string url;
  uint16_t port = 0;
};

struct Cluster {
  World& w;
  std::vector<Host> hosts;
  std::vector<std::string> extra;  // more `tandem server` arguments
  std::string member_file;         // when set, members come from it (--cluster-member-file)
  explicit Cluster(World& world, size_t n, std::vector<std::string> more = {}, bool with_file = false)
      : w(world), extra(std::move(more)) {
    if (with_file) member_file = w.dir / "members.txt";
    for (size_t i = 0; i < n; ++i) add();
    write_members();
    for (auto& h : hosts) start(h);
  }
  Host& add() {
    hosts.push_back({"host-" + std::string(1, char('a' + hosts.size())), "127.0.0.1:" + std::to_string(free_port())});
    hosts.back().port = free_port();
    return hosts.back();
  }
  // The member file lists every host not in `leaving`.
  void write_members(const std::set<std::string>& leaving = {}) {
    if (member_file.empty()) return;
    std::ofstream out(member_file);
    out << "# the cluster\n";
    for (const auto& h : hosts)
      if (!leaving.count(h.member)) out << h.member << "\n";
  }
  // Every running host re-reads the member file.
  void reload() {
    for (auto& h : hosts)
      if (h.process) h.process->signal(SIGHUP);
    std::this_thread::sleep_for(300ms);  // SIGHUP is not acknowledged; the reload takes microseconds
  }
  ~Cluster() {
    for (auto& h : hosts)
      if (h.process) {
        h.process->signal(SIGTERM);
        h.process->wait(10s);
      }
  }
  std::vector<std::string> members() const {
    std::vector<std::string> m;
    for (const auto& h : hosts) m.push_back(h.member);
    return m;
  }
  void start(Host& h) {
    std::vector<std::string> args{kTandem, "server", "--listen", "127.0.0.1:" + std::to_string(h.port), "--data-dir",
                                  w.dir / h.name, "--secret-file", w.secret, "--cluster-listen", h.member,
                                  "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (!member_file.empty()) {
      args.push_back("--cluster-member-file");
      args.push_back(member_file);
    } else {
      for (const auto& other : hosts)
        if (other.member != h.member) {
          args.push_back("--cluster-member");
          args.push_back(other.member);
        }
    }
    h.process = std::make_unique<Process>(args, w.dir / (h.name + ".log"));
    auto line = h.process->line();
    REQUIRE(line);
    REQUIRE(line->rfind("listening on ws://127.0.0.1:", 0) == 0);
    h.url = line->substr(std::string("listening on ").size()) + "/sync";
  }
  Host& by_member(const std::string& m) {
    for (auto& h : hosts)
      if (h.member == m) return h;
    FAIL("no host " << m);
    return hosts.front();
  }
  std::string file(const Host& h, const std::string& user) const { return w.dir / (h.name + "/users/" + user + ".db"); }
};

}  // namespace

TEST_CASE("processes: three hosts keep two copies: a host killed with -9 loses no acknowledged write and comes back caught up",
          "[process][cluster][replica]") {
  World w;
  Cluster c(w, 3);
  const auto members = c.members();
  // Users whose channel is served by host K (the one killed below), and others.
  Host& k = c.hosts[0];
  std::vector<std::string> served_by_k, others;
  for (int i = 0; (served_by_k.size() < 2 || others.size() < 2) && i < 1000; ++i) {
    const std::string u = "user" + std::to_string(i);
    auto order = tandem::sync_placement::ranked(u, members);
    auto& list = order[0] == k.member ? served_by_k : others;
    if (list.size() < 2) list.push_back(u);
  }
  std::vector<std::string> users = served_by_k;
  users.insert(users.end(), others.begin(), others.end());
  Host& edge = c.hosts[1];  // the clients' host, never killed
  w.url = edge.url;

  auto exec = [&](const std::string& u, const std::string& db, int id) {
    auto r = w.cmd(db, {"--timeout", "20s", "exec", "INSERT INTO todo(id, title) VALUES (" + std::to_string(id) + ", 'x')"}, u);
    INFO(u << " id " << id << ": " << r.out);
    REQUIRE(r.code == 0);
    CHECK(nlohmann::json::parse(r.out.substr(0, r.out.find('\n')))["acknowledged"] == true);
  };

  for (const auto& u : users) {
    INFO("user " << u);
    exec(u, u + "-laptop.db", 1);
    // Acknowledged: durable on the first two hosts of the user's order.
    auto order = tandem::sync_placement::ranked(u, members);
    CHECK(ids_on_host(c.file(c.by_member(order[0]), u)).count(1) == 1);
    CHECK(ids_on_host(c.file(c.by_member(order[1]), u)).count(1) == 1);
  }

  // K dies. Its users are served by the next host, which keeps its second copy on the third.
  k.process->signal(SIGKILL);
  REQUIRE(k.process->wait() == 128 + SIGKILL);
  k.process.reset();
  for (const auto& u : users) {
    INFO("user " << u);
    const auto asked = std::chrono::steady_clock::now();
    exec(u, u + "-laptop.db", 2);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
    CHECK(took < 15s);
    REQUIRE(w.cmd(u + "-phone.db", {"--timeout", "20s", "sync"}, u).code == 0);
    CHECK(w.rows(u + "-phone.db") == w.rows(u + "-laptop.db"));
    // Two live copies hold both writes.
    int copies = 0;
    for (const auto& h : c.hosts)
      if (h.process) copies += ids_on_host(c.file(h, u)) == std::set<int64_t>{1, 2};
    CHECK(copies == 2);
  }

  // K comes back: it serves its users again once caught up, from its own and the others' copies.
  c.start(k);
  for (const auto& u : users) {
    INFO("user " << u);
    exec(u, u + "-laptop.db", 3);
    w.url = k.url;
    REQUIRE(w.cmd(u + "-tablet.db", {"--timeout", "20s", "sync"}, u).code == 0);
    w.url = edge.url;
    CHECK(w.rows(u + "-tablet.db") == w.rows(u + "-laptop.db"));
  }
  for (const auto& u : served_by_k) {
    bool sound = false;
    CHECK(ids_on_host(c.file(k, u), &sound) == std::set<int64_t>{1, 2, 3});
    CHECK(sound);
  }

  // Every host stops promptly on SIGTERM.
  for (auto& h : c.hosts) {
    h.process->signal(SIGTERM);
    CHECK(h.process->wait(10s) == 0);
    h.process.reset();
  }
}

TEST_CASE("processes: a host added and a host removed at run time strand no rows of a single-copy user",
          "[process][cluster][membership]") {
  World w;
  Cluster c(w, 2, {"--replicas", "1"}, true);
  std::vector<std::string> users;
  for (int i = 0; i < 12; ++i) users.push_back("user" + std::to_string(i));
  Host& edge = c.hosts[0];
  w.url = edge.url;
  auto before = c.members();
  for (const auto& u : users) {
    auto r = w.cmd(u + "-laptop.db", {"--timeout", "20s", "exec", "INSERT INTO todo(id, title) VALUES (1, 'before')"}, u);
    REQUIRE(r.code == 0);
  }

  // A third host joins: the member file gains it and every host re-reads it.
  Host& joined = c.add();
  c.write_members();
  c.start(joined);
  c.reload();
  auto after = c.members();
  int moved = 0;
  for (const auto& u : users) {
    INFO("user " << u);
    const std::string old_owner = tandem::sync_placement::owner_of(u, before);
    const std::string new_owner = tandem::sync_placement::owner_of(u, after);
    moved += old_owner != new_owner;
    // A new device gets every row, whichever host holds the user now.
    REQUIRE(w.cmd(u + "-phone.db", {"--timeout", "20s", "sync"}, u).code == 0);
    CHECK(w.rows(u + "-phone.db") == w.rows(u + "-laptop.db"));
    if (new_owner == joined.member) CHECK(ids_on_host(c.file(joined, u)) == std::set<int64_t>{1});
  }
  CHECK(moved > 0);
  CHECK(moved < static_cast<int>(users.size()));

  // Writes after the move, then a host leaves: its users' rows come from it to their new host.
  for (const auto& u : users) {
    auto r = w.cmd(u + "-laptop.db", {"--timeout", "20s", "exec", "INSERT INTO todo(id, title) VALUES (2, 'after')"}, u);
    REQUIRE(r.code == 0);
  }
  Host& leaving = c.hosts[1];
  c.write_members({leaving.member});
  c.reload();
  for (const auto& u : users) {
    INFO("user " << u);
    REQUIRE(w.cmd(u + "-tablet.db", {"--timeout", "20s", "sync"}, u).code == 0);
    CHECK(w.rows(u + "-tablet.db") == w.rows(u + "-laptop.db"));
  }
}
