// The state-keeping operators on their own: the result store's change lists, the aggregate's
// running COUNT/SUM/MIN/MAX (with a MIN refill from SQLite), DISTINCT's multiplicities. Each is
// driven through its apply with a hand-built DeltaContext (tests/ivm/operator_rig.hpp).
#include <catch2/catch.hpp>

#include "tests/ivm/operator_rig.hpp"

namespace tandem::test {
namespace {

using ivm::RowChangeRecord;
using Kind = RowChangeRecord::Kind;

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, grp INTEGER, v);";

Row tv(int64_t id, int64_t grp, Value v) { return {Value::Integer(id), Value::Integer(grp), std::move(v)}; }

void feed_aggregate(OperatorRig& r, const ivm::DeltaContext& ctx, int sign, const Row& row) {
  const Row* rows[1] = {&row};
  ivm::EvalContext e;
  e.rows = rows;
  r.aggregate.apply(ctx, sign, e, r.aggregate_state);
}

void feed_distinct(OperatorRig& r, const ivm::DeltaContext& ctx, int sign, const Row& row) {
  const Row* rows[1] = {&row};
  ivm::EvalContext e;
  e.rows = rows;
  r.distinct.apply(ctx, sign, e, r.distinct_state, r.result);
}

size_t slot(const ivm::Plan& plan, ivm::AggregateSpec::Func f) {
  for (size_t i = 0; i < plan.aggregates.size(); ++i)
    if (plan.aggregates[i].func == f) return i;
  FAIL("no such aggregate");
  return 0;
}

const Row& shown(const ivm::ResultStore& result, const Row& group_key) {
  const ivm::Entry* e = result.find(key_of(group_key));
  REQUIRE(e != nullptr);
  return e->row;
}

TEST_CASE("result store: unordered changes net out against the last flush", "[ivm][operators]") {
  ivm::ResultStore rs;
  rs.init(false, false, {}, 0, -1, false);
  rs.set_tracking(true);
  rs.upsert("a", ints({1}), {});
  rs.upsert("b", ints({2}), {});
  std::vector<RowChangeRecord> out;
  rs.flush(&out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].kind == Kind::added);
  CHECK(out[1].kind == Kind::added);
  out.clear();
  rs.upsert("a", ints({10}), {});  // changed
  rs.erase("b");                   // removed
  rs.upsert("c", ints({3}), {});   // added and removed again: nothing
  rs.erase("c");
  rs.upsert("b", ints({2}), {});   // removed and added back identical: nothing
  rs.erase("b");
  rs.flush(&out);
  REQUIRE(out.size() == 2);
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  CHECK(out[0].kind == Kind::changed);
  CHECK(out[0].key == "a");
  CHECK(identical(out[0].row, ints({10})));
  CHECK(out[1].kind == Kind::removed);
  CHECK(out[1].key == "b");
  CHECK(identical(out[1].row, ints({2})));
  CHECK(rs.held() == 1);
}

TEST_CASE("result store: ordered changes carry ranks and a remove-then-add is one move", "[ivm][operators]") {
  ivm::ResultStore rs;
  rs.init(true, true, {false}, 0, -1, false);
  rs.set_tracking(true);
  rs.upsert("a", ints({5}), ints({5}));
  rs.upsert("b", ints({1}), ints({1}));
  std::vector<RowChangeRecord> out;
  rs.flush(&out);
  REQUIRE(out.size() == 2);
  CHECK((out[0].kind == Kind::added && out[0].key == "a" && out[0].position == 0));
  CHECK((out[1].kind == Kind::added && out[1].key == "b" && out[1].position == 0));
  out.clear();
  rs.erase("a");
  rs.upsert("a", ints({0}), ints({0}));  // moves in front of b
  rs.flush(&out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].kind == Kind::changed);
  CHECK(out[0].position == 0);
  CHECK(out[0].old_position == 1);
  std::vector<Row> visible;
  rs.for_each_visible([&](const ivm::Entry& e) { visible.push_back(e.row); });
  CHECK(identical_rows(visible, {ints({0}), ints({1})}));
}

