// tandem::api::Status and Result<T>: errors as values in the public C++ API.
//
// The public types live in tandem::api because the engine's internal tandem::Status exists
// in the same library (the static libtandem.a holds both); their codes are the engine's plus
// two of the API's own (closed, wrong_thread), and equal the C API's TANDEM_* codes.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "tandem/export.hpp"

namespace tandem::api {

enum class Code {
  ok = 0,
  invalid_argument = 1,    // malformed request, unknown table or column, bad value, NULL
  constraint = 2,          // the database refused the write (constraint, trigger)
  unsupported = 3,         // outside what Tandem supports (SQL subset, schema change)
  not_found = 4,
  unauthenticated = 5,     // the server refused the token
  permission_denied = 6,   // e.g. no access to the node's secret file
  unavailable = 7,         // peer gone, timeout, database in use
  internal = 8,            // I/O error, corrupt file, bug
  resource_exhausted = 9,  // too large, too many
  closed = 10,             // the Database (or Watch) was closed
  wrong_thread = 11,       // a blocking call from inside a Tandem callback (would deadlock)
};

// "constraint", "closed", ...
TANDEM_API const char* code_name(Code code);

class TANDEM_API Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const { return code_ == Code::ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "constraint: UNIQUE constraint failed: todo.id"; "ok" when ok.
  std::string to_string() const;

 private:
  Code code_ = Code::ok;
  std::string message_;
};

// A value or the Status saying why there is none. value() on a failed Result throws
// std::bad_variant_access (check ok() first).
template <class T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {}  // NOLINT: must not be ok
  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }
  Status status() const { return ok() ? Status() : std::get<Status>(data_); }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace tandem::api
