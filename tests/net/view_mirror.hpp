// A test's watcher of a ui_view: the view's rows kept in a Mirror the test thread reads, as a
// user's window would show them (node_graph_test, node_test).
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/ui_view.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::test {

// A watcher's copy of its view, and every row event it saw ("+title" / "-title").
struct Mirror {
  std::mutex mu;
  std::map<std::string, Row> rows;
  std::vector<std::string> events;
  bool ready = false;
  std::string render() {
    std::lock_guard<std::mutex> l(mu);
    std::vector<Row> sorted;
    for (auto& [k, r] : rows) sorted.push_back(r);
    std::sort(sorted.begin(), sorted.end(), [](const Row& a, const Row& b) { return a[0].integer() < b[0].integer(); });
    std::string out;
    for (const auto& r : sorted) {
      for (const auto& v : r) out += v.to_sql_literal() + " ";
      out += "\n";
    }
    return out;
  }
  bool saw(const std::string& event) {
    std::lock_guard<std::mutex> l(mu);
    return std::find(events.begin(), events.end(), event) != events.end();
  }
};

struct mirror_state {
  std::shared_ptr<Mirror> mirror;
  static inline const char* name = "test_watcher";
};

inline view_watcher_actor::behavior_type mirror_actor(view_watcher_actor::stateful_pointer<mirror_state> self, std::shared_ptr<Mirror> mirror,
                                               ui_view_actor view) {
  self->state.mirror = mirror;
  self->set_default_handler(caf::drop);
  view::WatchRequest req;
  req.set_sql("SELECT id, title, done FROM todo");
  self->request(view, std::chrono::seconds(30), std::move(req))
      .then(
          [self](view::WatchResponse& r) {
            std::lock_guard<std::mutex> l(self->state.mirror->mu);
            for (const auto& row : r.rows()) self->state.mirror->rows[row.key()] = from_proto(row.row());
            self->state.mirror->ready = true;
          },
          [](caf::error&) {});
  return {
      [self](view::ViewChange& change) {
        auto& m = *self->state.mirror;
        std::lock_guard<std::mutex> l(m.mu);
        for (const auto& c : change.changes()) {
          Row row = from_proto(c.row());
          const std::string title = row.size() > 1 ? row[1].to_sql_literal() : "?";
          if (c.kind() == view::RowChange::REMOVED) {
            m.rows.erase(c.key());
            m.events.push_back("-" + title);
          } else {
            m.rows[c.key()] = row;
            m.events.push_back("+" + title);
          }
        }
      },
  };
}

}  // namespace tandem::test
