// A watcher's copy of a result follows ViewChanges (positions when ordered, keys otherwise).
#include <catch2/catch.hpp>

#include "runtime/ivm/result_list.hpp"
#include "runtime/sqlite/proto_value.hpp"

using namespace tandem;

namespace {

view::RowChange row_change(view::RowChange::Kind kind, const std::string& key, int64_t value, int64_t position = -1) {
  view::RowChange c;
  c.set_kind(kind);
  c.set_key(key);
  to_proto(Row{Value::Integer(value)}, c.mutable_row());
  c.set_position(position);
  return c;
}

std::vector<int64_t> values(const ivm::ResultList& l) {
  std::vector<int64_t> out;
  for (const auto& [key, row] : l.rows()) out.push_back(row[0].integer());
  return out;
}

}  // namespace

TEST_CASE("a result list applies ordered and unordered changes", "[ivm][result]") {
  view::WatchResponse initial;
  initial.add_columns("v");
  initial.set_ordered(true);
  for (int64_t v : {10, 20, 30}) {
    auto* r = initial.add_rows();
    r->set_key("k" + std::to_string(v));
    to_proto(Row{Value::Integer(v)}, r->mutable_row());
  }
  ivm::ResultList l;
  l.reset(initial);
  REQUIRE(l.apply(row_change(view::RowChange::ADDED, "k15", 15, 1)).ok());
  CHECK(values(l) == std::vector<int64_t>{10, 15, 20, 30});
  REQUIRE(l.apply(row_change(view::RowChange::CHANGED, "k10", 35, 3)).ok());  // moves to the end
  CHECK(values(l) == std::vector<int64_t>{15, 20, 30, 35});
  REQUIRE(l.apply(row_change(view::RowChange::REMOVED, "k20", 20, 1)).ok());
  CHECK(values(l) == std::vector<int64_t>{15, 30, 35});
  CHECK_FALSE(l.apply(row_change(view::RowChange::REMOVED, "nope", 0, 0)).ok());
  CHECK(values(l) == std::vector<int64_t>{15, 30, 35});

  initial.set_ordered(false);
  l.reset(initial);
  REQUIRE(l.apply(row_change(view::RowChange::CHANGED, "k20", 21)).ok());  // unordered: in place
  REQUIRE(l.apply(row_change(view::RowChange::ADDED, "k5", 5)).ok());      // unordered: at the end
  CHECK(values(l) == std::vector<int64_t>{10, 21, 30, 5});
}
