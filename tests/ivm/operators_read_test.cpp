// The operators that read SQLite, on their own: the Lookup's compensation against the journal
// and the overlay, the window's prefix and boundary, the join's LEFT JOIN NULL extension, the
// overlay's fold, rollback and settlement. Each is driven through its apply with a hand-built
// DeltaContext (tests/ivm/operator_rig.hpp) over a real store and journal.
#include <catch2/catch.hpp>

#include "runtime/sqlite/proto_value.hpp"
#include "tests/ivm/operator_rig.hpp"

namespace tandem::test {
namespace {

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, v INTEGER);";
const char* kJoinSchema =
    "CREATE TABLE a(id INTEGER PRIMARY KEY NOT NULL, bid INTEGER);"
    "CREATE TABLE b(id INTEGER PRIMARY KEY NOT NULL, name TEXT);";

std::vector<Row> sorted(std::vector<Row> rows) {
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return show(x) < show(y); });
  return rows;
}

std::vector<Row> fetch_all(OperatorRig& r, const ivm::DeltaContext& ctx, bool include_current, bool overrides) {
  std::vector<Row> out;
  const ivm::TableSchema& t = *r.plan->occurrences[0].table;
  Status st = r.lookup.fetch(ctx, ivm::select_columns(r.plan->occurrences[0]), {}, t, [](const Row&) { return true; },
                             include_current, overrides, &out);
  INFO(st.to_string());
  REQUIRE(st.ok());
  r.lookup.end();
  return sorted(out);
}

worker::Mutation update_v(int64_t id, Value v) {
  worker::Mutation m;
  m.set_table("t");
  auto* up = m.mutable_update();
  to_proto(Value::Integer(id), up->add_pk());
  up->add_columns("v");
  to_proto(v, up->add_values());
  return m;
}

TEST_CASE("lookup: rows read ahead of the position are compensated with the journal", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT id, v FROM t");
  auto b1 = r.node.write("INSERT INTO t(id, v) VALUES (1, 10)");
  auto b2 = r.node.write("UPDATE t SET v = 20 WHERE id = 1");
  auto b3 = r.node.write("INSERT INTO t(id, v) VALUES (2, 30)");
  REQUIRE((b1 && b2 && b3));
  // At V1 the writer is two batches ahead: both are undone.
  CHECK(identical_rows(fetch_all(r, r.at(b1->db_version), true, true), {ints({1, 10})}));
  CHECK(r.lookup.compensated() == 1);
  // Processing batch 2's only delta: it counts when included, is undone when not.
  auto ctx = r.at(b1->db_version);
  ctx.batch = b2.get();
  ctx.index = 0;
  CHECK(identical_rows(fetch_all(r, ctx, true, true), {ints({1, 20})}));
  CHECK(identical_rows(fetch_all(r, ctx, false, true), {ints({1, 10})}));
  REQUIRE(r.lookup.ensure(ctx).ok());
  CHECK(r.lookup.later_delta_count(ctx, "t") == 3);  // batch 2's delta, batch 3's, plus one
  r.lookup.end();
  // At the writer's version nothing is compensated.
  int64_t before = r.lookup.compensated();
  CHECK(identical_rows(fetch_all(r, r.at(b3->db_version), true, true), {ints({1, 20}), ints({2, 30})}));
  CHECK(r.lookup.compensated() == before);
  CHECK(r.lookup.lookups() == 4);
  // A position the database has not reached is an error, not a silent read.
  Status ahead = r.lookup.ensure(r.at(b3->db_version + 1));
  CHECK(ahead.code() == StatusCode::internal);
  r.lookup.end();
}

TEST_CASE("lookup: the overlay's rows replace touched keys unless the change excludes itself", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT id, v FROM t");
  auto b1 = r.node.write("INSERT INTO t(id, v) VALUES (1, 10), (2, 20)");
  REQUIRE(b1);
  const std::string k1 = key_of(ints({1}));
  const std::string k2 = key_of(ints({2}));
  auto& ov = r.overlay_state.tables["t"];
  ov.graph[k1] = ints({1, 99});
  ov.graph[k2] = std::nullopt;  // deleted by a pending mutation
  auto ctx = r.at(b1->db_version);
  CHECK(identical_rows(fetch_all(r, ctx, true, true), {ints({1, 99})}));
  CHECK(identical_rows(fetch_all(r, ctx, true, false), {ints({1, 10}), ints({2, 20})}));
  // While the overlay change of key 1 is processed, a lookup excluding it sees its old row.
  const std::string table = "t";
  const std::optional<Row> old = ints({1, 50});
  ivm::OverlayDelta change{table, k1, old};
  ctx.overlay_delta = &change;
  CHECK(identical_rows(fetch_all(r, ctx, false, true), {ints({1, 50})}));
  CHECK(identical_rows(fetch_all(r, ctx, true, true), {ints({1, 99})}));
}

