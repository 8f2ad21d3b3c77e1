#include "runtime/sqlite/proto_value.hpp"

namespace tandem {

Value from_proto(const change::Value& v) {
  switch (v.kind_case()) {
    case change::Value::kInteger: return Value::Integer(v.integer());
    case change::Value::kReal: return Value::Real(v.real());
    case change::Value::kText: return Value::Text(v.text());
    case change::Value::kBlob: return Value::Blob(v.blob());
    case change::Value::KIND_NOT_SET: break;
  }
  return Value();
}

void to_proto(const Value& v, change::Value* out) {
  switch (v.type()) {
    case Value::Type::null: out->Clear(); break;
    case Value::Type::integer: out->set_integer(v.integer()); break;
    case Value::Type::real: out->set_real(v.real()); break;
    case Value::Type::text: out->set_text(v.bytes()); break;
    case Value::Type::blob: out->set_blob(v.bytes()); break;
  }
}

change::Value to_proto(const Value& v) {
  change::Value out;
  to_proto(v, &out);
  return out;
}

Row from_proto(const google::protobuf::RepeatedPtrField<change::Value>& values) {
  Row r;
  r.reserve(static_cast<size_t>(values.size()));
  for (const auto& v : values) r.push_back(from_proto(v));
  return r;
}

void to_proto(const Row& r, google::protobuf::RepeatedPtrField<change::Value>* out) {
  out->Clear();
  out->Reserve(static_cast<int>(r.size()));
  for (const auto& v : r) to_proto(v, out->Add());
}

Row from_proto(const change::Row& r) { return from_proto(r.values()); }
void to_proto(const Row& r, change::Row* out) { to_proto(r, out->mutable_values()); }

}  // namespace tandem
