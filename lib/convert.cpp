#include "lib/convert.hpp"

#include "runtime/sqlite/proto_value.hpp"

namespace tandem::api::detail {

Status from_internal(const ::tandem::Status& s) {
  if (s.ok()) return {};
  // The public codes 0..9 are the engine's (tandem.change.Error.Code) by construction.
  return {static_cast<Code>(static_cast<int>(s.code())), s.message()};
}

Status from_error(const ::tandem::change::Error& e) { return from_internal(::tandem::from_proto(e)); }

void to_proto(const Value& v, ::tandem::change::Value* out) {
  out->Clear();
  if (auto* i = std::get_if<int64_t>(&v)) {
    out->set_integer(*i);
  } else if (auto* d = std::get_if<double>(&v)) {
    out->set_real(*d);
  } else if (auto* s = std::get_if<std::string>(&v)) {
    out->set_text(*s);
  } else if (auto* b = std::get_if<Blob>(&v)) {
    out->set_blob(b->bytes);
  }
}

Value from_proto(const ::tandem::change::Value& v) {
  switch (v.kind_case()) {
    case ::tandem::change::Value::kInteger: return v.integer();
    case ::tandem::change::Value::kReal: return v.real();
    case ::tandem::change::Value::kText: return v.text();
    case ::tandem::change::Value::kBlob: return Blob{v.blob()};
    default: return nullptr;
  }
}

Row from_proto(const ::tandem::change::Row& r) {
  Row row;
  row.reserve(r.values_size());
  for (const auto& v : r.values()) row.push_back(from_proto(v));
  return row;
}

Status to_proto(const Mutation& m, ::tandem::worker::Mutation* out) {
  if (m.table.empty()) return {Code::invalid_argument, "a mutation needs a table"};
  out->set_table(m.table);
  switch (m.kind) {
    case Mutation::Kind::insert: {
      if (m.columns.size() != m.values.size()) return {Code::invalid_argument, "insert into " + m.table + ": columns and values differ in number"};
      auto* ins = out->mutable_insert();
      for (const auto& c : m.columns) ins->add_columns(c);
      for (const auto& v : m.values) to_proto(v, ins->add_values());
      ins->set_or_replace(m.or_replace);
      break;
    }
    case Mutation::Kind::update: {
      if (m.columns.size() != m.values.size()) return {Code::invalid_argument, "update of " + m.table + ": columns and values differ in number"};
      if (m.pk.empty()) return {Code::invalid_argument, "update of " + m.table + " needs the primary key"};
      auto* up = out->mutable_update();
      for (const auto& v : m.pk) to_proto(v, up->add_pk());
      for (const auto& c : m.columns) up->add_columns(c);
      for (const auto& v : m.values) to_proto(v, up->add_values());
      break;
    }
    case Mutation::Kind::remove: {
      if (m.pk.empty()) return {Code::invalid_argument, "delete from " + m.table + " needs the primary key"};
      auto* del = out->mutable_delete_();
      for (const auto& v : m.pk) to_proto(v, del->add_pk());
      break;
    }
  }
  return {};
}

RowChange from_proto(const ::tandem::view::RowChange& c) {
  RowChange out;
  out.kind = c.kind() == ::tandem::view::RowChange::ADDED     ? RowChange::Kind::added
             : c.kind() == ::tandem::view::RowChange::REMOVED ? RowChange::Kind::removed
                                                               : RowChange::Kind::changed;
  out.key = c.key();
  out.row = from_proto(c.row());
  out.position = c.position();
  out.old_position = c.old_position();
  return out;
}

}  // namespace tandem::api::detail
