// runtime/metrics/admin_http: routing and access of /healthz, /readyz and /metrics, in
// process (no sockets: the peer's address is given), so that the remote-peer rules are
// checked on hosts without a second network address too.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "runtime/metrics/admin_http.hpp"
#include "runtime/metrics/metrics.hpp"
#include "tests/common/temp_dir.hpp"

using namespace tandem;

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
}  // namespace

TEST_CASE("admin http: paths, methods and who may read /metrics", "[metrics]") {
  test::TempDir dir;
  metrics::AdminOptions open{dir.path, ""};
  CHECK(metrics::answer_admin(open, get("/healthz", false)).status == 200);
  CHECK(metrics::answer_admin(open, get("/healthz", false)).body == "ok\n");
  CHECK(metrics::answer_admin(open, get("/readyz", false)).status == 200);
  CHECK(metrics::answer_admin(open, get("/sync", true)).status == 404);
  CHECK(metrics::answer_admin(open, get("/metricsx", true)).status == 404);
  auto post = get("/metrics", true);
  post.method = "POST";
  CHECK(metrics::answer_admin(open, post).status == 405);

  auto local = metrics::answer_admin(open, get("/metrics?x=1", true));
  CHECK(local.status == 200);
  CHECK_THAT(local.body, Catch::Contains("# TYPE tandem_errors_total counter"));
  CHECK_THAT(local.body, Catch::Contains("tandem_errors_total{code=\"SITE_CONFLICT\"}"));  // names from the proto
  auto remote = metrics::answer_admin(open, get("/metrics", false));
  CHECK(remote.status == 403);
  CHECK(remote.body.find("tandem_") == std::string::npos);
  // A token is ignored without --metrics-token: a remote peer stays refused.
  CHECK(metrics::answer_admin(open, get("/metrics", false, "Bearer anything")).status == 403);

  metrics::AdminOptions guarded{dir.path, "tok-123"};
  CHECK(metrics::answer_admin(guarded, get("/metrics", false, "Bearer tok-123")).status == 200);
  CHECK(metrics::answer_admin(guarded, get("/metrics", true)).status == 401);  // loopback too needs it
  CHECK(metrics::answer_admin(guarded, get("/metrics", true, "Bearer tok-12")).status == 401);
  CHECK(metrics::answer_admin(guarded, get("/metrics", true, "Bearer tok-1234")).status == 401);
  CHECK(metrics::answer_admin(guarded, get("/metrics", true, "bearer tok-123")).status == 401);
  CHECK(metrics::answer_admin(guarded, get("/metrics", true)).www_authenticate == "Bearer realm=\"tandem\"");
  CHECK(metrics::answer_admin(guarded, get("/healthz", false)).status == 200);
}

TEST_CASE("admin http: /readyz says why a data directory is not writable", "[metrics]") {
  test::TempDir dir;
  CHECK(metrics::probe_writable(dir.path).ok());
  // A path whose parent is a regular file: what a replaced or vanished volume looks like.
  std::ofstream(dir / "file") << "x";
  auto st = metrics::probe_writable(dir / "file");
  CHECK_FALSE(st.ok());
  CHECK_THAT(st.message(), Catch::Contains("Not a directory"));
  auto r = metrics::answer_admin({dir / "missing", ""}, get("/readyz", false));
  CHECK(r.status == 503);
  CHECK_THAT(r.body, Catch::Contains("No such file or directory"));
}
