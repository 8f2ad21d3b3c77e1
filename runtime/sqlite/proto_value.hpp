// Conversions between runtime values and their protobuf form (tandem.change.Value / Row /
// Error). The one place a Status crosses a message boundary: every role and app converts
// through here.
#pragma once

#include "proto/change.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"

namespace tandem {

Value from_proto(const change::Value& v);
void to_proto(const Value& v, change::Value* out);
change::Value to_proto(const Value& v);
Row from_proto(const change::Row& r);
void to_proto(const Row& r, change::Row* out);
Row from_proto(const google::protobuf::RepeatedPtrField<change::Value>& values);
void to_proto(const Row& r, google::protobuf::RepeatedPtrField<change::Value>* out);

// Status <-> tandem.change.Error, code by code. An OK error is Status::Ok(); a code this
// build does not know (a newer peer's) becomes INTERNAL, keeping the message.
void to_proto(const Status& status, change::Error* out);
Status from_proto(const change::Error& error);

}  // namespace tandem
