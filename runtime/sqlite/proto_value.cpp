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

namespace {

// Written out rather than cast: the two enums are numbered alike today, but a cast would
// silently turn a renumbering or a new code into a different error.
change::Error::Code code_to_proto(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return change::Error::OK;
    case StatusCode::invalid_argument: return change::Error::INVALID_ARGUMENT;
    case StatusCode::constraint: return change::Error::CONSTRAINT;
    case StatusCode::unsupported: return change::Error::UNSUPPORTED;
    case StatusCode::not_found: return change::Error::NOT_FOUND;
    case StatusCode::unauthenticated: return change::Error::UNAUTHENTICATED;
    case StatusCode::permission_denied: return change::Error::PERMISSION_DENIED;
    case StatusCode::unavailable: return change::Error::UNAVAILABLE;
    case StatusCode::internal: return change::Error::INTERNAL;
    case StatusCode::resource_exhausted: return change::Error::RESOURCE_EXHAUSTED;
  }
  return change::Error::INTERNAL;
}

StatusCode code_from_proto(change::Error::Code code) {
  switch (code) {
    case change::Error::OK: return StatusCode::ok;
    case change::Error::INVALID_ARGUMENT: return StatusCode::invalid_argument;
    case change::Error::CONSTRAINT: return StatusCode::constraint;
    case change::Error::UNSUPPORTED: return StatusCode::unsupported;
    case change::Error::NOT_FOUND: return StatusCode::not_found;
    case change::Error::UNAUTHENTICATED: return StatusCode::unauthenticated;
    case change::Error::PERMISSION_DENIED: return StatusCode::permission_denied;
    case change::Error::UNAVAILABLE: return StatusCode::unavailable;
    case change::Error::INTERNAL: return StatusCode::internal;
    case change::Error::RESOURCE_EXHAUSTED: return StatusCode::resource_exhausted;
    default: return StatusCode::internal;
  }
}

}  // namespace

void to_proto(const Status& status, change::Error* out) {
  out->set_code(code_to_proto(status.code()));
  out->set_message(status.message());
}

Status from_proto(const change::Error& error) {
  if (error.code() == change::Error::OK) return Status::Ok();
  return Status(code_from_proto(error.code()), error.message());
}

}  // namespace tandem
