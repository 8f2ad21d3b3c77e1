// `tandem bench compact`: metadata bytes per live row on a delete-heavy workload, before and
// after Store::compact (runtime/store/compact.cpp). A device inserts --rows rows, deletes
// --deletes of them and updates the rest --updates times each, in transactions of 1,000 rows,
// and syncs everything to a server store (as a channel does: its changes merged there, the
// server's changes acknowledged). The figure is the bytes of Tandem's B-trees (clock tables,
// change log, peers, sites, meta) as SQLite's dbstat counts their pages, per live row, on the
// server and on the device; then the server compacts and is measured again. One JSON line per
// store; nothing is timed but the compaction itself.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/store/store.hpp"

namespace tandem::app {
namespace {

[[noreturn]] void fail(const Status& s, const std::string& what) { bench_fail("compact", s, what); }
void check(const Status& s, const std::string& what) { bench_check("compact", s, what); }

std::unique_ptr<Store> open_store(const std::string& path, bool server) {
  StoreOptions options;
  options.allocate_keys = !server;
  options.capture_row_images = false;
  options.open.synchronous_full = false;
  auto store = Store::open(path, options);
  if (!store.ok()) fail(store.status(), "opening " + path);
  return std::move(store).value();
}

// In ranges of 1,000 keys, one transaction each.
void in_transactions(Store& store, int64_t first, int64_t last, const std::string& sql) {
  for (int64_t from = first; from <= last; from += 1000) {
    const int64_t to = std::min(last, from + 999);
    auto r = store.write({SqlStatement{sql, {Value::Integer(from), Value::Integer(to)}}});
    if (!r.ok()) fail(r.status(), sql);
  }
}

// The device's own changes the server lacks, merged there; the server records both cursors.
void sync_to_server(Store& device, Store& server) {
  auto cursor = device.peer(server.site_id());
  if (!cursor.ok()) fail(cursor.status(), "reading the device's cursor");
  Store::ChangesRequest request;
  request.since = cursor->acked;
  request.only_from = device.site_id();
  auto batch = device.changes(request);
  if (!batch.ok()) fail(batch.status(), "reading the device's changes");
  auto merged = server.merge(*batch);
  if (!merged.ok()) fail(merged.status(), "merging into the server");
  check(device.record_peer_ack(server.site_id(), batch->to_db_version()), "recording the server's ack");
  // The device holds every change of the server's (they all came from it).
  check(server.record_peer_ack(device.site_id(), server.db_version()), "recording the device's ack");
}

nlohmann::json measure(Store& store) {
  auto size = store.metadata_size();
  if (!size.ok()) fail(size.status(), "measuring metadata");
  return {{"metadata_bytes", size->bytes},
          {"live_rows", size->live_rows},
          {"bytes_per_live_row", size->live_rows ? static_cast<double>(size->bytes) / static_cast<double>(size->live_rows) : 0.0}};
}

void run_compact(const std::string& dir, int64_t rows, int64_t deletes, int updates) {
  BenchDir d(dir);
  auto device = open_store((d.path / "device.db").string(), false);
  auto server = open_store((d.path / "server.db").string(), true);
  const std::string schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0, note TEXT)";
  check(device->execute_schema(schema), "creating the device's table");
  check(device->register_table("t"), "registering the device's table");
  check(server->execute_schema(schema), "creating the server's table");
  check(server->register_table("t"), "registering the server's table");

  in_transactions(*device, 1, rows,
                  "WITH RECURSIVE k(v) AS (SELECT ?1 UNION ALL SELECT v + 1 FROM k WHERE v < ?2) "
                  "INSERT INTO t(id, title, note) SELECT v, 'todo ' || v, 'a note of about forty bytes, row ' || v FROM k");
  sync_to_server(*device, *server);
  in_transactions(*device, 1, deletes, "DELETE FROM t WHERE id BETWEEN ?1 AND ?2");
  sync_to_server(*device, *server);
  for (int u = 0; u < updates; ++u) {
    in_transactions(*device, deletes + 1, rows, "UPDATE t SET done = done + 1 WHERE id BETWEEN ?1 AND ?2");
    sync_to_server(*device, *server);
  }

  nlohmann::json before = measure(*server);
  auto t0 = std::chrono::steady_clock::now();
  CompactOptions options;
  options.now = static_cast<int64_t>(std::time(nullptr));
  auto report = server->compact(options);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!report.ok()) fail(report.status(), "compacting the server's store");
  nlohmann::json after = measure(*server);
  nlohmann::json line = {{"bench", "compact"},
                         {"store", "server"},
                         {"rows_inserted", rows},
                         {"rows_deleted", deletes},
                         {"updates_per_live_row", updates},
                         {"live_rows", after["live_rows"]},
                         {"before_bytes", before["metadata_bytes"]},
                         {"after_bytes", after["metadata_bytes"]},
                         {"before_bytes_per_live_row", before["bytes_per_live_row"]},
                         {"after_bytes_per_live_row", after["bytes_per_live_row"]},
                         {"tombstones_removed", report->tombstones_removed},
                         {"changelog_keys_before", report->changelog_keys_before},
                         {"changelog_keys_after", report->changelog_keys_after},
                         {"compact_ms", ms}};
  std::cout << line.dump() << std::endl;
  // The device keeps its tombstones (only a server channel compacts): its figure for contrast.
  nlohmann::json dev = measure(*device);
  std::cout << nlohmann::json{{"bench", "compact"},
                              {"store", "device"},
                              {"live_rows", dev["live_rows"]},
                              {"metadata_bytes", dev["metadata_bytes"]},
                              {"bytes_per_live_row", dev["bytes_per_live_row"]}}
                   .dump()
            << std::endl;
  check(server->verify(), "verifying the compacted store");
}

}  // namespace

void add_bench_compact(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("compact", "Metadata bytes per live row on a delete-heavy workload, before and after compaction");
  auto dir = std::make_shared<std::string>("/tmp");
  auto rows = std::make_shared<int64_t>(10000);
  auto deletes = std::make_shared<int64_t>(9000);
  auto updates = std::make_shared<int>(3);
  cmd->add_option("--dir", *dir, "Folder for the temporary databases")->capture_default_str();
  cmd->add_option("--rows", *rows, "Rows inserted")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  cmd->add_option("--deletes", *deletes, "Of which deleted (the first ones)")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{10000000}));
  cmd->add_option("--updates", *updates, "Updates of each remaining row")->capture_default_str()->check(CLI::Range(0, 100));
  cmd->callback([=] { run_compact(*dir, *rows, std::min(*deletes, *rows), *updates); });
}

}  // namespace tandem::app
