// Conversions between runtime values and their protobuf form (tandem.change.Value / Row).
#pragma once

#include "proto/change.pb.h"
#include "runtime/sqlite/value.hpp"

namespace tandem {

Value from_proto(const change::Value& v);
void to_proto(const Value& v, change::Value* out);
change::Value to_proto(const Value& v);
Row from_proto(const change::Row& r);
void to_proto(const Row& r, change::Row* out);
Row from_proto(const google::protobuf::RepeatedPtrField<change::Value>& values);
void to_proto(const Row& r, google::protobuf::RepeatedPtrField<change::Value>* out);

}  // namespace tandem
