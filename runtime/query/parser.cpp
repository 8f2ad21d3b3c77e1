// A hand-written tokenizer and recursive-descent parser for the live-query subset.
//
// Operator precedence follows SQLite's grammar (parse.y), lowest first:
//   OR; AND; NOT (prefix); = == != <> IS IN LIKE BETWEEN ISNULL NOTNULL; < <= > >=;
//   (bit operators: refused); + -; * / %; (||: refused); unary - + (and ~: refused).
// Keeping SQLite's precedence matters: the AST must mean what SQLite would run for the text.
#include "runtime/query/parser.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

namespace tandem::query {
namespace {

enum class Tok { end, ident, keyword, integer, real, string, blob, param, op };

struct Token {
  Tok kind = Tok::end;
  std::string text;      // identifier (unquoted), keyword (upper case), operator, literal text
  int pos = 0;           // byte offset
  int param_index = 0;   // ?NNN
  bool quoted = false;   // identifier was quoted
};

// Words that cannot be bare identifiers here: the subset's own keywords and the keywords of
// constructs the subset refuses (so they are reported by name instead of "unknown column").
const std::set<std::string>& keywords() {
  static const std::set<std::string> k = {
      "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "ORDER", "LIMIT", "OFFSET", "JOIN",
      "LEFT", "INNER", "CROSS", "NATURAL", "OUTER", "RIGHT", "FULL", "ON", "USING", "AS",
      "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "BETWEEN", "DISTINCT", "ALL", "CASE",
      "CAST", "EXISTS", "UNION", "INTERSECT", "EXCEPT", "WITH", "ASC", "DESC", "COLLATE",
      "ESCAPE", "GLOB", "MATCH", "REGEXP", "WINDOW", "OVER", "FILTER", "VALUES", "INDEXED",
      "ISNULL", "NOTNULL", "NULLS", "WHEN", "THEN", "ELSE", "END", "RAISE", "RECURSIVE",
      "CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP", "TRUE", "FALSE"};
  return k;
}

bool ident_start(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool ident_char(unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

class Parser {
 public:
  explicit Parser(const std::string& sql) : sql_(sql) {}

  Result<Query> run() {
    auto st = tokenize();
    if (!st.ok()) return st;
    Query q;
    q.set_sql(sql_);
    st = parse_select(&q);
    if (!st.ok()) return st;
    q.set_parameter_count(max_param_);
    return q;
  }

 private:
  // ---- errors ----
  Status unsupported(const std::string& what, int pos) const {
    return Status::Unsupported(what + " at " + describe_position(sql_, pos) +
                               " is outside the live-query subset (see docs/query.md)");
  }
  Status syntax(const std::string& what, int pos) const {
    return Status::InvalidArgument("syntax error at " + describe_position(sql_, pos) + ": " + what);
  }

  // ---- tokenizer ----
  Status tokenize() {
    size_t i = 0, n = sql_.size();
    int next_param = 0;
    while (i < n) {
      unsigned char c = static_cast<unsigned char>(sql_[i]);
      if (std::isspace(c)) { ++i; continue; }
      if (c == '-' && i + 1 < n && sql_[i + 1] == '-') {
        while (i < n && sql_[i] != '\n') ++i;
        continue;
      }
      if (c == '/' && i + 1 < n && sql_[i + 1] == '*') {
        size_t e = sql_.find("*/", i + 2);
        i = e == std::string::npos ? n : e + 2;
        continue;
      }
      Token t;
      t.pos = static_cast<int>(i);
      if ((c == 'x' || c == 'X') && i + 1 < n && sql_[i + 1] == '\'') {
        size_t e = sql_.find('\'', i + 2);
        if (e == std::string::npos) return syntax("unterminated blob literal", t.pos);
        std::string hex = sql_.substr(i + 2, e - i - 2);
        if (hex.size() % 2 != 0) return syntax("malformed blob literal", t.pos);
        std::string bytes;
        for (size_t k = 0; k < hex.size(); k += 2) {
          auto h = [](char ch) -> int {
            if (ch >= '0' && ch <= '9') return ch - '0';
            if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
            if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
            return -1;
          };
          int a = h(hex[k]), b = h(hex[k + 1]);
          if (a < 0 || b < 0) return syntax("malformed blob literal", t.pos);
          bytes.push_back(static_cast<char>(a * 16 + b));
        }
        t.kind = Tok::blob;
        t.text = bytes;
        i = e + 1;
      } else if (ident_start(c)) {
        size_t s = i;
        while (i < n && ident_char(static_cast<unsigned char>(sql_[i]))) ++i;
        t.text = sql_.substr(s, i - s);
        std::string up = upper(t.text);
        if (keywords().count(up)) {
          t.kind = Tok::keyword;
          t.text = up;
        } else {
          t.kind = Tok::ident;
        }
      } else if (c == '"' || c == '`' || c == '[') {
        char close = c == '[' ? ']' : static_cast<char>(c);
        std::string s;
        ++i;
        bool closed = false;
        while (i < n) {
          if (sql_[i] == close) {
            if (close != ']' && i + 1 < n && sql_[i + 1] == close) { s += close; i += 2; continue; }
            closed = true;
            ++i;
            break;
          }
          s += sql_[i++];
        }
        if (!closed) return syntax("unterminated quoted identifier", t.pos);
        t.kind = Tok::ident;
        t.text = s;
        t.quoted = true;
      } else if (c == '\'') {
        std::string s;
        ++i;
        bool closed = false;
        while (i < n) {
          if (sql_[i] == '\'') {
            if (i + 1 < n && sql_[i + 1] == '\'') { s += '\''; i += 2; continue; }
            closed = true;
            ++i;
            break;
          }
          s += sql_[i++];
        }
        if (!closed) return syntax("unterminated string literal", t.pos);
        t.kind = Tok::string;
        t.text = s;
      } else if (std::isdigit(c) || (c == '.' && i + 1 < n && std::isdigit(static_cast<unsigned char>(sql_[i + 1])))) {
        size_t s = i;
        bool is_real = false;
        if (c == '0' && i + 1 < n && (sql_[i + 1] == 'x' || sql_[i + 1] == 'X')) {
          i += 2;
          size_t hs = i;
          while (i < n && std::isxdigit(static_cast<unsigned char>(sql_[i]))) ++i;
          if (i == hs || (i < n && ident_char(static_cast<unsigned char>(sql_[i]))))
            return syntax("unrecognized token \"" + sql_.substr(s, i - s + 1) + "\"", t.pos);
          std::string digits = sql_.substr(hs, i - hs);
          size_t first = digits.find_first_not_of('0');
          if (first != std::string::npos && digits.size() - first > 16)
            return syntax("hex literal too big: " + sql_.substr(s, i - s), t.pos);
          uint64_t v = first == std::string::npos ? 0 : std::strtoull(digits.c_str() + first, nullptr, 16);
          t.kind = Tok::integer;
          t.text = std::to_string(static_cast<int64_t>(v));
          tokens_.push_back(t);
          continue;
        }
        while (i < n && std::isdigit(static_cast<unsigned char>(sql_[i]))) ++i;
        if (i < n && sql_[i] == '.') {
          is_real = true;
          ++i;
          while (i < n && std::isdigit(static_cast<unsigned char>(sql_[i]))) ++i;
        }
        if (i < n && (sql_[i] == 'e' || sql_[i] == 'E')) {
          size_t save = i;
          ++i;
          if (i < n && (sql_[i] == '+' || sql_[i] == '-')) ++i;
          if (i < n && std::isdigit(static_cast<unsigned char>(sql_[i]))) {
            is_real = true;
            while (i < n && std::isdigit(static_cast<unsigned char>(sql_[i]))) ++i;
          } else {
            i = save;
            return syntax("unrecognized token \"" + sql_.substr(s, i - s + 1) + "\"", t.pos);
          }
        }
        if (i < n && ident_char(static_cast<unsigned char>(sql_[i])))
          return syntax("unrecognized token \"" + sql_.substr(s, i - s + 1) + "\"", t.pos);
        t.kind = is_real ? Tok::real : Tok::integer;
        t.text = sql_.substr(s, i - s);
      } else if (c == '?') {
        ++i;
        size_t s = i;
        while (i < n && std::isdigit(static_cast<unsigned char>(sql_[i]))) ++i;
        int index;
        if (i > s) {
          long v = std::strtol(sql_.substr(s, i - s).c_str(), nullptr, 10);
          if (v < 1 || v > 32766) return syntax("parameter index out of range", t.pos);
          index = static_cast<int>(v);
        } else {
          index = next_param + 1;
        }
        if (index > max_param_) max_param_ = index;
        next_param = max_param_;
        t.kind = Tok::param;
        t.param_index = index;
      } else if (c == ':' || c == '@' || c == '$') {
        return unsupported("named parameter", t.pos);
      } else {
        // Longest operators first.
        static const char* ops[] = {"->>", "<<", ">>", "<=", ">=", "==", "!=", "<>", "||", "->"};
        bool matched = false;
        for (const char* op : ops) {
          if (sql_.compare(i, std::strlen(op), op) == 0) { t.text = op; matched = true; break; }
        }
        if (!matched) {
          if (std::strchr("=<>+-*/%(),.;&|~", static_cast<char>(c)) == nullptr)
            return syntax(std::string("unrecognized character '") + static_cast<char>(c) + "'", t.pos);
          t.text = std::string(1, static_cast<char>(c));
        }
        t.kind = Tok::op;
        i += t.text.size();
      }
      tokens_.push_back(t);
    }
    Token e;
    e.kind = Tok::end;
    e.pos = static_cast<int>(n);
    tokens_.push_back(e);
    return Status::Ok();
  }

  // ---- token helpers ----
  const Token& peek(size_t k = 0) const { return tokens_[std::min(at_ + k, tokens_.size() - 1)]; }
  const Token& next() { const Token& t = tokens_[at_]; if (at_ + 1 < tokens_.size()) ++at_; return t; }
  bool is_kw(const char* kw, size_t k = 0) const { return peek(k).kind == Tok::keyword && peek(k).text == kw; }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).kind == Tok::op && peek(k).text == op; }
  bool accept_kw(const char* kw) { if (is_kw(kw)) { next(); return true; } return false; }
  bool accept_op(const char* op) { if (is_op(op)) { next(); return true; } return false; }
  Status expect_kw(const char* kw) {
    if (accept_kw(kw)) return Status::Ok();
    return syntax(std::string("expected ") + kw + " near " + describe_token(peek()), peek().pos);
  }
  Status expect_op(const char* op) {
    if (accept_op(op)) return Status::Ok();
    return syntax(std::string("expected '") + op + "' near " + describe_token(peek()), peek().pos);
  }
  static std::string describe_token(const Token& t) {
    switch (t.kind) {
      case Tok::end: return "end of input";
      case Tok::string: return "'" + t.text + "'";
      case Tok::blob: return "blob literal";
      case Tok::param: return "?";
      default: return "\"" + t.text + "\"";
    }
  }

  // A keyword that starts a construct the subset refuses, reported by name.
  Status refuse_keyword(const Token& t) {
    static const std::vector<std::pair<const char*, const char*>> names = {
        {"CASE", "CASE expression"}, {"CAST", "CAST expression"}, {"EXISTS", "EXISTS subquery"},
        {"SELECT", "subquery"}, {"UNION", "compound SELECT (UNION)"},
        {"INTERSECT", "compound SELECT (INTERSECT)"}, {"EXCEPT", "compound SELECT (EXCEPT)"},
        {"WITH", "common table expression (WITH)"}, {"COLLATE", "COLLATE"},
        {"ESCAPE", "LIKE ... ESCAPE"}, {"GLOB", "GLOB"}, {"MATCH", "MATCH"}, {"REGEXP", "REGEXP"},
        {"WINDOW", "window definition"}, {"OVER", "window function"}, {"FILTER", "aggregate FILTER"},
        {"VALUES", "VALUES"}, {"INDEXED", "INDEXED BY"}, {"RAISE", "RAISE"},
        {"CURRENT_TIME", "CURRENT_TIME"}, {"CURRENT_DATE", "CURRENT_DATE"},
        {"CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"}, {"TRUE", "TRUE literal (use 1)"},
        {"FALSE", "FALSE literal (use 0)"}, {"NULLS", "NULLS FIRST/LAST"},
        {"CROSS", "CROSS JOIN"}, {"NATURAL", "NATURAL JOIN"}, {"RIGHT", "RIGHT JOIN"},
        {"FULL", "FULL JOIN"}, {"USING", "JOIN ... USING"}};
    for (const auto& [kw, name] : names)
      if (t.kind == Tok::keyword && t.text == kw) return unsupported(name, t.pos);
    return syntax("unexpected " + describe_token(t), t.pos);
  }

  // ---- statement ----
  Status parse_select(Query* q) {
    if (is_kw("WITH")) return refuse_keyword(peek());
    if (is_kw("VALUES")) return refuse_keyword(peek());
    if (peek().kind == Tok::ident && (upper(peek().text) == "INSERT" || upper(peek().text) == "UPDATE" ||
                                      upper(peek().text) == "DELETE" || upper(peek().text) == "REPLACE" ||
                                      upper(peek().text) == "CREATE" || upper(peek().text) == "DROP" ||
                                      upper(peek().text) == "PRAGMA" || upper(peek().text) == "ATTACH"))
      return unsupported("statement " + upper(peek().text) + " (only SELECT)", peek().pos);
    TANDEM_RETURN_IF_ERROR(expect_kw("SELECT"));
    if (accept_kw("DISTINCT")) q->set_distinct(true);
    else accept_kw("ALL");
    // Result columns.
    for (;;) {
      auto* item = q->add_select();
      if (is_op("*")) {
        next();
        item->set_star(true);
      } else if (peek().kind == Tok::ident && is_op(".", 1) && is_op("*", 2)) {
        item->set_star(true);
        item->set_star_table(next().text);
        next();
        next();
      } else {
        TANDEM_RETURN_IF_ERROR(parse_expr(item->mutable_expr()));
        if (accept_kw("AS")) {
          if (peek().kind != Tok::ident && peek().kind != Tok::string)
            return syntax("expected an alias after AS near " + describe_token(peek()), peek().pos);
          item->set_alias(next().text);
        } else if (peek().kind == Tok::ident) {
          item->set_alias(next().text);
        }
      }
      if (!accept_op(",")) break;
    }
    if (!is_kw("FROM")) {
      if (peek().kind == Tok::end || is_op(";")) return unsupported("SELECT without FROM", peek().pos);
      if (peek().kind == Tok::keyword) return refuse_keyword(peek());
      return syntax("expected FROM near " + describe_token(peek()), peek().pos);
    }
    next();
    TANDEM_RETURN_IF_ERROR(parse_table(q->mutable_from()));
    // Joins.
    for (;;) {
      if (is_op(",")) return unsupported("comma join (write JOIN ... ON)", peek().pos);
      if (is_kw("CROSS") || is_kw("NATURAL") || is_kw("RIGHT") || is_kw("FULL")) return refuse_keyword(peek());
      Join::Kind kind;
      int pos = peek().pos;
      if (accept_kw("JOIN")) {
        kind = Join::INNER;
      } else if (is_kw("INNER")) {
        next();
        TANDEM_RETURN_IF_ERROR(expect_kw("JOIN"));
        kind = Join::INNER;
      } else if (is_kw("LEFT")) {
        next();
        accept_kw("OUTER");
        TANDEM_RETURN_IF_ERROR(expect_kw("JOIN"));
        kind = Join::LEFT;
      } else {
        break;
      }
      auto* join = q->add_joins();
      join->set_kind(kind);
      TANDEM_RETURN_IF_ERROR(parse_table(join->mutable_table()));
      if (is_kw("USING")) return refuse_keyword(peek());
      if (!accept_kw("ON")) return unsupported("JOIN without ON", pos);
      TANDEM_RETURN_IF_ERROR(parse_expr(join->mutable_on()));
    }
    if (accept_kw("WHERE")) TANDEM_RETURN_IF_ERROR(parse_expr(q->mutable_where()));
    if (is_kw("GROUP")) {
      next();
      TANDEM_RETURN_IF_ERROR(expect_kw("BY"));
      do {
        TANDEM_RETURN_IF_ERROR(parse_expr(q->add_group_by()));
      } while (accept_op(","));
    }
    if (is_kw("HAVING")) {
      int pos = peek().pos;
      next();
      if (q->group_by_size() == 0) {
        // SQLite 3.40 refuses HAVING without GROUP BY in a non-aggregate query; allowing it only
        // for aggregate queries would need the select list first, so require GROUP BY.
        return unsupported("HAVING without GROUP BY", pos);
      }
      TANDEM_RETURN_IF_ERROR(parse_expr(q->mutable_having()));
    }
    if (is_kw("WINDOW")) return refuse_keyword(peek());
    if (is_kw("UNION") || is_kw("INTERSECT") || is_kw("EXCEPT")) return refuse_keyword(peek());
    if (is_kw("ORDER")) {
      next();
      TANDEM_RETURN_IF_ERROR(expect_kw("BY"));
      do {
        auto* term = q->add_order_by();
        TANDEM_RETURN_IF_ERROR(parse_expr(term->mutable_expr()));
        if (is_kw("COLLATE")) return refuse_keyword(peek());
        if (accept_kw("DESC")) term->set_descending(true);
        else accept_kw("ASC");
        if (is_kw("NULLS")) return refuse_keyword(peek());
      } while (accept_op(","));
    }
    if (is_kw("LIMIT")) {
      next();
      Expr first;
      TANDEM_RETURN_IF_ERROR(parse_limit_value(&first));
      if (accept_kw("OFFSET")) {
        *q->mutable_limit() = first;
        TANDEM_RETURN_IF_ERROR(parse_limit_value(q->mutable_offset()));
      } else if (accept_op(",")) {
        // LIMIT offset, count
        *q->mutable_offset() = first;
        TANDEM_RETURN_IF_ERROR(parse_limit_value(q->mutable_limit()));
      } else {
        *q->mutable_limit() = first;
      }
    }
    if (is_kw("UNION") || is_kw("INTERSECT") || is_kw("EXCEPT")) return refuse_keyword(peek());
    accept_op(";");
    if (peek().kind != Tok::end) {
      if (peek().kind == Tok::keyword) return refuse_keyword(peek());
      return syntax("unexpected " + describe_token(peek()) + " after the end of the query", peek().pos);
    }
    return Status::Ok();
  }

  Status parse_limit_value(Expr* out) {
    int pos = peek().pos;
    TANDEM_RETURN_IF_ERROR(parse_expr(out));
    const Expr* e = out;
    bool negated = false;
    if (e->has_unary() && e->unary().op() == Unary::NEGATE) { e = &e->unary().operand(); negated = true; }
    if (e->has_literal() && e->literal().kind_case() == change::Value::kInteger) {
      if (negated) {
        int64_t v = e->literal().integer();
        Expr folded;
        folded.set_position(out->position());
        folded.mutable_literal()->set_integer(v == std::numeric_limits<int64_t>::min() ? v : -v);
        *out = folded;
      }
      return Status::Ok();
    }
    if (e->kind_case() == Expr::kParameter && !negated) return Status::Ok();
    return unsupported("LIMIT/OFFSET value other than an integer literal or ?", pos);
  }

  Status parse_table(TableRef* t) {
    const Token& tok = peek();
    if (is_op("(")) {
      if (is_kw("SELECT", 1) || is_kw("WITH", 1)) return unsupported("subquery in FROM", tok.pos);
      return unsupported("parenthesized join", tok.pos);
    }
    if (tok.kind != Tok::ident) {
      if (tok.kind == Tok::keyword) return refuse_keyword(tok);
      return syntax("expected a table name near " + describe_token(tok), tok.pos);
    }
    next();
    t->set_name(tok.text);
    t->set_position(tok.pos);
    if (is_op(".")) return unsupported("schema-qualified table name", tok.pos);
    if (is_op("(")) return unsupported("table-valued function", tok.pos);
    if (accept_kw("AS")) {
      if (peek().kind != Tok::ident) return syntax("expected an alias after AS near " + describe_token(peek()), peek().pos);
      t->set_alias(next().text);
    } else if (peek().kind == Tok::ident) {
      t->set_alias(next().text);
    }
    if (is_kw("INDEXED") || (peek().kind == Tok::keyword && peek().text == "NOT" && is_kw("INDEXED", 1)))
      return unsupported("INDEXED BY", peek().pos);
    return Status::Ok();
  }

  // ---- expressions ----
  Status parse_expr(Expr* out) { return parse_or(out); }

  static void make_binary(Expr* out, Binary::Op op, Expr&& left, Expr&& right, int pos) {
    Expr e;
    e.set_position(pos);
    auto* b = e.mutable_binary();
    b->set_op(op);
    *b->mutable_left() = std::move(left);
    *b->mutable_right() = std::move(right);
    *out = std::move(e);
  }

  Status parse_or(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_and(out));
    while (is_kw("OR")) {
      next();
      Expr right;
      TANDEM_RETURN_IF_ERROR(parse_and(&right));
      Expr left = std::move(*out);
      int pos = left.position();
      make_binary(out, Binary::OR, std::move(left), std::move(right), pos);
    }
    return Status::Ok();
  }

