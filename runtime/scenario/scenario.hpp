// The scenario format of `tandem scenario` (../shared/spec/scenario-format.md): parsing a
// JSON scenario into steps, the JSON encoding of SQLite values, and the output document.
// Pure: running a scenario composes actors (apps/tandem/scenario.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"
#include "runtime/sqlite/value_json.hpp"
#include "runtime/store/store.hpp"

namespace tandem::scenario {

struct Replica {
  std::string name;
  SiteId site{};
};

struct Step {
  enum class Op { sql, sync, watch, note };
  Op op = Op::note;
  size_t index = 0;                 // position in "steps" (0-based), used in errors
  std::string replica;              // sql, watch
  std::vector<std::string> sql;     // sql: one transaction
  Row params;                       // sql: bound to the first statement with parameters
  std::string from, to;             // sync
  std::string view_id, query;       // watch
};

struct Scenario {
  std::vector<std::string> schema;
  std::vector<std::string> crr;  // the tables to replicate
  bool crr_given = false;        // absent: every table the schema creates
  std::vector<Replica> replicas;
  std::vector<Step> steps;
};

// Parses a scenario document. Errors name the step or field ("step 3: unknown op 'frob'").
Result<Scenario> parse(const nlohmann::json& doc);
Result<Scenario> parse_text(const std::string& text);

using tandem::value_from_json;  // runtime/sqlite/value_json.hpp
using tandem::value_to_json;

// True when `sql` has a parameter (?, ?N, :name, @name, $name) outside literals and comments.
bool has_parameters(const std::string& sql);

// The output document, filled in by the runner.
struct TableDump {
  std::vector<std::string> columns;
  std::vector<Row> rows;
};
struct ReplicaReport {
  std::string site_hex;
  int64_t db_version = 0;
  std::map<std::string, TableDump> tables;
  std::map<std::string, TableDump> views;
};
struct StepError {
  size_t step;
  std::string replica;
  std::string error;
};
struct Report {
  std::vector<std::pair<std::string, ReplicaReport>> replicas;  // scenario order
  std::vector<StepError> errors;
  bool converged() const;  // every replica holds identical tables
};
nlohmann::json to_json(const Report& report);

}  // namespace tandem::scenario
