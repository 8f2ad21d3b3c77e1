// Property tests of convergence, against an independent model of crdt-semantics.md.
//
// Each workload runs 2-5 replicas (real Stores) and, beside each, a model replica: a few
// maps that apply the spec's rules directly (local writes and merges), written without any
// of the store's code. Random local writes (inserts, updates, deletes, re-inserts, REPLACE,
// UPSERT, primary-key moves, mixed storage classes, several per transaction) and random
// pairwise syncs (partitions happen naturally) run on both; after every step each store's
// tables must equal its model's. At the end everyone syncs with everyone and all tables must
// be identical. A second property checks delivery order and duplicates directly.
//
// Seeds are fixed; TANDEM_PROPERTY_RUNS=N runs N workloads instead of the CI default.
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "runtime/store/store_format.hpp"
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

const char* kSchema =
    "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b, c);"
    "CREATE TABLE k(x NUMERIC NOT NULL, y NUMERIC NOT NULL, v, PRIMARY KEY (x, y));"
    "CREATE TABLE p(x NUMERIC NOT NULL, y NUMERIC NOT NULL, PRIMARY KEY (x, y));"
    "CREATE TABLE r(id REAL NOT NULL PRIMARY KEY, f REAL, i INTEGER, s TEXT, n NUMERIC);";
const std::vector<std::string> kTables = {"t", "k", "p", "r"};

// ---- the model: crdt-semantics.md, directly ----

struct ModelRow {
  int64_t cl = 0;                // 0: never seen
  bool sentinel = false;         // a causal-length record exists (not for a fresh insert)
  std::vector<int64_t> cv;       // -1: no clock
  std::optional<Row> data;       // the row as stored (all columns)
};

struct ModelChange {
  std::string table;
  std::string key;  // encode_key of the pk
  Row pk;
  int cell;         // value-column index, -1 for the sentinel
  Value val;
  int64_t cv, cl;
};

struct TableShape {
  size_t columns;
  std::vector<int> pk, values;
};

class ModelReplica {
 public:
  explicit ModelReplica(const std::map<std::string, TableShape>* shapes) : shapes_(shapes) {}

  ModelRow& row(const std::string& table, const Row& pk) {
    auto& r = rows_[table][encode_key(pk)];
    if (r.cv.empty()) r.cv.assign(shapes_->at(table).values.size(), -1);
    return r;
  }

  // Local writes, given the row SQLite stored (new_row) where there is one.
  void insert(const std::string& table, const Row& pk, const Row& new_row, bool existed) {
    ModelRow& r = row(table, pk);
    if (existed && (r.cl & 1)) {
      // REPLACE: every column; a row with a sentinel also starts a new life (cl + 2).
      if (r.sentinel) r.cl += 2;
      for (auto& v : r.cv) v = v < 0 ? 1 : v + 1;
    } else {
      r.sentinel = r.cl != 0 || r.cv.empty();
      r.cl = r.cl == 0 ? 1 : r.cl + 1;
      for (auto& v : r.cv) v = 1;
    }
    r.data = new_row;
  }
  void update(const std::string& table, const Row& pk, const Row& new_row) {
    ModelRow& r = row(table, pk);
    const auto& shape = shapes_->at(table);
    for (size_t i = 0; i < shape.values.size(); ++i) {
      auto c = static_cast<size_t>(shape.values[i]);
      if (!identical((*r.data)[c], new_row[c])) r.cv[i] = r.cv[i] < 0 ? 1 : r.cv[i] + 1;
    }
    r.data = new_row;
  }
  void remove(const std::string& table, const Row& pk) {
    ModelRow& r = row(table, pk);
    r.cl = r.cl == 0 ? 2 : (r.cl & 1) ? r.cl + 1 : r.cl + 2;
    r.sentinel = true;
    for (auto& v : r.cv) v = -1;
    r.data.reset();
  }

