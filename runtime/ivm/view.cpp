// LiveView's driver: set-up, the batch loop and the overlay operations, calling the operators
// of runtime/ivm/operators/ (docs/ivm.md, "Code layout"). The invariants the view keeps, and
// where each is kept:
//  1. Position. While batch V's delta i is processed, the operators hold the result of the
//     query over every batch <= V-1 and deltas 0..i-1 of V, with the overlay's displayed rows
//     in place of the base rows of touched keys. The driver carries the position in the
//     DeltaContext it builds per operation (operators/delta_context.hpp).
//  2. Lookups. Every read from SQLite happens in one read transaction per operation that
//     first reads tandem_meta.db_version (W), and is brought back to the position of (1) with
//     the journal's deltas (operators/lookup.hpp). The driver ends the transaction when the
//     operation ends, successful or not.
//  3. Results. The result store holds every visible row, or a prefix plus a boundary for
//     windows (operators/result_store.hpp, operators/window.hpp); changes are recorded against
//     the state at the last flush, and the driver flushes once per successful operation.
// An operation that fails leaves the view in error (error_status_) until rehydrate().
#include "runtime/ivm/view.hpp"

#include <algorithm>
#include <map>
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

namespace tandem::ivm {

class LiveView::Impl {
 public:
  Impl(Database& db, DeltaJournal* journal, std::shared_ptr<const Plan> plan, ViewOptions options)
      : db_(db),
        journal_(journal),
        plan_(std::move(plan)),
        options_(options),
        lookup_(db, journal, plan_->params),
        join_(*plan_),
        join_state_(join_.make_state()),
        aggregate_(*plan_, options_),
        distinct_(*plan_),
        window_(*plan_, options_),
        overlay_(*plan_, join_) {}

  ~Impl() {
    lookup_.end();
    if (journal_ && reader_ > 0) journal_->unregister_reader(reader_);
  }

  // ---------------------------------------------------------------- set-up
  Status init() {
    const Plan& p = *plan_;
    bool keys_on_root = true;
    for (const auto& k : p.order) keys_on_root = keys_on_root && (k.expr.occurrences() & ~uint64_t{1}) == 0;
    prefix_mode_ = !p.aggregate && !p.distinct && internally_ordered(p) && p.limit >= 0 && keys_on_root;
    downstream_ = Downstream{plan_.get(), prefix_mode_, &aggregate_, &aggregate_state_, &distinct_, &distinct_state_,
                             &result_};
    init_result();
    if (journal_) reader_ = journal_->register_reader(journal_->last_version());
    return hydrate();
  }

  void init_result() {
    const Plan& p = *plan_;
    std::vector<bool> desc;
    for (const auto& k : p.order) desc.push_back(k.descending);
    result_.init(internally_ordered(p), p.ordered(), desc, p.offset, p.limit, prefix_mode_);
  }

  // The context of an operation at the view's position outside any batch.
  DeltaContext context() {
    DeltaContext ctx;
    ctx.applied = applied_;
    ctx.overlay = &overlay_state_.tables;
    ctx.lookup = &lookup_;
    ctx.downstream = &downstream_;
    return ctx;
  }

  Status hydrate() {
    result_.set_tracking(false);
    TANDEM_RETURN_IF_ERROR(lookup_.begin_at_hydration());
    hydrated_ = applied_ = lookup_.read_version();
    DeltaContext ctx = context();
    Status st = hydrate_rows(ctx);
    if (st.ok()) st = aggregate_.flush(ctx, aggregate_state_, result_);
    if (st.ok() && !overlay_state_.pending.empty()) {
      for (auto& [t, ov] : overlay_state_.tables) { ov.base.clear(); ov.graph.clear(); }
      st = overlay_.refold(ctx, overlay_state_, join_state_);
      if (st.ok()) st = aggregate_.flush(ctx, aggregate_state_, result_);
    }
    lookup_.end();
    if (!st.ok()) return st;
    if (journal_) journal_->reset_reader(reader_, applied_);
    std::vector<RowChangeRecord> ignored;
    result_.flush(&ignored);
    result_.set_tracking(true);
    return Status::Ok();
  }

