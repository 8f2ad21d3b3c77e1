#include "apps/tandem/client_watch.hpp"

#include <iostream>

#include <caf/actor_cast.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "runtime/ivm/view.hpp"
#include "runtime/query/parser.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::app {
namespace {

nlohmann::json value_json(const Value& v) {
  switch (v.type()) {
    case Value::Type::null: return nullptr;
    case Value::Type::integer: return v.integer();
    case Value::Type::real: return v.real();
    case Value::Type::text: return v.bytes();
    case Value::Type::blob: {
      static const char* hex = "0123456789abcdef";
      std::string out;
      for (unsigned char c : v.bytes()) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
      }
      return nlohmann::json{{"blob", out}};
    }
  }
  return nullptr;
}

nlohmann::json row_json(const std::vector<std::string>& columns, const Row& row) {
  nlohmann::json obj = nlohmann::json::object();
  for (size_t i = 0; i < row.size() && i < columns.size(); ++i) obj[columns[i]] = value_json(row[i]);
  return obj;
}

struct Printer {
  std::unique_ptr<Database> db;
  std::unique_ptr<ivm::LiveView> view;
  bool json = false;

  void print_table() const {
    const auto& cols = view->columns();
    auto rows = view->rows();
    std::vector<size_t> width(cols.size());
    std::vector<std::vector<std::string>> cells;
    for (size_t i = 0; i < cols.size(); ++i) width[i] = cols[i].size();
    for (const auto& r : rows) {
      cells.emplace_back();
      for (size_t i = 0; i < r.size() && i < cols.size(); ++i) {
        std::string s = r[i].is_text() ? r[i].bytes() : r[i].to_sql_literal();
        width[i] = std::max(width[i], s.size());
        cells.back().push_back(std::move(s));
      }
    }
    std::string out = "-- db_version " + std::to_string(view->applied_version()) + ", " + std::to_string(rows.size()) + " rows\n";
    for (size_t i = 0; i < cols.size(); ++i) out += (i ? " | " : "") + cols[i] + std::string(width[i] - cols[i].size(), ' ');
    out += "\n";
    for (const auto& line : cells) {
      for (size_t i = 0; i < line.size(); ++i) out += (i ? " | " : "") + line[i] + std::string(width[i] - line[i].size(), ' ');
      out += "\n";
    }
    std::cout << out << std::flush;
  }

  void print_result() const {
    if (!json) return print_table();
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : view->rows()) rows.push_back(row_json(view->columns(), r));
    std::cout << nlohmann::json{{"type", "result"}, {"db_version", view->applied_version()}, {"columns", view->columns()},
                                {"rows", rows}}
                     .dump()
              << std::endl;
  }

  void print_changes() {
    auto changes = view->take_changes();
    if (changes.empty()) return;
    if (!json) return print_table();
    for (const auto& c : changes) {
      const char* kind = c.kind == ivm::RowChangeRecord::Kind::added     ? "added"
                         : c.kind == ivm::RowChangeRecord::Kind::removed ? "removed"
                                                                         : "changed";
      nlohmann::json line{{"type", kind}, {"db_version", view->applied_version()}, {"row", row_json(view->columns(), c.row)}};
      if (c.position >= 0) line["position"] = c.position;
      if (c.old_position >= 0) line["old_position"] = c.old_position;
      std::cout << line.dump() << "\n";
    }
    std::cout << std::flush;
  }
};

struct printer_state {
  std::shared_ptr<Printer> printer;
  std::shared_ptr<ivm::DeltaJournal> journal;
  static inline const char* name = "watch_printer";
};

// Subscribes first, then hydrates: every batch committed after the hydration version is in
// the journal, and each later commit also arrives here as a message (catch_up applies what
// the view lacks and skips what hydration covered).
delta_subscriber_actor::behavior_type printer_actor(delta_subscriber_actor::stateful_pointer<printer_state> self,
                                                    std::shared_ptr<Printer> printer,
                                                    std::shared_ptr<ivm::DeltaJournal> journal, db_worker_actor worker,
                                                    std::shared_ptr<const ivm::Plan> plan) {
  self->state.printer = std::move(printer);
  self->state.journal = std::move(journal);
  self->set_default_handler(caf::drop);
  self->request(worker, std::chrono::seconds(60), worker::SubscribeRequest{})
      .then(
          [self, plan](worker::SubscribeResponse&) {
            auto& p = *self->state.printer;
            auto view = ivm::LiveView::create(*p.db, self->state.journal.get(), plan);
            if (!view.ok()) {
              std::cerr << "tandem client: cannot watch: " << view.status().message() << std::endl;
              self->quit();
              return;
            }
            p.view = std::move(*view);
            p.print_result();
          },
          [self](caf::error& err) {
            std::cerr << "tandem client: cannot watch: " << self->system().render(err) << std::endl;
            self->quit();
          });
  return {
      [self](change::RowDeltaBatch& batch) {
        auto& p = *self->state.printer;
        if (!p.view) return;
        Status st = p.view->catch_up();
        if (st.code() == StatusCode::resource_exhausted) st = p.view->rehydrate();
        if (!st.ok()) {
          spdlog::error("hop=client.view error=\"{}\"", st.to_string());
          return;
        }
        spdlog::debug("hop=client.view_updated db_version={} rows_in_batch={}", batch.db_version(), batch.deltas_size());
        p.print_changes();
      },
  };
}

}  // namespace

void add_watch_message_types(caf::actor_system_config&) {}

std::shared_ptr<ivm::DeltaJournal> make_watch_journal() { return std::make_shared<ivm::DeltaJournal>(); }

Result<caf::actor> start_watch(caf::actor_system& system, db_worker_actor worker, std::shared_ptr<ivm::DeltaJournal> journal,
                               const std::string& db_path, const std::string& sql, const std::vector<std::string>& params,
                               bool json) {
  TANDEM_ASSIGN_OR_RETURN(auto q, query::parse(sql));
  OpenOptions ro;
  ro.create = false;
  ro.read_only = true;
  auto printer = std::make_shared<Printer>();
  printer->json = json;
  TANDEM_ASSIGN_OR_RETURN(printer->db, Database::open(db_path, ro));
  Row bound;
  for (const auto& p : params) {
    change::Value v;
    if (p == "NULL") {
    } else {
      char* end = nullptr;
      long long i = std::strtoll(p.c_str(), &end, 10);
      if (!p.empty() && *end == '\0') v.set_integer(i);
      else v.set_text(p);
    }
    bound.push_back(from_proto(v));
  }
  TANDEM_ASSIGN_OR_RETURN(auto plan, ivm::bind(*printer->db, q, bound));
  auto actor = system.spawn<caf::detached>(printer_actor, printer, journal, worker, plan);
  return caf::actor_cast<caf::actor>(actor);
}

}  // namespace tandem::app