  std::vector<ModelChange> state() const {
    std::vector<ModelChange> out;
    for (const auto& [table, rows] : rows_) {
      const auto& shape = shapes_->at(table);
      for (const auto& [key, r] : rows) {
        if (r.cl == 0) continue;
        Row pk;
        REQUIRE(decode_key(key, &pk).ok());
        if (r.sentinel) out.push_back({table, key, pk, -1, Value(), r.cl, r.cl});
        for (size_t i = 0; i < r.cv.size(); ++i)
          if (r.cv[i] >= 1) out.push_back({table, key, pk, static_cast<int>(i), (*r.data)[static_cast<size_t>(shape.values[i])], r.cv[i], r.cl});
      }
    }
    return out;
  }

  // The merge rules, one change at a time.
  void merge(const ModelChange& ch) {
    const auto& shape = shapes_->at(ch.table);
    ModelRow& r = row(ch.table, ch.pk);
    int64_t local_cl = r.cl;
    auto set_value = [&](int cell, const Value& v) {
      (*r.data)[static_cast<size_t>(shape.values[static_cast<size_t>(cell)])] = v;
    };
    if (ch.cl < local_cl) return;
    if (ch.cl % 2 == 0) {
      if (ch.cl == local_cl) return;
      r.cl = ch.cl;
      r.sentinel = true;
      for (auto& v : r.cv) v = -1;
      r.data.reset();
      return;
    }
    if (ch.cl > local_cl) {
      if (!r.data) {
        Row fresh(shape.columns);
        for (size_t k = 0; k < shape.pk.size(); ++k) fresh[static_cast<size_t>(shape.pk[k])] = ch.pk[k];
        r.data = fresh;
      }
      r.cl = ch.cl;
      r.sentinel = ch.cl > 1 || ch.cell < 0;  // a fresh row (cl 1) has none, as at its origin
      for (auto& v : r.cv) v = 0;
      if (ch.cell >= 0) {
        r.cv[static_cast<size_t>(ch.cell)] = ch.cv;
        set_value(ch.cell, ch.val);
      }
      return;
    }
    if (ch.cell < 0) return;
    int64_t& cv = r.cv[static_cast<size_t>(ch.cell)];
    const Value& current = (*r.data)[static_cast<size_t>(shape.values[static_cast<size_t>(ch.cell)])];
    if (cv < 0 || ch.cv > cv || (ch.cv == cv && compare_crdt(ch.val, current) > 0)) {
      cv = ch.cv;
      set_value(ch.cell, ch.val);
    }
  }

  std::vector<Row> table_rows(const std::string& table) const {
    std::vector<Row> out;
    auto it = rows_.find(table);
    if (it == rows_.end()) return out;
    for (const auto& [key, r] : it->second)
      if (r.data) out.push_back(*r.data);
    const auto& shape = shapes_->at(table);
    std::sort(out.begin(), out.end(), [&](const Row& x, const Row& y) {
      for (int c : shape.pk) {
        int d = compare_sqlite(x[static_cast<size_t>(c)], y[static_cast<size_t>(c)]);
        if (d) return d < 0;
      }
      return false;
    });
    return out;
  }

 private:
  const std::map<std::string, TableShape>* shapes_;
  std::map<std::string, std::map<std::string, ModelRow>> rows_;
};

// ---- random workloads ----

Value random_value(std::mt19937_64& rng) {
  switch (rng() % 9) {
    case 0: return Value();
    case 1: return Value::Integer(static_cast<int64_t>(rng() % 3));
    case 2: return Value::Integer(static_cast<int64_t>(rng() % 3) - 1);
    case 3: return Value::Real(static_cast<double>(rng() % 3));        // 1.0 beside the integer 1
    case 4: return Value::Real(0.5 + static_cast<double>(rng() % 2));
    case 5: return Value::Text(std::string(1, static_cast<char>('a' + rng() % 3)));
    case 6: return Value::Text(rng() % 2 ? "1" : "");
    case 7: return Value::Blob(rng() % 2 ? std::string("\x00", 1) : std::string());
    default: return Value::Blob("a");
  }
}

