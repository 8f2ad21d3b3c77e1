#include "runtime/ivm/plan.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "runtime/query/parser.hpp"
#include "runtime/query/render.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::ivm {
namespace {

bool iequals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

class Binder {
 public:
  Binder(Database& db, const query::Query& q, const Row& params) : db_(db), q_(q), params_(params) {}

  Result<std::shared_ptr<const Plan>> run() {
    TANDEM_RETURN_IF_ERROR(query::validate(q_));
    if (static_cast<int>(params_.size()) != q_.parameter_count())
      return Status::InvalidArgument("the query has " + std::to_string(q_.parameter_count()) + " parameters but " +
                                     std::to_string(params_.size()) + " values were given");
    auto plan = std::make_shared<Plan>();
    plan_ = plan.get();
    plan_->query = q_;
    plan_->params = params_;
    TANDEM_RETURN_IF_ERROR(bind_tables());
    TANDEM_RETURN_IF_ERROR(bind_joins());
    TANDEM_RETURN_IF_ERROR(bind_where());
    TANDEM_RETURN_IF_ERROR(bind_select());
    TANDEM_RETURN_IF_ERROR(bind_order());
    TANDEM_RETURN_IF_ERROR(bind_limit());
    plan_->sql = query::render(q_);
    if (q_.has_where()) plan_->where_sql = query::render(q_.where());
    for (auto& occ : plan_->occurrences) {
      for (int c : occ.table->pk) needed_[&occ - plan_->occurrences.data()].push_back(c);
      auto& cols = needed_[&occ - plan_->occurrences.data()];
      std::sort(cols.begin(), cols.end());
      cols.erase(std::unique(cols.begin(), cols.end()), cols.end());
      occ.needed_columns = cols;
    }
    return std::shared_ptr<const Plan>(plan);
  }

 private:
  Status error_at(StatusCode code, const std::string& what, int pos) const {
    std::string where = q_.sql().empty() ? "" : " at " + query::describe_position(q_.sql(), pos);
    return Status(code, what + where);
  }

  Status bind_tables() {
    std::vector<const query::TableRef*> refs = {&q_.from()};
    for (const auto& j : q_.joins()) refs.push_back(&j.table());
    if (refs.size() > 63) return Status::Unsupported("more than 63 tables in one query");
    for (const auto* ref : refs) {
      auto it = schemas_.find(ref->name());
      if (it == schemas_.end()) {
        auto schema = read_table_schema(db_, ref->name());
        if (!schema.ok()) return schema.status().with_context("table " + ref->name() + " at " +
                                                              (q_.sql().empty() ? std::string("?") : query::describe_position(q_.sql(), ref->position())));
        it = schemas_.emplace(ref->name(), std::make_shared<TableSchema>(std::move(schema).value())).first;
      }
      Occurrence occ;
      occ.table = it->second;
      occ.name = ref->alias().empty() ? ref->name() : ref->alias();
      for (const auto& other : plan_->occurrences)
        if (iequals(other.name, occ.name))
          return error_at(StatusCode::invalid_argument, "table name " + occ.name + " used twice (give an alias)", ref->position());
      plan_->occurrences.push_back(std::move(occ));
    }
    needed_.resize(plan_->occurrences.size());
    return Status::Ok();
  }

