// LiveView implementation. Read docs/ivm.md first; the invariants this file keeps:
//  1. Position. While batch V's delta i is processed, the operators hold the result of the
//     query over: every batch <= V-1, deltas 0..i-1 of V (and delta i for occurrences that
//     precede the one being processed, for self-joins), with the overlay's displayed rows in
//     place of the base rows of touched keys (`graph` maps below).
//  2. Lookups. Every read from SQLite happens in one read transaction per operation that
//     first reads tandem_meta.db_version (W). The rows read are brought back to the position
//     of (1) by undoing the journal's deltas after it (current batch from delta i, then batches
//     (V, W]), then overlaid with the graph's rows for touched keys. A lookup with LIMIT n
//     fetches n + (number of such deltas and overrides) rows so the window stays complete.
//  3. Results. The result store holds every visible row (and, for single-table ordered
//     windows, only a prefix of the order plus a boundary, with `complete` telling whether the
//     prefix is the whole result). Changes are recorded against the state at the last flush.
#include "runtime/ivm/view.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include "runtime/query/render.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/mutation_rules.hpp"

namespace tandem::ivm {

void encode_identical(const Value& v, std::string* out) {
  auto put64 = [out](uint64_t u) {
    for (int s = 56; s >= 0; s -= 8) out->push_back(static_cast<char>((u >> s) & 0xff));
  };
  switch (v.type()) {
    case Value::Type::null: out->push_back('N'); return;
    case Value::Type::integer: out->push_back('I'); put64(static_cast<uint64_t>(v.integer())); return;
    case Value::Type::real: {
      out->push_back('R');
      uint64_t u;
      double d = v.real();
      std::memcpy(&u, &d, 8);
      put64(u);
      return;
    }
    case Value::Type::text:
    case Value::Type::blob:
      out->push_back(v.is_text() ? 'T' : 'B');
      put64(v.bytes().size());
      out->append(v.bytes());
      return;
  }
}

void encode_canonical(const Value& v, std::string* out) {
  if (v.is_real()) {
    double d = v.real();
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && std::trunc(d) == d) {
      encode_identical(Value::Integer(static_cast<int64_t>(d)), out);
      return;
    }
  }
  encode_identical(v, out);
}

namespace {

using Tuple = std::vector<const Row*>;

struct ReadRows {
  std::vector<Row> rows;
};

// A result row with its sort key (ORDER BY values followed by the tie-break values).
struct Entry {
  std::string key;
  Row row;
  Row order;
};

struct EntryLess {
  std::vector<bool> desc;  // per ORDER BY value; tie-break values ascend
  bool operator()(const Entry* a, const Entry* b) const {
    size_t n = std::min(a->order.size(), b->order.size());
    for (size_t i = 0; i < n; ++i) {
      int c = compare_sqlite(a->order[i], b->order[i]);
      if (c != 0) return i < desc.size() && desc[i] ? c > 0 : c < 0;
    }
    return a->key < b->key;
  }
};

// An ordered index with ranks in O(log n) (libstdc++'s policy-based red-black tree), so that
// ordered views report positions without walking the result.
using OrderTree = __gnu_pbds::tree<Entry*, __gnu_pbds::null_type, EntryLess, __gnu_pbds::rb_tree_tag,
                                   __gnu_pbds::tree_order_statistics_node_update>;

size_t row_bytes(const Row& r) {
  size_t n = sizeof(Row) + r.capacity() * sizeof(Value);
  for (const auto& v : r) n += v.footprint() - sizeof(Value);
  return n;
}

bool same_row(const std::optional<Row>& a, const std::optional<Row>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || identical(*a, *b);
}

// ---- the result store ----
class ResultStore {
 public:
  void init(bool ordered_internally, bool report_positions, std::vector<bool> desc, int64_t offset, int64_t limit,
            bool prefix_mode) {
    ordered_ = ordered_internally;
    positions_ = report_positions;
    less_ = EntryLess{std::move(desc)};
    order_ = OrderTree(less_);
    offset_ = offset;
    limit_ = limit;
    prefix_ = prefix_mode;
    complete_ = !prefix_mode;
    // Ordered views without LIMIT/OFFSET show the whole order: their changes are emitted per
    // operation with ranks from the tree. Windows are diffed (O(window)) at each flush.
    incremental_ = positions_ && limit_ < 0 && offset_ == 0;
  }

  bool prefix() const { return prefix_; }
  bool complete() const { return complete_; }
  void set_complete(bool c) { complete_ = c; }
  size_t held() const { return entries_.size(); }
  const Entry* last() const { return order_.empty() ? nullptr : *std::prev(order_.end()); }
  EntryLess less() const { return less_; }

  // Prefix mode: a row beyond the last held one is outside the known prefix.
  bool admits(const Entry& e) const {
    if (!prefix_ || complete_ || order_.empty()) return !prefix_ || complete_;
    return less_(&e, *std::prev(order_.end()));
  }

  void upsert(std::string key, Row row, Row order) {
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      note_before(it->first, &it->second->row);
      if (incremental_ && tracking_) flush_deferred();
      int64_t old_rank = incremental_ && tracking_ ? static_cast<int64_t>(order_.order_of_key(it->second.get())) : -1;
      bool same = identical(it->second->row, row);
      if (ordered_) order_.erase(it->second.get());
      bytes_ -= entry_bytes(*it->second);
      it->second->row = std::move(row);
      it->second->order = std::move(order);
      bytes_ += entry_bytes(*it->second);
      if (ordered_) order_.insert(it->second.get());
      dirty_ = true;
      if (old_rank >= 0) {
        int64_t rank = static_cast<int64_t>(order_.order_of_key(it->second.get()));
        if (!same || rank != old_rank) ops_.push_back({RowChangeRecord::Kind::changed, key, it->second->row, rank, old_rank});
      }
      return;
    }
    note_before(key, nullptr);
    auto e = std::make_unique<Entry>();
    e->key = std::move(key);
    e->row = std::move(row);
    e->order = std::move(order);
    Entry* raw = e.get();
    bytes_ += entry_bytes(*raw);
    std::string k = raw->key;
    entries_.emplace(std::move(k), std::move(e));
    if (ordered_) order_.insert(raw);
    dirty_ = true;
    if (incremental_ && tracking_) {
      int64_t rank = static_cast<int64_t>(order_.order_of_key(raw));
      if (deferred_ && deferred_->key == raw->key) {
        // Removed and added again in one step: one CHANGED (remove at old, insert at new).
        if (!identical(deferred_->row, raw->row) || deferred_->position != rank)
          ops_.push_back({RowChangeRecord::Kind::changed, raw->key, raw->row, rank, deferred_->position});
        deferred_.reset();
      } else {
        flush_deferred();
        ops_.push_back({RowChangeRecord::Kind::added, raw->key, raw->row, rank, -1});
      }
    }
  }

  void erase(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    note_before(key, &it->second->row);
    if (incremental_ && tracking_) {
      flush_deferred();
      deferred_ = RowChangeRecord{RowChangeRecord::Kind::removed, key, it->second->row,
                                  static_cast<int64_t>(order_.order_of_key(it->second.get())), -1};
    }
    if (ordered_) order_.erase(it->second.get());
    bytes_ -= entry_bytes(*it->second);
    entries_.erase(it);
    dirty_ = true;
  }

  // Prefix mode: drops rows past `keep` (the prefix stays exact, only shorter).
  void trim(size_t keep) {
    while (entries_.size() > keep) {
      Entry* e = *std::prev(order_.end());
      std::string k = e->key;
      erase(k);
      complete_ = false;
    }
  }

  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  const Entry* find(const std::string& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : it->second.get();
  }

  template <class F>
  void for_each_visible(F&& f) const {
    if (!ordered_) {
      for (const auto& [k, e] : entries_) f(*e);
      return;
    }
    int64_t i = 0, shown = 0;
    for (const Entry* e : order_) {
      if (i++ < offset_) continue;
      if (limit_ >= 0 && shown >= limit_) break;
      ++shown;
      f(*e);
    }
  }

  void set_tracking(bool on) {
    tracking_ = on;
    ops_.clear();
    deferred_.reset();
    if (on && positions_ && !incremental_) snapshot_visible();
  }

  // Appends the changes since the last flush to `out`.
  void flush(std::vector<RowChangeRecord>* out) {
    if (!tracking_) { before_.clear(); dirty_ = false; return; }
    if (incremental_) {
      flush_deferred();
      for (auto& op : ops_) out->push_back(std::move(op));
      ops_.clear();
      before_.clear();
      dirty_ = false;
      return;
    }
    if (!dirty_) { before_.clear(); return; }
    dirty_ = false;
    if (!positions_) {
      if (!ordered_) {
        for (auto& [key, before] : before_) {
          const Entry* now = find(key);
          emit_unordered(key, before, now ? std::optional<Row>(now->row) : std::nullopt, out);
        }
      } else {
        // Unordered LIMIT: compare visible sets.
        std::unordered_map<std::string, Row> now;
        for_each_visible([&](const Entry& e) { now.emplace(e.key, e.row); });
        for (const auto& [key, row] : visible_set_)
          if (!now.count(key)) out->push_back({RowChangeRecord::Kind::removed, key, row, -1, -1});
        for (const auto& [key, row] : now) {
          auto it = visible_set_.find(key);
          if (it == visible_set_.end()) out->push_back({RowChangeRecord::Kind::added, key, row, -1, -1});
          else if (!identical(it->second, row)) out->push_back({RowChangeRecord::Kind::changed, key, row, -1, -1});
        }
        visible_set_ = std::move(now);
      }
      before_.clear();
      return;
    }
    before_.clear();
    diff_visible(out);
  }

