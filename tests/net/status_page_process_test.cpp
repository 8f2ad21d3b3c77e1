// /status of the real `tandem server` in a real headless Chromium (Debian's `chromium`, which
// scripts/setup.sh installs): two users' devices stay connected while writers push, and the
// page, with its script run by the browser, must show the users, the devices' sites and
// names, non-zero counters, and counters that move between two loads and within one (it
// refreshes in place). A screenshot is kept under the build directory as an artifact. A
// machine without chromium fails here with a message saying so, never passes silently.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/net/http_util.hpp"
#include "tests/net/process_util.hpp"

using namespace tandem_process_test;

namespace {

const std::string kToken = "status-page-token";

// The chromium binary on PATH, or "" when there is none.
std::string find_chromium() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    for (const char* name : {"chromium", "chromium-browser"}) {
      const std::string candidate = dirs.substr(pos, end - pos) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    pos = end + 1;
  }
  return "";
}

std::string require_chromium() {
  const std::string chromium = find_chromium();
  INFO("chromium is not installed: the status page test needs Debian's `chromium` package "
       "(scripts/setup.sh installs it; by hand: apt-get install chromium)");
  REQUIRE_FALSE(chromium.empty());
  return chromium;
}

// Runs headless Chromium on `url` with `mode` ("--dump-dom" or "--screenshot=FILE"); returns
// its stdout. The page's timers run in virtual time for `budget_ms` (network waits are real),
// so a one-second refresh loop runs several times in a second or two of real time.
std::string chromium(const std::string& binary, const TempDir& dir, const std::string& url, const std::string& mode,
                     int budget_ms) {
  Process p({binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--user-data-dir=" + (dir / "chromium-profile"), "--window-size=1200,1400",
             "--virtual-time-budget=" + std::to_string(budget_ms), mode, url},
            dir / "chromium.log");
  p.close_stdin();
  std::string out;
  while (auto l = p.line(25s)) out += *l + "\n";
  const int code = p.wait(10s);
  INFO(slurp(dir / "chromium.log"));
  REQUIRE(code == 0);
  return out;
}

// The text of the element with id `id` in a dumped DOM ("" when absent).
std::string element_text(const std::string& dom, const std::string& id) {
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex("id=\"" + id + "\"[^>]*>([^<]*)<"))) return "";
  return m[1];
}

int64_t counter(const std::string& dom, const std::string& name) {
  const std::string text = element_text(dom, "c-" + name);
  INFO("counter " << name << " in the page: '" << text << "'");
  REQUIRE_FALSE(text.empty());
  return std::stoll(text);
}

// The device's site id as the server shows it (32 upper-case hex digits).
std::string site_of(const std::string& db) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT hex(site_id) FROM tandem_sites WHERE ordinal = 0", -1, &st, nullptr) == SQLITE_OK);
  std::string site;
  if (sqlite3_step(st) == SQLITE_ROW) site = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(h);
  REQUIRE(site.size() == 32);
  return site;
}

}  // namespace

