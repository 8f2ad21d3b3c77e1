// Parses the live-query SQL subset (docs/query.md) into a tandem.query.Query.
//
// The parser is purely syntactic: it does not know the schema, so names are resolved later
// (runtime/ivm/plan). Anything outside the subset is refused with Status::Unsupported naming
// the construct and its position ("unsupported: subquery at line 1, column 23"); malformed SQL
// gets Status::InvalidArgument with the position. Positions are also stored in the AST as
// byte offsets so later checks can report line:column through describe_position().
#pragma once

#include <string>

#include "proto/query.pb.h"
#include "runtime/common/status.hpp"

namespace tandem::query {

// Parses one SELECT statement (a trailing ';' is allowed).
Result<Query> parse(const std::string& sql);

// "line L, column C" for a byte offset into `sql` (1-based line and column).
std::string describe_position(const std::string& sql, int offset);

}  // namespace tandem::query
