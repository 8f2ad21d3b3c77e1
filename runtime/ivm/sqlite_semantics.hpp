// SQLite's value semantics, reimplemented so that the IVM computes exactly what SQLite 3.40
// computes for the same expression: column affinity on storage and in comparisons, numeric
// conversion of text in arithmetic, integer arithmetic that overflows into REAL, truth values,
// LIKE (ASCII case folding, UTF-8 aware, false on BLOBs as built with LIKE_DOESNT_MATCH_BLOBS),
// and the text form of numbers. Each function names the SQLite routine it follows; the oracle
// tests (tests/ivm) compare them with SQLite itself.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "runtime/sqlite/value.hpp"

namespace tandem::ivm {

__extension__ typedef __int128 int128;
__extension__ typedef unsigned __int128 uint128;

// Affinity of an expression. `none` is "no affinity" (literals, parameters, arithmetic);
// `blob` is a column declared without a type (SQLite's BLOB affinity). They differ in
// comparisons: two column operands use numeric-or-nothing, a column and a non-column use the
// column's affinity (sqlite3CompareAffinity).
enum class Affinity : uint8_t { none = 0, blob, text, numeric, integer, real };

// SQLite's rules for a declared column type (datatype3.html, section 3.1).
Affinity affinity_of_declared_type(const std::string& declared_type);
bool is_numeric_affinity(Affinity a);
// The affinity a comparison between two operands applies to both (sqlite3CompareAffinity).
Affinity comparison_affinity(Affinity left, Affinity right);
// What storing `v` into a column of affinity `a` stores (applyAffinity, vdbe.c).
Value apply_storage_affinity(const Value& v, Affinity a);
// The conversion a comparison with affinity `a` applies to an operand (OP_Lt and friends):
// numeric affinity turns numeric-looking TEXT into a number, text affinity turns numbers into
// TEXT; other values are unchanged. Returns true when `v` was changed.
bool apply_comparison_affinity(Value& v, Affinity a);

// Number parsing as sqlite3AtoF: the longest valid prefix is converted into *value.
// Returns 1 for a pure integer literal, 2 for a pure real literal (with '.' or exponent),
// 0 or -1 when the text is not entirely a number (see util.c).
int sqlite_atof(std::string_view text, double* value);
// sqlite3Atoi64: 0 exact, 1 extra text after the integer, 2 overflow (value clamped).
int sqlite_atoi64(std::string_view text, int64_t* value);
// The REAL value of any value (sqlite3VdbeRealValue): text/blob parse their numeric prefix.
double real_value(const Value& v);
// The INTEGER value of any value (sqlite3VdbeIntValue).
int64_t integer_value(const Value& v);
// Truth of a value in a boolean context (sqlite3VdbeBooleanValue); nullopt for NULL.
std::optional<bool> truth(const Value& v);
// The text form of a number (sqlite3VdbeMemStringify: "%lld", "%!.15g").
std::string number_to_text(const Value& v);

enum class ArithOp : uint8_t { add, sub, mul, div, mod };
// OP_Add/OP_Subtract/OP_Multiply/OP_Divide/OP_Remainder.
Value arithmetic(ArithOp op, const Value& left, const Value& right);
// `string LIKE pattern` (likeFunc + patternCompare): 1, 0 or NULL.
Value like(const Value& string, const Value& pattern);

}  // namespace tandem::ivm
