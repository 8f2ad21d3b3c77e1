#include "runtime/store/mutation_rules.hpp"

#include <sqlite3.h>

namespace tandem {

int mutation_column(const std::vector<std::string>& columns, const std::string& name) {
  for (size_t i = 0; i < columns.size(); ++i)
    if (sqlite3_stricmp(columns[i].c_str(), name.c_str()) == 0) return static_cast<int>(i);
  return -1;
}

Status validate_mutation(const MutationTable& t, const worker::Mutation& m) {
  std::vector<char> seen(t.columns.size(), 0);
  auto name_columns = [&](const google::protobuf::RepeatedPtrField<std::string>& cols, int values,
                          const std::string& what) -> Status {
    if (cols.size() != values)
      return Status::InvalidArgument(what + ": " + std::to_string(cols.size()) + " columns but " + std::to_string(values) +
                                     " values");
    if (cols.empty()) return Status::InvalidArgument(what + " needs at least one column");
    for (const auto& name : cols) {
      int c = mutation_column(t.columns, name);
      if (c < 0) return Status::InvalidArgument(what + ": no such column: " + name);
      if (seen[static_cast<size_t>(c)]) return Status::InvalidArgument(what + ": column " + name + " given twice");
      seen[static_cast<size_t>(c)] = 1;
    }
    return Status::Ok();
  };
  auto key_values = [&](int given, const std::string& what) -> Status {
    if (given != static_cast<int>(t.pk.size()))
      return Status::InvalidArgument(what + ": the primary key has " + std::to_string(t.pk.size()) + " columns but " +
                                     std::to_string(given) + " values were given");
    return Status::Ok();
  };
  switch (m.op_case()) {
    case worker::Mutation::kInsert: {
      const std::string what = "insert into " + t.name;
      TANDEM_RETURN_IF_ERROR(name_columns(m.insert().columns(), m.insert().values_size(), what));
      for (int c : t.pk)
        if (!seen[static_cast<size_t>(c)])
          return Status::InvalidArgument(what + " must give primary-key column " + t.columns[static_cast<size_t>(c)] +
                                         " (a view shows the row under its key before it commits)");
      return Status::Ok();
    }
    case worker::Mutation::kUpdate: {
      const std::string what = "update of " + t.name;
      TANDEM_RETURN_IF_ERROR(key_values(m.update().pk_size(), what));
      return name_columns(m.update().columns(), m.update().values_size(), what);
    }
    case worker::Mutation::kDelete: return key_values(m.delete_().pk_size(), "delete from " + t.name);
    case worker::Mutation::OP_NOT_SET: break;
  }
  return Status::InvalidArgument("mutation of " + t.name + " has no insert, update or delete");
}

Result<bool> is_replicated_table(Database& db, const std::string& table) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.cached("SELECT 1 FROM tandem_tables WHERE name = ?1 COLLATE NOCASE"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(table)));
  return st->step();
}

}  // namespace tandem