  // Runs the query's tuple SQL in the hydration transaction and sends every tuple downstream
  // (windows read only their prefix).
  Status hydrate_rows(const DeltaContext& ctx) {
    const Plan& p = *plan_;
    const size_t n = p.occurrences.size();
    if (prefix_mode_) return window_.refill(ctx, result_, join_, join_state_);
    if (p.aggregate && p.group_keys.empty()) aggregate_.touch_global_group(aggregate_state_);
    TANDEM_ASSIGN_OR_RETURN(auto st, db_.prepare(p.tuple_sql()));
    for (size_t i = 0; i < p.params.size(); ++i) {
      if (static_cast<int>(i) >= st->parameter_count()) break;
      TANDEM_RETURN_IF_ERROR(st->bind(static_cast<int>(i + 1), p.params[i]));
    }
    std::vector<Row> rows(n);
    Tuple tuple(n);
    for (size_t i = 0; i < n; ++i) rows[i].assign(p.occurrences[i].table->columns.size(), Value());
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
      if (!has) break;
      int col = 0;
      for (size_t i = 0; i < n; ++i)
        for (int c : p.occurrences[i].needed_columns) rows[i][static_cast<size_t>(c)] = st->column(col++);
      for (size_t i = 0; i < n; ++i) tuple[i] = &rows[i];
      for (size_t i = 0; i < n; ++i) {
        if (!p.occurrences[i].nullable) continue;
        if (st->column(col++).is_null()) tuple[i] = nullptr;
      }
      downstream_.tuple(ctx, +1, tuple);
    }
    return Status::Ok();
  }

  // ---------------------------------------------------------------- batches
  Status apply(const BatchPtr& batch) {
    if (!batch) return Status::InvalidArgument("null batch");
    if (!error_status_.ok()) return error_status_;
    if (batch->db_version <= applied_) return Status::Ok();
    if (journal_) {
      // Compensation reads the journal after this batch: it must be the journal's next one.
      auto next = journal_->next_version(applied_);
      if (!next.ok()) return next.status();
      if (*next != batch->db_version)
        return Status::InvalidArgument("view at db_version " + std::to_string(applied_) + " cannot apply batch " +
                                       std::to_string(batch->db_version) + ": the journal's next batch is " +
                                       std::to_string(*next));
    }
    DeltaContext ctx = context();
    ctx.batch = batch.get();
    Status st;
    for (ctx.index = 0; st.ok() && ctx.index < batch->deltas.size(); ++ctx.index)
      st = overlay_.apply(ctx, batch->deltas[ctx.index], overlay_state_, join_state_);
    if (st.ok()) {
      ctx.index = batch->deltas.size();
      if (overlay_.retire(*batch, overlay_state_)) st = overlay_.refold(ctx, overlay_state_, join_state_);
    }
    if (st.ok()) st = aggregate_.flush(ctx, aggregate_state_, result_);
    if (st.ok() && prefix_mode_) st = window_.apply(ctx, result_, join_, join_state_);
    lookup_.end();
    if (!st.ok()) {
      error_status_ = st;
      return st;
    }
    applied_ = batch->db_version;
    if (journal_) journal_->advance(reader_, applied_);
    result_.flush(&changes_);
    return Status::Ok();
  }

  // ---------------------------------------------------------------- overlay
  Status add_pending(const std::string& id, const std::vector<worker::Mutation>& mutations, const std::string& origin) {
    if (!error_status_.ok()) return error_status_;
    DeltaContext ctx = context();
    TANDEM_RETURN_IF_ERROR(overlay_.add(ctx, id, mutations, origin, overlay_state_));
    Status st = overlay_.refold(ctx, overlay_state_, join_state_);
    if (st.ok()) st = finish_operation(ctx);
    else {
      overlay_state_.pending.pop_back();
      lookup_.end();
    }
    return st;
  }

  Status settle(const std::string& id, bool success, int64_t version) {
    if (!error_status_.ok()) return error_status_;
    auto& pending = overlay_state_.pending;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i].id != id) continue;
      if (success && version > applied_) {
        pending[i].success_version = version;  // retired when the view reaches `version`
        return Status::Ok();
      }
      pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
      DeltaContext ctx = context();
      Status st = overlay_.refold(ctx, overlay_state_, join_state_);
      if (st.ok()) st = finish_operation(ctx);
      else lookup_.end();
      return st;
    }
    return Status::Ok();  // already retired by its batch, or never shown here
  }

  Status finish_operation(const DeltaContext& ctx) {
    Status st = aggregate_.flush(ctx, aggregate_state_, result_);
    if (st.ok() && prefix_mode_) st = window_.apply(ctx, result_, join_, join_state_);
    lookup_.end();
    if (!st.ok()) {
      error_status_ = st;
      return st;
    }
    result_.flush(&changes_);
    return Status::Ok();
  }

  // ---------------------------------------------------------------- accessors
  std::vector<RowChangeRecord> take_changes() { return std::move(changes_); }
  std::optional<Status> error() const {
    if (!error_status_.ok()) return error_status_;
    if (aggregate_state_.overflow_groups > 0) return Status::InvalidArgument("integer overflow");
    return std::nullopt;
  }

  std::vector<std::pair<std::string, Row>> keyed_rows() const {
    std::vector<std::pair<std::string, Row>> out;
    result_.for_each_visible([&](const Entry& e) { out.emplace_back(e.key, e.row); });
    return out;
  }

  size_t memory_bytes() const {
    size_t n = result_.bytes() + aggregate_.memory_bytes(aggregate_state_) + distinct_.memory_bytes(distinct_state_);
    for (const auto& [t, ov] : overlay_state_.tables) n += (ov.base.size() + ov.graph.size()) * 128;
    return n;
  }

  // Drops the operators' state (pending mutations stay) before a rehydration.
  void reset_operators() {
    result_ = ResultStore();
    aggregate_state_ = AggregateState();
    distinct_state_ = DistinctState();
    init_result();
  }

  Database& db_;
  DeltaJournal* journal_;
  std::shared_ptr<const Plan> plan_;
  ViewOptions options_;
  bool prefix_mode_ = false;
  int64_t reader_ = 0;
  int64_t applied_ = 0, hydrated_ = 0;
  // The compensated reader (its read transaction spans one operation).
  Lookup lookup_;
  // Operators (immutable) and their state.
  JoinOperator join_;
  JoinState join_state_;
  AggregateOperator aggregate_;
  AggregateState aggregate_state_;
  DistinctOperator distinct_;
  DistinctState distinct_state_;
  WindowOperator window_;
  OverlayOperator overlay_;
  OverlayState overlay_state_;
  ResultStore result_;
  Downstream downstream_;
  Status error_status_;
  std::vector<RowChangeRecord> changes_;

  friend class LiveView;
};