Row random_key(std::mt19937_64& rng, const std::string& table) {
  if (table == "t") return {Value::Integer(static_cast<int64_t>(rng() % 8))};
  if (table == "r") return {Value::Real(static_cast<double>(rng() % 4) / 2)};  // 0.0, 0.5, 1.0, 1.5
  Value x = rng() % 2 ? Value::Text(rng() % 2 ? "p" : "q") : Value::Integer(static_cast<int64_t>(rng() % 2));
  Value y = rng() % 3 == 0 ? Value::Real(1.5) : Value::Integer(static_cast<int64_t>(rng() % 3));
  return {x, y};
}

struct Node {
  std::unique_ptr<Store> store;
  ModelReplica model;
};

class Workload {
 public:
  Workload(uint64_t seed, int replicas) : rng_(seed) {
    for (const auto& t : kTables) shapes_[t];
    for (int i = 0; i < replicas; ++i) {
      Node n{memory_store(static_cast<uint8_t>(i + 1), kSchema, kTables), ModelReplica(&shapes_)};
      nodes_.push_back(std::move(n));
    }
    for (const auto& t : kTables) {
      const TableInfo* info = nodes_[0].store->table(t);
      shapes_[t] = TableShape{info->columns.size(), info->pk_columns, info->value_columns};
    }
  }

  std::optional<Row> stored(Store& s, const std::string& table, const Row& pk) {
    const TableInfo* t = s.table(table);
    std::string sql = "SELECT * FROM " + table + " WHERE ";
    for (size_t i = 0; i < t->pk_columns.size(); ++i)
      sql += (i ? " AND " : "") + t->columns[static_cast<size_t>(t->pk_columns[i])].name + " IS ?";
    auto q = s.query(sql, pk);
    REQUIRE(q.ok());
    if (q->rows.empty()) return std::nullopt;
    return q->rows[0];
  }

  std::string column(const std::string& table, int c) {
    return nodes_[0].store->table(table)->columns[static_cast<size_t>(c)].name;
  }
  std::string where(const std::string& table) {
    const TableInfo* t = nodes_[0].store->table(table);
    std::string w = " WHERE ";
    for (size_t i = 0; i < t->pk_columns.size(); ++i) w += (i ? " AND " : "") + column(table, t->pk_columns[i]) + " = ?";
    return w;
  }
  std::string set_key(const std::string& table) {
    const TableInfo* t = nodes_[0].store->table(table);
    std::string w = " SET ";
    for (size_t i = 0; i < t->pk_columns.size(); ++i) w += (i ? ", " : "") + column(table, t->pk_columns[i]) + " = ?";
    return w;
  }