  size_t bytes() const { return bytes_ + entries_.size() * 64; }

 private:
  void flush_deferred() {
    if (!deferred_) return;
    ops_.push_back(std::move(*deferred_));
    deferred_.reset();
  }

  static size_t entry_bytes(const Entry& e) { return sizeof(Entry) + e.key.capacity() + row_bytes(e.row) + row_bytes(e.order); }

  void note_before(const std::string& key, const Row* row) {
    if (!tracking_ || positions_ || ordered_) return;
    if (before_.count(key)) return;
    before_.emplace(key, row ? std::optional<Row>(*row) : std::nullopt);
  }

  static void emit_unordered(const std::string& key, const std::optional<Row>& before, const std::optional<Row>& after,
                             std::vector<RowChangeRecord>* out) {
    if (same_row(before, after)) return;
    if (!before) out->push_back({RowChangeRecord::Kind::added, key, *after, -1, -1});
    else if (!after) out->push_back({RowChangeRecord::Kind::removed, key, *before, -1, -1});
    else out->push_back({RowChangeRecord::Kind::changed, key, *after, -1, -1});
  }

  void snapshot_visible() {
    last_visible_.clear();
    for_each_visible([&](const Entry& e) { last_visible_.emplace_back(e.key, e.row); });
    if (!positions_) {
      visible_set_.clear();
      for (auto& [k, r] : last_visible_) visible_set_.emplace(k, r);
    }
  }

  // Emits a change list that turns the previous visible list into the current one when
  // applied in order: removals (from the back), then insertions and moves front to back.
  void diff_visible(std::vector<RowChangeRecord>* out) {
    std::vector<std::pair<std::string, Row>> now;
    for_each_visible([&](const Entry& e) { now.emplace_back(e.key, e.row); });
    std::unordered_map<std::string, size_t> now_index;
    for (size_t i = 0; i < now.size(); ++i) now_index.emplace(now[i].first, i);
    std::vector<std::string> list;  // keys of the list as the receiver holds it
    for (int64_t i = static_cast<int64_t>(last_visible_.size()) - 1; i >= 0; --i) {
      const auto& [key, row] = last_visible_[static_cast<size_t>(i)];
      if (!now_index.count(key)) out->push_back({RowChangeRecord::Kind::removed, key, row, i, -1});
    }
    std::unordered_map<std::string, const Row*> old_rows;
    for (const auto& [key, row] : last_visible_) {
      if (now_index.count(key)) {
        list.push_back(key);
        old_rows.emplace(key, &row);
      }
    }
    for (size_t i = 0; i < now.size(); ++i) {
      const auto& [key, row] = now[i];
      auto it = old_rows.find(key);
      if (it == old_rows.end()) {
        list.insert(list.begin() + static_cast<std::ptrdiff_t>(i), key);
        out->push_back({RowChangeRecord::Kind::added, key, row, static_cast<int64_t>(i), -1});
        continue;
      }
      size_t j = i;
      while (j < list.size() && list[j] != key) ++j;
      if (j != i) {
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(j));
        list.insert(list.begin() + static_cast<std::ptrdiff_t>(i), key);
      }
      if (j != i || !identical(*it->second, row))
        out->push_back({RowChangeRecord::Kind::changed, key, row, static_cast<int64_t>(i), static_cast<int64_t>(j)});
    }
    last_visible_ = std::move(now);
  }

  bool ordered_ = false, positions_ = false, prefix_ = false, complete_ = true;
  bool tracking_ = false, dirty_ = false;
  int64_t offset_ = 0, limit_ = -1;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
  EntryLess less_;
  OrderTree order_{EntryLess{}};
  bool incremental_ = false;
  std::vector<RowChangeRecord> ops_;           // incremental mode: changes since the last flush
  std::optional<RowChangeRecord> deferred_;    // a removal that the next insertion may turn into a move
  std::unordered_map<std::string, std::optional<Row>> before_;
  std::vector<std::pair<std::string, Row>> last_visible_;
  std::unordered_map<std::string, Row> visible_set_;
  size_t bytes_ = 0;
};

// Neumaier-compensated sum that supports removal (adding the negation).
struct RealSum {
  double sum = 0, comp = 0;
  void add(double v) {
    double t = sum + v;
    if (std::fabs(sum) >= std::fabs(v)) comp += (sum - t) + v;
    else comp += (v - t) + sum;
    sum = t;
  }
  double value() const { return sum + comp; }
};

struct SqliteLess {
  bool operator()(const Value& a, const Value& b) const { return compare_sqlite(a, b) < 0; }
};

struct Accumulator {
  int64_t count = 0;     // non-NULL inputs
  int128 int_sum = 0;    // integer inputs
  int64_t non_integer = 0;
  RealSum real_sum;
  // MIN/MAX: the most extreme non-NULL inputs with exact counts. When `complete` is false
  // the map holds exactly the inputs at or before its last key (in the aggregate's direction)
  // and none after it; an empty incomplete map is refilled from SQLite.
  std::map<Value, int64_t, SqliteLess> values;
  bool complete = true;
};

struct Group {
  std::string key;
  Row key_values;
  std::map<std::string, std::pair<Row, int64_t>> variants;  // identical key spellings (1 vs 1.0)
  int64_t count = 0;
  std::vector<Accumulator> accs;
  bool dirty = false;
  bool overflow = false;
};

struct DistinctRow {
  int64_t count = 0;
  std::map<std::string, std::pair<Row, int64_t>> variants;
};

struct Pending {
  std::string origin;  // the view that sent it; one origin's mutations run in order
  std::string id;
  std::vector<worker::Mutation> mutations;
  std::optional<int64_t> success_version;
};

struct TableOverlay {
  std::shared_ptr<const TableSchema> schema;
  std::unordered_map<std::string, std::optional<Row>> base;   // confirmed rows of touched keys
  std::unordered_map<std::string, std::optional<Row>> graph;  // what the operators were told
};

std::string pk_key(const TableSchema& t, const Row& row) {
  std::string k;
  for (int c : t.pk) encode_canonical(row[static_cast<size_t>(c)], &k);
  return k;
}

}  // namespace

class LiveView::Impl {
 public:
  Impl(Database& db, DeltaJournal* journal, std::shared_ptr<const Plan> plan, ViewOptions options)
      : db_(db), journal_(journal), plan_(std::move(plan)), options_(options) {}

  ~Impl() {
    end_read();
    if (journal_ && reader_ > 0) journal_->unregister_reader(reader_);
  }

  // ---------------------------------------------------------------- set-up
  Status init() {
    const Plan& p = *plan_;
    n_ = p.occurrences.size();
    bool internally_ordered = p.ordered() || p.limit >= 0 || p.offset > 0;
    std::vector<bool> desc;
    for (const auto& k : p.order) desc.push_back(k.descending);
    bool keys_on_root = true;
    for (const auto& k : p.order) keys_on_root = keys_on_root && (k.expr.occurrences() & ~uint64_t{1}) == 0;
    prefix_mode_ = !p.aggregate && !p.distinct && internally_ordered && p.limit >= 0 && keys_on_root;
    bounded_extremes_ = p.aggregate && n_ == 1;
    result_.init(internally_ordered, p.ordered(), desc, p.offset, p.limit, prefix_mode_);
    for (size_t i = 0; i < n_; ++i) table_occurrences_[p.occurrences[i].table->name].push_back(static_cast<int>(i));
    if (journal_) reader_ = journal_->register_reader(journal_->last_version());
    return hydrate();
  }

  Status hydrate() {
    result_.set_tracking(false);
    TANDEM_RETURN_IF_ERROR(begin_read_at_hydration());
    hydrated_ = applied_ = read_version_;
    cur_batch_ = nullptr;
    Status st = hydrate_rows();
    if (st.ok()) st = flush_groups();
    if (st.ok() && !pending_.empty()) {
      for (auto& [t, ov] : overlay_) { ov.base.clear(); ov.graph.clear(); }
      st = refold();
      if (st.ok()) st = flush_groups();
    }
    end_read();
    if (!st.ok()) return st;
    if (journal_) journal_->reset_reader(reader_, applied_);
    std::vector<RowChangeRecord> ignored;
    result_.flush(&ignored);
    result_.set_tracking(true);
    return Status::Ok();
  }

