// The operators of runtime/ivm/operators wired by hand, without a LiveView: a node (ivm_test_util's
// Node), a view connection, one plan, the operators and their state, and the DeltaContext a
// test builds for each step. Tests call the operators' apply directly and check their state.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/ivm/operators/aggregate.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/distinct.hpp"
#include "runtime/ivm/operators/downstream.hpp"
#include "runtime/ivm/operators/join.hpp"
#include "runtime/ivm/operators/lookup.hpp"
#include "runtime/ivm/operators/overlay.hpp"
#include "runtime/ivm/operators/result_store.hpp"
#include "runtime/ivm/operators/window.hpp"
#include "tests/ivm/ivm_test_util.hpp"

namespace tandem::test {

struct OperatorRig {
  OperatorRig(const std::string& schema, const std::vector<std::string>& tables, const std::string& sql,
              ivm::ViewOptions opts = {})
      : node(dir.path, "rig", schema, tables),
        db(node.open_connection()),
        plan(must_bind(*db, sql)),
        options(opts),
        lookup(*db, &node.journal(), plan->params),
        join(*plan),
        join_state(join.make_state()),
        aggregate(*plan, options),
        distinct(*plan),
        window(*plan, options),
        overlay(*plan, join) {
    std::vector<bool> desc;
    for (const auto& k : plan->order) desc.push_back(k.descending);
    bool keys_on_root = true;
    for (const auto& k : plan->order) keys_on_root = keys_on_root && (k.expr.occurrences() & ~uint64_t{1}) == 0;
    bool prefix = !plan->aggregate && !plan->distinct && ivm::internally_ordered(*plan) && plan->limit >= 0 && keys_on_root;
    result.init(ivm::internally_ordered(*plan), plan->ordered(), desc, plan->offset, plan->limit, prefix);
    // Like a view: a registered reader keeps the journal's batches for compensation.
    node.journal().register_reader(node.journal().last_version());
    downstream = ivm::Downstream{plan.get(), prefix, &aggregate, &aggregate_state, &distinct, &distinct_state, &result};
  }

  // A context at db_version `applied`, outside any batch.
  ivm::DeltaContext at(int64_t applied) {
    ivm::DeltaContext ctx;
    ctx.applied = applied;
    ctx.overlay = &overlay_state.tables;
    ctx.lookup = &lookup;
    ctx.downstream = &downstream;
    return ctx;
  }
  int64_t version() { return node.store().db_version(); }

  // The visible rows of the result store, in its order.
  std::vector<Row> rows() const {
    std::vector<Row> out;
    result.for_each_visible([&](const ivm::Entry& e) { out.push_back(e.row); });
    return out;
  }

  TempDir dir;
  Node node;
  std::unique_ptr<Database> db;
  std::shared_ptr<const ivm::Plan> plan;
  ivm::ViewOptions options;
  ivm::Lookup lookup;
  ivm::JoinOperator join;
  ivm::JoinState join_state;
  ivm::AggregateOperator aggregate;
  ivm::AggregateState aggregate_state;
  ivm::DistinctOperator distinct;
  ivm::DistinctState distinct_state;
  ivm::WindowOperator window;
  ivm::OverlayOperator overlay;
  ivm::OverlayState overlay_state;
  ivm::ResultStore result;
  ivm::Downstream downstream;
};

inline Row ints(std::initializer_list<int64_t> values) {
  Row r;
  for (int64_t v : values) r.push_back(Value::Integer(v));
  return r;
}

inline std::string key_of(const Row& values) {
  std::string k;
  for (const auto& v : values) ivm::encode_canonical(v, &k);
  return k;
}

}  // namespace tandem::test
