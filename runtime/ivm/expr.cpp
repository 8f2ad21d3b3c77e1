#include "runtime/ivm/expr.hpp"

namespace tandem::ivm {
namespace {

// One comparison with the affinity SQLite applies to both operands (OP_Lt and friends).
Value compare(CExpr::Cmp cmp, Affinity comparison_aff, Value a, Value b) {
  if (a.is_null() || b.is_null()) return Value();
  if (comparison_aff != Affinity::none && comparison_aff != Affinity::blob) {
    apply_comparison_affinity(a, comparison_aff);
    apply_comparison_affinity(b, comparison_aff);
  }
  int c = compare_sqlite(a, b);
  bool r = false;
  switch (cmp) {
    case CExpr::Cmp::eq: r = c == 0; break;
    case CExpr::Cmp::ne: r = c != 0; break;
    case CExpr::Cmp::lt: r = c < 0; break;
    case CExpr::Cmp::le: r = c <= 0; break;
    case CExpr::Cmp::gt: r = c > 0; break;
    case CExpr::Cmp::ge: r = c >= 0; break;
  }
  return Value::Integer(r ? 1 : 0);
}

Value three_valued(std::optional<bool> v) { return v ? Value::Integer(*v ? 1 : 0) : Value(); }

}  // namespace

Value CExpr::eval(const EvalContext& ctx) const {
  switch (kind) {
    case Kind::column: {
      const Row* row = ctx.rows[occurrence];
      if (row == nullptr) return Value();
      return (*row)[static_cast<size_t>(column)];
    }
    case Kind::constant: return constant;
    case Kind::group_key: return ctx.group_keys[column];
    case Kind::aggregate: return ctx.aggregates[column];
    case Kind::not_: {
      auto t = truth(children[0].eval(ctx));
      if (!t) return Value();
      return Value::Integer(*t ? 0 : 1);
    }
    case Kind::negate: return arithmetic(ArithOp::sub, Value::Integer(0), children[0].eval(ctx));
    case Kind::plus: return children[0].eval(ctx);
    case Kind::compare: {
      return compare(cmp, cmp_affinity, children[0].eval(ctx), children[1].eval(ctx));
    }
    case Kind::and_: {
      auto l = truth(children[0].eval(ctx));
      if (l && !*l) return Value::Integer(0);
      auto r = truth(children[1].eval(ctx));
      if (r && !*r) return Value::Integer(0);
      if (!l || !r) return Value();
      return Value::Integer(1);
    }
    case Kind::or_: {
      auto l = truth(children[0].eval(ctx));
      if (l && *l) return Value::Integer(1);
      auto r = truth(children[1].eval(ctx));
      if (r && *r) return Value::Integer(1);
      if (!l || !r) return Value();
      return Value::Integer(0);
    }
    case Kind::arith: return arithmetic(arith, children[0].eval(ctx), children[1].eval(ctx));
    case Kind::is_null: {
      bool n = children[0].eval(ctx).is_null();
      return Value::Integer((n != negated) ? 1 : 0);
    }
    case Kind::in_list: {
      // x IN (a, b, ...): the left operand's affinity applies to every comparison.
      Value x = children[0].eval(ctx);
      if (children.size() == 1) return Value::Integer(negated ? 1 : 0);
      if (x.is_null()) return Value();
      bool saw_null = false;
      for (size_t i = 1; i < children.size(); ++i) {
        Value r = compare(Cmp::eq, cmp_affinity, x, children[i].eval(ctx));
        if (r.is_null()) { saw_null = true; continue; }
        if (r.integer() == 1) return Value::Integer(negated ? 0 : 1);
      }
      if (saw_null) return Value();
      return Value::Integer(negated ? 1 : 0);
    }
    case Kind::between: {
      // x BETWEEN a AND b is (x >= a) AND (x <= b), each with its own comparison affinity,
      // stored in the children's constant slots at compile time.
      Value x = children[0].eval(ctx);
      auto lo = truth(compare(Cmp::ge, comparison_affinity(children[0].affinity, children[1].affinity), x,
                              children[1].eval(ctx)));
      auto hi = truth(compare(Cmp::le, comparison_affinity(children[0].affinity, children[2].affinity), x,
                              children[2].eval(ctx)));
      std::optional<bool> both;
      if ((lo && !*lo) || (hi && !*hi)) both = false;
      else if (lo && hi) both = true;
      if (!negated) return three_valued(both);
      if (!both) return Value();
      return Value::Integer(*both ? 0 : 1);
    }
    case Kind::like: {
      Value r = ivm::like(children[0].eval(ctx), children[1].eval(ctx));
      if (!negated || r.is_null()) return r;
      return Value::Integer(r.integer() ? 0 : 1);
    }
  }
  return Value();
}

bool CExpr::test(const EvalContext& ctx) const {
  auto t = truth(eval(ctx));
  return t && *t;
}

bool CExpr::same_as(const CExpr& o) const {
  if (kind != o.kind || children.size() != o.children.size()) return false;
  switch (kind) {
    case Kind::column: if (occurrence != o.occurrence || column != o.column) return false; break;
    case Kind::constant: if (!identical(constant, o.constant)) return false; break;
    case Kind::group_key:
    case Kind::aggregate: if (column != o.column) return false; break;
    case Kind::compare: if (cmp != o.cmp) return false; break;
    case Kind::arith: if (arith != o.arith) return false; break;
    case Kind::is_null:
    case Kind::in_list:
    case Kind::between:
    case Kind::like: if (negated != o.negated) return false; break;
    default: break;
  }
  for (size_t i = 0; i < children.size(); ++i)
    if (!children[i].same_as(o.children[i])) return false;
  return true;
}

uint64_t CExpr::occurrences() const {
  uint64_t m = kind == Kind::column ? (uint64_t{1} << occurrence) : 0;
  for (const auto& c : children) m |= c.occurrences();
  return m;
}

bool CExpr::has_aggregate() const {
  if (kind == Kind::aggregate) return true;
  for (const auto& c : children)
    if (c.has_aggregate()) return true;
  return false;
}

}  // namespace tandem::ivm
