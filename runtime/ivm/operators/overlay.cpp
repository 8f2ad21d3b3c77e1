#include "runtime/ivm/operators/overlay.hpp"

#include <unordered_map>

#include "runtime/ivm/operators/lookup.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/mutation_rules.hpp"

namespace tandem::ivm {

Result<std::shared_ptr<const TableSchema>> OverlayOperator::schema_of(const DeltaContext& ctx, const std::string& table,
                                                                      OverlayState& state) const {
  for (const auto& o : plan_.occurrences)
    if (o.table->name == table) return o.table;
  auto it = state.other_schemas.find(table);
  if (it != state.other_schemas.end()) return it->second;
  auto s = read_table_schema(ctx.lookup->database(), table);
  if (!s.ok()) return s.status();
  auto ptr = std::make_shared<const TableSchema>(std::move(s).value());
  state.other_schemas[table] = ptr;
  return ptr;
}

Status OverlayOperator::add(const DeltaContext& ctx, const std::string& id, const std::vector<worker::Mutation>& mutations,
                            const std::string& origin, OverlayState& state) const {
  if (id.empty()) return Status::InvalidArgument("a pending mutation needs an id");
  for (const auto& p : state.pending)
    if (p.id == id) return Status::InvalidArgument("mutation id " + id + " is already pending");
  if (mutations.empty()) return Status::InvalidArgument("mutation " + id + " has no operations");
  for (const auto& m : mutations) {
    auto s = schema_of(ctx, m.table(), state);
    if (!s.ok()) return Status::InvalidArgument("mutation: " + s.status().message());
    TANDEM_ASSIGN_OR_RETURN(bool replicated, is_replicated_table(ctx.lookup->database(), (*s)->name));
    if (!replicated) return Status::InvalidArgument("no replicated table named '" + m.table() + "'");
    TANDEM_RETURN_IF_ERROR(validate_mutation({(*s)->name, (*s)->columns, (*s)->pk}, m));
  }
  state.pending.push_back({origin, id, mutations, std::nullopt});
  return Status::Ok();
}

bool OverlayOperator::retire(const DeltaBatch& batch, OverlayState& state) const {
  auto& pending = state.pending;
  bool retired = false;
  // The db_worker runs one origin's mutations in the order they were sent: when the batch
  // of one arrives, every earlier one of the same origin has committed (its effect, if any,
  // is in the base) or failed (its settlement will only confirm the rollback).
  std::vector<char> done_by_batch(pending.size(), 0);
  if (!batch.mutation_id.empty()) {
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i].id != batch.mutation_id) continue;
      for (size_t j = 0; j <= i; ++j)
        if (pending[j].origin == pending[i].origin) done_by_batch[j] = 1;
      break;
    }
  }
  for (size_t i = 0, orig = 0; i < pending.size(); ++orig) {
    bool done = done_by_batch[orig] || (pending[i].success_version && *pending[i].success_version <= batch.db_version);
    if (done) {
      pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
      retired = true;
    } else {
      ++i;
    }
  }
  return retired;
}

Status OverlayOperator::apply(const DeltaContext& ctx, const RowDelta& d, OverlayState& state, JoinState& js) const {
  const std::vector<int>* occs = join_.occurrences_of(d.table);
  if (!occs) return Status::Ok();
  const Row* old_row = d.old_row ? &*d.old_row : nullptr;
  const Row* new_row = d.new_row ? &*d.new_row : nullptr;
  auto ov_it = state.tables.find(d.table);
  if (ov_it == state.tables.end() || ov_it->second.base.empty()) return join_.apply(ctx, d.table, old_row, new_row, js);
  const TableSchema& t = *plan_.occurrences[static_cast<size_t>((*occs)[0])].table;
  TableOverlay& ov = ov_it->second;
  std::string ko = d.old_row ? pk_key(t, *d.old_row) : std::string();
  std::string kn = d.new_row ? pk_key(t, *d.new_row) : std::string();
  bool old_touched = d.old_row && ov.base.count(ko);
  bool new_touched = d.new_row && ov.base.count(kn);
  if (!old_touched && !new_touched) return join_.apply(ctx, d.table, old_row, new_row, js);
  bool same_key = d.old_row && d.new_row && ko == kn;
  if (same_key) {
    ov.base[ko] = d.new_row;
  } else {
    if (d.old_row) {
      if (old_touched) ov.base[ko] = std::nullopt;
      else TANDEM_RETURN_IF_ERROR(join_.apply(ctx, d.table, old_row, nullptr, js));
    }
    if (d.new_row) {
      if (new_touched) ov.base[kn] = d.new_row;
      else TANDEM_RETURN_IF_ERROR(join_.apply(ctx, d.table, nullptr, new_row, js));
    }
  }
  return refold(ctx, state, js);
}

