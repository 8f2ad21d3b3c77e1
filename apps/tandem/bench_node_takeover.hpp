// The takeover figure of `tandem bench node` (bench_node_takeover.cpp).
#pragma once

#include <string>

namespace tandem::app {

// Runs `cycles` kill -9 cycles on a database in `dir` and prints one JSON line.
void run_takeover_bench(const std::string& dir, const std::string& schema, int cycles);
// A child of that bench: "leader" holds the node until killed; "follower" writes once its
// leader is gone and reports kill -> acknowledged (the kill time arrives on stdin).
void run_takeover_role(const std::string& role, const std::string& db, const std::string& schema);

}  // namespace tandem::app
