// `tandem bench schema`: adding a column to a replicated table of --rows rows (a newer CREATE
// TABLE IF NOT EXISTS, and an ALTER TABLE ADD COLUMN, both through Store::execute_schema)
// against plain SQLite's ALTER TABLE ADD COLUMN on an identical plain table, measured in the
// same run, alternating the two. Both files run in WAL mode with synchronous=FULL; each
// addition is one committed transaction. The tables are filled once (not measured) and each
// run adds the next column to both, so the figures are medians over --runs additions.
// Then the backfill figure (bench_backfill.cpp).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/store/store.hpp"

namespace tandem::app {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const Status& s, const std::string& what) { bench_fail("schema", s, what); }
void check(const Status& s, const std::string& what) { bench_check("schema", s, what); }

template <class F>
double milliseconds(F&& body) {
  auto t0 = Clock::now();
  body();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const char* kColumns = "id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL";

std::string fill(int64_t rows) {
  return "WITH RECURSIVE series(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM series WHERE value < " +
         std::to_string(rows - 1) + ") INSERT INTO t SELECT value, 'row ' || value, value * 7, value * 0.5 FROM series";
}

void run_schema(const std::string& dir, int runs, int64_t rows) {
  BenchDir d(dir);
  auto plain_db = Database::open((d.path / "plain.db").string());
  if (!plain_db.ok()) fail(plain_db.status(), "opening the plain database");
  Database& plain = **plain_db;
  check(plain.exec(std::string("CREATE TABLE t(") + kColumns + "); " + fill(rows)), "filling the plain table");
  auto store_or = Store::open((d.path / "tandem.db").string());
  if (!store_or.ok()) fail(store_or.status(), "opening the store");
  Store& store = **store_or;
  // Rows written before registration become this replica's inserts: one clock record each.
  check(store.execute_schema(std::string("CREATE TABLE t(") + kColumns + "); " + fill(rows)), "filling the replicated table");
  check(store.register_table("t"), "registering the table");

  std::string declared = kColumns;  // the replicated table's declaration so far
  for (const std::string op : {"declared", "alter"}) {
    std::vector<double> plain_ms, tandem_ms;
    for (int r = 0; r < runs; ++r) {
      const std::string column = (op == "declared" ? "d" : "e") + std::to_string(r);
      // Alternately a nullable column and one with a constant DEFAULT.
      const std::string definition = column + (r % 2 ? " INTEGER" : " TEXT NOT NULL DEFAULT 'none'");
      plain_ms.push_back(milliseconds([&] {
        check(plain.exec("BEGIN IMMEDIATE; ALTER TABLE t ADD COLUMN " + definition + "; COMMIT"), "plain ALTER TABLE");
      }));
      declared += ", " + definition;
      const std::string sql = op == "declared" ? "CREATE TABLE IF NOT EXISTS t(" + declared + ")"
                                               : "ALTER TABLE t ADD COLUMN " + definition;
      tandem_ms.push_back(milliseconds([&] { check(store.execute_schema(sql), "Tandem migration"); }));
      if (!store.table("t") || store.table("t")->columns.back().name != column)
        fail(Status::Internal("column " + column + " missing after the migration"), "checking the migration");
    }
    const double p = median(plain_ms), t = median(tandem_ms);
    nlohmann::json line = {{"bench", "schema"},   {"op", "add_column_" + op}, {"rows", rows}, {"tandem_ms", t},
                           {"plain_ms", p},       {"ratio", p > 0 ? t / p : 0.0}, {"runs", runs},
                           {"tandem_max_ms", *std::max_element(tandem_ms.begin(), tandem_ms.end())},
                           {"synchronous", "FULL"}};
    std::cout << line.dump() << std::endl;
  }
  // A write to a new column of an old row afterwards: a change like any other.
  auto written = store.write({SqlStatement{"UPDATE t SET d0 = 'set' WHERE id = 1", {}}});
  if (!written.ok() || !written->changed) fail(written.ok() ? Status::Internal("no change recorded") : written.status(), "writing the new column");
}

}  // namespace

void add_bench_schema(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("schema",
                                   "Adding a column to a replicated table of --rows rows vs plain SQLite's ALTER TABLE ADD COLUMN; "
                                   "a late-upgraded device's backfill of --backfill-rows rows vs an ordinary catch-up");
  auto dir = std::make_shared<std::string>("/tmp");
  auto runs = std::make_shared<int>(5);
  auto rows = std::make_shared<int64_t>(1000000);
  auto backfill_rows = std::make_shared<int64_t>(100000);
  cmd->add_option("--dir", *dir, "Folder for the temporary databases")->capture_default_str();
  cmd->add_option("--runs", *runs, "Columns added per kind (medians are printed)")->capture_default_str()->check(CLI::Range(1, 50));
  cmd->add_option("--rows", *rows, "Rows in the table")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  cmd->add_option("--backfill-rows", *backfill_rows, "Rows backfilled through the server (0: skip that figure)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10000000}));
  cmd->callback([=] {
    run_schema(*dir, *runs, *rows);
    if (*backfill_rows > 0) run_backfill_bench(*dir, *backfill_rows);
  });
}

}  // namespace tandem::app
