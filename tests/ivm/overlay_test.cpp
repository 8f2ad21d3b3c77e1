// Optimistic overlay: several views of one node show pending mutations at once; the database
// refuses some (a CHECK constraint, a trigger with RAISE, a duplicate key); remote replicas'
// merges and other local writes arrive while mutations are pending; settlements come late or
// in any order. After every step every view must equal the query run on the database with the
// still-pending mutations applied (computed on a scratch transaction that is rolled back).
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <deque>
#include <set>

#include "runtime/sqlite/proto_value.hpp"
#include "tests/ivm/ivm_test_util.hpp"

namespace tandem::test {
namespace {

const char* kSchema =
    "CREATE TABLE items(id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER CHECK (qty IS NULL OR qty >= 0),"
    " grp INTEGER DEFAULT 1);"
    "CREATE TABLE groups(grp INTEGER PRIMARY KEY NOT NULL, label TEXT);"
    "CREATE TRIGGER items_no_bad BEFORE INSERT ON items WHEN NEW.name = 'bad'"
    " BEGIN SELECT RAISE(ABORT, 'bad name'); END;";

const std::vector<std::string> kQueries = {
    "SELECT id, name, qty FROM items WHERE qty > 2 ORDER BY qty DESC, id LIMIT 4",
    "SELECT items.id, items.name, groups.label FROM items JOIN groups ON groups.grp = items.grp",
    "SELECT grp, count(*), sum(qty), max(name) FROM items GROUP BY grp",
    "SELECT groups.label, count(items.id) FROM groups LEFT JOIN items ON items.grp = groups.grp GROUP BY groups.label ORDER BY 1",
    "SELECT name, id FROM items WHERE name LIKE 'a%' ORDER BY name, id",
};

worker::Mutation insert(int64_t id, const std::string& name, Value qty, bool replace = false) {
  worker::Mutation m;
  m.set_table("items");
  auto* in = m.mutable_insert();
  in->add_columns("id");
  in->add_columns("name");
  in->add_columns("qty");
  to_proto(Value::Integer(id), in->add_values());
  to_proto(Value::Text(name), in->add_values());
  to_proto(qty, in->add_values());
  in->set_or_replace(replace);
  return m;
}

worker::Mutation update(int64_t id, const std::string& column, Value v) {
  worker::Mutation m;
  m.set_table("items");
  auto* up = m.mutable_update();
  to_proto(Value::Integer(id), up->add_pk());
  up->add_columns(column);
  to_proto(v, up->add_values());
  return m;
}

worker::Mutation erase(int64_t id) {
  worker::Mutation m;
  m.set_table("items");
  to_proto(Value::Integer(id), m.mutable_delete_()->add_pk());
  return m;
}

struct PendingWrite {
  std::string id;
  std::vector<worker::Mutation> mutations;
};

// The mutations as SQL with the overlay's semantics: an insert over an existing key shows the
// existing row; an update that moves the key replaces what was there.
std::vector<SqlStatement> as_sql(const std::vector<worker::Mutation>& ms) {
  std::vector<SqlStatement> out;
  for (const auto& m : ms) {
    if (m.has_insert()) {
      std::string cols, qs;
      Row params;
      for (int i = 0; i < m.insert().columns_size(); ++i) {
        cols += (i ? ", " : "") + m.insert().columns(i);
        qs += i ? ", ?" : "?";
        params.push_back(from_proto(m.insert().values(i)));
      }
      out.push_back({std::string(m.insert().or_replace() ? "INSERT OR REPLACE" : "INSERT OR IGNORE") + " INTO " + m.table() +
                         "(" + cols + ") VALUES (" + qs + ")",
                     params});
    } else if (m.has_update()) {
      std::string set;
      Row params;
      for (int i = 0; i < m.update().columns_size(); ++i) {
        set += (i ? ", " : "") + m.update().columns(i) + " = ?";
        params.push_back(from_proto(m.update().values(i)));
      }
      params.push_back(from_proto(m.update().pk(0)));
      out.push_back({"UPDATE OR REPLACE " + m.table() + " SET " + set + " WHERE id = ?", params});
    } else {
      out.push_back({"DELETE FROM " + m.table() + " WHERE id = ?", {from_proto(m.delete_().pk(0))}});
    }
  }
  return out;
}

// SQLite running `plan` on the database with `pending` applied, constraints and triggers off
// (a pending mutation is shown until the database refuses it).
Expected expected_with_pending(Database& scratch, const ivm::Plan& plan, const std::deque<PendingWrite>& pending) {
  Expected e;
  REQUIRE(scratch.exec("BEGIN").ok());
  for (const auto& p : pending) {
    for (const auto& s : as_sql(p.mutations)) {
      auto st = scratch.prepare(s.sql);
      REQUIRE(st.ok());
      REQUIRE((*st)->bind_all(s.params).ok());
      auto r = (*st)->run();
      INFO(s.sql << ": " << r.to_string());
      REQUIRE(r.ok());
    }
  }
  query::Query q = plan.query;
  q.clear_limit();
  q.clear_offset();
  auto st = scratch.prepare(query::render(q));
  REQUIRE(st.ok());
  REQUIRE((*st)->bind_all(plan.params).ok());
  for (;;) {
    auto has = (*st)->step();
    if (!has.ok()) { e.status = has.status(); break; }
    if (!*has) break;
    e.full.push_back((*st)->row());
  }
  st->reset();
  scratch.rollback();
  return e;
}

struct View {
  std::shared_ptr<const ivm::Plan> plan;
  std::unique_ptr<Database> db;
  std::unique_ptr<ivm::LiveView> view;
  std::vector<int> order_columns;
};

void run(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto r = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  TempDir dir;
  Node node(dir.path, "a", kSchema, {"items", "groups"}, 1);
  Node remote(dir.path, "b", kSchema, {"items", "groups"}, 2);
  for (int g = 0; g < 3; ++g) {
    node.write("INSERT INTO groups VALUES (?, ?)", {Value::Integer(g), Value::Text("g" + std::to_string(g))});
  }
  for (int i = 1; i <= 8; ++i) {
    node.write("INSERT INTO items(id, name, qty, grp) VALUES (?, ?, ?, ?)",
               {Value::Integer(i), Value::Text(std::string(1, static_cast<char>('a' + i % 3)) + "x"), Value::Integer(i % 6),
                Value::Integer(i % 3)});
  }
  auto scratch = node.open_connection();
  REQUIRE(scratch->exec("PRAGMA ignore_check_constraints = ON").ok());
  sqlite3_db_config(scratch->raw(), SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  std::vector<View> views;
  for (const auto& sql : kQueries) {
    View v;
    v.db = node.open_connection();
    v.plan = must_bind(*v.db, sql);
    auto lv = ivm::LiveView::create(*v.db, &node.journal(), v.plan);
    REQUIRE(lv.ok());
    v.view = std::move(lv).value();
    v.order_columns = order_columns_of(*v.plan);
    views.push_back(std::move(v));
  }
  std::deque<PendingWrite> pending;  // shown, not yet sent to the database
  std::deque<PendingWrite> unsettled;  // pending order as the views hold them
  auto apply_all = [&](const ivm::BatchPtr& b) {
    if (!b) return;
    for (auto& v : views) {
      Status st = v.view->apply(b);
      INFO(st.to_string());
      REQUIRE(st.ok());
    }
  };
  int next_id = 0, refused = 0, committed = 0;
  std::set<std::string> hidden;
  std::deque<std::pair<std::string, std::pair<bool, int64_t>>> answers;  // settlements not yet delivered
  for (int step = 0; step < 150; ++step) {
    int k = r(12);
    std::string what;
    if (k < 5) {
      // A view mutates: every view shows it at once.
      PendingWrite p;
      p.id = "m" + std::to_string(next_id++);
      int n = 1 + r(2);
      for (int i = 0; i < n; ++i) {
        int64_t id = 1 + r(12);
        switch (r(7)) {
          case 0: p.mutations.push_back(insert(id, r(5) == 0 ? "bad" : "a" + std::to_string(r(3)), Value::Integer(r(8)))); break;
          case 1: p.mutations.push_back(insert(id, "b" + std::to_string(r(3)), Value::Integer(r(8)), true)); break;
          case 2: p.mutations.push_back(update(id, "qty", r(4) == 0 ? Value::Integer(-1) : Value::Integer(r(9)))); break;
          case 3: p.mutations.push_back(update(id, "grp", Value::Text(std::to_string(r(4))))); break;
          case 4: p.mutations.push_back(update(id, "name", Value::Text("a" + std::to_string(r(4))))); break;
          case 5: p.mutations.push_back(erase(id)); break;
          default: p.mutations.push_back(update(id, "id", Value::Integer(1 + r(12)))); break;
        }
      }
      for (auto& v : views) {
        Status st = v.view->add_pending(p.id, p.mutations);
        INFO(st.to_string());
        REQUIRE(st.ok());
      }
      pending.push_back(p);
      unsettled.push_back(p);
      what = "mutate " + p.id;
    } else if (k < 8 && !pending.empty()) {
      // The db_worker runs the oldest unsent mutation; its answer may be delivered later.
      PendingWrite p = pending.front();
      pending.pop_front();
      Status err;
      auto b = node.mutate(p.mutations, p.id, &err);
      apply_all(b);
      if (err.ok()) ++committed;
      else ++refused;
      if (b) {
        for (const auto& u : unsettled) {
          hidden.insert(u.id);
          if (u.id == p.id) break;
        }
      }
      answers.emplace_back(p.id, std::make_pair(err.ok(), err.ok() ? node.store().db_version() : 0));
      what = "run " + p.id + (err.ok() ? " ok" : " refused: " + err.message());
      for (const auto& m : p.mutations) what += " [" + m.ShortDebugString() + "]";
      if (b) for (const auto& d : b->deltas) what += "\n  delta " + (d.old_row ? show(*d.old_row) : "-") + " -> " + (d.new_row ? show(*d.new_row) : "-");
    } else if (k < 10 && !answers.empty()) {
      auto a = answers.front();
      answers.pop_front();
      for (auto& v : views) REQUIRE(v.view->settle(a.first, a.second.first, a.second.second).ok());
      for (auto it = unsettled.begin(); it != unsettled.end(); ++it)
        if (it->id == a.first) { unsettled.erase(it); break; }
      what = "settle " + a.first;
    } else if (k < 11) {
      // A remote replica's change merges in while mutations are pending.
      int64_t id = 1 + r(12);
      Status err;
      if (r(3) == 0) remote.write("DELETE FROM items WHERE id = ?", {Value::Integer(id)}, &err);
      else
        remote.write("INSERT OR REPLACE INTO items(id, name, qty, grp) VALUES (?, ?, ?, ?)",
                     {Value::Integer(id), Value::Text("r" + std::to_string(r(3))), Value::Integer(r(9)), Value::Integer(r(3))}, &err);
      auto cursor = node.store().peer(remote.store().site_id());
      REQUIRE(cursor.ok());
      auto changes = remote.store().changes_since(cursor->received, node.store().site_id());
      REQUIRE(changes.ok());
      apply_all(node.merge(*changes));
      what = "merge";
    } else {
      Status err;
      apply_all(node.write("UPDATE items SET qty = ? WHERE id = ?", {Value::Integer(r(9)), Value::Integer(1 + r(12))}, &err));
      what = "local write";
    }
    // The views show every unsettled mutation except those known to be done: a committed batch
    // carrying a mutation's id retires it and every earlier mutation of the same origin (here
    // one origin, run in order). A refused or no-op mutation stays shown until its settlement.
    std::deque<PendingWrite> shown;
    for (const auto& p : unsettled)
      if (!hidden.count(p.id)) shown.push_back(p);
    for (size_t i = 0; i < views.size(); ++i) {
      Expected e = expected_with_pending(*scratch, *views[i].plan, shown);
      std::string diff = compare_rows(*views[i].plan, *views[i].view, views[i].order_columns, e);
      std::string shown_ids;
      for (const auto& p : shown) {
        shown_ids += " " + p.id;
        for (const auto& m : p.mutations) shown_ids += " [" + m.ShortDebugString() + "]";
      }
      INFO("seed " << seed << " step " << step << " (" << what << ")\nshown:" << shown_ids << "\n" << kQueries[i]);
      REQUIRE(diff == "");
    }
  }
  INFO("committed " << committed << " refused " << refused);
  REQUIRE(committed > 5);
  REQUIRE(refused > 2);
}

}  // namespace

TEST_CASE("pending mutations, refusals, remote merges and late settlements keep every view exact", "[ivm][overlay][property]") {
  int runs = property_runs(8);
  for (int r = 0; r < runs; ++r) {
    DYNAMIC_SECTION("seed " << r) { run(500 + static_cast<uint64_t>(r)); }
  }
}

TEST_CASE("malformed mutations are refused and change nothing", "[ivm][overlay]") {
  TempDir dir;
  Node node(dir.path, "a", kSchema, {"items", "groups"});
  node.write("INSERT INTO items(id, name, qty) VALUES (1, 'ax', 3)");
  auto db = node.open_connection();
  auto plan = must_bind(*db, kQueries[0]);
  auto view = ivm::LiveView::create(*db, &node.journal(), plan);
  REQUIRE(view.ok());
  auto before = (*view)->rows();
  (*view)->take_changes();
  auto refuse = [&](std::vector<worker::Mutation> m, const std::string& fragment) {
    Status st = (*view)->add_pending("bad", m);
    INFO(st.to_string());
    REQUIRE_FALSE(st.ok());
    REQUIRE(st.message().find(fragment) != std::string::npos);
    REQUIRE((*view)->pending_count() == 0);
    REQUIRE(identical_rows(before, (*view)->rows()));
    REQUIRE((*view)->take_changes().empty());
  };
  worker::Mutation unknown_table = erase(1);
  unknown_table.set_table("nope");
  refuse({unknown_table}, "no such table");
  refuse({update(1, "nope", Value::Integer(1))}, "no such column");
  worker::Mutation no_op;
  no_op.set_table("items");
  refuse({no_op}, "no insert, update or delete");
  worker::Mutation no_key = insert(5, "x", Value::Integer(1));
  no_key.mutable_insert()->clear_columns();
  no_key.mutable_insert()->add_columns("name");
  no_key.mutable_insert()->add_columns("qty");
  no_key.mutable_insert()->add_columns("grp");
  refuse({no_key}, "primary-key column id");
  worker::Mutation arity = erase(1);
  to_proto(Value::Integer(2), arity.mutable_delete_()->add_pk());
  refuse({arity}, "primary key has 1 columns");
  // A valid first mutation does not make a malformed second one acceptable.
  refuse({insert(9, "ok", Value::Integer(5)), update(1, "qty", Value::Integer(1)), unknown_table}, "no such table");
  // Duplicate ids are refused too.
  REQUIRE((*view)->add_pending("m1", {update(1, "qty", Value::Integer(7))}).ok());
  REQUIRE((*view)->add_pending("m1", {update(1, "qty", Value::Integer(8))}).code() == StatusCode::invalid_argument);
}

}  // namespace tandem::test

namespace tandem::test {

// Finding: the overlay matched column names case-insensitively and the store exactly, so a view
// showed a mutation the store then refused (or the reverse). Both now run one rule
// (runtime/store/mutation_rules.hpp): whatever a view shows, the store accepts for its shape.
TEST_CASE("the overlay and the store accept and refuse the same mutations", "[ivm][overlay]") {
  TempDir dir;
  Node node(dir.path, "a", kSchema, {"items"});  // groups stays a local, unreplicated table
  node.write("INSERT INTO items(id, name, qty) VALUES (1, 'ax', 3)");
  auto db = node.open_connection();
  auto plan = must_bind(*db, kQueries[0]);
  auto view = ivm::LiveView::create(*db, &node.journal(), plan);
  REQUIRE(view.ok());
  worker::Mutation upper_case = update(1, "QTY", Value::Integer(5));
  worker::Mutation upper_insert = insert(2, "bx", Value::Integer(4));
  upper_insert.mutable_insert()->set_columns(0, "ID");
  upper_insert.mutable_insert()->set_columns(1, "Name");
  worker::Mutation twice = update(1, "qty", Value::Integer(5));
  twice.mutable_update()->add_columns("QTY");
  to_proto(Value::Integer(6), twice.mutable_update()->add_values());
  worker::Mutation keyless = insert(3, "cx", Value::Integer(1));
  keyless.mutable_insert()->clear_columns();
  keyless.mutable_insert()->clear_values();
  keyless.mutable_insert()->add_columns("name");
  to_proto(Value::Text("cx"), keyless.mutable_insert()->add_values());
  worker::Mutation unreplicated;
  unreplicated.set_table("groups");
  to_proto(Value::Integer(1), unreplicated.mutable_delete_()->add_pk());
  int n = 0;
  for (const auto& m : {upper_case, upper_insert, twice, keyless, unreplicated}) {
    const std::string id = "m" + std::to_string(n++);
    Status shown = (*view)->add_pending(id, {m});
    Status written;
    auto batch = node.mutate({m}, id, &written);
    INFO(m.DebugString() << "overlay: " << shown.to_string() << "\nstore: " << written.to_string());
    CHECK(shown.ok() == written.ok());
    if (batch) REQUIRE((*view)->apply(batch).ok());
    if (shown.ok()) REQUIRE((*view)->settle(id, written.ok(), node.store().db_version()).ok());
  }
  CHECK((*view)->pending_count() == 0);
  auto qty = node.store().query("SELECT qty FROM items WHERE id = 1");
  REQUIRE(qty.ok());
  CHECK(qty->rows.at(0)[0].integer() == 5);
}

}  // namespace tandem::test
