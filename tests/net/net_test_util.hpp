// Helpers shared by the sync tests.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "runtime/store/store.hpp"
#include "tests/common/temp_dir.hpp"

namespace tandem::test {

// A client's store on a private in-memory database, with `schema` run and `table` replicated.
inline std::unique_ptr<Store> client_store(const SiteId& site, const std::string& schema, const std::string& table) {
  StoreOptions options;
  options.site_id = site;
  auto store = Store::open(":memory:", options);
  REQUIRE(store.ok());
  REQUIRE((*store)->execute_schema(schema).ok());
  REQUIRE((*store)->register_table(table).ok());
  return std::move(store).value();
}

// The changes of `store` after `since` that originated at its own site (what a client pushes).
inline change::ChangeBatch own_changes_since(Store& store, int64_t since) {
  Store::ChangesRequest request;
  request.since = since;
  request.only_from = store.site_id();
  auto batch = store.changes(request);
  INFO(batch.status().to_string());
  REQUIRE(batch.ok());
  return std::move(batch).value();
}

}  // namespace tandem::test