TEST_CASE("window: refills the prefix with a boundary and trims it back", "[ivm][operators]") {
  ivm::ViewOptions options;
  options.window_boundary = 2;
  OperatorRig r(kSchema, {"t"}, "SELECT id, v FROM t ORDER BY v, id LIMIT 3", options);
  std::string values;
  for (int i = 1; i <= 20; ++i) values += (i > 1 ? ", (" : "(") + std::to_string(i) + ", " + std::to_string(100 - i) + ")";
  r.node.write("INSERT INTO t(id, v) VALUES " + values);
  REQUIRE(r.result.prefix());
  REQUIRE(r.window.refill(r.at(r.version()), r.result, r.join, r.join_state).ok());
  r.lookup.end();
  CHECK(r.result.held() == 5);  // LIMIT 3 + a boundary of 2
  CHECK_FALSE(r.result.complete());
  CHECK(identical_rows(r.rows(), {ints({20, 80}), ints({19, 81}), ints({18, 82})}));
  // Four of the held rows leave: the window refills after the last one still held.
  r.node.write("DELETE FROM t WHERE id >= 17");
  for (int64_t id : {20, 19, 18, 17}) r.result.erase(key_of(ints({id})));
  REQUIRE(r.window.apply(r.at(r.version()), r.result, r.join, r.join_state).ok());
  r.lookup.end();
  CHECK(r.result.held() == 5);
  CHECK(identical_rows(r.rows(), {ints({16, 84}), ints({15, 85}), ints({14, 86})}));
  CHECK(r.result.last()->key == key_of(ints({12})));
  // Rows entering before the boundary are admitted; past 3 + 3 x 2 the boundary is trimmed.
  std::vector<Row> fresh;
  for (int64_t i = 0; i < 8; ++i) fresh.push_back(ints({100 + i, i}));
  auto ctx = r.at(r.version());
  for (const auto& row : fresh) r.downstream.tuple(ctx, +1, ivm::Tuple{&row});
  CHECK(r.result.held() == 13);
  REQUIRE(r.window.apply(ctx, r.result, r.join, r.join_state).ok());
  CHECK(r.result.held() == 9);
  CHECK_FALSE(r.result.complete());
  CHECK(identical_rows(r.rows(), {ints({100, 0}), ints({101, 1}), ints({102, 2})}));
}

TEST_CASE("window: a result shorter than the window is complete", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT id, v FROM t ORDER BY v DESC, id LIMIT 3");
  r.node.write("INSERT INTO t(id, v) VALUES (1, 5), (2, 7)");
  REQUIRE(r.window.refill(r.at(r.version()), r.result, r.join, r.join_state).ok());
  r.lookup.end();
  CHECK(r.result.complete());
  CHECK(identical_rows(r.rows(), {ints({2, 7}), ints({1, 5})}));
  // Complete: a row past the last one is admitted without reading SQLite.
  Row late = ints({3, 1});
  r.downstream.tuple(r.at(r.version()), +1, ivm::Tuple{&late});
  CHECK(identical_rows(r.rows(), {ints({2, 7}), ints({1, 5}), ints({3, 1})}));
}