TEST_CASE("result store: a LIMIT window is diffed at the flush", "[ivm][operators]") {
  ivm::ResultStore rs;
  rs.init(true, true, {false}, 0, 2, false);
  rs.upsert("k1", ints({1}), ints({1}));
  rs.upsert("k2", ints({2}), ints({2}));
  rs.upsert("k3", ints({3}), ints({3}));
  rs.set_tracking(true);  // the receiver holds [k1, k2]
  rs.erase("k1");
  std::vector<RowChangeRecord> out;
  rs.flush(&out);
  REQUIRE(out.size() == 2);
  CHECK((out[0].kind == Kind::removed && out[0].key == "k1" && out[0].position == 0));
  CHECK((out[1].kind == Kind::added && out[1].key == "k3" && out[1].position == 1));
}

TEST_CASE("result store: a prefix admits only rows before its last one until complete", "[ivm][operators]") {
  ivm::ResultStore rs;
  rs.init(true, true, {false}, 0, 2, true);
  CHECK_FALSE(rs.complete());
  CHECK_FALSE(rs.admits(ivm::Entry{"x", {}, ints({0})}));  // nothing known yet
  rs.upsert("k1", ints({1}), ints({1}));
  rs.upsert("k5", ints({5}), ints({5}));
  CHECK(rs.admits(ivm::Entry{"k3", {}, ints({3})}));
  CHECK_FALSE(rs.admits(ivm::Entry{"k7", {}, ints({7})}));
  rs.set_complete(true);
  CHECK(rs.admits(ivm::Entry{"k7", {}, ints({7})}));
  rs.trim(1);
  CHECK(rs.held() == 1);
  CHECK_FALSE(rs.complete());
  CHECK(rs.last()->key == "k1");
}

TEST_CASE("aggregate: COUNT, SUM, MIN and MAX follow inserts and deletes", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT grp, count(*), sum(v), min(v), max(v) FROM t GROUP BY grp");
  auto ctx = r.at(r.version());
  feed_aggregate(r, ctx, +1, tv(1, 1, Value::Integer(5)));
  feed_aggregate(r, ctx, +1, tv(2, 1, Value::Integer(3)));
  feed_aggregate(r, ctx, +1, tv(3, 1, Value::Integer(9)));
  feed_aggregate(r, ctx, +1, tv(4, 2, Value::Integer(7)));
  CHECK(r.aggregate_state.dirty.size() == 2);
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(r.aggregate_state.dirty.empty());
  CHECK(identical(shown(r.result, ints({1})), ints({1, 3, 17, 3, 9})));
  CHECK(identical(shown(r.result, ints({2})), ints({2, 1, 7, 7, 7})));
  // Deleting the group's MIN and MAX: the multiset still knows the rest.
  feed_aggregate(r, ctx, -1, tv(3, 1, Value::Integer(9)));
  feed_aggregate(r, ctx, -1, tv(2, 1, Value::Integer(3)));
  feed_aggregate(r, ctx, -1, tv(4, 2, Value::Integer(7)));
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(identical(shown(r.result, ints({1})), ints({1, 1, 5, 5, 5})));
  CHECK(r.result.find(key_of(ints({2}))) == nullptr);
  CHECK(r.aggregate_state.groups.count(key_of(ints({2}))) == 0);
  CHECK(r.lookup.lookups() == 0);  // COUNT/SUM/MIN/MAX never read SQLite here
}

TEST_CASE("aggregate: SUM overflow is tracked per group and clears when it no longer holds", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT grp, sum(v) FROM t GROUP BY grp");
  auto ctx = r.at(r.version());
  const int64_t big = int64_t{1} << 62;
  feed_aggregate(r, ctx, +1, tv(1, 1, Value::Integer(big)));
  feed_aggregate(r, ctx, +1, tv(2, 1, Value::Integer(big)));
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(r.aggregate_state.overflow_groups == 1);
  CHECK(shown(r.result, ints({1}))[1].is_null());
  feed_aggregate(r, ctx, +1, tv(3, 1, Value::Real(0.5)));  // a REAL input makes the sum REAL
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(r.aggregate_state.overflow_groups == 0);
  CHECK(shown(r.result, ints({1}))[1].is_real());
  feed_aggregate(r, ctx, -1, tv(3, 1, Value::Real(0.5)));
  feed_aggregate(r, ctx, -1, tv(2, 1, Value::Integer(big)));
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(r.aggregate_state.overflow_groups == 0);
  CHECK(identical(shown(r.result, ints({1})), ints({1, big})));
}

