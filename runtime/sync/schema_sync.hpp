// The replicated schema travels in the client's hello (the server is given no schema of its
// own): the server adopts the tables a client declares, in that user's file only.
//
// A client's statements are untrusted. Only CREATE TABLE statements are considered (other
// kinds are skipped: indexes, triggers and views are the client's local business); they are
// first run in a scratch in-memory database under an authorizer that refuses anything but
// creating tables (no ATTACH, PRAGMA, VACUUM INTO, virtual tables), then each table is
// checked with the store's own rules. A missing table is created and registered. A table the
// store already has must have the same columns and key, or differ only additively
// (docs/schema.md): a device on an older schema declares a prefix of the store's columns and
// is sent only those; a device on a newer schema appends columns, which the store adopts
// (Store::execute_schema migrates the table in place). Thread-safe over distinct stores.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"

namespace tandem::sync_schema {

// Splits SQL text into complete statements (SQLite's own tokenizer decides where one ends),
// without running them. INVALID_ARGUMENT for an unterminated statement.
Result<std::vector<std::string>> split_statements(const std::string& sql);

// The statement made safe to run on every start: "CREATE TABLE x" / "CREATE [UNIQUE] INDEX
// x" gain "IF NOT EXISTS" (other statements are returned unchanged).
std::string if_not_exists(const std::string& statement);

// What a device declared: table -> its columns, both lower case.
using DeclaredColumns = std::map<std::string, std::set<std::string>>;

// Creates and registers the tables the statements declare that `store` lacks, and appends the
// columns a newer declaration of one of its tables adds; refuses (REJECTED-class status) a
// declared table that differs from the store's otherwise. The check of every table comes
// before any change. Returns the names of the declared tables; `columns`, when given,
// receives each declared table's columns.
Result<std::vector<std::string>> adopt_tables(Store& store, const std::vector<std::string>& statements,
                                              DeclaredColumns* columns = nullptr);

// The CREATE TABLE statements of the store's replicated tables, as SQLite keeps them
// (with every column added since): what another copy of the channel declares to adopt them.
Result<std::vector<std::string>> table_statements(Store& store);

}  // namespace tandem::sync_schema