  Status parse_and(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_not(out));
    while (is_kw("AND")) {
      next();
      Expr right;
      TANDEM_RETURN_IF_ERROR(parse_not(&right));
      Expr left = std::move(*out);
      int pos = left.position();
      make_binary(out, Binary::AND, std::move(left), std::move(right), pos);
    }
    return Status::Ok();
  }

  Status parse_not(Expr* out) {
    if (is_kw("NOT")) {
      int pos = next().pos;
      if (is_kw("EXISTS")) return refuse_keyword(peek());
      Expr operand;
      TANDEM_RETURN_IF_ERROR(parse_not(&operand));
      out->Clear();
      out->set_position(pos);
      out->mutable_unary()->set_op(Unary::NOT);
      *out->mutable_unary()->mutable_operand() = std::move(operand);
      return Status::Ok();
    }
    return parse_equality(out);
  }

  Status parse_equality(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_comparison(out));
    for (;;) {
      int pos = peek().pos;
      int start = out->position();
      if (is_op("=") || is_op("==") || is_op("!=") || is_op("<>")) {
        Binary::Op op = (is_op("=") || is_op("==")) ? Binary::EQ : Binary::NE;
        next();
        Expr right;
        TANDEM_RETURN_IF_ERROR(parse_comparison(&right));
        Expr left = std::move(*out);
        make_binary(out, op, std::move(left), std::move(right), start);
        continue;
      }
      if (is_kw("ISNULL") || is_kw("NOTNULL") || (is_kw("NOT") && is_kw("NULL", 1))) {
        bool negated = !is_kw("ISNULL");
        if (is_kw("NOT")) next();
        next();
        wrap_is_null(out, negated, start);
        continue;
      }
      if (is_kw("IS")) {
        next();
        bool negated = accept_kw("NOT");
        if (is_kw("DISTINCT")) return unsupported("IS [NOT] DISTINCT FROM", pos);
        if (!accept_kw("NULL")) return unsupported("IS with an operand other than NULL (only IS [NOT] NULL)", pos);
        wrap_is_null(out, negated, start);
        continue;
      }
      bool negated = false;
      size_t k = 0;
      if (is_kw("NOT")) { negated = true; k = 1; }
      if (is_kw("IN", k)) {
        for (size_t j = 0; j <= k; ++j) next();
        if (peek().kind == Tok::ident && !is_op("(")) return unsupported("IN table", pos);
        TANDEM_RETURN_IF_ERROR(expect_op("("));
        if (is_kw("SELECT") || is_kw("WITH")) return unsupported("IN (subquery)", peek().pos);
        Expr e;
        e.set_position(start);
        auto* in = e.mutable_in_list();
        in->set_negated(negated);
        *in->mutable_operand() = std::move(*out);
        if (!is_op(")")) {
          do {
            TANDEM_RETURN_IF_ERROR(parse_expr(in->add_items()));
          } while (accept_op(","));
        }
        TANDEM_RETURN_IF_ERROR(expect_op(")"));
        *out = std::move(e);
        continue;
      }
      if (is_kw("LIKE", k)) {
        for (size_t j = 0; j <= k; ++j) next();
        Expr pattern;
        TANDEM_RETURN_IF_ERROR(parse_comparison(&pattern));
        if (is_kw("ESCAPE")) return refuse_keyword(peek());
        Expr e;
        e.set_position(start);
        auto* like = e.mutable_like();
        like->set_negated(negated);
        *like->mutable_operand() = std::move(*out);
        *like->mutable_pattern() = std::move(pattern);
        *out = std::move(e);
        continue;
      }
      if (is_kw("BETWEEN", k)) {
        for (size_t j = 0; j <= k; ++j) next();
        Expr low, high;
        TANDEM_RETURN_IF_ERROR(parse_comparison(&low));
        TANDEM_RETURN_IF_ERROR(expect_kw("AND"));
        TANDEM_RETURN_IF_ERROR(parse_comparison(&high));
        Expr e;
        e.set_position(start);
        auto* b = e.mutable_between();
        b->set_negated(negated);
        *b->mutable_operand() = std::move(*out);
        *b->mutable_low() = std::move(low);
        *b->mutable_high() = std::move(high);
        *out = std::move(e);
        continue;
      }
      if (is_kw("GLOB", k) || is_kw("MATCH", k) || is_kw("REGEXP", k)) return refuse_keyword(peek(k));
      break;
    }
    return Status::Ok();
  }

  static void wrap_is_null(Expr* out, bool negated, int pos) {
    Expr e;
    e.set_position(pos);
    e.mutable_is_null()->set_negated(negated);
    *e.mutable_is_null()->mutable_operand() = std::move(*out);
    *out = std::move(e);
  }

  Status parse_comparison(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_bits(out));
    for (;;) {
      Binary::Op op;
      if (is_op("<")) op = Binary::LT;
      else if (is_op("<=")) op = Binary::LE;
      else if (is_op(">")) op = Binary::GT;
      else if (is_op(">=")) op = Binary::GE;
      else break;
      next();
      Expr right;
      TANDEM_RETURN_IF_ERROR(parse_bits(&right));
      Expr left = std::move(*out);
      int pos = left.position();
      make_binary(out, op, std::move(left), std::move(right), pos);
    }
    return Status::Ok();
  }

  Status parse_bits(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_additive(out));
    if (is_op("&") || is_op("|") || is_op("<<") || is_op(">>"))
      return unsupported("bit operator " + peek().text, peek().pos);
    return Status::Ok();
  }

  Status parse_additive(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_multiplicative(out));
    for (;;) {
      Binary::Op op;
      if (is_op("+")) op = Binary::ADD;
      else if (is_op("-")) op = Binary::SUB;
      else break;
      next();
      Expr right;
      TANDEM_RETURN_IF_ERROR(parse_multiplicative(&right));
      Expr left = std::move(*out);
      int pos = left.position();
      make_binary(out, op, std::move(left), std::move(right), pos);
    }
    return Status::Ok();
  }

  Status parse_multiplicative(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_concat(out));
    for (;;) {
      Binary::Op op;
      if (is_op("*")) op = Binary::MUL;
      else if (is_op("/")) op = Binary::DIV;
      else if (is_op("%")) op = Binary::MOD;
      else break;
      next();
      Expr right;
      TANDEM_RETURN_IF_ERROR(parse_concat(&right));
      Expr left = std::move(*out);
      int pos = left.position();
      make_binary(out, op, std::move(left), std::move(right), pos);
    }
    return Status::Ok();
  }

  Status parse_concat(Expr* out) {
    TANDEM_RETURN_IF_ERROR(parse_unary(out));
    if (is_op("||")) return unsupported("string concatenation ||", peek().pos);
    if (is_op("->") || is_op("->>")) return unsupported("JSON operator " + peek().text, peek().pos);
    return Status::Ok();
  }

  Status parse_unary(Expr* out) {
    int pos = peek().pos;
    if (is_op("~")) return unsupported("bit operator ~", pos);
    if (is_op("-") || is_op("+")) {
      bool minus = is_op("-");
      next();
      // SQLite reads "-9223372036854775808" as the smallest integer, not as a negated real.
      if (minus && peek().kind == Tok::integer && peek().text == "9223372036854775808") {
        next();
        out->Clear();
        out->set_position(pos);
        out->mutable_literal()->set_integer(std::numeric_limits<int64_t>::min());
        return Status::Ok();
      }
      Expr operand;
      TANDEM_RETURN_IF_ERROR(parse_unary(&operand));
      out->Clear();
      out->set_position(pos);
      out->mutable_unary()->set_op(minus ? Unary::NEGATE : Unary::PLUS);
      *out->mutable_unary()->mutable_operand() = std::move(operand);
      return Status::Ok();
    }
    TANDEM_RETURN_IF_ERROR(parse_primary(out));
    if (is_kw("COLLATE")) return refuse_keyword(peek());
    return Status::Ok();
  }

  Status parse_primary(Expr* out) {
    const Token& t = peek();
    out->Clear();
    out->set_position(t.pos);
    switch (t.kind) {
      case Tok::integer: {
        next();
        errno = 0;
        // Decimal integer literals that do not fit become REAL, as in SQLite (hex literals
        // arrive here already as their 64-bit value).
        const std::string& s = t.text;
        long long v = std::strtoll(s.c_str(), nullptr, 10);
        if (errno == ERANGE) out->mutable_literal()->set_real(std::strtod(s.c_str(), nullptr));
        else out->mutable_literal()->set_integer(v);
        return Status::Ok();
      }
      case Tok::real:
        next();
        out->mutable_literal()->set_real(std::strtod(t.text.c_str(), nullptr));
        return Status::Ok();
      case Tok::string:
        next();
        out->mutable_literal()->set_text(t.text);
        return Status::Ok();
      case Tok::blob:
        next();
        out->mutable_literal()->set_blob(t.text);
        return Status::Ok();
      case Tok::param:
        next();
        out->set_parameter(t.param_index);
        return Status::Ok();
      case Tok::keyword:
        if (t.text == "NULL") {
          next();
          out->mutable_literal();  // kind unset: NULL
          return Status::Ok();
        }
        return refuse_keyword(t);
      case Tok::op:
        if (t.text == "(") {
          next();
          if (is_kw("SELECT") || is_kw("WITH")) return unsupported("subquery", t.pos);
          TANDEM_RETURN_IF_ERROR(parse_expr(out));
          if (is_op(",")) return unsupported("row value", t.pos);
          TANDEM_RETURN_IF_ERROR(expect_op(")"));
          return Status::Ok();
        }
        return syntax("unexpected " + describe_token(t), t.pos);
      case Tok::ident: {
        next();
        if (is_op("(")) return parse_function(t, out);
        if (is_op(".")) {
          next();
          if (peek().kind != Tok::ident) {
            if (is_op("*")) return syntax("table.* is only allowed as a result column", peek().pos);
            return syntax("expected a column name near " + describe_token(peek()), peek().pos);
          }
          const Token& col = next();
          if (is_op(".")) return unsupported("schema-qualified column", t.pos);
          out->mutable_column()->set_table(t.text);
          out->mutable_column()->set_column(col.text);
          return Status::Ok();
        }
        out->mutable_column()->set_column(t.text);
        return Status::Ok();
      }
      case Tok::end:
        return syntax("unexpected end of input (an expression is missing)", t.pos);
    }
    return syntax("unexpected " + describe_token(t), t.pos);
  }

  Status parse_function(const Token& name, Expr* out) {
    std::string fn = upper(name.text);
    Aggregate::Func func;
    if (fn == "COUNT") func = Aggregate::COUNT;
    else if (fn == "SUM") func = Aggregate::SUM;
    else if (fn == "MIN") func = Aggregate::MIN;
    else if (fn == "MAX") func = Aggregate::MAX;
    else if (fn == "AVG") func = Aggregate::AVG;
    else if (fn == "TOTAL" || fn == "GROUP_CONCAT") return unsupported("aggregate function " + fn, name.pos);
    else return unsupported("function " + name.text + "()", name.pos);
    next();  // (
    if (is_kw("DISTINCT")) return unsupported("DISTINCT inside an aggregate", peek().pos);
    auto* agg = out->mutable_aggregate();
    if (func == Aggregate::COUNT && is_op("*")) {
      next();
      agg->set_func(Aggregate::COUNT_STAR);
    } else {
      if (is_op(")")) return syntax(fn + "() needs an argument", peek().pos);
      agg->set_func(func);
      TANDEM_RETURN_IF_ERROR(parse_expr(agg->mutable_argument()));
      if (is_op(",")) {
        if (func == Aggregate::MIN || func == Aggregate::MAX)
          return unsupported("scalar " + fn + "() with several arguments", name.pos);
        return syntax(fn + "() takes one argument", peek().pos);
      }
    }
    TANDEM_RETURN_IF_ERROR(expect_op(")"));
    if (is_kw("FILTER") || is_kw("OVER")) return refuse_keyword(peek());
    return Status::Ok();
  }

  const std::string& sql_;
  std::vector<Token> tokens_;
  size_t at_ = 0;
  int max_param_ = 0;
};

}  // namespace

std::string describe_position(const std::string& sql, int offset) {
  int line = 1, col = 1;
  for (int i = 0; i < offset && i < static_cast<int>(sql.size()); ++i) {
    if (sql[static_cast<size_t>(i)] == '\n') { ++line; col = 1; }
    else ++col;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

Result<Query> parse(const std::string& sql) { return Parser(sql).run(); }

}  // namespace tandem::query
