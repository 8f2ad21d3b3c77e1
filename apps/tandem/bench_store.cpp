// `tandem bench write` and `tandem bench merge`: the replicated store against plain SQLite
// on the same schema and durability (WAL, synchronous=FULL), measured in the same run,
// alternating the two so that machine noise hits both. Prints one JSON object per line with
// medians over --runs repetitions.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/store.hpp"

namespace tandem::app {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const Status& s, const std::string& what) { bench_fail("store", s, what); }
void check(const Status& s, const std::string& what) { bench_check("store", s, what); }

const char* kTable = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)";

// A CTE prefix naming the integers 0..n-1 as series(value).
std::string series(int64_t n) {
  return "WITH RECURSIVE series(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM series WHERE value < " + std::to_string(n - 1) +
         ") ";
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Runs `transactions` transactions of `batch` rows through `run_one(first_row)`.
template <class F>
double rows_per_second(int transactions, int batch, F&& run_one) {
  auto t0 = Clock::now();
  for (int i = 0; i < transactions; ++i) run_one(static_cast<int64_t>(i) * batch);
  return static_cast<double>(transactions) * batch / seconds_since(t0);
}

// One prepared statement, bound and stepped per row: the same loop for both sides.
Status write_rows(Database& db, const std::string& op, int64_t first, int batch, int64_t existing, std::mt19937_64& rng) {
  const bool insert = op == "insert";
  TANDEM_ASSIGN_OR_RETURN(auto st, db.cached(insert ? "INSERT INTO t VALUES (?1, ?2, ?3, ?4)" : "UPDATE t SET b = ?1 WHERE id = ?2"));
  for (int i = 0; i < batch; ++i) {
    int64_t id = first + i;
    if (insert) {
      TANDEM_RETURN_IF_ERROR(st->bind_int64(1, existing + id));
      TANDEM_RETURN_IF_ERROR(st->bind(2, Value::Text("row number " + std::to_string(id))));
      TANDEM_RETURN_IF_ERROR(st->bind_int64(3, id * 7));
      TANDEM_RETURN_IF_ERROR(st->bind(4, Value::Real(static_cast<double>(id) * 0.5)));
    } else {
      TANDEM_RETURN_IF_ERROR(st->bind_int64(1, static_cast<int64_t>(rng() % 1000000)));
      TANDEM_RETURN_IF_ERROR(st->bind_int64(2, static_cast<int64_t>(rng() % static_cast<uint64_t>(existing))));
    }
    TANDEM_RETURN_IF_ERROR(st->run());
    st->reset();
  }
  return Status::Ok();
}

void run_write(const std::string& dir, int runs, int64_t total_rows, const std::string& only_op, int only_batch) {
  for (const std::string op : {"insert", "update"}) {
    if (!only_op.empty() && op != only_op) continue;
    for (int batch : {1, 100, 10000}) {
      if (only_batch && batch != only_batch) continue;
      // Single-row transactions each pay an fsync: fewer of them keep the run short.
      int transactions = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(total_rows / batch, batch == 1 ? 300 : 200000)));
      const int64_t existing = op == "update" ? 100000 : 0;
      std::vector<double> plain, tracked;
      for (int r = 0; r < runs; ++r) {
        BenchDir d(dir);
        std::mt19937_64 rng(42 + static_cast<uint64_t>(r));
        OpenOptions o;
        auto plain_db = Database::open((d.path / "plain.db").string(), o);
        if (!plain_db.ok()) fail(plain_db.status(), "opening plain database");
        Database& pdb = **plain_db;
        check(pdb.exec(kTable), "plain schema");
        StoreOptions so;
        so.capture_row_images = false;  // what a node without live views pays
        auto store = Store::open((d.path / "tracked.db").string(), so);
        if (!store.ok()) fail(store.status(), "opening store");
        Store& s = **store;
        check(s.execute_schema(kTable), "store schema");
        if (existing) {
          // Pre-populate both the same way (not measured).
          check(pdb.begin_immediate(), "begin");
          check(write_rows(pdb, "insert", 0, static_cast<int>(existing), 0, rng), "populate plain");
          check(pdb.commit(), "commit");
          check(s.execute_schema(series(existing) + "INSERT INTO t SELECT value, 'row', value * 7, value * 0.5 FROM series"),
                "populate store");
        }
        check(s.register_table("t"), "register");
        plain.push_back(rows_per_second(transactions, batch, [&](int64_t first) {
          check(pdb.begin_immediate(), "begin");
          check(write_rows(pdb, op, first, batch, existing, rng), "plain write");
          check(pdb.commit(), "commit");
        }));
        tracked.push_back(rows_per_second(transactions, batch, [&](int64_t first) {
          auto written = s.transact([&](Database& db) { return write_rows(db, op, first, batch, existing, rng); });
          if (!written.ok()) fail(written.status(), "tracked write");
        }));
      }
      double p = median(plain), t = median(tracked);
      nlohmann::json line = {{"bench", "write"},      {"op", op},           {"batch", batch},      {"rows", transactions * batch},
                             {"tracked_rows_per_s", t}, {"plain_rows_per_s", p}, {"ratio", t / p}, {"runs", runs},
                             {"synchronous", "FULL"}};
      std::cout << line.dump() << std::endl;
    }
  }
}

