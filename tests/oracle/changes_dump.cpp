// Runs a scenario on Tandem's Store directly (no actors, no views) and prints every replica's
// change rows, (table, pk, cid, val, col_version, cl), in the shape of the reference's
// "changes" output: the metadata that `tandem scenario` does not report. differential.py
// compares them with cr-sqlite's (../shared/oracle/README.md: db_version, site and seq are
// stamped locally and may differ between engines; these six fields may not).
//
// Usage: oracle_changes_dump SCENARIO.json   (prints one JSON document; exit 2 on a bad scenario)
#include <fstream>
#include <iostream>
#include <sstream>

#include "runtime/scenario/scenario.hpp"
#include "runtime/sqlite/proto_value.hpp"

using namespace tandem;

namespace {

int fail(const std::string& what) {
  std::cerr << "oracle_changes_dump: " << what << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: oracle_changes_dump SCENARIO.json");
  std::ifstream in(argv[1]);
  if (!in) return fail(std::string("cannot read ") + argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  auto sc = scenario::parse_text(text.str());
  if (!sc.ok()) return fail(sc.status().message());

  std::string schema;
  for (const auto& s : sc->schema) schema += s + ";\n";
  std::vector<std::unique_ptr<Store>> stores;
  for (const auto& r : sc->replicas) {
    StoreOptions options;
    options.site_id = r.site;
    auto store = Store::open(":memory:", options);
    if (!store.ok()) return fail(store.status().message());
    if (Status s = (*store)->execute_schema(schema); !s.ok()) return fail(s.message());
    std::vector<std::string> crr = sc->crr;
    if (!sc->crr_given) {
      auto tables = (*store)->application_tables();
      if (!tables.ok()) return fail(tables.status().message());
      crr = *tables;
    }
    for (const auto& t : crr)
      if (Status s = (*store)->register_table(t); !s.ok()) return fail(s.message());
    stores.push_back(std::move(store).value());
  }
  auto index = [&](const std::string& name) -> size_t {
    for (size_t i = 0; i < sc->replicas.size(); ++i)
      if (sc->replicas[i].name == name) return i;
    return 0;  // names were validated by the parser
  };

  nlohmann::json errors = nlohmann::json::array();
  for (const auto& step : sc->steps) {
    Status s;
    std::string where;
    if (step.op == scenario::Step::Op::sql) {
      std::vector<SqlStatement> statements;
      bool bound = step.params.empty();
      for (const auto& sql : step.sql) {
        SqlStatement st{sql, {}};
        if (!bound && scenario::has_parameters(sql)) {
          st.params = step.params;
          bound = true;
        }
        statements.push_back(std::move(st));
      }
      s = stores[index(step.replica)]->write(statements).status();
      where = step.replica;
    } else if (step.op == scenario::Step::Op::sync) {
      Store& from = *stores[index(step.from)];
      Store& to = *stores[index(step.to)];
      where = step.to;
      auto cursor = to.peer(from.site_id());
      s = cursor.status();
      if (s.ok()) {
        auto batch = from.changes_since(cursor->received, to.site_id());
        s = batch.ok() ? to.merge(*batch).status() : batch.status();
      }
    }
    if (!s.ok()) errors.push_back({{"step", step.index}, {"replica", where}, {"error", s.message()}});
  }

  nlohmann::json replicas = nlohmann::json::object();
  for (size_t i = 0; i < stores.size(); ++i) {
    auto batch = stores[i]->changes_since(0);
    if (!batch.ok()) return fail(batch.status().message());
    nlohmann::json changes = nlohmann::json::array();
    for (const auto& c : batch->changes()) {
      nlohmann::json pk = nlohmann::json::array();
      for (const auto& v : c.pk()) pk.push_back(value_to_json(from_proto(v)));
      changes.push_back({{"table", c.table()},
                         {"pk", pk},
                         {"cid", c.cid()},
                         {"val", value_to_json(from_proto(c.val()))},
                         {"col_version", c.col_version()},
                         {"cl", c.cl()}});
    }
    replicas[sc->replicas[i].name] = {{"changes", changes}};
  }
  std::cout << nlohmann::json{{"replicas", replicas}, {"errors", errors}}.dump() << "\n";
  return 0;
}
