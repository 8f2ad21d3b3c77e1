// Lookup: the compensated reader. Every read a view makes from SQLite (join partners, window
// refills, MIN/MAX refills, an overlay key's base row) goes through fetch().
//
// State: the operation's read transaction on the view's own connection, the version W it read
// from tandem_meta.db_version, and the journal's batches (V, W] fetched for compensation.
// Invariant: rows returned are exactly the rows at the context's position (delta_context.hpp):
// rows read at W >= V are brought back by undoing the journal's deltas after the position
// (the current batch from delta i, then the batches (V, W]), then overlaid with the overlay's
// displayed rows of touched keys. A lookup with LIMIT n must ask for n + later_delta_count()
// rows so that its window stays complete after compensation.
// Threading: one owner (the view's thread); the transaction spans one operation and the
// driver ends it with end().
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/plan.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem::ivm {

// "SELECT every column of o FROM its table AS its name".
std::string select_columns(const Occurrence& o);

class Lookup {
 public:
  // `db` and `journal` (may be null: then the writer must never run ahead) outlive the Lookup;
  // the plan's parameters are bound first in every statement (?1..?n).
  Lookup(Database& db, DeltaJournal* journal, const Row& plan_params) : db_(db), journal_(journal), params_(plan_params) {}
  ~Lookup() { end(); }
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;

  // Hydration: opens the read transaction and takes its version as the view's position.
  Status begin_at_hydration();
  // Opens the read transaction on first use in an operation; fails if SQLite is behind the
  // position, or ahead without a journal to compensate with.
  Status ensure(const DeltaContext& ctx);
  // Ends the operation's read transaction (no-op when none is open).
  void end();
  int64_t read_version() const { return read_version_; }

  // Rows of `t` matching `pred` at the context's position: the rows `sql` returns at W
  // (binds follow the plan's parameters), compensated back, then overlaid when `overrides`.
  // `include_current`: the change being processed (batch delta or overlay change) counts as
  // applied; otherwise its effect is undone (the lookup sees the state before it). `sql_rows` receives how many rows SQLite returned, `last_raw` the last of them.
  Status fetch(const DeltaContext& ctx, const std::string& sql, const Row& binds, const TableSchema& t,
               const std::function<bool(const Row&)>& pred, bool include_current, bool overrides,
               std::vector<Row>* out, int64_t* sql_rows = nullptr, Row* last_raw = nullptr);
  // The confirmed row of a key at the position (no overlay).
  Result<std::optional<Row>> base_row(const DeltaContext& ctx, const TableSchema& t, const Row& pk_values);
  // One more than the deltas after the position and the overlay keys of `table`: how many
  // extra rows a LIMITed lookup must read.
  size_t later_delta_count(const DeltaContext& ctx, const std::string& table) const;
  // The value of a constant SQL expression (a column DEFAULT) inside the read transaction.
  Result<Value> evaluate(const DeltaContext& ctx, const std::string& expression);

  Database& database() { return db_; }
  size_t param_count() const { return params_.size(); }
  int64_t lookups() const { return lookups_; }
  int64_t compensated() const { return compensated_; }

 private:
  Result<int64_t> read_db_version();
  template <class F>
  void for_each_later_delta(const DeltaContext& ctx, const std::string& table, bool include_current, F&& f) const {
    if (ctx.batch) {
      for (size_t i = ctx.index + (include_current ? 1 : 0); i < ctx.batch->deltas.size(); ++i)
        if (ctx.batch->deltas[i].table == table) f(ctx.batch->deltas[i]);
    }
    for (const auto& b : comp_batches_)
      for (const auto& d : b->deltas)
        if (d.table == table) f(d);
  }

  Database& db_;
  DeltaJournal* journal_;
  const Row& params_;
  bool in_read_ = false;
  int64_t read_version_ = 0;
  std::vector<BatchPtr> comp_batches_;  // (position, W]
  int64_t lookups_ = 0;
  int64_t compensated_ = 0;
};

}  // namespace tandem::ivm