  // One random write statement on node `n`; applies it to the model when it succeeds.
  // Returns a description for failure messages.
  std::string random_write(Node& n) {
    const std::string table = kTables[rng_() % kTables.size()];
    const TableShape& shape = shapes_[table];
    Row pk = random_key(rng_, table);
    std::optional<Row> before = stored(*n.store, table, pk);
    Row values;
    for (size_t i = 0; i < shape.values.size(); ++i) values.push_back(random_value(rng_));
    Row all_params(shape.columns);
    for (size_t i = 0; i < shape.pk.size(); ++i) all_params[static_cast<size_t>(shape.pk[i])] = pk[i];
    for (size_t i = 0; i < shape.values.size(); ++i) all_params[static_cast<size_t>(shape.values[i])] = values[i];
    std::string placeholders;
    for (size_t i = 0; i < shape.columns; ++i) placeholders += i ? ", ?" : "?";
    std::string sql;
    Row params;
    int kind = static_cast<int>(rng_() % 7);
    if (shape.values.empty() && (kind == 1 || kind == 4)) kind = 0;
    switch (kind) {
      case 0:  // insert (or re-insert); skip if it exists
        if (before) return "skip";
        sql = "INSERT INTO " + table + " VALUES (" + placeholders + ")";
        params = all_params;
        break;
      case 1: {  // update some columns
        if (!before) return "skip";
        sql = "UPDATE " + table + " SET ";
        size_t n_set = 1 + rng_() % shape.values.size();
        for (size_t i = 0; i < n_set; ++i) {
          size_t c = static_cast<size_t>(shape.values[rng_() % shape.values.size()]);
          sql += std::string(i ? ", " : "") + column(table, static_cast<int>(c)) + " = ?";
          params.push_back(random_value(rng_));
        }
        sql += where(table);
        params.insert(params.end(), pk.begin(), pk.end());
        break;
      }
      case 2:  // delete
        if (!before) return "skip";
        sql = "DELETE FROM " + table + where(table);
        params = pk;
        break;
      case 3:  // REPLACE, existing or not
        sql = "INSERT OR REPLACE INTO " + table + " VALUES (" + placeholders + ")";
        params = all_params;
        break;
      case 4: {  // UPSERT
        std::string col = column(table, shape.values.back());
        sql = "INSERT INTO " + table + " VALUES (" + placeholders + ") ON CONFLICT DO UPDATE SET " + col + " = excluded." + col;
        params = all_params;
        break;
      }
      default: {  // primary-key move, onto a free key or over an existing one
        if (!before) return "skip";
        Row to = random_key(rng_, table);
        if (identical(to, pk)) return "skip";
        bool occupied = stored(*n.store, table, to).has_value();
        sql = std::string(occupied ? "UPDATE OR REPLACE " : "UPDATE ") + table + set_key(table) + where(table);
        params = to;
        params.insert(params.end(), pk.begin(), pk.end());
        auto r = n.store->write({{sql, params}});
        REQUIRE(r.ok());
        std::optional<Row> moved = stored(*n.store, table, to);
        REQUIRE(moved);
        n.model.remove(table, pk);
        n.model.insert(table, to, *moved, occupied);
        return sql;
      }
    }
    auto r = n.store->write({{sql, params}});
    INFO(sql << " -> " << r.status().to_string());
    REQUIRE(r.ok());
    std::optional<Row> after = stored(*n.store, table, pk);
    if (kind == 2) {
      n.model.remove(table, pk);
    } else if (kind == 0 || (kind == 3) || (kind == 4 && !before)) {
      n.model.insert(table, pk, *after, before.has_value());
    } else {
      n.model.update(table, pk, *after);
    }
    return sql;
  }

  void sync(size_t from, size_t to) {
    test::sync(*nodes_[from].store, *nodes_[to].store);
    auto changes = nodes_[from].model.state();
    std::shuffle(changes.begin(), changes.end(), rng_);
    for (const auto& c : changes) nodes_[to].model.merge(c);
  }

  void check(const std::string& step) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      for (const auto& t : kTables) {
        auto actual = dump(*nodes_[i].store, t);
        auto expected = nodes_[i].model.table_rows(t);
        INFO("after " << step << ", replica " << i << ", table " << t << "\nstore:\n" << render(actual) << "model:\n" << render(expected));
        REQUIRE(same_rows(actual, expected));
      }
    }
  }

  void run(int steps) {
    for (int s = 0; s < steps; ++s) {
      std::string step;
      if (rng_() % 4 == 0 && nodes_.size() > 1) {
        size_t a = rng_() % nodes_.size(), b = rng_() % nodes_.size();
        if (a == b) continue;
        sync(a, b);
        step = "sync " + std::to_string(a) + "->" + std::to_string(b);
      } else {
        step = random_write(nodes_[rng_() % nodes_.size()]);
      }
      check(step);
    }
    // Everyone syncs with everyone until nothing changes, twice over.
    for (int round = 0; round < 2; ++round)
      for (size_t a = 0; a < nodes_.size(); ++a)
        for (size_t b = 0; b < nodes_.size(); ++b)
          if (a != b) sync(a, b);
    check("full sync");
    for (size_t i = 1; i < nodes_.size(); ++i)
      for (const auto& t : kTables) REQUIRE(same_rows(dump(*nodes_[0].store, t), dump(*nodes_[i].store, t)));
    // Merging everything again changes nothing.
    for (size_t a = 0; a < nodes_.size(); ++a) {
      for (size_t b = 0; b < nodes_.size(); ++b) {
        if (a == b) continue;
        int64_t v = nodes_[b].store->db_version();
        auto all = nodes_[a].store->changes_since(0, nodes_[b].store->site_id());
        REQUIRE(all.ok());
        auto r = nodes_[b].store->merge(*all);
        REQUIRE(r.ok());
        CHECK(r->changes_applied == 0);
        CHECK(nodes_[b].store->db_version() == v);
      }
    }
  }

 private:
  std::mt19937_64 rng_;
  std::map<std::string, TableShape> shapes_;
  std::vector<Node> nodes_;
};

}  // namespace