// Synthetic remote changes: `rows` rows from site 2, each with its three columns at
// col_version 2 (so they win over the replica's version-1 clocks), half updates of existing
// rows and half new rows.
change::ChangeBatch remote_batch(int64_t first_version, int rows, int64_t existing, std::mt19937_64& rng, int64_t* next_new) {
  change::ChangeBatch b;
  SiteId remote{};
  remote[15] = 2;
  b.set_sender_site_id(site_bytes(remote));
  b.set_from_db_version(first_version - 1);
  b.set_to_db_version(first_version);
  b.set_complete(true);
  for (int r = 0; r < rows; ++r) {
    int64_t id = r % 2 ? static_cast<int64_t>(rng() % static_cast<uint64_t>(existing)) : (*next_new)++;
    const char* cols[] = {"a", "b", "c"};
    for (int c = 0; c < 3; ++c) {
      auto* ch = b.add_changes();
      ch->set_table("t");
      ch->add_pk()->set_integer(id);
      ch->set_cid(cols[c]);
      if (c == 0) ch->mutable_val()->set_text("remote " + std::to_string(id));
      if (c == 1) ch->mutable_val()->set_integer(id * 3);
      if (c == 2) ch->mutable_val()->set_real(static_cast<double>(id) / 4);
      ch->set_col_version(2);
      ch->set_db_version(first_version);
      ch->set_site_id(site_bytes(remote));
      ch->set_cl(1);
      ch->set_seq(r * 3 + c);
    }
  }
  return b;
}

