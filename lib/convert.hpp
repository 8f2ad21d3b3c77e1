// Conversions between the public API's value types (include/tandem/) and the engine's
// (internal Status, protobuf values and errors, caf errors). The only place that knows both.
#pragma once

#include <string>

#include "proto/change.pb.h"
#include "proto/view.pb.h"
#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "tandem/status.hpp"
#include "tandem/types.hpp"

namespace tandem::api::detail {

Status from_internal(const ::tandem::Status& s);
Status from_error(const ::tandem::change::Error& e);
void to_proto(const Value& v, ::tandem::change::Value* out);
Value from_proto(const ::tandem::change::Value& v);
Row from_proto(const ::tandem::change::Row& r);
// Fails (invalid_argument) on an empty table or mismatched columns and values.
Status to_proto(const Mutation& m, ::tandem::worker::Mutation* out);
RowChange from_proto(const ::tandem::view::RowChange& c);

}  // namespace tandem::api::detail
