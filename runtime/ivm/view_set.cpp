#include "runtime/ivm/view_set.hpp"

#include <algorithm>

#include "runtime/query/parser.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::ivm {
ViewSet::ViewSet(std::unique_ptr<Database> db, DeltaJournal* journal, std::string origin, ViewOptions options)
    : db_(std::move(db)), journal_(journal), origin_(std::move(origin)), options_(options) {}

Result<view::WatchResponse> ViewSet::watch(const view::WatchRequest& request) {
  query::Query q;
  if (request.has_query()) {
    q = request.query();
  } else {
    if (request.sql().empty()) return Status::InvalidArgument("watch: neither a query nor SQL");
    TANDEM_ASSIGN_OR_RETURN(q, query::parse(request.sql()));
  }
  Row params = from_proto(request.params());
  TANDEM_ASSIGN_OR_RETURN(auto plan, ivm::bind(*db_, q, params));
  TANDEM_ASSIGN_OR_RETURN(auto live, LiveView::create(*db_, journal_, plan, options_));
  for (const auto& p : pending_) TANDEM_RETURN_IF_ERROR(live->add_pending(p.id, p.mutations, p.origin));
  live->take_changes();
  int64_t id = next_view_++;
  view::WatchResponse out;
  out.set_view_id(id);
  for (const auto& c : plan->column_names) out.add_columns(c);
  out.set_ordered(live->ordered());
  for (const auto& [key, row] : live->keyed_rows()) {
    auto* r = out.add_rows();
    r->set_key(key);
    to_proto(row, r->mutable_row());
  }
  out.set_db_version(live->applied_version());
  if (auto err = live->error()) to_proto(*err, out.mutable_error());
  views_[id] = Entry{std::move(plan), std::move(live), false};
  return out;
}

Status ViewSet::unwatch(int64_t view_id) {
  if (views_.erase(view_id) == 0) return Status::NotFound("no view " + std::to_string(view_id));
  return Status::Ok();
}

std::string ViewSet::next_mutation_id() { return origin_ + ":" + std::to_string(next_mutation_++); }

Status ViewSet::add_pending(const std::string& id, const std::vector<worker::Mutation>& mutations, const std::string& origin) {
  for (const auto& p : pending_)
    if (p.id == id) return Status::InvalidArgument("mutation id " + id + " is already pending");
  // The first view validates; LiveView refuses a malformed mutation before changing anything,
  // and every view validates against the same schema, so later views cannot refuse it.
  for (auto& [vid, e] : views_) TANDEM_RETURN_IF_ERROR(e.view->add_pending(id, mutations, origin));
  pending_.push_back({id, origin, mutations});
  return Status::Ok();
}

Status ViewSet::settle(const std::string& id, bool success, int64_t version) {
  for (auto& [vid, e] : views_) TANDEM_RETURN_IF_ERROR(e.view->settle(id, success, version));
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->id == id) {
      pending_.erase(it);
      break;
    }
  }
  return Status::Ok();
}

Status ViewSet::catch_up() {
  for (auto& [vid, e] : views_) {
    Status st = e.view->catch_up();
    // A view that fell off the journal, or whose lookup failed (I/O, busy), reads its
    // result again at the current version; only if that fails too is the error reported.
    if (!st.ok()) st = e.view->rehydrate();
    TANDEM_RETURN_IF_ERROR(st.with_context("view " + std::to_string(vid)));
  }
  return Status::Ok();
}

int64_t ViewSet::applied_version() const {
  int64_t version = journal_->last_version();
  for (const auto& [vid, e] : views_) version = std::min(version, e.view->applied_version());
  return version;
}

std::vector<view::ViewChange> ViewSet::take_changes() {
  std::vector<view::ViewChange> out;
  for (auto& [vid, e] : views_) {
    auto changes = e.view->take_changes();
    auto err = e.view->error();
    bool error_changed = err.has_value() != e.reported_error;
    if (changes.empty() && !error_changed) continue;
    e.reported_error = err.has_value();
    view::ViewChange m;
    m.set_view_id(vid);
    m.set_db_version(e.view->applied_version());
    if (err) to_proto(*err, m.mutable_error());
    for (auto& c : changes) {
      auto* rc = m.add_changes();
      rc->set_kind(c.kind == RowChangeRecord::Kind::added     ? view::RowChange::ADDED
                   : c.kind == RowChangeRecord::Kind::removed ? view::RowChange::REMOVED
                                                              : view::RowChange::CHANGED);
      rc->set_key(c.key);
      to_proto(c.row, rc->mutable_row());
      rc->set_position(c.position);
      rc->set_old_position(c.old_position);
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<view::ResultRow>> ViewSet::snapshot(int64_t view_id) const {
  auto it = views_.find(view_id);
  if (it == views_.end()) return Status::NotFound("no view " + std::to_string(view_id));
  std::vector<view::ResultRow> out;
  for (const auto& [key, row] : it->second.view->keyed_rows()) {
    view::ResultRow r;
    r.set_key(key);
    to_proto(row, r.mutable_row());
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace tandem::ivm