  // ---- expressions ----
  Result<CExpr> compile(const query::Expr& e, int visible, bool allow_aggregate) {
    CExpr out;
    switch (e.kind_case()) {
      case query::Expr::kColumn: {
        const auto& ref = e.column();
        int found_occ = -1, found_col = -1;
        for (int i = 0; i < visible; ++i) {
          const auto& occ = plan_->occurrences[static_cast<size_t>(i)];
          if (!ref.table().empty() && !iequals(ref.table(), occ.name)) continue;
          int c = occ.table->column_index(ref.column());
          if (c < 0) continue;
          if (found_occ >= 0)
            return error_at(StatusCode::invalid_argument, "ambiguous column name: " + ref.column(), e.position());
          found_occ = i;
          found_col = c;
        }
        if (found_occ < 0) {
          std::string name = ref.table().empty() ? ref.column() : ref.table() + "." + ref.column();
          return error_at(StatusCode::invalid_argument, "no such column: " + name, e.position());
        }
        out.kind = CExpr::Kind::column;
        out.occurrence = found_occ;
        out.column = found_col;
        out.affinity = plan_->occurrences[static_cast<size_t>(found_occ)].table->affinity[static_cast<size_t>(found_col)];
        needed_[static_cast<size_t>(found_occ)].push_back(found_col);
        return out;
      }
      case query::Expr::kLiteral:
        out.kind = CExpr::Kind::constant;
        out.constant = from_proto(e.literal());
        return out;
      case query::Expr::kParameter:
        out.kind = CExpr::Kind::constant;
        out.constant = params_[static_cast<size_t>(e.parameter() - 1)];
        return out;
      case query::Expr::kUnary: {
        TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(e.unary().operand(), visible, allow_aggregate));
        out.kind = e.unary().op() == query::Unary::NOT ? CExpr::Kind::not_
                   : e.unary().op() == query::Unary::NEGATE ? CExpr::Kind::negate : CExpr::Kind::plus;
        out.children.push_back(std::move(c));
        return out;
      }
      case query::Expr::kBinary: {
        TANDEM_ASSIGN_OR_RETURN(CExpr l, compile(e.binary().left(), visible, allow_aggregate));
        TANDEM_ASSIGN_OR_RETURN(CExpr r, compile(e.binary().right(), visible, allow_aggregate));
        switch (e.binary().op()) {
          case query::Binary::EQ: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::eq; break;
          case query::Binary::NE: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::ne; break;
          case query::Binary::LT: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::lt; break;
          case query::Binary::LE: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::le; break;
          case query::Binary::GT: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::gt; break;
          case query::Binary::GE: out.kind = CExpr::Kind::compare; out.cmp = CExpr::Cmp::ge; break;
          case query::Binary::AND: out.kind = CExpr::Kind::and_; break;
          case query::Binary::OR: out.kind = CExpr::Kind::or_; break;
          case query::Binary::ADD: out.kind = CExpr::Kind::arith; out.arith = ArithOp::add; break;
          case query::Binary::SUB: out.kind = CExpr::Kind::arith; out.arith = ArithOp::sub; break;
          case query::Binary::MUL: out.kind = CExpr::Kind::arith; out.arith = ArithOp::mul; break;
          case query::Binary::DIV: out.kind = CExpr::Kind::arith; out.arith = ArithOp::div; break;
          case query::Binary::MOD: out.kind = CExpr::Kind::arith; out.arith = ArithOp::mod; break;
          default: return Status::InvalidArgument("query: unknown operator");
        }
        if (out.kind == CExpr::Kind::compare) out.cmp_affinity = comparison_affinity(l.affinity, r.affinity);
        out.children.push_back(std::move(l));
        out.children.push_back(std::move(r));
        return out;
      }
      case query::Expr::kIsNull: {
        TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(e.is_null().operand(), visible, allow_aggregate));
        out.kind = CExpr::Kind::is_null;
        out.negated = e.is_null().negated();
        out.children.push_back(std::move(c));
        return out;
      }
      case query::Expr::kInList: {
        TANDEM_ASSIGN_OR_RETURN(CExpr x, compile(e.in_list().operand(), visible, allow_aggregate));
        out.kind = CExpr::Kind::in_list;
        out.negated = e.in_list().negated();
        out.cmp_affinity = x.affinity;
        out.children.push_back(std::move(x));
        for (const auto& item : e.in_list().items()) {
          TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(item, visible, allow_aggregate));
          out.children.push_back(std::move(c));
        }
        return out;
      }
      case query::Expr::kBetween: {
        TANDEM_ASSIGN_OR_RETURN(CExpr x, compile(e.between().operand(), visible, allow_aggregate));
        TANDEM_ASSIGN_OR_RETURN(CExpr lo, compile(e.between().low(), visible, allow_aggregate));
        TANDEM_ASSIGN_OR_RETURN(CExpr hi, compile(e.between().high(), visible, allow_aggregate));
        out.kind = CExpr::Kind::between;
        out.negated = e.between().negated();
        out.children.push_back(std::move(x));
        out.children.push_back(std::move(lo));
        out.children.push_back(std::move(hi));
        return out;
      }
      case query::Expr::kLike: {
        TANDEM_ASSIGN_OR_RETURN(CExpr x, compile(e.like().operand(), visible, allow_aggregate));
        TANDEM_ASSIGN_OR_RETURN(CExpr p, compile(e.like().pattern(), visible, allow_aggregate));
        out.kind = CExpr::Kind::like;
        out.negated = e.like().negated();
        out.children.push_back(std::move(x));
        out.children.push_back(std::move(p));
        return out;
      }
      case query::Expr::kAggregate: {
        if (!allow_aggregate)
          return error_at(StatusCode::invalid_argument, "misuse of aggregate function", e.position());
        out.kind = CExpr::Kind::aggregate;
        out.column = static_cast<int>(e.aggregate().func());  // the function until to_group()
        if (e.aggregate().func() != query::Aggregate::COUNT_STAR) {
          TANDEM_ASSIGN_OR_RETURN(CExpr a, compile(e.aggregate().argument(), visible, false));
          out.children.push_back(std::move(a));
          out.sql = query::render(e.aggregate().argument());
        }
        out.constant = Value::Integer(e.position());
        return out;
      }
      case query::Expr::KIND_NOT_SET: break;
    }
    return Status::InvalidArgument("query: expression with no kind");
  }

  // Rewrites a tuple-context expression of an aggregate query into group context.
  Result<CExpr> to_group(const CExpr& e) {
    for (size_t k = 0; k < plan_->group_keys.size(); ++k) {
      if (e.same_as(plan_->group_keys[k])) {
        CExpr g;
        g.kind = CExpr::Kind::group_key;
        g.column = static_cast<int>(k);
        g.affinity = plan_->group_keys[k].affinity;
        return g;
      }
    }
    if (e.kind == CExpr::Kind::aggregate) {
      AggregateSpec spec;
      switch (static_cast<query::Aggregate::Func>(e.column)) {
        case query::Aggregate::COUNT_STAR: spec.func = AggregateSpec::Func::count_star; break;
        case query::Aggregate::COUNT: spec.func = AggregateSpec::Func::count; break;
        case query::Aggregate::SUM: spec.func = AggregateSpec::Func::sum; break;
        case query::Aggregate::MIN: spec.func = AggregateSpec::Func::min; break;
        case query::Aggregate::MAX: spec.func = AggregateSpec::Func::max; break;
        case query::Aggregate::AVG: spec.func = AggregateSpec::Func::avg; break;
        default: return Status::InvalidArgument("query: unknown aggregate");
      }
      if (!e.children.empty()) spec.argument = e.children[0];
      spec.argument_sql = e.sql;
      int slot = -1;
      for (size_t i = 0; i < plan_->aggregates.size(); ++i) {
        const auto& s = plan_->aggregates[i];
        if (s.func == spec.func && s.argument.has_value() == spec.argument.has_value() &&
            (!s.argument || s.argument->same_as(*spec.argument))) {
          slot = static_cast<int>(i);
          break;
        }
      }
      if (slot < 0) {
        slot = static_cast<int>(plan_->aggregates.size());
        plan_->aggregates.push_back(std::move(spec));
      }
      CExpr a;
      a.kind = CExpr::Kind::aggregate;
      a.column = slot;
      return a;
    }
    if (e.kind == CExpr::Kind::column) {
      const auto& occ = plan_->occurrences[static_cast<size_t>(e.occurrence)];
      return Status::Unsupported("column " + occ.name + "." + occ.table->columns[static_cast<size_t>(e.column)] +
                                 " must appear in GROUP BY or inside an aggregate (SQLite's bare columns are outside the subset)");
    }
    CExpr out = e;
    out.children.clear();
    for (const auto& c : e.children) {
      TANDEM_ASSIGN_OR_RETURN(CExpr g, to_group(c));
      out.children.push_back(std::move(g));
    }
    if (out.kind == CExpr::Kind::compare)
      out.cmp_affinity = comparison_affinity(out.children[0].affinity, out.children[1].affinity);
    if (out.kind == CExpr::Kind::in_list) out.cmp_affinity = out.children[0].affinity;
    return out;
  }

  static void split_and(const query::Expr& e, std::vector<const query::Expr*>* out) {
    if (e.has_binary() && e.binary().op() == query::Binary::AND) {
      split_and(e.binary().left(), out);
      split_and(e.binary().right(), out);
    } else {
      out->push_back(&e);
    }
  }

  static CExpr conjunction(std::vector<CExpr> parts) {
    CExpr acc = std::move(parts[0]);
    for (size_t i = 1; i < parts.size(); ++i) {
      CExpr a;
      a.kind = CExpr::Kind::and_;
      a.children.push_back(std::move(acc));
      a.children.push_back(std::move(parts[i]));
      acc = std::move(a);
    }
    return acc;
  }

  Status bind_joins() {
    auto& occs = plan_->occurrences;
    local_parts_.resize(occs.size());
    local_sql_.resize(occs.size());
    for (int j = 1; j < static_cast<int>(occs.size()); ++j) {
      const auto& join = q_.joins(j - 1);
      auto& occ = occs[static_cast<size_t>(j)];
      occ.left_join = join.kind() == query::Join::LEFT;
      std::vector<const query::Expr*> parts;
      split_and(join.on(), &parts);
      std::vector<std::pair<const query::Expr*, CExpr>> compiled;
      int parent = -1;
      for (const auto* p : parts) {
        TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(*p, j + 1, false));
        if (parent < 0 && c.kind == CExpr::Kind::compare && c.cmp == CExpr::Cmp::eq &&
            c.children[0].kind == CExpr::Kind::column && c.children[1].kind == CExpr::Kind::column) {
          int a = c.children[0].occurrence, b = c.children[1].occurrence;
          if (a == j && b < j) parent = b;
          else if (b == j && a < j) parent = a;
        }
        compiled.emplace_back(p, std::move(c));
      }
      if (parent < 0)
        return error_at(StatusCode::unsupported,
                        "JOIN " + occ.name + " ON needs an equality between a column of " + occ.name +
                            " and a column of an earlier table",
                        join.on().position());
      occ.parent = parent;
      occs[static_cast<size_t>(parent)].children.push_back(j);
      uint64_t allowed = (uint64_t{1} << j) | (uint64_t{1} << parent);
      for (auto& [p, c] : compiled) {
        uint64_t refs = c.occurrences();
        if (refs & ~allowed)
          return error_at(StatusCode::unsupported,
                          "JOIN " + occ.name + " ON may reference only " + occ.name + " and " +
                              occs[static_cast<size_t>(parent)].name,
                          p->position());
        if (c.kind == CExpr::Kind::compare && c.cmp == CExpr::Cmp::eq && c.children[0].kind == CExpr::Kind::column &&
            c.children[1].kind == CExpr::Kind::column && refs == allowed) {
          const CExpr& mine = c.children[0].occurrence == j ? c.children[0] : c.children[1];
          const CExpr& theirs = c.children[0].occurrence == j ? c.children[1] : c.children[0];
          occ.equalities.push_back({mine.column, theirs.column, c.cmp_affinity});
        } else if (refs == (uint64_t{1} << j)) {
          local_parts_[static_cast<size_t>(j)].push_back(c);
          local_sql_[static_cast<size_t>(j)].push_back(query::render(*p));
        }
      }
      std::vector<CExpr> all;
      for (auto& [p, c] : compiled) all.push_back(c);
      occ.on = conjunction(std::move(all));
    }
    for (size_t j = 1; j < occs.size(); ++j)
      occs[j].nullable = occs[j].left_join || occs[static_cast<size_t>(occs[j].parent)].nullable;
    return Status::Ok();
  }

  Status bind_where() {
    auto& occs = plan_->occurrences;
    std::vector<CExpr> residual;
    if (q_.has_where()) {
      std::vector<const query::Expr*> parts;
      split_and(q_.where(), &parts);
      for (const auto* p : parts) {
        TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(*p, static_cast<int>(occs.size()), false));
        uint64_t refs = c.occurrences();
        int single = -1;
        for (size_t j = 0; j < occs.size(); ++j)
          if (refs == (uint64_t{1} << j)) single = static_cast<int>(j);
        if (single >= 0 && !occs[static_cast<size_t>(single)].nullable) {
          local_parts_[static_cast<size_t>(single)].push_back(c);
          local_sql_[static_cast<size_t>(single)].push_back(query::render(*p));
        } else {
          residual.push_back(std::move(c));
        }
      }
    }
    if (!residual.empty()) plan_->residual_where = conjunction(std::move(residual));
    for (size_t j = 0; j < occs.size(); ++j) {
      if (local_parts_[j].empty()) continue;
      occs[j].local_filter = conjunction(local_parts_[j]);
      std::string sql;
      for (const auto& s : local_sql_[j]) sql += (sql.empty() ? "" : " AND ") + s;
      occs[j].local_filter_sql = sql;
    }
    return Status::Ok();
  }

  Status bind_select() {
    auto& occs = plan_->occurrences;
    int n = static_cast<int>(occs.size());
    plan_->distinct = q_.distinct();
    std::vector<CExpr> outputs;
    for (const auto& item : q_.select()) {
      if (item.star()) {
        bool any = false;
        for (int i = 0; i < n; ++i) {
          const auto& occ = occs[static_cast<size_t>(i)];
          if (!item.star_table().empty() && !iequals(item.star_table(), occ.name)) continue;
          any = true;
          for (size_t c = 0; c < occ.table->columns.size(); ++c) {
            CExpr e;
            e.kind = CExpr::Kind::column;
            e.occurrence = i;
            e.column = static_cast<int>(c);
            e.affinity = occ.table->affinity[c];
            needed_[static_cast<size_t>(i)].push_back(static_cast<int>(c));
            outputs.push_back(std::move(e));
            plan_->column_names.push_back(occ.table->columns[c]);
            plan_->output_sql.push_back(query::quote_name(occ.name) + "." + query::quote_name(occ.table->columns[c]));
          }
        }
        if (!any) return Status::InvalidArgument("no such table: " + item.star_table());
        continue;
      }
      TANDEM_ASSIGN_OR_RETURN(CExpr e, compile(item.expr(), n, true));
      plan_->output_sql.push_back(query::render(item.expr()));
      if (!item.alias().empty()) plan_->column_names.push_back(item.alias());
      else if (item.expr().has_column()) plan_->column_names.push_back(item.expr().column().column());
      else plan_->column_names.push_back(query::render(item.expr()));
      outputs.push_back(std::move(e));
    }
    bool has_agg = q_.group_by_size() > 0;
    for (const auto& o : outputs) has_agg = has_agg || o.has_aggregate();
    if (!has_agg)
      for (const auto& t : q_.order_by())
        if (has_aggregate(t.expr())) has_agg = true;
    plan_->aggregate = has_agg;
    if (!has_agg) {
      plan_->outputs = std::move(outputs);
      return Status::Ok();
    }
    if (plan_->distinct) return Status::Unsupported("DISTINCT together with GROUP BY or aggregates");
    for (const auto& g : q_.group_by()) {
      if (g.has_literal() && g.literal().kind_case() == change::Value::kInteger) {
        int64_t k = g.literal().integer();
        if (k < 1 || k > static_cast<int64_t>(outputs.size()))
          return error_at(StatusCode::invalid_argument, "GROUP BY term out of range", g.position());
        if (outputs[static_cast<size_t>(k - 1)].has_aggregate())
          return error_at(StatusCode::invalid_argument, "aggregate functions are not allowed in the GROUP BY clause", g.position());
        plan_->group_keys.push_back(outputs[static_cast<size_t>(k - 1)]);
        plan_->group_sql.push_back(plan_->output_sql[static_cast<size_t>(k - 1)]);
        continue;
      }
      TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(g, n, false));
      plan_->group_keys.push_back(std::move(c));
      plan_->group_sql.push_back(query::render(g));
    }
    for (const auto& o : outputs) {
      TANDEM_ASSIGN_OR_RETURN(CExpr g, to_group(o));
      plan_->outputs.push_back(std::move(g));
    }
    if (q_.has_having()) {
      TANDEM_ASSIGN_OR_RETURN(CExpr h, compile(q_.having(), n, true));
      TANDEM_ASSIGN_OR_RETURN(CExpr g, to_group(h));
      plan_->having = std::move(g);
    }
    return Status::Ok();
  }

  static bool has_aggregate(const query::Expr& e) {
    switch (e.kind_case()) {
      case query::Expr::kAggregate: return true;
      case query::Expr::kUnary: return has_aggregate(e.unary().operand());
      case query::Expr::kBinary: return has_aggregate(e.binary().left()) || has_aggregate(e.binary().right());
      case query::Expr::kIsNull: return has_aggregate(e.is_null().operand());
      case query::Expr::kInList: {
        if (has_aggregate(e.in_list().operand())) return true;
        for (const auto& i : e.in_list().items())
          if (has_aggregate(i)) return true;
        return false;
      }
      case query::Expr::kBetween:
        return has_aggregate(e.between().operand()) || has_aggregate(e.between().low()) || has_aggregate(e.between().high());
      case query::Expr::kLike: return has_aggregate(e.like().operand()) || has_aggregate(e.like().pattern());
      default: return false;
    }
  }

  // The result column an ORDER BY term names (ordinal or alias), or -1.
  Result<int> result_column_of(const query::Expr& e) {
    if (e.has_literal() && e.literal().kind_case() == change::Value::kInteger) {
      int64_t k = e.literal().integer();
      if (k < 1 || k > static_cast<int64_t>(plan_->column_names.size()))
        return error_at(StatusCode::invalid_argument, "ORDER BY term out of range", e.position());
      return static_cast<int>(k - 1);
    }
    if (e.has_column() && e.column().table().empty()) {
      // Aliases only (SQLite resolves ORDER BY identifiers against result aliases first).
      int index = 0;
      for (const auto& item : q_.select()) {
        if (item.star()) {
          index += star_width(item);
          continue;
        }
        if (!item.alias().empty() && iequals(item.alias(), e.column().column())) return index;
        ++index;
      }
    }
    return -1;
  }

  int star_width(const query::SelectItem& item) const {
    int w = 0;
    for (const auto& occ : plan_->occurrences)
      if (item.star_table().empty() || iequals(item.star_table(), occ.name)) w += static_cast<int>(occ.table->columns.size());
    return w;
  }

  Status bind_order() {
    int n = static_cast<int>(plan_->occurrences.size());
    for (const auto& term : q_.order_by()) {
      TANDEM_ASSIGN_OR_RETURN(int rc, result_column_of(term.expr()));
      if (plan_->distinct) {
        if (rc < 0) {
          TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(term.expr(), n, false));
          for (size_t i = 0; i < plan_->outputs.size(); ++i)
            if (plan_->outputs[i].same_as(c)) { rc = static_cast<int>(i); break; }
          if (rc < 0)
            return error_at(StatusCode::unsupported, "ORDER BY term that is not a result column of a DISTINCT query",
                            term.expr().position());
        }
        plan_->order_columns.push_back(rc);
        plan_->order.push_back({CExpr{}, term.descending()});
        continue;
      }
      OrderKey key;
      key.descending = term.descending();
      if (rc >= 0) {
        key.expr = plan_->outputs[static_cast<size_t>(rc)];
        plan_->order_sql.push_back(plan_->output_sql[static_cast<size_t>(rc)]);
      } else {
        plan_->order_sql.push_back(query::render(term.expr()));
        TANDEM_ASSIGN_OR_RETURN(CExpr c, compile(term.expr(), n, plan_->aggregate));
        if (plan_->aggregate) {
          TANDEM_ASSIGN_OR_RETURN(CExpr g, to_group(c));
          key.expr = std::move(g);
        } else {
          key.expr = std::move(c);
        }
      }
      plan_->order.push_back(std::move(key));
    }
    return Status::Ok();
  }

  Result<int64_t> limit_value(const query::Expr& e, const char* what) {
    Value v = e.has_literal() ? from_proto(e.literal()) : params_[static_cast<size_t>(e.parameter() - 1)];
    if (!v.is_integer()) {
      Value conv = apply_storage_affinity(v, Affinity::integer);
      if (!conv.is_integer()) return Status::InvalidArgument(std::string(what) + " must be an integer (datatype mismatch)");
      v = conv;
    }
    return v.integer();
  }

  Status bind_limit() {
    if (q_.has_limit()) {
      TANDEM_ASSIGN_OR_RETURN(int64_t l, limit_value(q_.limit(), "LIMIT"));
      plan_->limit = l < 0 ? -1 : l;
    }
    if (q_.has_offset()) {
      TANDEM_ASSIGN_OR_RETURN(int64_t o, limit_value(q_.offset(), "OFFSET"));
      plan_->offset = o < 0 ? 0 : o;
    }
    return Status::Ok();
  }

  Database& db_;
  const query::Query& q_;
  const Row& params_;
  Plan* plan_ = nullptr;
  std::map<std::string, std::shared_ptr<TableSchema>> schemas_;
  std::vector<std::vector<CExpr>> local_parts_;
  std::vector<std::vector<std::string>> local_sql_;
  std::vector<std::vector<int>> needed_;
};

}  // namespace

