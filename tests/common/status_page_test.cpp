// runtime/metrics/status_page and the /status routes of admin_http, in process: the JSON the
// page shows (sorting, cursor lag, errors), the page itself (self-contained, text only), who
// may read it, and the recent-errors ring. The page in a real browser: tests/net/status_page_process_test.cpp.
#include <catch2/catch.hpp>

#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "runtime/metrics/admin_http.hpp"
#include "runtime/metrics/metrics.hpp"
#include "runtime/metrics/recent_errors.hpp"
#include "runtime/metrics/status_page.hpp"
#include "tests/common/temp_dir.hpp"

using namespace tandem;
using nlohmann::json;

namespace {

net::HttpRequest get(const std::string& target, bool loopback, const std::string& authorization = "") {
  net::HttpRequest r;
  r.method = "GET";
  r.target = target;
  r.peer_loopback = loopback;
  r.peer = loopback ? "127.0.0.1:5000" : "203.0.113.9:5000";
  r.authorization = authorization;
  return r;
}

cluster::DirectoryStatus two_users() {
  cluster::DirectoryStatus d;
  d.set_open_channels(2);
  d.set_max_open_channels(256);
  d.set_channels_opened(3);
  d.set_channels_closed(1);
  auto* bob = d.add_channels();
  bob->set_user("bob");
  bob->set_db_version(10);
  auto* s = bob->add_sessions();
  s->set_session(5);
  s->set_site_id("BB000000000000000000000000000001");
  s->set_client_name("bob-laptop");
  s->set_acked_db_version(4);
  s->set_last_seen_unix_ms(1'000'000);
  s->set_pushes(2);
  auto* alice = d.add_channels();
  alice->set_user("alice");
  alice->set_db_version(7);
  for (const char* site : {"AA000000000000000000000000000002", "AA000000000000000000000000000001"}) {
    auto* a = alice->add_sessions();
    a->set_site_id(site);
    a->set_client_name(std::string("alice-") + site[31]);
    a->set_acked_db_version(site[31] == '1' ? 7 : 9);  // a cursor past the version: no negative lag
    a->set_last_seen_unix_ms(1'004'000);
  }
  d.add_unanswered("carol");
  return d;
}

std::string name_of(int code) { return code == 3 ? "PROTOCOL" : ""; }

}  // namespace

TEST_CASE("status json: channels by user and devices by site with cursor lag and counters and errors", "[metrics][status]") {
  metrics::ServerMetrics m;
  m.pushes.inc(12);
  m.connections_open.add(3);
  m.count_error(3);
  m.count_error(3);
  const auto directory = two_users();
  metrics::StatusInputs in;
  in.directory = &directory;
  in.metrics = &m;
  in.errors = {{1'002'000, 3, "bob", "bob-laptop 127.0.0.1:5", "push seq 9 out of order"}, {1'001'000, 99, "", "x", "y"}};
  in.errors_total = 7;
  in.now_ms = 1'005'000;
  in.started_ms = 995'000;
  const json j = json::parse(metrics::render_status_json(in, name_of));

  CHECK(j["uptime_s"] == 10);
  CHECK(j["directory"]["ok"] == true);
  CHECK(j["directory"]["open_channels"] == 2);
  CHECK(j["directory"]["channels_opened"] == 3);
  REQUIRE(j["channels"].size() == 2);
  CHECK(j["channels"][0]["user"] == "alice");
  CHECK(j["channels"][1]["user"] == "bob");
  const auto& alice = j["channels"][0]["devices"];
  REQUIRE(alice.size() == 2);
  CHECK(alice[0]["site"] == "AA000000000000000000000000000001");
  CHECK(alice[0]["client"] == "alice-1");
  CHECK(alice[0]["lag"] == 0);
  CHECK(alice[1]["lag"] == 0);  // cursor 9 > db_version 7
  CHECK(alice[0]["last_seen_ago_ms"] == 1000);
  const auto& bob = j["channels"][1]["devices"][0];
  CHECK(bob["lag"] == 6);
  CHECK(bob["cursor"] == 4);
  CHECK(bob["pushes"] == 2);
  CHECK(bob["last_seen_ago_ms"] == 5000);
  CHECK(j["unanswered"] == json::array({"carol"}));
  CHECK(j["members"].empty());

  std::map<std::string, int64_t> counters;
  for (const auto& c : j["counters"]) counters[c[0].get<std::string>()] = c[1].get<int64_t>();
  CHECK(counters.at("pushes") == 12);
  CHECK(counters.at("connections_open") == 3);
  CHECK(counters.at("errors") == 2);
  CHECK(counters.count("bytes_sent") == 1);

  REQUIRE(j["recent_errors"].size() == 2);
  CHECK(j["recent_errors"][0]["code"] == "PROTOCOL");
  CHECK(j["recent_errors"][0]["user"] == "bob");
  CHECK(j["recent_errors"][0]["message"] == "push seq 9 out of order");
  CHECK(j["recent_errors"][1]["code"] == "99");  // no name: its number
  CHECK(j["errors_total"] == 7);
}

