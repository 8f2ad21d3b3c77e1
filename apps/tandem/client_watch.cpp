#include "apps/tandem/client_watch.hpp"

#include <iostream>
#include <future>
#include <mutex>

#include <caf/scheduled_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/tab_bus.hpp"
#include "apps/tandem/line_reader.hpp"
#include "apps/tandem/stop_signals.hpp"
#include "runtime/ivm/result_list.hpp"
#include "runtime/sqlite/value_json.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::app {
namespace {

// The printer's copy of the result, kept by applying ViewChanges as view.proto says.
struct Printer {
  std::mutex mu;
  bool json = false;
  bool started = false;  // the initial result arrived
  ivm::ResultList result;

  nlohmann::json row_json(const Row& row) const {
    const auto& columns = result.columns();
    nlohmann::json obj = nlohmann::json::object();
    for (size_t i = 0; i < row.size() && i < columns.size(); ++i) obj[columns[i]] = value_to_json(row[i]);
    return obj;
  }

  void print_table(int64_t version) const {
    const auto& columns = result.columns();
    const auto& rows = result.rows();
    std::vector<size_t> width(columns.size());
    for (size_t i = 0; i < columns.size(); ++i) width[i] = columns[i].size();
    std::vector<std::vector<std::string>> cells;
    for (const auto& [key, r] : rows) {
      cells.emplace_back();
      for (size_t i = 0; i < r.size() && i < columns.size(); ++i) {
        std::string s = r[i].is_text() ? r[i].bytes() : r[i].to_sql_literal();
        width[i] = std::max(width[i], s.size());
        cells.back().push_back(std::move(s));
      }
    }
    std::string out = "-- db_version " + std::to_string(version) + ", " + std::to_string(rows.size()) + " rows\n";
    for (size_t i = 0; i < columns.size(); ++i) out += (i ? " | " : "") + columns[i] + std::string(width[i] - columns[i].size(), ' ');
    out += "\n";
    for (const auto& line : cells) {
      for (size_t i = 0; i < line.size(); ++i) out += (i ? " | " : "") + line[i] + std::string(width[i] - line[i].size(), ' ');
      out += "\n";
    }
    std::cout << out << std::flush;
    LineReader::output_written();
  }

  void on_result(const view::WatchResponse& r) {
    std::lock_guard<std::mutex> lock(mu);
    result.reset(r);
    started = true;
    if (!json) return print_table(r.db_version());
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [key, row] : result.rows()) all.push_back(row_json(row));
    std::cout << nlohmann::json{{"type", "result"}, {"db_version", r.db_version()}, {"columns", result.columns()}, {"rows", all}}.dump()
              << std::endl;
    LineReader::output_written();
  }

  void on_change(const view::ViewChange& change) {
    std::lock_guard<std::mutex> lock(mu);
    if (!started) return;  // before the initial result (it already includes this change)
    spdlog::debug("hop=client.view_change db_version={} row_changes={}", change.db_version(), change.changes_size());
    if (change.error().code() != change::Error::OK)
      std::cerr << "tandem client: the query now fails: " << change.error().message() << std::endl;
    for (const auto& c : change.changes()) {
      Status applied = result.apply(c);
      if (!applied.ok()) spdlog::warn("hop=client.view_change {}", applied.message());
      if (!json) continue;
      const char* kind = c.kind() == view::RowChange::ADDED ? "added" : c.kind() == view::RowChange::REMOVED ? "removed" : "changed";
      nlohmann::json line{{"type", kind}, {"db_version", change.db_version()}, {"row", row_json(from_proto(c.row()))}};
      if (c.position() >= 0) line["position"] = c.position();
      if (c.kind() == view::RowChange::CHANGED && c.old_position() >= 0) line["old_position"] = c.old_position();
      std::cout << line.dump() << "\n";
    }
    if (json) {
      std::cout << std::flush;
      LineReader::output_written();
    } else if (change.changes_size() > 0) print_table(change.db_version());
  }
};

struct watcher_state {
  std::shared_ptr<Printer> printer;
  static inline const char* name = "watch_printer";
};

// The view's watcher: it asks for the result (the view keeps a watch only while its watcher
// lives), then prints every change it is sent.
view_watcher_actor::behavior_type watcher(view_watcher_actor::stateful_pointer<watcher_state> self,
                                          std::shared_ptr<Printer> printer, ui_view_actor view, view::WatchRequest req,
                                          std::shared_ptr<std::promise<Status>> started) {
  self->state.printer = printer;
  self->set_default_handler(caf::drop);
  self->request(view, std::chrono::seconds(60), std::move(req))
      .then(
          [self, started](view::WatchResponse& r) {
            if (r.error().code() != change::Error::OK) {
              started->set_value(from_proto(r.error()));
              self->quit();
              return;
            }
            self->state.printer->on_result(r);
            started->set_value(Status::Ok());
          },
          [self, started](caf::error& e) {
            started->set_value(Status::Unavailable("the view did not answer: " + self->system().render(e)));
            self->quit();
          });
  return {
      [self](view::ViewChange& change) { self->state.printer->on_change(change); },
  };
}

}  // namespace


Result<Watch> start_watch(caf::actor_system& system, Node& node, const std::string& sql, const std::vector<change::Value>& params,
                          bool json) {
  auto printer = std::make_shared<Printer>();
  printer->json = json;
  Watch w;
  auto view = node.spawn_view("watch");
  if (!view.ok()) return view.status();
  w.view = *view;
  view::WatchRequest req;
  req.set_sql(sql);
  for (const auto& p : params) *req.add_params() = p;
  auto started = std::make_shared<std::promise<Status>>();
  auto outcome = started->get_future();
  w.watcher = system.spawn(watcher, printer, w.view, std::move(req), started);
  // A refused or unanswered watch stops what it spawned: actors left running would keep the
  // node (and its await_all_actors_done at exit) alive for ever.
  auto stop = [&](Status why) -> Result<Watch> {
    caf::anon_send_exit(w.watcher, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(w.view, caf::exit_reason::user_shutdown);
    return why;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (outcome.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (stop_signal() != 0) return stop(Status::Unavailable("interrupted"));
    if (std::chrono::steady_clock::now() > deadline) return stop(Status::Unavailable("the view did not answer"));
  }
  if (Status s = outcome.get(); !s.ok()) return stop(s);
  return w;
}

}  // namespace tandem::app
