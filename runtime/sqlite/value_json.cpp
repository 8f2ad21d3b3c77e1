#include "runtime/sqlite/value_json.hpp"

#include <optional>
#include <string>

namespace tandem {
namespace {

using json = nlohmann::json;

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::optional<std::string> unhex(const std::string& text) {
  if (text.size() % 2) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < text.size(); i += 2) {
    int v = 0;
    for (size_t k = 0; k < 2; ++k) {
      char c = text[i + k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out.push_back(static_cast<char>(v));
  }
  return out;
}

}  // namespace

Result<Value> value_from_json(const json& j) {
  if (j.is_null()) return Value();
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return Status::InvalidArgument("integer " + j.dump() + " is out of SQLite's range");
    return Value::Integer(j.get<int64_t>());
  }
  if (j.is_number_float()) return Value::Real(j.get<double>());
  if (j.is_string()) return Value::Text(j.get<std::string>());
  if (j.is_object() && j.size() == 1) {
    auto first = j.begin();
    const std::string key = first.key();
    const json& v = first.value();
    if (key == "real" && v.is_number()) return Value::Real(v.get<double>());
    if (key == "int") {
      if (v.is_number_integer()) return Value::Integer(v.get<int64_t>());
      if (v.is_string()) {
        const std::string digits = v.get<std::string>();
        try {
          size_t used = 0;
          long long x = std::stoll(digits, &used, 10);
          if (used == digits.size()) return Value::Integer(x);
        } catch (...) {
        }
        return Status::InvalidArgument("{\"int\": " + v.dump() + "} is not a 64-bit integer");
      }
    }
    if (key == "text" && v.is_string()) return Value::Text(v.get<std::string>());
    if (key == "blob" && v.is_string()) {
      auto bytes = unhex(v.get<std::string>());
      if (!bytes) return Status::InvalidArgument("{\"blob\": " + v.dump() + "} is not hex");
      return Value::Blob(*bytes);
    }
  }
  return Status::InvalidArgument("unsupported value " + j.dump() +
                                 " (use a number, a string, null, or {\"real\"|\"int\"|\"text\"|\"blob\": ...})");
}

json value_to_json(const Value& v) {
  constexpr int64_t kExact = int64_t{1} << 53;
  switch (v.type()) {
    case Value::Type::null: return nullptr;
    case Value::Type::integer:
      if (v.integer() > kExact || v.integer() < -kExact) return json{{"int", std::to_string(v.integer())}};
      return v.integer();
    case Value::Type::real: return json{{"real", v.real()}};
    case Value::Type::text: return v.bytes();
    case Value::Type::blob: return json{{"blob", hex(v.bytes())}};
  }
  return nullptr;
}

}  // namespace tandem