int TableSchema::column_index(const std::string& n) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (iequals(columns[i], n)) return static_cast<int>(i);
  return -1;
}

Result<TableSchema> read_table_schema(Database& db, const std::string& table) {
  TableSchema s;
  s.name = table;
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(table)));
  std::vector<std::pair<int, int>> pk;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    s.columns.push_back(st->column(0).bytes());
    s.declared_types.push_back(st->column(1).bytes());
    s.affinity.push_back(affinity_of_declared_type(st->column(1).bytes()));
    s.not_null.push_back(st->column_int64(2) != 0);
    Value d = st->column(3);
    s.default_sql.push_back(d.is_null() ? std::nullopt : std::optional<std::string>(d.bytes()));
    int pkpos = static_cast<int>(st->column_int64(4));
    if (pkpos > 0) pk.emplace_back(pkpos, static_cast<int>(s.columns.size() - 1));
  }
  if (s.columns.empty()) return Status::NotFound("no such table: " + table);
  if (pk.empty()) return Status::Unsupported("table " + table + " has no PRIMARY KEY (live queries need one)");
  std::sort(pk.begin(), pk.end());
  for (auto& [pos, col] : pk) s.pk.push_back(col);
  // WITHOUT ROWID tables cannot tell a NULL-extended LEFT JOIN side by its rowid.
  {
    TANDEM_ASSIGN_OR_RETURN(auto w, db.prepare("SELECT wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main'"));
    TANDEM_RETURN_IF_ERROR(w->bind(1, Value::Text(table)));
    TANDEM_ASSIGN_OR_RETURN(bool row, w->step());
    if (row && w->column_int64(0) != 0) return Status::Unsupported("table " + table + " is WITHOUT ROWID (not supported by live queries)");
  }
  for (const auto& c : s.columns) {
    const char* coll = nullptr;
    int rc = sqlite3_table_column_metadata(db.raw(), "main", table.c_str(), c.c_str(), nullptr, &coll, nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK && coll != nullptr && std::string(coll) != "BINARY")
      return Status::Unsupported("column " + table + "." + c + " has collation " + coll +
                                 " (live queries compare with BINARY only)");
  }
  return s;
}

std::string Plan::tuple_sql() const {
  std::string sql = "SELECT ";
  bool first = true;
  for (const auto& occ : occurrences) {
    for (int c : occ.needed_columns) {
      if (!first) sql += ", ";
      first = false;
      sql += query::quote_name(occ.name) + "." + query::quote_name(occ.table->columns[static_cast<size_t>(c)]);
    }
  }
  for (const auto& occ : occurrences) {
    if (!occ.nullable) continue;
    sql += ", " + query::quote_name(occ.name) + ".rowid";
  }
  const auto& q = query;
  auto table = [](const query::TableRef& t) {
    std::string s = query::quote_name(t.name());
    if (!t.alias().empty()) s += " AS " + query::quote_name(t.alias());
    return s;
  };
  sql += " FROM " + table(q.from());
  for (const auto& j : q.joins())
    sql += std::string(j.kind() == query::Join::LEFT ? " LEFT JOIN " : " JOIN ") + table(j.table()) + " ON " +
           query::render(j.on());
  if (q.has_where()) sql += " WHERE " + query::render(q.where());
  return sql;
}

Result<std::shared_ptr<const Plan>> bind(Database& db, const query::Query& q, const Row& params) {
  return Binder(db, q, params).run();
}

}  // namespace tandem::ivm
