// `tandem scenario FILE|-`: runs a JSON scenario (../shared/spec/scenario-format.md) on real
// db_worker actors, one per replica, in one actor system, and prints the report.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "actors/system_config.hpp"
#include "actors/db_worker.hpp"
#include "actors/tab_bus.hpp"
#include "actors/ui_view.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/ivm/result_list.hpp"
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
  std::string path;
  std::shared_ptr<ivm::DeltaJournal> journal;
  db_worker_actor worker;
  std::optional<tab_bus_actor> bus;    // spawned with the replica's first view
  std::optional<ui_view_actor> view;
};

// A watched query's result as the runner sees it: the initial rows, then every ViewChange.
struct Watched {
  std::string replica, id;
  ivm::ResultList result;
  std::string error;  // a change the runner could not apply, or the view's own error
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
  configure_actor_system(cfg);
  caf::actor_system system{cfg};
  caf::scoped_actor self{system};

  std::vector<Node> nodes;
  for (size_t i = 0; i < sc.replicas.size(); ++i) {
    DbWorkerConfig wc;
    wc.path = (dir.path / ("replica-" + std::to_string(i) + ".db")).string();
    wc.journal = std::make_shared<ivm::DeltaJournal>();
    wc.store.site_id = sc.replicas[i].site;
    wc.schema = sc.schema;
    if (sc.crr_given) wc.replicate = sc.crr;
    wc.name = "scenario/" + sc.replicas[i].name;
    auto w = spawn_db_worker(system, wc);
    if (!w.ok()) {
      std::cerr << "tandem scenario: replica " << sc.replicas[i].name << ": " << w.status().message() << "\n";
      return 2;
    }
    nodes.push_back(Node{sc.replicas[i], wc.path, wc.journal, *w, std::nullopt, std::nullopt});
  }
  auto node = [&](const std::string& name) -> Node& {
    for (auto& n : nodes)
      if (n.replica.name == name) return n;
    return nodes.front();  // names were validated by the parser
  };

  scenario::Report report;
  std::map<std::pair<caf::actor_addr, int64_t>, Watched> watched;  // by ui_view and its view id
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
      case scenario::Step::Op::watch: {
        Node& n = node(step.replica);
        if (!n.view) {
          n.bus = spawn_tab_bus(system, n.worker, "scenario/" + n.replica.name + "/tab_bus");
          UiViewConfig vc;
          vc.name = "scenario/" + n.replica.name + "/view";
          vc.database_path = n.path;
          vc.journal = n.journal;
          vc.worker = n.worker;
          vc.bus = *n.bus;
          auto v = spawn_ui_view(system, vc);
          if (!v.ok()) {
            record(step, step.replica, v.status());
            break;
          }
          n.view = *v;
        }
        view::WatchRequest req;
        req.set_sql(step.query);
        std::optional<Result<view::WatchResponse>> answer;
        self->request(*n.view, kTimeout, req)
            .receive([&](const view::WatchResponse& r) { answer = r; },
                     [&](caf::error& e) { answer = Status::Unavailable("view did not answer: " + system.render(e)); });
        Status s = answer->ok() ? from_proto((*answer)->error()) : answer->status();
        if (!s.ok()) {
          record(step, step.replica, s.with_context("watch " + step.view_id));
          break;
        }
        Watched w;
        w.replica = step.replica;
        w.id = step.view_id;
        w.result.reset(**answer);
        watched[{n.view->address(), (*answer)->view_id()}] = std::move(w);
        break;
      }
    }
  }

  // Every view catches up (its changes reach us before the answer), then we apply them.
  for (auto& n : nodes) {
    if (!n.view) continue;
    bool synced = false;
    self->request(*n.view, kTimeout, view::SyncRequest{})
        .receive([&](const view::SyncResponse& r) { synced = r.error().code() == change::Error::OK; },
                 [&](caf::error&) {});
    if (!synced) std::cerr << "tandem scenario: replica " << n.replica.name << ": the view did not catch up\n";
  }
  bool draining = true;
  while (draining) {
    self->receive([&](const view::ViewChange& change) {
                    auto it = watched.find({caf::actor_cast<caf::actor_addr>(self->current_sender()), change.view_id()});
                    if (it == watched.end()) return;
                    Watched& w = it->second;
                    if (change.error().code() != change::Error::OK) w.error = change.error().message();
                    Status applied = w.result.apply(change);
                    if (!applied.ok()) w.error = applied.message();
                  },
                  caf::after(std::chrono::milliseconds(0)) >> [&] { draining = false; });
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
    for (auto& [vid, w] : watched) {
      if (w.replica != n.replica.name) continue;
      if (!w.error.empty()) report.errors.push_back({0, n.replica.name, "view " + w.id + ": " + w.error});
      scenario::TableDump d;
      d.columns = w.result.columns();
      for (const auto& [key, row] : w.result.rows()) d.rows.push_back(row);
      if (!w.result.ordered())  // spec: rows of views without ORDER BY are sorted by all columns
        std::sort(d.rows.begin(), d.rows.end(), [](const Row& a, const Row& b) {
          for (size_t i = 0; i < a.size() && i < b.size(); ++i)
            if (int c = compare_sqlite(a[i], b[i])) return c < 0;
          return a.size() < b.size();
        });
      r.views[w.id] = std::move(d);
    }
    report.replicas.emplace_back(n.replica.name, std::move(r));
  }
  for (auto& n : nodes) {
    if (n.view) self->send_exit(*n.view, caf::exit_reason::user_shutdown);
    if (n.bus) self->send_exit(*n.bus, caf::exit_reason::user_shutdown);
    self->send_exit(n.worker, caf::exit_reason::user_shutdown);
  }
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