TEST_CASE("aggregate: MIN over one table keeps a few extremes and refills them from SQLite", "[ivm][operators]") {
  ivm::ViewOptions options;
  options.extreme_buffer = 2;
  OperatorRig r(kSchema, {"t"}, "SELECT grp, min(v), max(v) FROM t GROUP BY grp", options);
  std::vector<Row> rows;
  for (int64_t i = 1; i <= 6; ++i) {
    rows.push_back(tv(i, 1, Value::Integer(i * 10)));
    r.node.write("INSERT INTO t(id, grp, v) VALUES (?, ?, ?)", rows.back());
  }
  auto ctx = r.at(r.version());
  for (const auto& row : rows) feed_aggregate(r, ctx, +1, row);
  const size_t min_slot = slot(*r.plan, ivm::AggregateSpec::Func::min);
  const size_t max_slot = slot(*r.plan, ivm::AggregateSpec::Func::max);
  const ivm::Group& g = r.aggregate_state.groups.at(key_of(ints({1})));
  // More than 2 x 2 values: the MIN keeps the 2 smallest, the MAX the largest ones.
  CHECK(g.accs[min_slot].values.size() == 2);
  CHECK_FALSE(g.accs[min_slot].complete);
  CHECK(identical(g.accs[min_slot].values.rbegin()->first, Value::Integer(20)));
  CHECK_FALSE(g.accs[max_slot].complete);
  CHECK(identical(g.accs[max_slot].values.rbegin()->first, Value::Integer(60)));
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  CHECK(identical(shown(r.result, ints({1})), ints({1, 10, 60})));
  // Both kept minima leave: the next flush reads the next ones at the new position.
  r.node.write("DELETE FROM t WHERE id IN (1, 2)");
  ctx = r.at(r.version());
  feed_aggregate(r, ctx, -1, rows[0]);
  feed_aggregate(r, ctx, -1, rows[1]);
  CHECK(r.lookup.lookups() == 0);
  REQUIRE(r.aggregate.flush(ctx, r.aggregate_state, r.result).ok());
  r.lookup.end();
  CHECK(r.lookup.lookups() == 1);
  CHECK(identical(shown(r.result, ints({1})), ints({1, 30, 60})));
  CHECK(identical(r.aggregate_state.groups.at(key_of(ints({1}))).accs[min_slot].values.begin()->first,
                  Value::Integer(30)));
}

TEST_CASE("distinct: multiplicities and spellings decide the row shown", "[ivm][operators]") {
  OperatorRig r(kSchema, {"t"}, "SELECT DISTINCT v FROM t");
  auto ctx = r.at(r.version());
  const std::string key = key_of({Value::Integer(1)});
  feed_distinct(r, ctx, +1, tv(1, 0, Value::Real(1.0)));
  feed_distinct(r, ctx, +1, tv(2, 0, Value::Integer(1)));
  feed_distinct(r, ctx, +1, tv(3, 0, Value::Integer(1)));
  REQUIRE(r.distinct_state.rows.count(key) == 1);
  CHECK(r.distinct_state.rows.at(key).count == 3);
  CHECK(r.distinct_state.rows.at(key).variants.size() == 2);  // 1 and 1.0
  REQUIRE(r.result.held() == 1);
  CHECK(identical(r.result.find(key)->row, ints({1})));  // the integer spelling sorts first
  feed_distinct(r, ctx, -1, tv(2, 0, Value::Integer(1)));
  feed_distinct(r, ctx, -1, tv(3, 0, Value::Integer(1)));
  CHECK(r.distinct_state.rows.at(key).count == 1);
  REQUIRE(r.result.find(key) != nullptr);
  CHECK(identical(r.result.find(key)->row, Row{Value::Real(1.0)}));  // the other spelling remains
  feed_distinct(r, ctx, -1, tv(1, 0, Value::Real(1.0)));
  CHECK(r.distinct_state.rows.empty());
  CHECK(r.result.held() == 0);
}

}  // namespace
}  // namespace tandem::test
