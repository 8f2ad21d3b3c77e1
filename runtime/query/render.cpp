#include "runtime/query/render.hpp"

#include <cstdio>
#include <limits>
#include <string>

namespace tandem::query {
namespace {

const char* binary_op(Binary::Op op) {
  switch (op) {
    case Binary::EQ: return "=";
    case Binary::NE: return "<>";
    case Binary::LT: return "<";
    case Binary::LE: return "<=";
    case Binary::GT: return ">";
    case Binary::GE: return ">=";
    case Binary::AND: return "AND";
    case Binary::OR: return "OR";
    case Binary::ADD: return "+";
    case Binary::SUB: return "-";
    case Binary::MUL: return "*";
    case Binary::DIV: return "/";
    case Binary::MOD: return "%";
    default: return "?";
  }
}

const char* aggregate_name(Aggregate::Func f) {
  switch (f) {
    case Aggregate::COUNT_STAR:
    case Aggregate::COUNT: return "count";
    case Aggregate::SUM: return "sum";
    case Aggregate::MIN: return "min";
    case Aggregate::MAX: return "max";
    case Aggregate::AVG: return "avg";
    default: return "?";
  }
}

// Every compound expression is parenthesized, so precedence never depends on the reader.
void render_expr(const Expr& e, std::string* out) {
  switch (e.kind_case()) {
    case Expr::kColumn:
      if (!e.column().table().empty()) {
        *out += quote_name(e.column().table());
        *out += '.';
      }
      *out += quote_name(e.column().column());
      return;
    case Expr::kLiteral: *out += render_literal(e.literal()); return;
    case Expr::kParameter: *out += "?" + std::to_string(e.parameter()); return;
    case Expr::kUnary:
      *out += '(';
      *out += e.unary().op() == Unary::NOT ? "NOT " : e.unary().op() == Unary::NEGATE ? "- " : "+ ";
      render_expr(e.unary().operand(), out);
      *out += ')';
      return;
    case Expr::kBinary:
      *out += '(';
      render_expr(e.binary().left(), out);
      *out += ' ';
      *out += binary_op(e.binary().op());
      *out += ' ';
      render_expr(e.binary().right(), out);
      *out += ')';
      return;
    case Expr::kIsNull:
      *out += '(';
      render_expr(e.is_null().operand(), out);
      *out += e.is_null().negated() ? " IS NOT NULL)" : " IS NULL)";
      return;
    case Expr::kInList:
      *out += '(';
      render_expr(e.in_list().operand(), out);
      *out += e.in_list().negated() ? " NOT IN (" : " IN (";
      for (int i = 0; i < e.in_list().items_size(); ++i) {
        if (i) *out += ", ";
        render_expr(e.in_list().items(i), out);
      }
      *out += "))";
      return;
    case Expr::kBetween:
      *out += '(';
      render_expr(e.between().operand(), out);
      *out += e.between().negated() ? " NOT BETWEEN " : " BETWEEN ";
      render_expr(e.between().low(), out);
      *out += " AND ";
      render_expr(e.between().high(), out);
      *out += ')';
      return;
    case Expr::kLike:
      *out += '(';
      render_expr(e.like().operand(), out);
      *out += e.like().negated() ? " NOT LIKE " : " LIKE ";
      render_expr(e.like().pattern(), out);
      *out += ')';
      return;
    case Expr::kAggregate:
      *out += aggregate_name(e.aggregate().func());
      *out += '(';
      if (e.aggregate().func() == Aggregate::COUNT_STAR) *out += '*';
      else render_expr(e.aggregate().argument(), out);
      *out += ')';
      return;
    case Expr::KIND_NOT_SET: *out += "NULL"; return;
  }
}

void render_table(const TableRef& t, std::string* out) {
  *out += quote_name(t.name());
  if (!t.alias().empty()) {
    *out += " AS ";
    *out += quote_name(t.alias());
  }
}

Status validate_expr(const Expr& e, int parameter_count, bool in_aggregate) {
  switch (e.kind_case()) {
    case Expr::KIND_NOT_SET: return Status::InvalidArgument("query: expression with no kind");
    case Expr::kColumn:
      if (e.column().column().empty()) return Status::InvalidArgument("query: column reference without a name");
      return Status::Ok();
    case Expr::kLiteral:
      if ((e.literal().kind_case() == change::Value::kText) && e.literal().text().find('\0') != std::string::npos)
        return Status::InvalidArgument("query: text literal with a NUL byte");
      return Status::Ok();
    case Expr::kParameter:
      if (e.parameter() < 1 || e.parameter() > parameter_count)
        return Status::InvalidArgument("query: parameter ?" + std::to_string(e.parameter()) + " outside 1.." +
                                       std::to_string(parameter_count));
      return Status::Ok();
    case Expr::kUnary:
      if (!e.unary().has_operand()) return Status::InvalidArgument("query: unary operator without operand");
      return validate_expr(e.unary().operand(), parameter_count, in_aggregate);
    case Expr::kBinary:
      if (!e.binary().has_left() || !e.binary().has_right())
        return Status::InvalidArgument("query: binary operator without both operands");
      if (e.binary().op() < Binary::EQ || e.binary().op() > Binary::MOD)
        return Status::InvalidArgument("query: unknown binary operator");
      TANDEM_RETURN_IF_ERROR(validate_expr(e.binary().left(), parameter_count, in_aggregate));
      return validate_expr(e.binary().right(), parameter_count, in_aggregate);
    case Expr::kIsNull:
      if (!e.is_null().has_operand()) return Status::InvalidArgument("query: IS NULL without operand");
      return validate_expr(e.is_null().operand(), parameter_count, in_aggregate);
    case Expr::kInList:
      if (!e.in_list().has_operand()) return Status::InvalidArgument("query: IN without operand");
      TANDEM_RETURN_IF_ERROR(validate_expr(e.in_list().operand(), parameter_count, in_aggregate));
      for (const auto& item : e.in_list().items()) TANDEM_RETURN_IF_ERROR(validate_expr(item, parameter_count, in_aggregate));
      return Status::Ok();
    case Expr::kBetween:
      if (!e.between().has_operand() || !e.between().has_low() || !e.between().has_high())
        return Status::InvalidArgument("query: BETWEEN without all operands");
      TANDEM_RETURN_IF_ERROR(validate_expr(e.between().operand(), parameter_count, in_aggregate));
      TANDEM_RETURN_IF_ERROR(validate_expr(e.between().low(), parameter_count, in_aggregate));
      return validate_expr(e.between().high(), parameter_count, in_aggregate);
    case Expr::kLike:
      if (!e.like().has_operand() || !e.like().has_pattern()) return Status::InvalidArgument("query: LIKE without operands");
      TANDEM_RETURN_IF_ERROR(validate_expr(e.like().operand(), parameter_count, in_aggregate));
      return validate_expr(e.like().pattern(), parameter_count, in_aggregate);
    case Expr::kAggregate:
      if (in_aggregate) return Status::InvalidArgument("query: aggregate inside an aggregate");
      if (e.aggregate().func() == Aggregate::COUNT_STAR) return Status::Ok();
      if (e.aggregate().func() < Aggregate::COUNT_STAR || e.aggregate().func() > Aggregate::AVG)
        return Status::InvalidArgument("query: unknown aggregate");
      if (!e.aggregate().has_argument()) return Status::InvalidArgument("query: aggregate without argument");
      return validate_expr(e.aggregate().argument(), parameter_count, true);
  }
  return Status::Ok();
}

Status validate_limit(const Expr& e, int parameter_count, const char* what) {
  if (e.has_literal() && e.literal().kind_case() == change::Value::kInteger) return Status::Ok();
  if (e.kind_case() == Expr::kParameter) return validate_expr(e, parameter_count, false);
  return Status::InvalidArgument(std::string("query: ") + what + " must be an integer literal or a parameter");
}

}  // namespace

std::string quote_name(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string render_literal(const change::Value& v) {
  static const char* hex = "0123456789ABCDEF";
  switch (v.kind_case()) {
    case change::Value::kInteger:
      if (v.integer() == std::numeric_limits<int64_t>::min()) return "(-9223372036854775807 - 1)";
      return std::to_string(v.integer());
    case change::Value::kReal: {
      double d = v.real();
      if (d != d) return "NULL";
      if (d == std::numeric_limits<double>::infinity()) return "9e999";
      if (d == -std::numeric_limits<double>::infinity()) return "(-9e999)";
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      std::string s = buf;
      if (s.find_first_of(".eE") == std::string::npos) s += ".0";
      if (s[0] == '-') s = "(" + s + ")";
      return s;
    }
    case change::Value::kText: {
      std::string out = "'";
      for (char c : v.text()) {
        if (c == '\'') out += '\'';
        out += c;
      }
      return out + "'";
    }
    case change::Value::kBlob: {
      std::string out = "X'";
      for (unsigned char c : v.blob()) {
        out += hex[c >> 4];
        out += hex[c & 15];
      }
      return out + "'";
    }
    case change::Value::KIND_NOT_SET: return "NULL";
  }
  return "NULL";
}

std::string render(const Expr& expr) {
  std::string out;
  render_expr(expr, &out);
  return out;
}

std::string render(const Query& q) {
  std::string out = "SELECT ";
  if (q.distinct()) out += "DISTINCT ";
  for (int i = 0; i < q.select_size(); ++i) {
    if (i) out += ", ";
    const auto& item = q.select(i);
    if (item.star()) {
      if (!item.star_table().empty()) out += quote_name(item.star_table()) + ".";
      out += "*";
      continue;
    }
    render_expr(item.expr(), &out);
    if (!item.alias().empty()) out += " AS " + quote_name(item.alias());
  }
  out += " FROM ";
  render_table(q.from(), &out);
  for (const auto& j : q.joins()) {
    out += j.kind() == Join::LEFT ? " LEFT JOIN " : " JOIN ";
    render_table(j.table(), &out);
    out += " ON ";
    render_expr(j.on(), &out);
  }
  if (q.has_where()) {
    out += " WHERE ";
    render_expr(q.where(), &out);
  }
  for (int i = 0; i < q.group_by_size(); ++i) {
    out += i ? ", " : " GROUP BY ";
    render_expr(q.group_by(i), &out);
  }
  if (q.has_having()) {
    out += " HAVING ";
    render_expr(q.having(), &out);
  }
  for (int i = 0; i < q.order_by_size(); ++i) {
    out += i ? ", " : " ORDER BY ";
    render_expr(q.order_by(i).expr(), &out);
    if (q.order_by(i).descending()) out += " DESC";
  }
  if (q.has_limit()) {
    out += " LIMIT ";
    render_expr(q.limit(), &out);
  }
  if (q.has_offset()) {
    if (!q.has_limit()) out += " LIMIT -1";
    out += " OFFSET ";
    render_expr(q.offset(), &out);
  }
  return out;
}

Status validate(const Query& q) {
  if (q.select_size() == 0) return Status::InvalidArgument("query: no result columns");
  if (q.from().name().empty()) return Status::InvalidArgument("query: no FROM table");
  if (q.parameter_count() < 0 || q.parameter_count() > 32766) return Status::InvalidArgument("query: bad parameter_count");
  int pc = q.parameter_count();
  for (const auto& item : q.select()) {
    if (item.star()) continue;
    if (!item.has_expr()) return Status::InvalidArgument("query: result column without an expression");
    TANDEM_RETURN_IF_ERROR(validate_expr(item.expr(), pc, false));
  }
  for (const auto& j : q.joins()) {
    if (j.table().name().empty()) return Status::InvalidArgument("query: JOIN without a table");
    if (!j.has_on()) return Status::InvalidArgument("query: JOIN without ON");
    if (j.kind() != Join::INNER && j.kind() != Join::LEFT) return Status::InvalidArgument("query: unknown join kind");
    TANDEM_RETURN_IF_ERROR(validate_expr(j.on(), pc, false));
  }
  if (q.has_where()) TANDEM_RETURN_IF_ERROR(validate_expr(q.where(), pc, false));
  for (const auto& g : q.group_by()) TANDEM_RETURN_IF_ERROR(validate_expr(g, pc, false));
  if (q.has_having()) {
    if (q.group_by_size() == 0) return Status::Unsupported("query: HAVING without GROUP BY");
    TANDEM_RETURN_IF_ERROR(validate_expr(q.having(), pc, false));
  }
  for (const auto& o : q.order_by()) TANDEM_RETURN_IF_ERROR(validate_expr(o.expr(), pc, false));
  if (q.has_limit()) TANDEM_RETURN_IF_ERROR(validate_limit(q.limit(), pc, "LIMIT"));
  if (q.has_offset()) TANDEM_RETURN_IF_ERROR(validate_limit(q.offset(), pc, "OFFSET"));
  return Status::Ok();
}

}  // namespace tandem::query
