// `tandem scenario FILE|-`: runs a JSON scenario (../shared/spec/scenario-format.md) on real
// db_worker actors, one per replica, in one actor system, and prints the report.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "actors/db_worker.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/scenario/scenario.hpp"
#include "runtime/sqlite/proto_value.hpp"

#include <caf/all.hpp>

namespace tandem::app {
namespace {

namespace fs = std::filesystem;
constexpr auto kTimeout = std::chrono::seconds(120);

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "tandem-scenario-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

// One request to a worker, waited for; transport failures become a Status.
template <class Response, class Request>
Result<Response> ask(caf::scoped_actor& self, const db_worker_actor& worker, const Request& request) {
  std::optional<Result<Response>> out;
  self->request(worker, kTimeout, request)
      .receive([&](const Response& r) { out = r; },
               [&](caf::error& e) { out = Status::Unavailable("worker did not answer: " + self->system().render(e)); });
  return std::move(*out);
}

template <class Response>
Status status_of_response(const Result<Response>& r) {
  if (!r.ok()) return r.status();
  return from_proto(r->error());
}

struct Node {
  scenario::Replica replica;
  db_worker_actor worker;
};

Result<scenario::TableDump> dump_table(caf::scoped_actor& self, const db_worker_actor& w, const std::string& table) {
  worker::QueryRequest keys;
  keys.set_sql("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk");
  to_proto(Value::Text(table), keys.add_params());
  auto k = ask<worker::QueryResponse>(self, w, keys);
  TANDEM_RETURN_IF_ERROR(status_of_response(k));
  std::string order;
  for (const auto& row : k->rows()) order += (order.empty() ? "" : ", ") + quote_identifier(from_proto(row.values(0)).bytes());
  worker::QueryRequest all;
  all.set_sql("SELECT * FROM " + quote_identifier(table) + (order.empty() ? "" : " ORDER BY " + order));
  auto r = ask<worker::QueryResponse>(self, w, all);
  TANDEM_RETURN_IF_ERROR(status_of_response(r));
  scenario::TableDump d;
  d.columns.assign(r->columns().begin(), r->columns().end());
  for (const auto& row : r->rows()) d.rows.push_back(from_proto(row));
  return d;
}

int run(const std::string& file) {
  std::string text;
  if (file == "-") {
    std::ostringstream in;
    in << std::cin.rdbuf();
    text = in.str();
  } else {
    std::ifstream in(file);
    if (!in) {
      std::cerr << "tandem scenario: cannot read " << file << "\n";
      return 2;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  auto parsed = scenario::parse_text(text);
  if (!parsed.ok()) {
    std::cerr << "tandem scenario: " << parsed.status().message() << "\n";
    return 2;
  }
  const scenario::Scenario& sc = *parsed;

  ScratchDir dir;
  caf::actor_system_config cfg;
  add_db_worker_message_types(cfg);
  caf::actor_system system{cfg};
  caf::scoped_actor self{system};

  std::vector<Node> nodes;
  for (size_t i = 0; i < sc.replicas.size(); ++i) {
    DbWorkerConfig wc;
    wc.path = (dir.path / ("replica-" + std::to_string(i) + ".db")).string();
    wc.store.site_id = sc.replicas[i].site;
    wc.schema = sc.schema;
    if (sc.crr_given) wc.replicate = sc.crr;
    wc.name = "scenario/" + sc.replicas[i].name;
    auto w = spawn_db_worker(system, wc);
    if (!w.ok()) {
      std::cerr << "tandem scenario: replica " << sc.replicas[i].name << ": " << w.status().message() << "\n";
      return 2;
    }
    nodes.push_back(Node{sc.replicas[i], *w});
  }
  auto node = [&](const std::string& name) -> Node& {
    for (auto& n : nodes)
      if (n.replica.name == name) return n;
    return nodes.front();  // names were validated by the parser
  };

  scenario::Report report;
  auto record = [&](const scenario::Step& step, const std::string& replica, const Status& s) {
    if (!s.ok()) report.errors.push_back({step.index, replica, s.message()});
  };
  for (const auto& step : sc.steps) {
    switch (step.op) {
      case scenario::Step::Op::note: break;
      case scenario::Step::Op::sql: {
        worker::WriteRequest req;
        bool bound = step.params.empty();
        for (const auto& sql : step.sql) {
          auto* st = req.add_statements();
          st->set_sql(sql);
          if (!bound && scenario::has_parameters(sql)) {
            to_proto(step.params, st->mutable_params());
            bound = true;
          }
        }
        auto r = ask<worker::WriteResponse>(self, node(step.replica).worker, req);
        record(step, step.replica, status_of_response(r));
        break;
      }
      case scenario::Step::Op::sync: {
        Node& from = node(step.from);
        Node& to = node(step.to);
        worker::PeerStatusRequest cursor_req;
        cursor_req.set_peer_site_id(site_bytes(from.replica.site));
        auto cursor = ask<worker::PeerStatus>(self, to.worker, cursor_req);
        Status s = status_of_response(cursor);
        if (s.ok()) {
          worker::ChangesSinceRequest since;
          since.set_since_db_version(cursor->received_db_version());
          since.set_exclude_site_id(site_bytes(to.replica.site));
          auto changes = ask<worker::ChangesSinceResponse>(self, from.worker, since);
          s = status_of_response(changes);
          if (s.ok()) {
            worker::MergeRequest merge;
            *merge.mutable_batch() = changes->batch();
            s = status_of_response(ask<worker::MergeResponse>(self, to.worker, merge));
          }
        }
        record(step, step.to, s);
        break;
      }
      case scenario::Step::Op::watch:
        record(step, step.replica, Status::Unsupported("watch: live queries are not supported by this build yet"));
        break;
    }
  }

  for (auto& n : nodes) {
    auto status = ask<worker::StatusResponse>(self, n.worker, worker::StatusRequest{});
    if (!status.ok()) {
      std::cerr << "tandem scenario: replica " << n.replica.name << ": " << status.status().message() << "\n";
      return 1;
    }
    scenario::ReplicaReport r;
    r.site_hex = site_hex(n.replica.site);
    r.db_version = status->db_version();
    for (const auto& t : status->tables()) {
      auto d = dump_table(self, n.worker, t);
      if (!d.ok()) {
        std::cerr << "tandem scenario: replica " << n.replica.name << ", table " << t << ": " << d.status().message() << "\n";
        return 1;
      }
      r.tables[t] = std::move(d).value();
    }
    report.replicas.emplace_back(n.replica.name, std::move(r));
  }
  for (auto& n : nodes) self->send_exit(n.worker, caf::exit_reason::user_shutdown);
  std::cout << scenario::to_json(report).dump() << std::endl;
  return 0;
}

}  // namespace

void add_scenario_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("scenario", "Run a JSON scenario (replicas, writes, syncs, live queries) and print the final state");
  auto file = std::make_shared<std::string>();
  cmd->add_option("file", *file, "Scenario file, or - for standard input")->required();
  cmd->callback([file] {
    int code = run(*file);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tandem::app
