// Renders a tandem.query.Query (or one expression) back to SQLite SQL. Parameters render as
// ?N with their original index, literals keep their storage class (an INTEGER renders as an
// integer literal, a REAL always with a decimal point or exponent, a BLOB as X'..'), so SQLite
// running the rendered text computes exactly what the AST means. Used for hydration, lookups
// and the oracle tests.
#pragma once

#include <string>

#include "proto/query.pb.h"
#include "runtime/common/status.hpp"

namespace tandem::query {

std::string render(const Query& query);
std::string render(const Expr& expr);
// A literal as SQL (INT64_MIN as an expression, since SQLite reads -9223372036854775808
// only as a negated literal).
std::string render_literal(const change::Value& value);
// Double-quotes an identifier.
std::string quote_name(const std::string& name);

// Checks a Query that came from elsewhere (a message) for structural validity: every oneof
// set, parameters within parameter_count, LIMIT/OFFSET literal integers or parameters, no
// aggregate nested in an aggregate, text literals without NUL bytes.
Status validate(const Query& query);

}  // namespace tandem::query
