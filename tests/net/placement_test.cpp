// Placement of users on server hosts (rendezvous hashing).
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/sync/placement.hpp"

using tandem::sync_placement::owner_of;

TEST_CASE("every host computes the same owner, users spread evenly, a new host takes only its share", "[placement]") {
  const std::vector<std::string> three = {"10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"};
  std::vector<std::string> reordered = {three[2], three[0], three[1]};
  std::map<std::string, int> load;
  int moved = 0;
  auto four = three;
  four.push_back("10.0.0.4:7100");
  const int users = 3000;
  for (int i = 0; i < users; ++i) {
    const std::string u = "user" + std::to_string(i);
    const std::string o = owner_of(u, three);
    CHECK(o == owner_of(u, reordered));  // the order of the member list does not matter
    ++load[o];
    const std::string o4 = owner_of(u, four);
    if (o4 != o) {
      ++moved;
      CHECK(o4 == four.back());  // a user only ever moves to the new host
    }
  }
  for (const auto& [host, n] : load) CHECK(n > users / 3 * 8 / 10);  // within 20% of even
  CHECK(moved > users / 4 * 8 / 10);
  CHECK(moved < users / 4 * 12 / 10);
  CHECK(owner_of("alice", {}).empty());
  CHECK(owner_of("alice", {"only:1"}) == "only:1");
}

TEST_CASE("ranked lists every member once, the owner first, the same on every host", "[placement]") {
  const std::vector<std::string> members{"h1:1", "h2:1", "h3:1", "h4:1"};
  std::vector<std::string> reversed(members.rbegin(), members.rend());
  for (int u = 0; u < 200; ++u) {
    const std::string user = "user" + std::to_string(u);
    auto order = tandem::sync_placement::ranked(user, members);
    REQUIRE(order.size() == members.size());
    CHECK(order.front() == tandem::sync_placement::owner_of(user, members));
    CHECK(order == tandem::sync_placement::ranked(user, reversed));
    std::set<std::string> distinct(order.begin(), order.end());
    CHECK(distinct.size() == members.size());
  }
}