TEST_CASE("status json: without the directory's answer it still shows counters and says why", "[metrics][status]") {
  metrics::ServerMetrics m;
  metrics::StatusInputs in;
  in.metrics = &m;
  in.directory_error = "the directory did not answer: timeout";
  in.errors = {{1, 3, "u", "c", std::string("bad \xff utf8")}};  // client text need not be UTF-8
  const json j = json::parse(metrics::render_status_json(in, name_of));
  CHECK(j["directory"]["ok"] == false);
  CHECK(j["directory"]["error"] == "the directory did not answer: timeout");
  CHECK(j["channels"].empty());
  CHECK(j["counters"].size() >= 10);
  CHECK_THAT(j["recent_errors"][0]["message"].get<std::string>(), Catch::StartsWith("bad "));
}

TEST_CASE("status page: self-contained and builds its DOM from text only", "[metrics][status]") {
  const std::string& page = metrics::status_html();
  CHECK_THAT(page, Catch::StartsWith("<!doctype html>"));
  CHECK_THAT(page, Catch::Contains("<style>"));
  CHECK_THAT(page, Catch::Contains("fetch('status.json' + location.search"));
  for (const char* external : {"http://", "https://", "src=", "<link", "@import", "url("}) {
    INFO(external);
    CHECK(page.find(external) == std::string::npos);
  }
  CHECK(page.find("innerHTML") == std::string::npos);
  CHECK(page.find("textContent") != std::string::npos);
  for (const char* table : {"id=\"counters\"", "id=\"members\"", "id=\"channels\"", "id=\"devices\"", "id=\"errors\""}) {
    INFO(table);
    CHECK(page.find(table) != std::string::npos);
  }
}

TEST_CASE("admin http: /status and /status.json refuse remote peers and anyone without the token", "[metrics][status]") {
  test::TempDir dir;
  int asked = 0;
  metrics::AdminOptions open{dir.path, ""};
  open.status = [&asked](std::function<void(Result<cluster::DirectoryStatus>)> done) {
    ++asked;
    done(two_users());
  };
  auto answer = [](const metrics::AdminOptions& o, const net::HttpRequest& r) {
    std::optional<net::HttpResponse> got;
    metrics::answer_admin_async(o, r, [&got](net::HttpResponse a) { got = std::move(a); });
    REQUIRE(got);  // every source here answers at once
    return *got;
  };

  auto page = answer(open, get("/status", true));
  CHECK(page.status == 200);
  CHECK_THAT(page.content_type, Catch::StartsWith("text/html"));
  auto data = answer(open, get("/status.json", true));
  CHECK(data.status == 200);
  CHECK(data.content_type == "application/json");
  CHECK(json::parse(data.body)["channels"].size() == 2);
  CHECK(asked == 1);

  // Without a token: loopback only; a remote peer is refused before the actors are asked.
  CHECK(answer(open, get("/status", false)).status == 403);
  auto remote = answer(open, get("/status.json", false));
  CHECK(remote.status == 403);
  CHECK(remote.body.find("alice") == std::string::npos);
  CHECK(answer(open, get("/status.json?token=anything", false)).status == 403);
  CHECK(asked == 1);

  metrics::AdminOptions guarded = open;
  guarded.metrics_token = "tok 123";
  auto no_token = answer(guarded, get("/status.json", true));  // loopback too needs it
  CHECK(no_token.status == 401);
  CHECK(no_token.www_authenticate == "Bearer realm=\"tandem\"");
  CHECK(answer(guarded, get("/status", true)).status == 401);
  CHECK(answer(guarded, get("/status.json?token=tok", false)).status == 401);
  CHECK(answer(guarded, get("/status.json?token=tok%20123x", false)).status == 401);
  CHECK(asked == 1);
  CHECK(answer(guarded, get("/status.json", false, "Bearer tok 123")).status == 200);
  CHECK(answer(guarded, get("/status?x=1&token=tok%20123", false)).status == 200);
  CHECK(answer(guarded, get("/status.json?token=tok+123", false)).status == 200);
  CHECK(asked == 3);
  // /metrics keeps to the header: a token in a URL ends up in logs.
  CHECK(answer(guarded, get("/metrics?token=tok%20123", false)).status == 401);
  CHECK(answer(guarded, get("/healthz", false)).status == 200);

  // A directory that does not answer: the page still gets counters, and why.
  metrics::AdminOptions failing{dir.path, ""};
  failing.status = [](std::function<void(Result<cluster::DirectoryStatus>)> done) {
    done(Status::Unavailable("the directory did not answer: request_timeout"));
  };
  auto degraded = json::parse(answer(failing, get("/status.json", true)).body);
  CHECK(degraded["directory"]["ok"] == false);
  CHECK(degraded["directory"]["error"] == "the directory did not answer: request_timeout");
}

TEST_CASE("recent errors: a bounded ring of the newest and a count of all", "[metrics][status]") {
  metrics::RecentErrors ring(3);
  for (int i = 0; i < 5; ++i) ring.add(i, "u" + std::to_string(i), "c", "m" + std::to_string(i));
  ring.add(9, "", "", std::string(1000, 'x'));
  CHECK(ring.total() == 6);
  auto kept = ring.newest_first();
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].code == 9);
  CHECK(kept[0].message.size() == metrics::RecentErrors::kMaxMessage);
  CHECK(kept[1].code == 4);
  CHECK(kept[1].user == "u4");
  CHECK(kept[2].code == 3);
  CHECK(kept[0].unix_ms >= kept[2].unix_ms);
  CHECK(kept[2].unix_ms > 1'600'000'000'000);  // the wall clock, in ms
}
