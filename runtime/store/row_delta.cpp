#include "runtime/store/row_delta.hpp"

#include "runtime/sqlite/proto_value.hpp"

namespace tandem {

void to_proto(const DeltaBatch& batch, change::RowDeltaBatch* out) {
  out->Clear();
  out->set_db_version(batch.db_version);
  out->set_origin(batch.origin == DeltaOrigin::merge ? change::RowDeltaBatch::MERGE : change::RowDeltaBatch::LOCAL);
  out->set_mutation_id(batch.mutation_id);
  out->mutable_deltas()->Reserve(static_cast<int>(batch.deltas.size()));
  for (const auto& d : batch.deltas) {
    auto* pd = out->add_deltas();
    pd->set_table(d.table);
    if (d.old_row) to_proto(*d.old_row, pd->mutable_old_row());
    if (d.new_row) to_proto(*d.new_row, pd->mutable_new_row());
  }
}

DeltaBatch from_proto(const change::RowDeltaBatch& batch) {
  DeltaBatch out;
  out.db_version = batch.db_version();
  out.origin = batch.origin() == change::RowDeltaBatch::MERGE ? DeltaOrigin::merge : DeltaOrigin::local;
  out.mutation_id = batch.mutation_id();
  out.deltas.reserve(static_cast<size_t>(batch.deltas_size()));
  for (const auto& pd : batch.deltas()) {
    RowDelta d;
    d.table = pd.table();
    if (pd.has_old_row()) d.old_row = from_proto(pd.old_row());
    if (pd.has_new_row()) d.new_row = from_proto(pd.new_row());
    out.deltas.push_back(std::move(d));
  }
  return out;
}

}  // namespace tandem