  Status hydrate_rows() {
    const Plan& p = *plan_;
    if (prefix_mode_) return refill();
    if (p.aggregate && p.group_keys.empty()) {
      Group& g = ensure_group(Row{});  // an aggregate without GROUP BY always has its one row
      if (!g.dirty) {
        g.dirty = true;
        dirty_groups_.push_back(g.key);
      }
    }
    TANDEM_ASSIGN_OR_RETURN(auto st, db_.prepare(p.tuple_sql()));
    TANDEM_RETURN_IF_ERROR(bind_params(*st));
    std::vector<Row> rows(n_);
    Tuple tuple(n_);
    for (size_t i = 0; i < n_; ++i) rows[i].assign(p.occurrences[i].table->columns.size(), Value());
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
      if (!has) break;
      int col = 0;
      for (size_t i = 0; i < n_; ++i)
        for (int c : p.occurrences[i].needed_columns) rows[i][static_cast<size_t>(c)] = st->column(col++);
      for (size_t i = 0; i < n_; ++i) tuple[i] = &rows[i];
      for (size_t i = 0; i < n_; ++i) {
        if (!p.occurrences[i].nullable) continue;
        if (st->column(col++).is_null()) tuple[i] = nullptr;
      }
      process_tuple(+1, tuple);
      if (!error_status_.ok()) return error_status_;
    }
    return Status::Ok();
  }

  Status bind_params(Statement& st) {
    for (size_t i = 0; i < plan_->params.size(); ++i) {
      if (static_cast<int>(i) >= st.parameter_count()) break;
      TANDEM_RETURN_IF_ERROR(st.bind(static_cast<int>(i + 1), plan_->params[i]));
    }
    return Status::Ok();
  }

  // ---------------------------------------------------------------- reads
  Status begin_read_at_hydration() {
    TANDEM_RETURN_IF_ERROR(db_.begin_deferred());
    in_read_ = true;
    auto v = read_db_version();
    if (!v.ok()) { end_read(); return v.status(); }
    read_version_ = *v;
    comp_batches_.clear();
    return Status::Ok();
  }

  Result<int64_t> read_db_version() {
    auto st = db_.cached("SELECT value FROM tandem_meta WHERE key = 'db_version'");
    if (!st.ok()) return st.status().with_context("reading tandem_meta.db_version");
    TANDEM_ASSIGN_OR_RETURN(bool has, (*st)->step());
    return has ? (*st)->column_int64(0) : int64_t{0};
  }

  // Starts the operation's read transaction on first use.
  Status ensure_read() {
    if (in_read_) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(db_.begin_deferred());
    in_read_ = true;
    auto v = read_db_version();
    if (!v.ok()) { end_read(); return v.status(); }
    read_version_ = *v;
    int64_t position = cur_batch_ ? cur_batch_->db_version : applied_;
    if (read_version_ < position) {
      end_read();
      return Status::Internal("view read db_version " + std::to_string(read_version_) + " older than its position " +
                              std::to_string(position));
    }
    comp_batches_.clear();
    if (read_version_ > position) {
      if (!journal_) { end_read(); return Status::Internal("the writer ran ahead and the view has no journal"); }
      auto r = journal_->range(position, read_version_);
      if (!r.ok()) { end_read(); return r.status(); }
      comp_batches_ = std::move(r).value();
    }
    return Status::Ok();
  }

  void end_read() {
    if (in_read_) db_.rollback();
    in_read_ = false;
    comp_batches_.clear();
  }

  template <class F>
  void for_each_later_delta(const std::string& table, bool include_current, F&& f) const {
    if (cur_batch_) {
      for (size_t i = cur_index_ + (include_current ? 1 : 0); i < cur_batch_->deltas.size(); ++i)
        if (cur_batch_->deltas[i].table == table) f(cur_batch_->deltas[i]);
    }
    for (const auto& b : comp_batches_)
      for (const auto& d : b->deltas)
        if (d.table == table) f(d);
  }

  size_t later_delta_count(const std::string& table) const {
    size_t n = 0;
    for_each_later_delta(table, false, [&](const RowDelta&) { ++n; });
    auto it = overlay_.find(table);
    if (it != overlay_.end()) n += it->second.graph.size();
    return n + 1;
  }

  // Rows of `t` matching `pred` at the view's position: SQL rows read at W, compensated back,
  // then overlaid. `sql_rows` receives how many rows SQLite returned.
  Status fetch(const std::string& sql, const Row& binds, const TableSchema& t, const std::function<bool(const Row&)>& pred,
               bool include_current, bool overrides, std::vector<Row>* out, int64_t* sql_rows = nullptr,
               Row* last_raw = nullptr) {
    TANDEM_RETURN_IF_ERROR(ensure_read());
    ++lookups_;
    out->clear();
    {
      TANDEM_ASSIGN_OR_RETURN(auto st, db_.cached(sql));
      int k = 0;
      for (size_t i = 0; i < plan_->params.size() && k < st->parameter_count(); ++i, ++k)
        TANDEM_RETURN_IF_ERROR(st->bind(k + 1, plan_->params[i]));
      k = static_cast<int>(plan_->params.size());
      for (const auto& v : binds) TANDEM_RETURN_IF_ERROR(st->bind(++k, v));
      for (;;) {
        TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
        if (!has) break;
        out->push_back(st->row());
      }
    }
    if (sql_rows) *sql_rows = static_cast<int64_t>(out->size());
    if (last_raw && !out->empty()) *last_raw = out->back();
    // Compensation: the state at our position of every key touched after it.
    std::unordered_map<std::string, std::optional<Row>> state;
    for_each_later_delta(t.name, include_current, [&](const RowDelta& d) {
      std::string ko, kn;
      if (d.old_row) {
        ko = pk_key(t, *d.old_row);
        state.emplace(ko, *d.old_row);
      }
      if (d.new_row) {
        kn = pk_key(t, *d.new_row);
        if (kn != ko) state.emplace(kn, std::nullopt);
      }
    });
    if (!state.empty()) ++compensated_;
    if (overrides) {
      auto it = overlay_.find(t.name);
      if (it != overlay_.end())
        for (const auto& [k, row] : it->second.graph) state[k] = row;
      if (cur_overlay_ && cur_overlay_table_ == t.name && !include_current) state[cur_overlay_key_] = cur_overlay_old_;
    }
    if (state.empty()) return Status::Ok();
    std::vector<Row> kept;
    kept.reserve(out->size());
    for (auto& r : *out)
      if (!state.count(pk_key(t, r))) kept.push_back(std::move(r));
    for (auto& [k, row] : state)
      if (row && pred(*row)) kept.push_back(*row);
    *out = std::move(kept);
    return Status::Ok();
  }

  static std::string select_columns(const Occurrence& o) {
    std::string s = "SELECT ";
    for (size_t c = 0; c < o.table->columns.size(); ++c) {
      if (c) s += ", ";
      s += query::quote_name(o.name) + "." + query::quote_name(o.table->columns[c]);
    }
    s += " FROM " + query::quote_name(o.table->name) + " AS " + query::quote_name(o.name);
    return s;
  }

  // Adds `col = ?` for a join equality when an index lookup finds a superset of the matches;
  // false when no row can match (NULL, or a number against a TEXT column without conversion).
  bool add_equality(const Occurrence& looked_up, int column, Affinity comparison, const Value& v, std::string* where,
                           Row* binds) const {
    if (v.is_null()) return false;
    Affinity a = looked_up.table->affinity[static_cast<size_t>(column)];
    if (is_numeric_affinity(comparison)) {
      if (!is_numeric_affinity(a)) return true;  // text converted on the fly: no index use
    } else if (a == Affinity::text && v.is_numeric()) {
      return false;  // a TEXT column never holds a number, and no conversion applies
    }
    *where += (where->empty() ? "" : " AND ") + query::quote_name(looked_up.name) + "." +
              query::quote_name(looked_up.table->columns[static_cast<size_t>(column)]) + " = ?" +
              std::to_string(plan_params_ + binds->size() + 1);
    binds->push_back(v);
    return true;
  }

  bool include_for(int occ) const {
    if (changed_occ_ < 0) return true;
    const auto& o = plan_->occurrences[static_cast<size_t>(occ)];
    if (o.table->name != plan_->occurrences[static_cast<size_t>(changed_occ_)].table->name) return true;
    return occ < changed_occ_;
  }

  bool local_ok(int occ, const Row& row) const {
    const auto& o = plan_->occurrences[static_cast<size_t>(occ)];
    if (!o.local_filter) return true;
    scratch_[static_cast<size_t>(occ)] = &row;
    EvalContext ctx;
    ctx.rows = scratch_.data();
    return o.local_filter->test(ctx);
  }

  bool on_ok(int child, const Row* parent_row, const Row* child_row) const {
    const auto& o = plan_->occurrences[static_cast<size_t>(child)];
    scratch_[static_cast<size_t>(o.parent)] = parent_row;
    scratch_[static_cast<size_t>(child)] = child_row;
    EvalContext ctx;
    ctx.rows = scratch_.data();
    return o.on->test(ctx);
  }

  // Rows of occurrence u that join a given parent row.
  Status children_of(int u, const Row& parent_row, bool include_current, std::vector<Row>* out) {
    const auto& o = plan_->occurrences[static_cast<size_t>(u)];
    std::string where;
    Row binds;
    for (const auto& eq : o.equalities) {
      if (!add_equality(o, eq.column, eq.comparison, parent_row[static_cast<size_t>(eq.parent_column)], &where, &binds)) {
        out->clear();
        return Status::Ok();
      }
    }
    return fetch_joined(u, where, binds, [&](const Row& r) { return on_ok(u, &parent_row, &r); }, include_current, out);
  }

  // Rows of occurrence u (the parent of `child`) that a given child row joins.
  Status parents_of(int u, int child, const Row& child_row, bool include_current, std::vector<Row>* out) {
    const auto& o = plan_->occurrences[static_cast<size_t>(u)];
    const auto& c = plan_->occurrences[static_cast<size_t>(child)];
    std::string where;
    Row binds;
    for (const auto& eq : c.equalities) {
      if (!add_equality(o, eq.parent_column, eq.comparison, child_row[static_cast<size_t>(eq.column)], &where, &binds)) {
        out->clear();
        return Status::Ok();
      }
    }
    return fetch_joined(u, where, binds, [&](const Row& r) { return on_ok(child, &r, &child_row); }, include_current, out);
  }

  // Rows of occurrence u matching `where` (its join equalities), its pushed filters and `on`
  // (the exact ON condition, checked in C++ on every candidate).
  Status fetch_joined(int u, std::string where, const Row& binds, const std::function<bool(const Row&)>& on,
                      bool include_current, std::vector<Row>* out) {
    const auto& o = plan_->occurrences[static_cast<size_t>(u)];
    if (!o.local_filter_sql.empty()) where += (where.empty() ? "(" : " AND (") + o.local_filter_sql + ")";
    std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where);
    auto pred = [&](const Row& r) { return local_ok(u, r) && on(r); };
    TANDEM_RETURN_IF_ERROR(fetch(sql, binds, *o.table, pred, include_current, true, out));
    std::vector<Row> kept;
    for (auto& r : *out)
      if (pred(r)) kept.push_back(std::move(r));
    *out = std::move(kept);
    return Status::Ok();
  }

  // The confirmed row of a key at the current position (no overlay).
  Result<std::optional<Row>> base_row(const TableSchema& t, const Row& pk_values) {
    std::string sql = "SELECT ";
    for (size_t c = 0; c < t.columns.size(); ++c) sql += (c ? ", " : "") + query::quote_name(t.columns[c]);
    sql += " FROM " + query::quote_name(t.name) + " WHERE ";
    Row binds;
    for (size_t i = 0; i < t.pk.size(); ++i) {
      sql += (i ? " AND " : "") + query::quote_name(t.columns[static_cast<size_t>(t.pk[i])]) + " = ?" +
             std::to_string(plan_params_ + i + 1);
      binds.push_back(pk_values[i]);
    }
    std::string key;
    for (const auto& v : pk_values) encode_canonical(v, &key);
    auto pred = [&](const Row& r) { return pk_key(t, r) == key; };
    std::vector<Row> rows;
    TANDEM_RETURN_IF_ERROR(fetch(sql, binds, t, pred, true, false, &rows));
    for (auto& r : rows)
      if (pk_key(t, r) == key) return std::optional<Row>(std::move(r));
    return std::optional<Row>();
  }

  // ---------------------------------------------------------------- tuples
  Status expand(Tuple& t, std::vector<char>& assigned, int sign) {
    const auto& occs = plan_->occurrences;
    for (size_t ui = 0; ui < n_; ++ui) {
      if (assigned[ui]) continue;
      int u = static_cast<int>(ui);
      const auto& o = occs[ui];
      if (o.parent >= 0 && assigned[static_cast<size_t>(o.parent)]) {
        const Row* parent = t[static_cast<size_t>(o.parent)];
        assigned[ui] = 1;
        Status st;
        if (parent == nullptr) {
          if (o.left_join) {
            t[ui] = nullptr;
            st = expand(t, assigned, sign);
          }
        } else {
          std::vector<Row> rows;
          st = children_of(u, *parent, include_for(u), &rows);
          if (st.ok()) {
            if (rows.empty() && o.left_join) {
              t[ui] = nullptr;
              st = expand(t, assigned, sign);
            }
            for (size_t i = 0; st.ok() && i < rows.size(); ++i) {
              t[ui] = &rows[i];
              st = expand(t, assigned, sign);
            }
          }
        }
        assigned[ui] = 0;
        t[ui] = nullptr;
        return st;
      }
      for (int c : o.children) {
        if (!assigned[static_cast<size_t>(c)] || t[static_cast<size_t>(c)] == nullptr) continue;
        std::vector<Row> rows;
        TANDEM_RETURN_IF_ERROR(parents_of(u, c, *t[static_cast<size_t>(c)], include_for(u), &rows));
        assigned[ui] = 1;
        Status st;
        for (size_t i = 0; st.ok() && i < rows.size(); ++i) {
          t[ui] = &rows[i];
          st = expand(t, assigned, sign);
        }
        assigned[ui] = 0;
        t[ui] = nullptr;
        return st;
      }
    }
    process_tuple(sign, t);
    return Status::Ok();
  }

  // One row of table T changed from `old_row` to `new_row` (either may be absent).
  Status graph_delta(const std::string& table, const Row* old_row, const Row* new_row) {
    auto it = table_occurrences_.find(table);
    if (it == table_occurrences_.end()) return Status::Ok();
    for (int k : it->second) {
      changed_occ_ = k;
      Status st = plan_->occurrences[static_cast<size_t>(k)].left_join ? left_join_delta(k, old_row, new_row)
                                                                         : inner_delta(k, old_row, new_row);
      changed_occ_ = -1;
      TANDEM_RETURN_IF_ERROR(st);
    }
    return Status::Ok();
  }

  Status inner_delta(int k, const Row* old_row, const Row* new_row) {
    Tuple t(n_, nullptr);
    std::vector<char> assigned(n_, 0);
    assigned[static_cast<size_t>(k)] = 1;
    if (old_row && local_ok(k, *old_row)) {
      t[static_cast<size_t>(k)] = old_row;
      TANDEM_RETURN_IF_ERROR(expand(t, assigned, -1));
    }
    if (new_row && local_ok(k, *new_row)) {
      t[static_cast<size_t>(k)] = new_row;
      TANDEM_RETURN_IF_ERROR(expand(t, assigned, +1));
    }
    return Status::Ok();
  }

  Status left_join_delta(int k, const Row* old_row, const Row* new_row) {
    const auto& o = plan_->occurrences[static_cast<size_t>(k)];
    const TableSchema& pt = *plan_->occurrences[static_cast<size_t>(o.parent)].table;
    bool old_local = old_row && local_ok(k, *old_row);
    bool new_local = new_row && local_ok(k, *new_row);
    std::vector<Row> parents, more;
    if (old_local) TANDEM_RETURN_IF_ERROR(parents_of(o.parent, k, *old_row, include_for(o.parent), &parents));
    if (new_local) {
      TANDEM_RETURN_IF_ERROR(parents_of(o.parent, k, *new_row, include_for(o.parent), &more));
      std::set<std::string> seen;
      for (const auto& r : parents) seen.insert(pk_key(pt, r));
      for (auto& r : more)
        if (!seen.count(pk_key(pt, r))) parents.push_back(std::move(r));
    }
    const TableSchema& kt = *o.table;
    std::string ko = old_row ? pk_key(kt, *old_row) : std::string();
    std::string kn = new_row ? pk_key(kt, *new_row) : std::string();
    for (const Row& y : parents) {
      bool old_m = old_local && on_ok(k, &y, old_row);
      bool new_m = new_local && on_ok(k, &y, new_row);
      if (!old_m && !new_m) continue;
      bool others = false;
      if (old_m != new_m) {
        std::vector<Row> partners;
        TANDEM_RETURN_IF_ERROR(children_of(k, y, false, &partners));
        for (const auto& r : partners) {
          std::string key = pk_key(kt, r);
          if ((old_row && key == ko) || (new_row && key == kn)) continue;
          others = true;
          break;
        }
      }
      bool before_nonempty = others || old_m, after_nonempty = others || new_m;
      Tuple t(n_, nullptr);
      std::vector<char> assigned(n_, 0);
      assigned[static_cast<size_t>(o.parent)] = 1;
      assigned[static_cast<size_t>(k)] = 1;
      t[static_cast<size_t>(o.parent)] = &y;
      if (old_m) {
        t[static_cast<size_t>(k)] = old_row;
        TANDEM_RETURN_IF_ERROR(expand(t, assigned, -1));
      }
      if (!before_nonempty && after_nonempty) {
        t[static_cast<size_t>(k)] = nullptr;
        TANDEM_RETURN_IF_ERROR(expand(t, assigned, -1));
      }
      if (before_nonempty && !after_nonempty) {
        t[static_cast<size_t>(k)] = nullptr;
        TANDEM_RETURN_IF_ERROR(expand(t, assigned, +1));
      }
      if (new_m) {
        t[static_cast<size_t>(k)] = new_row;
        TANDEM_RETURN_IF_ERROR(expand(t, assigned, +1));
      }
    }
    return Status::Ok();
  }

  // ---------------------------------------------------------------- downstream
  void process_tuple(int sign, const Tuple& t) {
    const Plan& p = *plan_;
    EvalContext ctx;
    ctx.rows = t.data();
    if (p.residual_where && !p.residual_where->test(ctx)) return;
    if (p.aggregate) return aggregate_tuple(sign, ctx);
    if (p.distinct) return distinct_tuple(sign, ctx);
    std::string key;
    for (size_t i = 0; i < n_; ++i) {
      if (!t[i]) { key.push_back('X'); continue; }
      for (int c : p.occurrences[i].table->pk) encode_canonical((*t[i])[static_cast<size_t>(c)], &key);
    }
    if (sign < 0) {
      result_.erase(key);
      return;
    }
    Row row;
    row.reserve(p.outputs.size());
    for (const auto& e : p.outputs) row.push_back(e.eval(ctx));
    Row order;
    if (result_ordered()) {
      order.reserve(p.order.size() + n_);
      for (const auto& k : p.order) order.push_back(k.expr.eval(ctx));
      for (size_t i = 0; i < n_; ++i)
        for (int c : p.occurrences[i].table->pk) order.push_back(t[i] ? (*t[i])[static_cast<size_t>(c)] : Value());
    }
    if (collect_) {
      collect_->push_back(Entry{std::move(key), std::move(row), std::move(order)});
      return;
    }
    if (prefix_mode_) {
      Entry probe{key, {}, order};
      if (!result_.admits(probe)) return;
    }
    result_.upsert(std::move(key), std::move(row), std::move(order));
  }

  bool result_ordered() const { return plan_->ordered() || plan_->limit >= 0 || plan_->offset > 0; }

  void distinct_tuple(int sign, const EvalContext& ctx) {
    const Plan& p = *plan_;
    Row row;
    for (const auto& e : p.outputs) row.push_back(e.eval(ctx));
    std::string key, exact;
    for (const auto& v : row) {
      encode_canonical(v, &key);
      encode_identical(v, &exact);
    }
    auto& d = distinct_[key];
    d.count += sign;
    auto& var = d.variants[exact];
    if (var.second == 0) var.first = row;
    var.second += sign;
    if (var.second <= 0) d.variants.erase(exact);
    if (d.count <= 0) {
      distinct_.erase(key);
      result_.erase(key);
      return;
    }
    const Row& shown = d.variants.begin()->second.first;
    Row order;
    if (result_ordered()) {
      for (int c : p.order_columns) order.push_back(shown[static_cast<size_t>(c)]);
      for (const auto& v : shown) order.push_back(v);
    }
    const Entry* cur = result_.find(key);
    if (cur && identical(cur->row, shown)) return;
    result_.upsert(key, shown, std::move(order));
  }

  Group& ensure_group(const Row& key_values) {
    std::string key;
    for (const auto& v : key_values) encode_canonical(v, &key);
    auto it = groups_.find(key);
    if (it != groups_.end()) return it->second;
    Group& g = groups_[key];
    g.key = key;
    g.key_values = key_values;
    g.accs.resize(plan_->aggregates.size());
    return g;
  }

  void aggregate_tuple(int sign, const EvalContext& ctx) {
    const Plan& p = *plan_;
    Row key_values;
    key_values.reserve(p.group_keys.size());
    for (const auto& k : p.group_keys) key_values.push_back(k.eval(ctx));
    Group& g = ensure_group(key_values);
    g.count += sign;
    if (!p.group_keys.empty()) {
      std::string exact;
      for (const auto& v : key_values) encode_identical(v, &exact);
      auto& var = g.variants[exact];
      if (var.second == 0) var.first = key_values;
      var.second += sign;
      if (var.second <= 0) g.variants.erase(exact);
    }
    for (size_t i = 0; i < p.aggregates.size(); ++i) {
      const auto& spec = p.aggregates[i];
      if (spec.func == AggregateSpec::Func::count_star) continue;
      Value v = spec.argument->eval(ctx);
      if (v.is_null()) continue;
      Accumulator& a = g.accs[i];
      a.count += sign;
      switch (spec.func) {
        case AggregateSpec::Func::count: break;
        case AggregateSpec::Func::sum:
        case AggregateSpec::Func::avg: {
          // sqlite3_value_numeric_type: TEXT that is a pure number counts as that number.
          Value n = v;
          if (n.is_text()) apply_comparison_affinity(n, Affinity::numeric);
          if (n.is_integer()) a.int_sum += sign > 0 ? int128(n.integer()) : -int128(n.integer());
          else a.non_integer += sign;
          a.real_sum.add(sign > 0 ? real_value(n) : -real_value(n));
          break;
        }
        case AggregateSpec::Func::min:
        case AggregateSpec::Func::max: {
          bool is_min = spec.func == AggregateSpec::Func::min;
          auto it = a.values.find(v);
          if (sign < 0) {
            if (it != a.values.end() && --it->second <= 0) a.values.erase(it);
            break;
          }
          bool take = a.complete;
          if (!take && !a.values.empty()) {
            int c = compare_sqlite(v, is_min ? a.values.rbegin()->first : a.values.begin()->first);
            take = is_min ? c <= 0 : c >= 0;
          }
          if (!take) break;
          if (it == a.values.end()) a.values.emplace(v, 1);
          else ++it->second;
          if (bounded_extremes_ && a.values.size() > 2 * options_.extreme_buffer) {
            while (a.values.size() > options_.extreme_buffer) a.values.erase(is_min ? std::prev(a.values.end()) : a.values.begin());
            a.complete = false;
          }
          break;
        }
        default: break;
      }
    }
    if (!g.dirty) {
      g.dirty = true;
      dirty_groups_.push_back(g.key);
    }
  }

  Status flush_groups() {
    const Plan& p = *plan_;
    for (const auto& key : dirty_groups_) {
      auto it = groups_.find(key);
      if (it == groups_.end()) continue;
      Group& g = it->second;
      g.dirty = false;
      if (g.count > 0 || p.group_keys.empty()) {
        for (size_t i = 0; i < p.aggregates.size(); ++i) {
          Accumulator& a = g.accs[i];
          if (a.values.empty() && !a.complete && a.count > 0) {
            Status st = refill_extreme(g, i);
            if (!st.ok()) {
              dirty_groups_.clear();
              return st;
            }
          }
        }
      }
      bool was_overflow = g.overflow;
      if (g.count <= 0 && !p.group_keys.empty()) {
        if (was_overflow) --overflow_groups_;
        result_.erase(key);
        groups_.erase(it);
        continue;
      }
      if (!g.variants.empty()) g.key_values = g.variants.begin()->second.first;
      Row aggs;
      aggs.reserve(p.aggregates.size());
      bool overflow = false;
      for (size_t i = 0; i < p.aggregates.size(); ++i) {
        const Accumulator& a = g.accs[i];
        switch (p.aggregates[i].func) {
          case AggregateSpec::Func::count_star: aggs.push_back(Value::Integer(g.count)); break;
          case AggregateSpec::Func::count: aggs.push_back(Value::Integer(a.count)); break;
          case AggregateSpec::Func::sum:
            if (a.count <= 0) aggs.push_back(Value());
            else if (a.non_integer > 0) aggs.push_back(Value::Real(a.real_sum.value()));
            else if (a.int_sum > int128(INT64_MAX) || a.int_sum < int128(INT64_MIN)) {
              overflow = true;
              aggs.push_back(Value());
            } else {
              aggs.push_back(Value::Integer(static_cast<int64_t>(a.int_sum)));
            }
            break;
          case AggregateSpec::Func::avg:
            if (a.count <= 0) aggs.push_back(Value());
            else aggs.push_back(Value::Real(avg_value(a)));
            break;
          case AggregateSpec::Func::min:
            aggs.push_back(a.values.empty() ? Value() : a.values.begin()->first);
            break;
          case AggregateSpec::Func::max:
            aggs.push_back(a.values.empty() ? Value() : a.values.rbegin()->first);
            break;
        }
      }
      if (overflow != was_overflow) overflow_groups_ += overflow ? 1 : -1;
      g.overflow = overflow;
      EvalContext ctx;
      ctx.group_keys = g.key_values.data();
      ctx.aggregates = aggs.data();
      if (p.having && !p.having->test(ctx)) {
        result_.erase(key);
        continue;
      }
      Row row;
      row.reserve(p.outputs.size());
      for (const auto& e : p.outputs) row.push_back(e.eval(ctx));
      Row order;
      if (result_ordered()) {
        for (const auto& k : p.order) order.push_back(k.expr.eval(ctx));
        for (const auto& v : g.key_values) order.push_back(v);
      }
      const Entry* cur = result_.find(key);
      if (cur && identical(cur->row, row) && (!result_ordered() || identical(cur->order, order))) continue;
      result_.upsert(key, std::move(row), std::move(order));
    }
    dirty_groups_.clear();
    return Status::Ok();
  }

  // Reads the most extreme inputs of one group's MIN/MAX from SQLite (single-table queries).
  Status refill_extreme(Group& g, size_t i) {
    const Plan& p = *plan_;
    const Occurrence& o = p.occurrences[0];
    const TableSchema& t = *o.table;
    const AggregateSpec& spec = p.aggregates[i];
    Accumulator& a = g.accs[i];
    bool is_min = spec.func == AggregateSpec::Func::min;
    std::string where = p.where_sql.empty() ? "" : "(" + p.where_sql + ")";
    Row binds;
    auto add = [&](const std::string& cond) { where += (where.empty() ? "" : " AND ") + cond; };
    for (size_t k = 0; k < p.group_keys.size(); ++k) {
      binds.push_back(g.key_values[k]);
      add("(" + p.group_sql[k] + ") IS ?" + std::to_string(plan_params_ + binds.size()));
    }
    add("(" + spec.argument_sql + ") IS NOT NULL");
    auto pred = [&](const Row& r) {
      const Row* rows[1] = {&r};
      EvalContext ctx;
      ctx.rows = rows;
      if (p.residual_where && !p.residual_where->test(ctx)) return false;
      if (o.local_filter && !o.local_filter->test(ctx)) return false;
      for (size_t k = 0; k < p.group_keys.size(); ++k) {
        std::string x, y;
        encode_canonical(p.group_keys[k].eval(ctx), &x);
        encode_canonical(g.key_values[k], &y);
        if (x != y) return false;
      }
      return !spec.argument->eval(ctx).is_null();
    };
    size_t limit = options_.extreme_buffer + later_delta_count(t.name);
    for (;;) {
      std::string sql = select_columns(o) + " WHERE " + where + " ORDER BY (" + spec.argument_sql + ")" +
                        (is_min ? "" : " DESC") + " LIMIT " + std::to_string(limit);
      // The last value SQLite returned bounds what is known exactly: every row at our
      // position with a value before it is in the compensated result.
      std::vector<Row> rows;
      Row last_raw;
      int64_t sql_rows = 0;
      changed_occ_ = -1;
      TANDEM_RETURN_IF_ERROR(fetch(sql, binds, t, pred, true, true, &rows, &sql_rows, &last_raw));
      bool exhausted = sql_rows < static_cast<int64_t>(limit);
      std::map<Value, int64_t, SqliteLess> values;
      for (const auto& r : rows) {
        if (!pred(r)) continue;
        const Row* rp[1] = {&r};
        EvalContext ctx;
        ctx.rows = rp;
        values[spec.argument->eval(ctx)] += 1;
      }
      if (!exhausted) {
        // SQLite's rows are the first `limit` in order at W: every row at our position with a
        // value strictly before the last one read is in the compensated result.
        const Row* lr[1] = {&last_raw};
        EvalContext lctx;
        lctx.rows = lr;
        Value last_sql = spec.argument->eval(lctx);
        auto cut = [&](const Value& v) {
          int c = compare_sqlite(v, last_sql);
          return is_min ? c >= 0 : c <= 0;
        };
        for (auto it = values.begin(); it != values.end();) it = cut(it->first) ? values.erase(it) : std::next(it);
        if (values.empty()) {
          limit *= 4;  // every value read ties with the last: read further
          continue;
        }
      }
      a.values = std::move(values);
      a.complete = exhausted;
      return Status::Ok();
    }
  }

  static double avg_value(const Accumulator& a) {
    if (a.non_integer == 0 && a.int_sum <= int128(INT64_MAX) && a.int_sum >= int128(INT64_MIN))
      return static_cast<double>(static_cast<int64_t>(a.int_sum)) / static_cast<double>(a.count);
    return a.real_sum.value() / static_cast<double>(a.count);
  }

  // ---------------------------------------------------------------- windows
  // Prefix mode: reads the rows after the last held one until OFFSET+LIMIT+boundary are held.
  Status refill() {
    if (n_ > 1) return refill_join();
    const Plan& p = *plan_;
    size_t want = static_cast<size_t>(p.offset + p.limit) + options_.window_boundary;
    if (result_.complete() || result_.held() >= static_cast<size_t>(p.offset + p.limit)) return Status::Ok();
    const Occurrence& o = p.occurrences[0];
    const TableSchema& t = *o.table;
    for (int round = 0; round < 64 && !result_.complete() && result_.held() < want; ++round) {
      size_t need = want - result_.held();
      const Entry* last = result_.last();
      Row boundary = last ? last->order : Row();
      std::string where = p.where_sql.empty() ? "" : "(" + p.where_sql + ")";
      Row binds;
      if (last) {
        std::string after = after_sql(boundary, 0, &binds);
        where += (where.empty() ? "" : " AND ") + std::string("(") + after + ")";
      }
      size_t extra = later_delta_count(t.name);
      size_t fetch_n = need + extra;
      std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where) + " ORDER BY ";
      for (size_t i = 0; i < p.order_sql.size(); ++i) {
        // A constant key orders nothing, and a bare integer would read as a column ordinal.
        if (p.order[i].expr.occurrences() == 0) continue;
        sql += p.order_sql[i] + (p.order[i].descending ? " DESC, " : ", ");
      }
      for (size_t i = 0; i < t.pk.size(); ++i)
        sql += (i ? ", " : "") + query::quote_name(o.name) + "." + query::quote_name(t.columns[static_cast<size_t>(t.pk[i])]);
      sql += " LIMIT " + std::to_string(fetch_n);
      const EntryLess less = result_.less();
      Entry bound{"", {}, boundary};
      auto pred = [&](const Row& r) {
        const Row* rows[1] = {&r};
        EvalContext ctx;
        ctx.rows = rows;
        if (p.residual_where && !p.residual_where->test(ctx)) return false;
        if (o.local_filter && !o.local_filter->test(ctx)) return false;
        if (!last) return true;
        Entry e{"", {}, order_of(r)};
        return less(&bound, &e);
      };
      std::vector<Row> rows;
      int64_t sql_rows = 0;
      changed_occ_ = -1;
      TANDEM_RETURN_IF_ERROR(fetch(sql, binds, t, pred, true, true, &rows, &sql_rows));
      std::vector<Entry> entries;
      for (auto& r : rows) {
        if (!pred(r)) continue;
        Entry e;
        e.order = order_of(r);
        entries.push_back(std::move(e));
        entries.back().row.swap(r);
      }
      std::sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) { return less(&a, &b); });
      bool exhausted = sql_rows < static_cast<int64_t>(fetch_n);
      bool complete = exhausted ? entries.size() <= need : entries.size() < need;
      if (entries.size() > need) entries.resize(need);
      for (auto& e : entries) {
        Tuple tuple{&e.row};
        process_tuple_unfiltered_prefix(tuple);
      }
      if (complete) result_.set_complete(true);
      if (entries.empty()) break;
    }
    return Status::Ok();
  }

  // Prefix mode over joins whose ORDER BY keys depend on the first table only: the tuples of one
  // root row are contiguous in the order (keys, then the root's key, then the other keys), so
  // the window refills by reading root rows in order (one table, compensated like any lookup)
  // and expanding each into its tuples through the join lookups.
  Status refill_join() {
    const Plan& p = *plan_;
    size_t want = static_cast<size_t>(p.offset + p.limit) + options_.window_boundary;
    if (result_.complete() || result_.held() >= static_cast<size_t>(p.offset + p.limit)) return Status::Ok();
    const Occurrence& o = p.occurrences[0];
    const TableSchema& t = *o.table;
    const size_t nroot = p.order.size() + t.pk.size();
    const EntryLess less = result_.less();
    const Entry* last = result_.last();
    const Row boundary = last ? last->order : Row();           // the last held tuple
    Row cursor(boundary.begin(), boundary.begin() + static_cast<std::ptrdiff_t>(std::min(nroot, boundary.size())));
    bool inclusive = last != nullptr;  // the boundary's root row may have more tuples after it
    bool have_cursor = last != nullptr;
    std::vector<Entry> found;
    bool exhausted = false;
    size_t fetch_n = want - result_.held() + 1;
    for (int round = 0; round < 256 && !exhausted; ++round) {
      size_t need = want - result_.held();
      if (found.size() >= need) break;
      std::string where = o.local_filter_sql.empty() ? "" : "(" + o.local_filter_sql + ")";
      Row binds;
      if (have_cursor) where += (where.empty() ? "(" : " AND (") + after_sql(cursor, 0, &binds, inclusive) + ")";
      size_t limit = fetch_n + later_delta_count(t.name);
      std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where) + " ORDER BY ";
      for (size_t i = 0; i < p.order_sql.size(); ++i) {
        if (p.order[i].expr.occurrences() == 0) continue;
        sql += p.order_sql[i] + (p.order[i].descending ? " DESC, " : ", ");
      }
      for (size_t i = 0; i < t.pk.size(); ++i)
        sql += (i ? ", " : "") + query::quote_name(o.name) + "." + query::quote_name(t.columns[static_cast<size_t>(t.pk[i])]);
      sql += " LIMIT " + std::to_string(limit);
      Entry cursor_entry{"", {}, cursor};
      auto pred = [&](const Row& r) {
        if (!local_ok(0, r)) return false;
        if (!have_cursor) return true;
        Entry e{"", {}, order_of(r)};
        return inclusive ? !less(&e, &cursor_entry) : less(&cursor_entry, &e);
      };
      std::vector<Row> rows;
      Row last_raw;
      int64_t sql_rows = 0;
      changed_occ_ = -1;
      TANDEM_RETURN_IF_ERROR(fetch(sql, binds, t, pred, true, true, &rows, &sql_rows, &last_raw));
      exhausted = sql_rows < static_cast<int64_t>(limit);
      std::vector<std::pair<Row, Row>> roots;  // (order, row)
      for (auto& r : rows)
        if (pred(r)) roots.emplace_back(order_of(r), std::move(r));
      std::sort(roots.begin(), roots.end(), [&](const auto& a, const auto& b) {
        Entry x{"", {}, a.first}, y{"", {}, b.first};
        return less(&x, &y);
      });
      // Root rows at our position that sort before SQLite's last row are all here.
      size_t trusted = roots.size();
      if (!exhausted) {
        Entry last_entry{"", {}, order_of(last_raw)};
        trusted = 0;
        while (trusted < roots.size()) {
          Entry e{"", {}, roots[trusted].first};
          if (!less(&e, &last_entry)) break;
          ++trusted;
        }
        if (trusted == 0) {
          fetch_n *= 4;
          continue;
        }
      }
      for (size_t i = 0; i < trusted; ++i) {
        std::vector<Entry> tuples;
        collect_ = &tuples;
        Tuple tuple(n_, nullptr);
        std::vector<char> assigned(n_, 0);
        assigned[0] = 1;
        tuple[0] = &roots[i].second;
        Status st = expand(tuple, assigned, +1);
        collect_ = nullptr;
        TANDEM_RETURN_IF_ERROR(st);
        Entry bound{last ? last->key : std::string(), {}, boundary};
        for (auto& e : tuples)
          if (!last || less(&bound, &e)) found.push_back(std::move(e));
        cursor = roots[i].first;
        have_cursor = true;
        inclusive = false;
        if (found.size() >= need) break;
      }
      if (trusted < roots.size() || found.size() >= need) exhausted = false;
    }
    std::sort(found.begin(), found.end(), [&](const Entry& a, const Entry& b) { return less(&a, &b); });
    size_t need = want - result_.held();
    bool complete = exhausted && found.size() <= need;
    if (found.size() > need) found.resize(need);
    for (auto& e : found) result_.upsert(std::move(e.key), std::move(e.row), std::move(e.order));
    if (complete) result_.set_complete(true);
    return Status::Ok();
  }

  // Inserts a refilled row (known to be inside the prefix) bypassing admits().
  void process_tuple_unfiltered_prefix(const Tuple& t) {
    bool saved = result_.complete();
    result_.set_complete(true);
    process_tuple(+1, t);
    result_.set_complete(saved);
  }

  Row order_of(const Row& r) const {
    const Plan& p = *plan_;
    const Row* rows[1] = {&r};
    EvalContext ctx;
    ctx.rows = rows;
    Row order;
    for (const auto& k : p.order) order.push_back(k.expr.eval(ctx));
    for (int c : p.occurrences[0].table->pk) order.push_back(r[static_cast<size_t>(c)]);
    return order;
  }

  // SQL for "sorts after `boundary`" over ORDER BY keys then the primary key (ascending).
  std::string after_sql(const Row& boundary, size_t i, Row* binds, bool inclusive = false) const {
    const Plan& p = *plan_;
    const Occurrence& o = p.occurrences[0];
    size_t nkeys = p.order.size();
    std::string expr;
    bool desc = false;
    if (i < nkeys) {
      expr = "(" + p.order_sql[i] + ")";
      desc = p.order[i].descending;
    } else {
      expr = query::quote_name(o.name) + "." + query::quote_name(o.table->columns[static_cast<size_t>(o.table->pk[i - nkeys])]);
    }
    const Value& b = boundary[i];
    auto param = [&](const Value& v) {
      binds->push_back(v);
      return "?" + std::to_string(plan_params_ + binds->size());
    };
    std::string after, tie;
    if (b.is_null()) {
      after = desc ? "0" : expr + " IS NOT NULL";
      tie = expr + " IS NULL";
    } else {
      std::string ph = param(b);
      after = desc ? "(" + expr + " < " + ph + " OR " + expr + " IS NULL)" : expr + " > " + ph;
      tie = expr + " = " + ph;
    }
    if (i + 1 == boundary.size()) return inclusive ? "(" + after + " OR " + tie + ")" : after;
    return after + " OR (" + tie + " AND (" + after_sql(boundary, i + 1, binds, inclusive) + "))";
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
    cur_batch_ = batch.get();
    Status st;
    for (cur_index_ = 0; st.ok() && cur_index_ < batch->deltas.size(); ++cur_index_) st = confirmed_delta(batch->deltas[cur_index_]);
    if (st.ok()) {
      cur_index_ = batch->deltas.size();
      bool retired = false;
      // The db_worker runs one origin's mutations in the order they were sent: when the batch
      // of one arrives, every earlier one of the same origin has committed (its effect, if any,
      // is in the base) or failed (its settlement will only confirm the rollback).
      std::vector<char> done_by_batch(pending_.size(), 0);
      if (!batch->mutation_id.empty()) {
        for (size_t i = 0; i < pending_.size(); ++i) {
          if (pending_[i].id != batch->mutation_id) continue;
          for (size_t j = 0; j <= i; ++j)
            if (pending_[j].origin == pending_[i].origin) done_by_batch[j] = 1;
          break;
        }
      }
      for (size_t i = 0, orig = 0; i < pending_.size(); ++orig) {
        bool done = done_by_batch[orig] ||
                    (pending_[i].success_version && *pending_[i].success_version <= batch->db_version);
        if (done) {
          pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
          retired = true;
        } else {
          ++i;
        }
      }
      if (retired) st = refold();
    }
    if (st.ok()) st = flush_groups();
    if (st.ok() && prefix_mode_) st = after_window_change();
    cur_batch_ = nullptr;
    end_read();
    if (!st.ok()) {
      error_status_ = st;
      return st;
    }
    applied_ = batch->db_version;
    if (journal_) journal_->advance(reader_, applied_);
    result_.flush(&changes_);
    return Status::Ok();
  }

  Status after_window_change() {
    const Plan& p = *plan_;
    size_t keep = static_cast<size_t>(p.offset + p.limit) + 3 * options_.window_boundary;
    result_.trim(keep);
    if (!result_.complete() && result_.held() < static_cast<size_t>(p.offset + p.limit)) return refill();
    return Status::Ok();
  }

  Status confirmed_delta(const RowDelta& d) {
    auto occ_it = table_occurrences_.find(d.table);
    auto ov_it = overlay_.find(d.table);
    if (occ_it == table_occurrences_.end()) return Status::Ok();
    const TableSchema& t = *plan_->occurrences[static_cast<size_t>(occ_it->second[0])].table;
    if (ov_it == overlay_.end() || ov_it->second.base.empty())
      return graph_delta(d.table, d.old_row ? &*d.old_row : nullptr, d.new_row ? &*d.new_row : nullptr);
    TableOverlay& ov = ov_it->second;
    std::string ko = d.old_row ? pk_key(t, *d.old_row) : std::string();
    std::string kn = d.new_row ? pk_key(t, *d.new_row) : std::string();
    bool old_touched = d.old_row && ov.base.count(ko);
    bool new_touched = d.new_row && ov.base.count(kn);
    if (!old_touched && !new_touched)
      return graph_delta(d.table, d.old_row ? &*d.old_row : nullptr, d.new_row ? &*d.new_row : nullptr);
    bool same_key = d.old_row && d.new_row && ko == kn;
    if (same_key) {
      ov.base[ko] = d.new_row;
    } else {
      if (d.old_row) {
        if (old_touched) ov.base[ko] = std::nullopt;
        else TANDEM_RETURN_IF_ERROR(graph_delta(d.table, &*d.old_row, nullptr));
      }
      if (d.new_row) {
        if (new_touched) ov.base[kn] = d.new_row;
        else TANDEM_RETURN_IF_ERROR(graph_delta(d.table, nullptr, &*d.new_row));
      }
    }
    return refold();
  }

  // ---------------------------------------------------------------- overlay
  Result<std::shared_ptr<const TableSchema>> schema_of(const std::string& table) {
    for (const auto& o : plan_->occurrences)
      if (o.table->name == table) return o.table;
    auto it = other_schemas_.find(table);
    if (it != other_schemas_.end()) return it->second;
    auto s = read_table_schema(db_, table);
    if (!s.ok()) return s.status();
    auto ptr = std::make_shared<const TableSchema>(std::move(s).value());
    other_schemas_[table] = ptr;
    return ptr;
  }

  Status add_pending(const std::string& id, const std::vector<worker::Mutation>& mutations, const std::string& origin) {
    if (!error_status_.ok()) return error_status_;
    if (id.empty()) return Status::InvalidArgument("a pending mutation needs an id");
    for (const auto& p : pending_)
      if (p.id == id) return Status::InvalidArgument("mutation id " + id + " is already pending");
    if (mutations.empty()) return Status::InvalidArgument("mutation " + id + " has no operations");
    for (const auto& m : mutations) {
      auto s = schema_of(m.table());
      if (!s.ok()) return Status::InvalidArgument("mutation: " + s.status().message());
      TANDEM_ASSIGN_OR_RETURN(bool replicated, is_replicated_table(db_, (*s)->name));
      if (!replicated) return Status::InvalidArgument("no replicated table named '" + m.table() + "'");
      TANDEM_RETURN_IF_ERROR(validate_mutation({(*s)->name, (*s)->columns, (*s)->pk}, m));
    }
    pending_.push_back({origin, id, mutations, std::nullopt});
    Status st = refold();
    if (st.ok()) st = finish_operation();
    else {
      pending_.pop_back();
      end_read();
    }
    return st;
  }

  Status settle(const std::string& id, bool success, int64_t version) {
    if (!error_status_.ok()) return error_status_;
    for (size_t i = 0; i < pending_.size(); ++i) {
      if (pending_[i].id != id) continue;
      if (success && version > applied_) {
        pending_[i].success_version = version;
        return Status::Ok();
      }
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      Status st = refold();
      if (st.ok()) st = finish_operation();
      else end_read();
      return st;
    }
    return Status::Ok();  // already retired by its batch, or never shown here
  }

  Status finish_operation() {
    Status st = flush_groups();
    if (st.ok() && prefix_mode_) st = after_window_change();
    end_read();
    if (!st.ok()) {
      error_status_ = st;
      return st;
    }
    result_.flush(&changes_);
    return Status::Ok();
  }

  Result<Row> insert_row(const TableSchema& t, const worker::Mutation::Insert& in) {
    Row row(t.columns.size());
    std::vector<char> given(t.columns.size(), 0);
    for (int i = 0; i < in.columns_size(); ++i) {
      int c = t.column_index(in.columns(i));
      row[static_cast<size_t>(c)] = apply_storage_affinity(from_proto(in.values(i)), t.affinity[static_cast<size_t>(c)]);
      given[static_cast<size_t>(c)] = 1;
    }
    for (size_t c = 0; c < t.columns.size(); ++c) {
      if (given[c] || !t.default_sql[c]) continue;
      TANDEM_RETURN_IF_ERROR(ensure_read());
      TANDEM_ASSIGN_OR_RETURN(auto st, db_.cached("SELECT " + *t.default_sql[c]));
      TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
      if (has) row[c] = apply_storage_affinity(st->column(0), t.affinity[c]);
    }
    return row;
  }

  // Recomputes every touched key's displayed row and tells the operators what changed.
  Status refold() {
    // Displayed rows per table, starting from the confirmed base of each touched key.
    std::map<std::string, std::unordered_map<std::string, std::optional<Row>>> disp;
    auto state = [&](const TableSchema& t, const std::string& key, const Row& pk_values) -> Result<std::optional<Row>*> {
      auto& m = disp[t.name];
      auto it = m.find(key);
      if (it != m.end()) return &it->second;
      TableOverlay& ov = overlay_[t.name];
      ov.schema = schema_of(t.name).value();
      auto b = ov.base.find(key);
      if (b == ov.base.end()) {
        TANDEM_ASSIGN_OR_RETURN(auto row, base_row(t, pk_values));
        b = ov.base.emplace(key, row).first;
        ov.graph.emplace(key, row);
      }
      return &m.emplace(key, b->second).first->second;
    };
    for (const auto& p : pending_) {
      for (const auto& m : p.mutations) {
        if (!table_occurrences_.count(m.table())) continue;
        TANDEM_ASSIGN_OR_RETURN(auto schema, schema_of(m.table()));
        const TableSchema& t = *schema;
        auto pk_of = [&](const google::protobuf::RepeatedPtrField<change::Value>& vals) {
          Row r;
          for (int i = 0; i < vals.size(); ++i)
            r.push_back(apply_storage_affinity(from_proto(vals.Get(i)), t.affinity[static_cast<size_t>(t.pk[static_cast<size_t>(i)])]));
          return r;
        };
        auto key_of = [&](const Row& pkv) {
          std::string k;
          for (const auto& v : pkv) encode_canonical(v, &k);
          return k;
        };
        if (m.has_insert()) {
          TANDEM_ASSIGN_OR_RETURN(Row row, insert_row(t, m.insert()));
          Row pkv;
          for (int c : t.pk) pkv.push_back(row[static_cast<size_t>(c)]);
          TANDEM_ASSIGN_OR_RETURN(auto* cur, state(t, key_of(pkv), pkv));
          if (!*cur || m.insert().or_replace()) *cur = std::move(row);
        } else if (m.has_update()) {
          Row pkv = pk_of(m.update().pk());
          std::string key = key_of(pkv);
          TANDEM_ASSIGN_OR_RETURN(auto* cur, state(t, key, pkv));
          if (!*cur) continue;
          Row row = **cur;
          for (int i = 0; i < m.update().columns_size(); ++i) {
            int c = t.column_index(m.update().columns(i));
            row[static_cast<size_t>(c)] =
                apply_storage_affinity(from_proto(m.update().values(i)), t.affinity[static_cast<size_t>(c)]);
          }
          Row new_pk;
          for (int c : t.pk) new_pk.push_back(row[static_cast<size_t>(c)]);
          std::string new_key = key_of(new_pk);
          if (new_key == key) {
            **cur = std::move(row);
          } else {
            *cur = std::nullopt;
            TANDEM_ASSIGN_OR_RETURN(auto* dst, state(t, new_key, new_pk));
            *dst = std::move(row);
          }
        } else if (m.has_delete_()) {
          Row pkv = pk_of(m.delete_().pk());
          TANDEM_ASSIGN_OR_RETURN(auto* cur, state(t, key_of(pkv), pkv));
          *cur = std::nullopt;
        }
      }
    }
    // Tell the operators, key by key, and forget keys no pending mutation touches any more.
    for (auto& [table, ov] : overlay_) {
      auto& shown = disp[table];
      std::vector<std::string> keys;
      for (const auto& [k, v] : ov.graph) keys.push_back(k);
      for (const auto& k : keys) {
        auto d = shown.find(k);
        std::optional<Row> target = d != shown.end() ? d->second : ov.base[k];
        std::optional<Row> old = ov.graph[k];
        if (!same_row(old, target)) {
          ov.graph[k] = target;
          cur_overlay_ = true;
          cur_overlay_table_ = table;
          cur_overlay_key_ = k;
          cur_overlay_old_ = old;
          Status st = graph_delta(table, old ? &*old : nullptr, target ? &*target : nullptr);
          cur_overlay_ = false;
          TANDEM_RETURN_IF_ERROR(st);
        }
        if (d == shown.end()) {
          ov.graph.erase(k);
          ov.base.erase(k);
        }
      }
    }
    return Status::Ok();
  }

  // ---------------------------------------------------------------- accessors
  std::vector<RowChangeRecord> take_changes() { return std::move(changes_); }
  std::optional<Status> error() const {
    if (!error_status_.ok()) return error_status_;
    if (overflow_groups_ > 0) return Status::InvalidArgument("integer overflow");
    return std::nullopt;
  }

  std::vector<std::pair<std::string, Row>> keyed_rows() const {
    std::vector<std::pair<std::string, Row>> out;
    result_.for_each_visible([&](const Entry& e) { out.emplace_back(e.key, e.row); });
    return out;
  }

  size_t memory_bytes() const {
    size_t n = result_.bytes();
    for (const auto& [k, g] : groups_) {
      n += sizeof(Group) + k.capacity() + row_bytes(g.key_values) + g.accs.size() * sizeof(Accumulator) + 64;
      for (const auto& a : g.accs) n += a.values.size() * (sizeof(Value) + 48);
    }
    for (const auto& [k, d] : distinct_) n += sizeof(DistinctRow) + k.capacity() + d.variants.size() * 96 + 64;
    for (const auto& [t, ov] : overlay_) n += (ov.base.size() + ov.graph.size()) * 128;
    return n;
  }

  Database& db_;
  DeltaJournal* journal_;
  std::shared_ptr<const Plan> plan_;
  ViewOptions options_;
  size_t n_ = 0;
  size_t plan_params_ = 0;
  bool prefix_mode_ = false;
  bool bounded_extremes_ = false;
  std::vector<Entry>* collect_ = nullptr;  // set while a join refill gathers tuples
  int64_t reader_ = 0;
  int64_t applied_ = 0, hydrated_ = 0;
  // Position inside a batch.
  const DeltaBatch* cur_batch_ = nullptr;
  size_t cur_index_ = 0;
  int changed_occ_ = -1;
  // The overlay delta being processed (its "before" row for lookups that exclude it).
  bool cur_overlay_ = false;
  std::string cur_overlay_table_, cur_overlay_key_;
  std::optional<Row> cur_overlay_old_;
  // Read transaction.
  bool in_read_ = false;
  int64_t read_version_ = 0;
  std::vector<BatchPtr> comp_batches_;
  int64_t lookups_ = 0;
  int64_t compensated_ = 0;
  // Operators.
  std::map<std::string, std::vector<int>> table_occurrences_;
  ResultStore result_;
  std::unordered_map<std::string, Group> groups_;
  std::vector<std::string> dirty_groups_;
  int64_t overflow_groups_ = 0;
  std::unordered_map<std::string, DistinctRow> distinct_;
  mutable std::vector<const Row*> scratch_;
  // Overlay.
  std::vector<Pending> pending_;
  std::map<std::string, TableOverlay> overlay_;
  std::map<std::string, std::shared_ptr<const TableSchema>> other_schemas_;
  Status error_status_;
  std::vector<RowChangeRecord> changes_;

  friend class LiveView;
};