// ------------------------------------------------------------------ LiveView
Result<std::unique_ptr<LiveView>> LiveView::create(Database& db, DeltaJournal* journal, std::shared_ptr<const Plan> plan,
                                                   ViewOptions options) {
  if (!plan) return Status::InvalidArgument("no plan");
  auto impl = std::make_unique<Impl>(db, journal, std::move(plan), options);
  TANDEM_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<LiveView>(new LiveView(std::move(impl)));
}

LiveView::LiveView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LiveView::~LiveView() = default;

Status LiveView::apply(const BatchPtr& batch) { return impl_->apply(batch); }

Status LiveView::catch_up() {
  if (!impl_->journal_) return Status::Ok();
  // A gap in the journal (DeltaJournal::mark_gap) must be seen even when no batch follows it.
  if (auto next = impl_->journal_->next_version(impl_->applied_); !next.ok()) return next.status();
  for (const auto& b : impl_->journal_->since(impl_->applied_)) TANDEM_RETURN_IF_ERROR(impl_->apply(b));
  return Status::Ok();
}

Status LiveView::rehydrate() {
  auto& i = *impl_;
  i.error_status_ = Status::Ok();
  std::vector<RowChangeRecord> before_changes = std::move(i.changes_);
  auto old_rows = i.keyed_rows();
  i.reset_operators();  // pending mutations stay and are shown again
  Status st = i.hydrate();
  // Report the whole result as replaced.
  i.changes_ = std::move(before_changes);
  for (int64_t k = static_cast<int64_t>(old_rows.size()) - 1; k >= 0; --k)
    i.changes_.push_back({RowChangeRecord::Kind::removed, old_rows[static_cast<size_t>(k)].first,
                          old_rows[static_cast<size_t>(k)].second, i.plan_->ordered() ? k : -1, -1});
  auto now = i.keyed_rows();
  for (size_t k = 0; k < now.size(); ++k)
    i.changes_.push_back({RowChangeRecord::Kind::added, now[k].first, now[k].second,
                          i.plan_->ordered() ? static_cast<int64_t>(k) : -1, -1});
  return st;
}

Status LiveView::add_pending(const std::string& id, const std::vector<worker::Mutation>& m, const std::string& origin) {
  return impl_->add_pending(id, m, origin);
}
Status LiveView::settle(const std::string& id, bool success, int64_t v) { return impl_->settle(id, success, v); }
size_t LiveView::pending_count() const { return impl_->overlay_state_.pending.size(); }
const std::vector<std::string>& LiveView::columns() const { return impl_->plan_->column_names; }
bool LiveView::ordered() const { return impl_->plan_->ordered(); }
std::vector<Row> LiveView::rows() const {
  std::vector<Row> out;
  impl_->result_.for_each_visible([&](const Entry& e) { out.push_back(e.row); });
  return out;
}
std::vector<std::pair<std::string, Row>> LiveView::keyed_rows() const { return impl_->keyed_rows(); }
std::optional<Status> LiveView::error() const { return impl_->error(); }
std::vector<RowChangeRecord> LiveView::take_changes() { return impl_->take_changes(); }
int64_t LiveView::applied_version() const { return impl_->applied_; }
int64_t LiveView::hydrated_version() const { return impl_->hydrated_; }
size_t LiveView::memory_bytes() const { return impl_->memory_bytes(); }
int64_t LiveView::lookup_count() const { return impl_->lookup_.lookups(); }
int64_t LiveView::compensated_lookup_count() const { return impl_->lookup_.compensated(); }

}  // namespace tandem::ivm