TEST_CASE("random workloads on 2-5 replicas match the model of the merge rules and converge", "[store][property]") {
  int runs = property_runs(40);
  for (int run = 0; run < runs; ++run) {
    uint64_t seed = 1000 + static_cast<uint64_t>(run);
    int replicas = 2 + run % 4;
    INFO("seed " << seed << ", " << replicas << " replicas");
    Workload w(seed, replicas);
    w.run(120);
  }
}

TEST_CASE("every delivery order, with duplicates, gives identical tables", "[store][property]") {
  int runs = property_runs(15);
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(5000 + static_cast<uint64_t>(run));
    INFO("seed " << 5000 + run);
    // Three writers working apart, each with its own history of the same few rows.
    std::vector<change::ChangeBatch> batches;
    for (uint8_t site = 1; site <= 3; ++site) {
      auto s = memory_store(site, kSchema, kTables);
      for (int i = 0; i < 25; ++i) {
        Row pk = random_key(rng, "t");
        Value v = random_value(rng);
        switch (rng() % 4) {
          case 0: exec(*s, "INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)", {pk[0], v, random_value(rng), random_value(rng)}); break;
          case 1: exec(*s, "UPDATE t SET a = ? WHERE id = ?", {v, pk[0]}); break;
          case 2: exec(*s, "DELETE FROM t WHERE id = ?", {pk[0]}); break;
          default: exec(*s, "UPDATE t SET id = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM t WHERE id = ?)", {v.is_integer() ? v : pk[0], pk[0], v});
        }
        if (rng() % 5 == 0) {  // a partial history, delivered separately
          auto b = s->changes_since(0);
          REQUIRE(b.ok());
          batches.push_back(*b);
        }
      }
      auto b = s->changes_since(0);
      REQUIRE(b.ok());
      batches.push_back(*b);
    }
    std::vector<Row> reference;
    for (int order = 0; order < 6; ++order) {
      std::vector<change::ChangeBatch> delivery = batches;
      for (int d = 0; d < 3; ++d) delivery.push_back(batches[rng() % batches.size()]);  // duplicates
      std::shuffle(delivery.begin(), delivery.end(), rng);
      auto r = memory_store(9, kSchema, kTables);
      for (const auto& b : delivery) REQUIRE(r->merge(b).ok());
      auto rows = dump(*r, "t");
      if (order == 0) {
        reference = rows;
      } else {
        INFO("order " << order << "\n" << render(rows) << "vs\n" << render(reference));
        REQUIRE(same_rows(rows, reference));
      }
      int64_t v = r->db_version();
      for (const auto& b : batches) {
        auto again = r->merge(b);
        REQUIRE(again.ok());
        CHECK(again->changes_applied == 0);
      }
      CHECK(r->db_version() == v);
      CHECK(same_rows(dump(*r, "t"), rows));
    }
  }
}
