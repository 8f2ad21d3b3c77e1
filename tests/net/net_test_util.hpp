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

}  // namespace tandem::test
