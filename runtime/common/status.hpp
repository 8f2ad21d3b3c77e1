// Errors as values (LevelDB style): every fallible runtime function returns a Status or a
// Result<T>, and callers check it. The codes mirror tandem.change.Error.Code so a Status
// crosses actors and the network without translation tables.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tandem {

enum class StatusCode {
  ok = 0,
  invalid_argument = 1,   // malformed request, unknown table or column, bad value
  constraint = 2,         // the database refused the write (constraint, trigger)
  unsupported = 3,        // outside what Tandem supports (SQL subset, schema feature)
  not_found = 4,
  unauthenticated = 5,
  permission_denied = 6,
  unavailable = 7,        // peer gone, timeout, closed
  internal = 8,           // I/O error, corrupt file, bug
  resource_exhausted = 9, // too large, too many
};

const char* to_string(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
  static Status Constraint(std::string m) { return {StatusCode::constraint, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::unsupported, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::not_found, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {StatusCode::unauthenticated, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {StatusCode::permission_denied, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::unavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::internal, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::resource_exhausted, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "constraint: UNIQUE constraint failed: t.id"
  std::string to_string() const;

  // Prefixes the message with context ("merging batch from 0a..: " + message).
  Status with_context(const std::string& context) const {
    return ok() ? *this : Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

// A value or the Status that explains why there is none. Accessing the value of a failed
// Result is a bug (asserted).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) { assert(!std::get<Status>(data_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status ok_status;
    return ok() ? ok_status : std::get<Status>(data_);
  }
  T& value() & { assert(ok()); return std::get<T>(data_); }
  const T& value() const& { assert(ok()); return std::get<T>(data_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

inline const Status& status_of(const Status& s) { return s; }
template <class T>
const Status& status_of(const Result<T>& r) { return r.status(); }

}  // namespace tandem

// Early return on failure, for Status and Result alike.
#define TANDEM_RETURN_IF_ERROR(expr)              \
  do {                                            \
    auto tandem_status_ = (expr);                 \
    if (!tandem_status_.ok()) return ::tandem::status_of(tandem_status_); \
  } while (0)

#define TANDEM_CONCAT_INNER(a, b) a##b
#define TANDEM_CONCAT(a, b) TANDEM_CONCAT_INNER(a, b)
#define TANDEM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
// TANDEM_ASSIGN_OR_RETURN(auto x, f()); returns f()'s Status from the caller on failure.
#define TANDEM_ASSIGN_OR_RETURN(lhs, expr) \
  TANDEM_ASSIGN_OR_RETURN_IMPL(TANDEM_CONCAT(tandem_result_, __LINE__), lhs, expr)
