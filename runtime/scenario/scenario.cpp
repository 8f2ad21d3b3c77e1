#include "runtime/scenario/scenario.hpp"

#include <cctype>
#include <cmath>
#include <set>

namespace tandem::scenario {
namespace {

using json = nlohmann::json;

Status bad(const std::string& where, const std::string& what) { return Status::InvalidArgument(where + ": " + what); }

Result<std::vector<std::string>> string_or_list(const json& j, const std::string& where) {
  std::vector<std::string> out;
  if (j.is_string()) {
    out.push_back(j.get<std::string>());
  } else if (j.is_array()) {
    for (const auto& s : j) {
      if (!s.is_string()) return bad(where, "expected a string or a list of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    return bad(where, "expected a string or a list of strings");
  }
  return out;
}

Result<std::string> required_string(const json& step, const char* field, const std::string& where) {
  auto it = step.find(field);
  if (it == step.end() || !it->is_string()) return bad(where, std::string("missing string field \"") + field + "\"");
  return it->get<std::string>();
}

}  // namespace

Result<Scenario> parse_text(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions*/ false);
  if (doc.is_discarded()) return Status::InvalidArgument("the scenario is not valid JSON");
  return parse(doc);
}

Result<Scenario> parse(const json& doc) {
  if (!doc.is_object()) return Status::InvalidArgument("a scenario is a JSON object");
  Scenario s;
  static const std::set<std::string> known = {"schema", "crr", "replicas", "steps"};
  for (const auto& [key, v] : doc.items()) {
    (void)v;
    if (!known.count(key)) return bad("scenario", "unknown field \"" + key + "\"");
  }
  if (auto it = doc.find("schema"); it != doc.end()) {
    TANDEM_ASSIGN_OR_RETURN(s.schema, string_or_list(*it, "schema"));
  }
  if (auto it = doc.find("crr"); it != doc.end()) {
    TANDEM_ASSIGN_OR_RETURN(s.crr, string_or_list(*it, "crr"));
    s.crr_given = true;
  }
  auto replicas = doc.find("replicas");
  if (replicas == doc.end() || !replicas->is_array() || replicas->empty())
    return bad("replicas", "a non-empty list of names or {\"name\", \"site_id\"} objects is required");
  std::set<std::string> names;
  for (size_t i = 0; i < replicas->size(); ++i) {
    const json& r = (*replicas)[i];
    std::string where = "replicas[" + std::to_string(i) + "]";
    Replica replica;
    replica.site[15] = static_cast<uint8_t>((i + 1) & 0xff);  // i+1 big-endian
    replica.site[14] = static_cast<uint8_t>(((i + 1) >> 8) & 0xff);
    if (r.is_string()) {
      replica.name = r.get<std::string>();
    } else if (r.is_object()) {
      TANDEM_ASSIGN_OR_RETURN(replica.name, required_string(r, "name", where));
      if (auto site = r.find("site_id"); site != r.end()) {
        auto parsed = site->is_string() ? site_from_hex(site->get<std::string>()) : std::nullopt;
        if (!parsed) return bad(where, "site_id must be 32 hex digits (16 bytes)");
        replica.site = *parsed;
      }
    } else {
      return bad(where, "a replica is a name or an object with \"name\"");
    }
    if (replica.name.empty()) return bad(where, "empty replica name");
    if (!names.insert(replica.name).second) return bad(where, "duplicate replica name '" + replica.name + "'");
    s.replicas.push_back(replica);
  }
  auto steps = doc.find("steps");
  if (steps != doc.end() && !steps->is_array()) return bad("steps", "a list of steps is required");
  if (steps == doc.end()) return s;
  for (size_t i = 0; i < steps->size(); ++i) {
    const json& j = (*steps)[i];
    std::string where = "step " + std::to_string(i);
    if (!j.is_object()) return bad(where, "a step is an object with an \"op\"");
    Step step;
    step.index = i;
    TANDEM_ASSIGN_OR_RETURN(std::string op, required_string(j, "op", where));
    auto replica_named = [&](const std::string& field) -> Result<std::string> {
      TANDEM_ASSIGN_OR_RETURN(std::string name, required_string(j, field.c_str(), where));
      if (!names.count(name)) return bad(where, "unknown replica '" + name + "'");
      return name;
    };
    if (op == "sql") {
      step.op = Step::Op::sql;
      TANDEM_ASSIGN_OR_RETURN(step.replica, replica_named("replica"));
      auto sql = j.find("sql");
      if (sql == j.end()) return bad(where, "missing \"sql\"");
      TANDEM_ASSIGN_OR_RETURN(step.sql, string_or_list(*sql, where + " sql"));
      if (step.sql.empty()) return bad(where, "\"sql\" is empty");
      if (auto p = j.find("params"); p != j.end()) {
        if (!p->is_array()) return bad(where, "\"params\" must be a list");
        for (const auto& v : *p) {
          auto value = value_from_json(v);
          if (!value.ok()) return bad(where, value.status().message());
          step.params.push_back(*value);
        }
      }
    } else if (op == "sync") {
      step.op = Step::Op::sync;
      TANDEM_ASSIGN_OR_RETURN(step.from, replica_named("from"));
      TANDEM_ASSIGN_OR_RETURN(step.to, replica_named("to"));
      if (step.from == step.to) return bad(where, "a replica cannot sync with itself");
    } else if (op == "watch") {
      step.op = Step::Op::watch;
      TANDEM_ASSIGN_OR_RETURN(step.replica, replica_named("replica"));
      TANDEM_ASSIGN_OR_RETURN(step.view_id, required_string(j, "id", where));
      TANDEM_ASSIGN_OR_RETURN(step.query, required_string(j, "query", where));
    } else if (op == "note") {
      step.op = Step::Op::note;
    } else {
      return bad(where, "unknown op '" + op + "' (sql, sync, watch, note)");
    }
    s.steps.push_back(std::move(step));
  }
  return s;
}

bool has_parameters(const std::string& sql) {
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      char close = c == '[' ? ']' : c;
      for (++i; i < sql.size() && sql[i] != close; ++i) {
      }
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      while (i < sql.size() && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string::npos ? sql.size() : end + 1;
    } else if (c == '?') {
      return true;
    } else if ((c == ':' || c == '@' || c == '$') && i + 1 < sql.size() &&
               (std::isalnum(static_cast<unsigned char>(sql[i + 1])) || sql[i + 1] == '_')) {
      return true;
    }
  }
  return false;
}

bool Report::converged() const {
  for (size_t i = 1; i < replicas.size(); ++i) {
    const auto& a = replicas[0].second.tables;
    const auto& b = replicas[i].second.tables;
    if (a.size() != b.size()) return false;
    for (const auto& [name, dump] : a) {
      auto it = b.find(name);
      if (it == b.end() || it->second.rows.size() != dump.rows.size()) return false;
      for (size_t r = 0; r < dump.rows.size(); ++r)
        if (!identical(dump.rows[r], it->second.rows[r])) return false;
    }
  }
  return true;
}

json to_json(const Report& report) {
  auto dump_json = [](const TableDump& d) {
    json rows = json::array();
    for (const auto& row : d.rows) {
      json r = json::array();
      for (const auto& v : row) r.push_back(value_to_json(v));
      rows.push_back(std::move(r));
    }
    return json{{"columns", d.columns}, {"rows", std::move(rows)}};
  };
  json replicas = json::object();
  for (const auto& [name, r] : report.replicas) {
    json tables = json::object(), views = json::object();
    for (const auto& [t, d] : r.tables) tables[t] = dump_json(d);
    for (const auto& [v, d] : r.views) views[v] = dump_json(d);
    replicas[name] = json{{"site_id", r.site_hex}, {"db_version", r.db_version}, {"tables", tables}, {"views", views}};
  }
  json errors = json::array();
  for (const auto& e : report.errors) errors.push_back(json{{"step", e.step}, {"replica", e.replica}, {"error", e.error}});
  return json{{"replicas", replicas}, {"converged", report.converged()}, {"errors", errors}};
}

}  // namespace tandem::scenario
