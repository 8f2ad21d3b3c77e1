// SQLite values as JSON, keeping the storage class (the encoding of
// ../shared/spec/scenario-format.md, used by every JSON the tandem binary reads or prints):
//   in:  a JSON integer is an INTEGER, another number a REAL; {"real": n}, {"int": "digits"},
//        {"blob": "HEX"}, {"text": "s"} force a class; null is NULL.
//   out: INTEGER as a number ({"int": "digits"} beyond 2^53), REAL as {"real": n}, TEXT as a
//        string, BLOB as {"blob": "HEX"} (upper case), NULL as null.
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"

namespace tandem {

Result<Value> value_from_json(const nlohmann::json& j);
nlohmann::json value_to_json(const Value& v);

}  // namespace tandem