Result<Row> OverlayOperator::insert_row(const DeltaContext& ctx, const TableSchema& t,
                                        const worker::Mutation::Insert& in) const {
  Row row(t.columns.size());
  std::vector<char> given(t.columns.size(), 0);
  for (int i = 0; i < in.columns_size(); ++i) {
    int c = t.column_index(in.columns(i));
    row[static_cast<size_t>(c)] = apply_storage_affinity(from_proto(in.values(i)), t.affinity[static_cast<size_t>(c)]);
    given[static_cast<size_t>(c)] = 1;
  }
  for (size_t c = 0; c < t.columns.size(); ++c) {
    if (given[c] || !t.default_sql[c]) continue;
    TANDEM_ASSIGN_OR_RETURN(Value v, ctx.lookup->evaluate(ctx, *t.default_sql[c]));
    row[c] = apply_storage_affinity(v, t.affinity[c]);
  }
  return row;
}

Status OverlayOperator::refold(const DeltaContext& ctx, OverlayState& state, JoinState& js) const {
  // Displayed rows per table, starting from the confirmed base of each touched key.
  std::map<std::string, std::unordered_map<std::string, std::optional<Row>>> disp;
  auto current = [&](const TableSchema& t, const std::string& key, const Row& pk_values) -> Result<std::optional<Row>*> {
    auto& m = disp[t.name];
    auto it = m.find(key);
    if (it != m.end()) return &it->second;
    TableOverlay& ov = state.tables[t.name];
    ov.schema = schema_of(ctx, t.name, state).value();
    auto b = ov.base.find(key);
    if (b == ov.base.end()) {
      TANDEM_ASSIGN_OR_RETURN(auto row, ctx.lookup->base_row(ctx, t, pk_values));
      b = ov.base.emplace(key, row).first;
      ov.graph.emplace(key, row);
    }
    return &m.emplace(key, b->second).first->second;
  };
  for (const auto& p : state.pending) {
    for (const auto& m : p.mutations) {
      if (!join_.occurrences_of(m.table())) continue;
      TANDEM_ASSIGN_OR_RETURN(auto schema, schema_of(ctx, m.table(), state));
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
        TANDEM_ASSIGN_OR_RETURN(Row row, insert_row(ctx, t, m.insert()));
        Row pkv;
        for (int c : t.pk) pkv.push_back(row[static_cast<size_t>(c)]);
        TANDEM_ASSIGN_OR_RETURN(auto* cur, current(t, key_of(pkv), pkv));
        if (!*cur || m.insert().or_replace()) *cur = std::move(row);
      } else if (m.has_update()) {
        Row pkv = pk_of(m.update().pk());
        std::string key = key_of(pkv);
        TANDEM_ASSIGN_OR_RETURN(auto* cur, current(t, key, pkv));
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
          TANDEM_ASSIGN_OR_RETURN(auto* dst, current(t, new_key, new_pk));
          *dst = std::move(row);
        }
      } else if (m.has_delete_()) {
        Row pkv = pk_of(m.delete_().pk());
        TANDEM_ASSIGN_OR_RETURN(auto* cur, current(t, key_of(pkv), pkv));
        *cur = std::nullopt;
      }
    }
  }
  // Tell the join, key by key, and forget keys no pending mutation touches any more.
  for (auto& [table, ov] : state.tables) {
    auto& shown = disp[table];
    std::vector<std::string> keys;
    for (const auto& [k, v] : ov.graph) keys.push_back(k);
    for (const auto& k : keys) {
      auto d = shown.find(k);
      std::optional<Row> target = d != shown.end() ? d->second : ov.base[k];
      std::optional<Row> old = ov.graph[k];
      if (!same_row(old, target)) {
        ov.graph[k] = target;
        OverlayDelta change{table, k, old};
        DeltaContext sub = ctx;
        sub.overlay_delta = &change;
        TANDEM_RETURN_IF_ERROR(join_.apply(sub, table, old ? &*old : nullptr, target ? &*target : nullptr, js));
      }
      if (d == shown.end()) {
        ov.graph.erase(k);
        ov.base.erase(k);
      }
    }
  }
  return Status::Ok();
}

}  // namespace tandem::ivm