// ------------------------------------------------------------------ LiveView
Result<std::unique_ptr<LiveView>> LiveView::create(Database& db, DeltaJournal* journal, std::shared_ptr<const Plan> plan,
                                                   ViewOptions options) {
  if (!plan) return Status::InvalidArgument("no plan");
  auto impl = std::make_unique<Impl>(db, journal, std::move(plan), options);
  impl->plan_params_ = impl->plan_->params.size();
  impl->scratch_.assign(impl->plan_->occurrences.size(), nullptr);
  TANDEM_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<LiveView>(new LiveView(std::move(impl)));
}

LiveView::LiveView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LiveView::~LiveView() = default;

Status LiveView::apply(const BatchPtr& batch) { return impl_->apply(batch); }

Status LiveView::catch_up() {
  if (!impl_->journal_) return Status::Ok();
  for (const auto& b : impl_->journal_->since(impl_->applied_)) TANDEM_RETURN_IF_ERROR(impl_->apply(b));
  return Status::Ok();
}

Status LiveView::rehydrate() {
  auto& i = *impl_;
  i.error_status_ = Status::Ok();
  std::vector<RowChangeRecord> before_changes = std::move(i.changes_);
  auto old_rows = i.keyed_rows();
  // Reset operator state, keep pending mutations.
  i.result_ = ResultStore();
  i.groups_.clear();
  i.dirty_groups_.clear();
  i.overflow_groups_ = 0;
  i.distinct_.clear();
  std::vector<bool> desc;
  for (const auto& k : i.plan_->order) desc.push_back(k.descending);
  bool internally_ordered = i.plan_->ordered() || i.plan_->limit >= 0 || i.plan_->offset > 0;
  i.result_.init(internally_ordered, i.plan_->ordered(), desc, i.plan_->offset, i.plan_->limit, i.prefix_mode_);
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
size_t LiveView::pending_count() const { return impl_->pending_.size(); }
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
int64_t LiveView::lookup_count() const { return impl_->lookups_; }
int64_t LiveView::compensated_lookup_count() const { return impl_->compensated_; }

}  // namespace tandem::ivm