TEST_CASE("status page process: chromium shows both users and their devices and live counters while they sync", "[process][status]") {
  const std::string browser = require_chromium();
  World w;
  start_server(w, "127.0.0.1", {"--metrics-token", kToken});

  // One device per user stays connected: a watch.
  auto watch = [&](const std::string& db, const std::string& user) {
    auto args = w.client(db, user);
    for (std::string s : {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}) args.push_back(s);
    return std::make_unique<Process>(args, w.dir / (db + ".log"));
  };
  auto phone = watch("phone.db", "alice");
  auto laptop = watch("laptop.db", "bob");
  REQUIRE(phone->line());
  REQUIRE(laptop->line());

  // Writers of both users push until the end of the test, so the counters move. The thread
  // makes no Catch2 assertion (they are not thread-safe): it counts acknowledged writes.
  const std::vector<std::string> alice_exec = w.client("tablet.db", "alice"), bob_exec = w.client("desk.db", "bob");
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writers([&] {
    for (int i = 1; !stop; ++i) {
      tandem::ChildOptions o;
      o.args = i % 2 ? alice_exec : bob_exec;
      for (std::string s : {std::string("exec"), std::string("INSERT INTO todo(id, title) VALUES (?, 'x')"), std::to_string(i)})
        o.args.push_back(s);
      o.stderr_file = w.dir / "writers.log";
      o.pipe_stdin = true;
      auto child = tandem::ChildProcess::spawn(o);
      if (!child.ok()) continue;
      (*child)->close_stdin();
      while ((*child)->read_line(60s)) {
      }
      if ((*child)->wait(60s) == 0) ++written;
    }
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, writers};
  for (int i = 0; i < 600 && written < 2; ++i) std::this_thread::sleep_for(50ms);
  INFO(slurp(w.dir / "writers.log"));
  REQUIRE(written >= 2);

  const std::string url = "http://127.0.0.1:" + std::to_string(w.port) + "/status?token=" + kToken;
  const std::string first = chromium(browser, w.dir, url, "--dump-dom", 3500);
  INFO(first);
  // The script ran, fetched /status.json and refreshed the tables in place more than once.
  REQUIRE_FALSE(element_text(first, "refreshes").empty());
  CHECK(std::stoi(element_text(first, "refreshes")) >= 2);
  CHECK_THAT(element_text(first, "state"), Catch::StartsWith("up "));  // not "status unavailable: ...
  for (const std::string& shown : {std::string(">alice<"), std::string(">bob<"), std::string(">phone.db<"),
                                   std::string(">laptop.db<"), ">" + site_of(w.dir / "phone.db") + "<",
                                   ">" + site_of(w.dir / "laptop.db") + "<"}) {
    INFO("the page shows " << shown);
    CHECK(first.find(shown) != std::string::npos);
  }
  CHECK(counter(first, "pushes") > 0);
  CHECK(counter(first, "acks") > 0);
  CHECK(counter(first, "connections_total") >= 2);
  CHECK(counter(first, "sessions_joined") >= 2);
  CHECK(counter(first, "channels_open") == 2);
  CHECK(counter(first, "bytes_received") > 0);
  CHECK(element_text(first, "r-pushes") != "");  // a rate once two refreshes were seen

  // A second load while the writers go on: the counters moved.
  const int before = written;
  for (int i = 0; i < 600 && written < before + 2; ++i) std::this_thread::sleep_for(50ms);
  REQUIRE(written >= before + 2);
  const std::string second = chromium(browser, w.dir, url, "--dump-dom", 1500);
  CHECK(counter(second, "pushes") > counter(first, "pushes"));
  CHECK(counter(second, "connections_total") > counter(first, "connections_total"));

  // The screenshot, kept for whoever looks at the run (ctest's working directory is the
  // build tree's tests/net).
  const std::string shot = std::filesystem::absolute("status_page.png");
  std::filesystem::remove(shot);
  chromium(browser, w.dir, url, "--screenshot=" + shot, 2500);
  REQUIRE(std::filesystem::exists(shot));
  CHECK(std::filesystem::file_size(shot) > 5000);
  CHECK(slurp(shot).compare(1, 3, "PNG") == 0);

  // The same page without the token: refused, from loopback too.
  auto refused = http_get("127.0.0.1", w.port, "/status.json");
  CHECK(refused.status == 401);
  CHECK(refused.body.find("alice") == std::string::npos);
  CHECK(http_get("127.0.0.1", w.port, "/status").status == 401);
  CHECK(http_get("127.0.0.1", w.port, "/status.json", "Bearer " + kToken).status == 200);
}

TEST_CASE("status page process: without a token /status answers loopback peers only", "[process][status]") {
  World w;
  start_server(w, "0.0.0.0");
  REQUIRE(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  auto local = http_get("127.0.0.1", w.port, "/status.json");
  REQUIRE(local.status == 200);
  auto j = nlohmann::json::parse(local.body);
  CHECK(j["directory"]["ok"] == true);
  CHECK(j["directory"]["open_channels"] == 1);  // alice's, kept open for --idle-close
  CHECK(j["channels"][0]["user"] == "alice");
  CHECK(j["channels"][0]["devices"].empty());  // the exec has left
  CHECK(http_get("127.0.0.1", w.port, "/status").status == 200);

  const std::string remote = non_loopback_address();
  if (remote.empty()) {
    WARN("no non-loopback IPv4 address on this host: the remote-peer refusal is checked in status_page_test only");
    return;
  }
  for (const char* path : {"/status", "/status.json", "/status.json?token=x"}) {
    auto refused = http_get(remote, w.port, path, "", remote);
    INFO(path << ": " << refused.body);
    CHECK(refused.status == 403);
    CHECK(refused.body.find("alice") == std::string::npos);
  }
}