TEST_CASE("join: a LEFT JOIN child flips its parent's NULL extension", "[ivm][operators]") {
  OperatorRig r(kJoinSchema, {"a", "b"}, "SELECT b.id, b.name, a.id FROM b LEFT JOIN a ON a.bid = b.id");
  auto apply = [&](const ivm::BatchPtr& batch, int64_t before) {
    REQUIRE(batch);
    auto ctx = r.at(before);
    ctx.batch = batch.get();
    for (ctx.index = 0; ctx.index < batch->deltas.size(); ++ctx.index) {
      const RowDelta& d = batch->deltas[ctx.index];
      Status st = r.join.apply(ctx, d.table, d.old_row ? &*d.old_row : nullptr, d.new_row ? &*d.new_row : nullptr,
                               r.join_state);
      INFO(st.to_string());
      REQUIRE(st.ok());
    }
    r.lookup.end();
  };
  const Row null_extended = {Value::Integer(1), Value::Text("x"), Value()};
  int64_t v = r.version();
  apply(r.node.write("INSERT INTO b(id, name) VALUES (1, 'x')"), v);
  CHECK(identical_rows(sorted(r.rows()), {null_extended}));
  v = r.version();
  apply(r.node.write("INSERT INTO a(id, bid) VALUES (10, 1)"), v);
  CHECK(identical_rows(sorted(r.rows()), {{Value::Integer(1), Value::Text("x"), Value::Integer(10)}}));
  v = r.version();
  apply(r.node.write("INSERT INTO a(id, bid) VALUES (11, 1)"), v);
  CHECK(r.result.held() == 2);
  v = r.version();
  apply(r.node.write("DELETE FROM a WHERE id = 10"), v);
  CHECK(identical_rows(sorted(r.rows()), {{Value::Integer(1), Value::Text("x"), Value::Integer(11)}}));
  v = r.version();
  apply(r.node.write("DELETE FROM a WHERE id = 11"), v);
  CHECK(identical_rows(sorted(r.rows()), {null_extended}));
  v = r.version();
  apply(r.node.write("UPDATE b SET name = 'y' WHERE id = 1"), v);
  CHECK(identical_rows(sorted(r.rows()), {{Value::Integer(1), Value::Text("y"), Value()}}));
  CHECK(r.lookup.lookups() > 0);
}

TEST_CASE("overlay: a pending mutation is shown, rolled back, and retired by its batch", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT id, v FROM t");
  r.node.write("INSERT INTO t(id, v) VALUES (1, 10)");
  const std::string k1 = key_of(ints({1}));
  const Row base = ints({1, 10});
  auto ctx = r.at(r.version());
  r.downstream.tuple(ctx, +1, ivm::Tuple{&base});  // the hydrated result
  // Shown at once; the confirmed row is kept as the key's base.
  REQUIRE(r.overlay.add(ctx, "m1", {update_v(1, Value::Integer(99))}, "o", r.overlay_state).ok());
  REQUIRE(r.overlay.refold(ctx, r.overlay_state, r.join_state).ok());
  r.lookup.end();
  CHECK(identical_rows(r.rows(), {ints({1, 99})}));
  CHECK(ivm::same_row(r.overlay_state.tables.at("t").base.at(k1), base));
  CHECK(ivm::same_row(r.overlay_state.tables.at("t").graph.at(k1), ints({1, 99})));
  // Refused: the database failed it. The refold shows the base again and forgets the key.
  r.overlay_state.pending.clear();
  REQUIRE(r.overlay.refold(ctx, r.overlay_state, r.join_state).ok());
  CHECK(identical_rows(r.rows(), {base}));
  CHECK(r.overlay_state.tables.at("t").graph.empty());
  // A malformed mutation changes nothing.
  worker::Mutation bad = update_v(1, Value::Integer(1));
  bad.set_table("nope");
  CHECK_FALSE(r.overlay.add(ctx, "m9", {bad}, "o", r.overlay_state).ok());
  CHECK(r.overlay_state.pending.empty());
  // Committed: its batch updates the touched key's base, then retires the mutation.
  REQUIRE(r.overlay.add(ctx, "m2", {update_v(1, Value::Integer(50))}, "o", r.overlay_state).ok());
  REQUIRE(r.overlay.refold(ctx, r.overlay_state, r.join_state).ok());
  r.lookup.end();
  CHECK(identical_rows(r.rows(), {ints({1, 50})}));
  Status error;
  auto batch = r.node.mutate({update_v(1, Value::Integer(50))}, "m2", &error);
  REQUIRE(error.ok());
  REQUIRE(batch);
  ctx.batch = batch.get();
  for (ctx.index = 0; ctx.index < batch->deltas.size(); ++ctx.index)
    REQUIRE(r.overlay.apply(ctx, batch->deltas[ctx.index], r.overlay_state, r.join_state).ok());
  CHECK(ivm::same_row(r.overlay_state.tables.at("t").base.at(k1), ints({1, 50})));
  CHECK(r.overlay.retire(*batch, r.overlay_state));
  CHECK(r.overlay_state.pending.empty());
  REQUIRE(r.overlay.refold(ctx, r.overlay_state, r.join_state).ok());
  r.lookup.end();
  CHECK(identical_rows(r.rows(), {ints({1, 50})}));
  CHECK(r.overlay_state.tables.at("t").graph.empty());
  CHECK(r.overlay_state.tables.at("t").base.empty());
}

}  // namespace
}  // namespace tandem::test