void run_merge(const std::string& dir, int runs, int64_t replica_rows, int batch_changes, int batches) {
  std::vector<double> tracked, plain_rows;
  const int rows_per_batch = batch_changes / 3;
  for (int r = 0; r < runs; ++r) {
    BenchDir d(dir);
    std::mt19937_64 rng(7 + static_cast<uint64_t>(r));
    auto store = Store::open((d.path / "replica.db").string());
    if (!store.ok()) fail(store.status(), "opening store");
    Store& s = **store;
    std::string populate = series(replica_rows) + "INSERT INTO t SELECT value, 'local ' || value, value, value * 0.5 FROM series";
    check(s.execute_schema(kTable), "schema");
    check(s.execute_schema(populate), "populate");
    check(s.register_table("t"), "register");
    auto plain_db = Database::open((d.path / "plain.db").string());
    if (!plain_db.ok()) fail(plain_db.status(), "opening plain database");
    Database& pdb = **plain_db;
    check(pdb.exec(kTable), "plain schema");
    check(pdb.exec(populate), "populate plain");

    int64_t next_new = replica_rows, plain_next_new = replica_rows;
    std::vector<change::ChangeBatch> work;
    for (int i = 0; i < batches; ++i) work.push_back(remote_batch(1000 + i, rows_per_batch, replica_rows, rng, &next_new));
    (void)plain_next_new;
    // Plain baseline: the same rows written as upserts of all three columns.
    auto t0 = Clock::now();
    for (const auto& b : work) {
      check(pdb.begin_immediate(), "begin");
      auto st = pdb.cached("INSERT INTO t VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET a = excluded.a, b = excluded.b, c = excluded.c");
      if (!st.ok()) fail(st.status(), "plain statement");
      for (int c = 0; c < b.changes_size(); c += 3) {
        check((*st)->bind(1, from_proto(b.changes(c).pk(0))), "bind");
        for (int k = 0; k < 3; ++k) check((*st)->bind(2 + k, from_proto(b.changes(c + k).val())), "bind");
        check((*st)->run(), "plain upsert");
        (*st)->reset();
      }
      check(pdb.commit(), "commit");
    }
    plain_rows.push_back(static_cast<double>(batches) * rows_per_batch / seconds_since(t0));
    t0 = Clock::now();
    for (const auto& b : work) {
      auto m = s.merge(b);
      if (!m.ok()) fail(m.status(), "merge");
    }
    tracked.push_back(static_cast<double>(batches) * rows_per_batch * 3 / seconds_since(t0));
  }
  double t = median(tracked), p = median(plain_rows);
  nlohmann::json line = {{"bench", "merge"},
                         {"replica_rows", replica_rows},
                         {"batch_changes", rows_per_batch * 3},
                         {"batches", batches},
                         {"changes_per_s", t},
                         {"plain_rows_per_s", p},
                         {"plain_cells_per_s", p * 3},
                         {"ratio", t / (p * 3)},
                         {"runs", runs},
                         {"synchronous", "FULL"}};
  std::cout << line.dump() << std::endl;
}

}  // namespace

void add_bench_store(CLI::App& bench) {
  auto* write = bench.add_subcommand("write", "Local write throughput of a replicated table vs plain SQLite (batches of 1, 100, 10,000 rows)");
  auto dir = std::make_shared<std::string>("/tmp");
  auto runs = std::make_shared<int>(5);
  auto rows = std::make_shared<int64_t>(200000);
  write->add_option("--dir", *dir, "Folder for the temporary databases")->capture_default_str();
  write->add_option("--runs", *runs, "Repetitions (medians are printed)")->capture_default_str()->check(CLI::Range(1, 100));
  write->add_option("--rows", *rows, "Rows per measurement for batched transactions")->capture_default_str()->check(CLI::Range(10000, 100000000));
  auto op = std::make_shared<std::string>();
  auto batch_only = std::make_shared<int>(0);
  write->add_option("--op", *op, "Only this operation")->check(CLI::IsMember({"insert", "update"}));
  write->add_option("--batch", *batch_only, "Only this batch size")->check(CLI::IsMember({1, 100, 10000}));
  write->callback([=] { run_write(*dir, *runs, *rows, *op, *batch_only); });

  auto* merge = bench.add_subcommand("merge", "Merge throughput of 10,000-change batches into a large replica vs plain SQLite upserts");
  auto mdir = std::make_shared<std::string>("/tmp");
  auto mruns = std::make_shared<int>(3);
  auto replica = std::make_shared<int64_t>(1000000);
  auto batch = std::make_shared<int>(10000);
  auto batches = std::make_shared<int>(20);
  merge->add_option("--dir", *mdir, "Folder for the temporary databases")->capture_default_str();
  merge->add_option("--runs", *mruns, "Repetitions (medians are printed)")->capture_default_str()->check(CLI::Range(1, 100));
  merge->add_option("--replica-rows", *replica, "Rows in the receiving replica")->capture_default_str()->check(CLI::Range(1000, 100000000));
  merge->add_option("--batch", *batch, "Changes per batch")->capture_default_str()->check(CLI::Range(3, 1000000));
  merge->add_option("--batches", *batches, "Batches per run")->capture_default_str()->check(CLI::Range(1, 10000));
  merge->callback([=] { run_merge(*mdir, *mruns, *replica, *batch, *batches); });
}

}  // namespace tandem::app
