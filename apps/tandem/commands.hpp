// Subcommands of the `tandem` binary. Each lives in its own file and registers itself on
// the CLI11 app; main.cpp only lists them. A command's callback returns the exit status
// through CLI11 (throw CLI::RuntimeError(code) on failure after printing a clear message).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace tandem::app {

void add_scenario_command(CLI::App& app);  // scenario.cpp
// bench.cpp creates `tandem bench`; each bench kind adds itself to it.
CLI::App* add_bench_command(CLI::App& app);
void add_bench_store(CLI::App& bench);     // bench_store.cpp: write, merge
void add_bench_ivm(CLI::App& bench);       // bench_ivm.cpp: ivm
void add_bench_sync(CLI::App& bench);      // bench_sync.cpp: sync
void add_bench_cluster(CLI::App& bench);   // bench_cluster.cpp: cluster
void add_bench_schema(CLI::App& bench);    // bench_schema.cpp: schema
void run_backfill_bench(const std::string& dir, int64_t rows);  // bench_backfill.cpp: bench schema's backfill figure
void add_bench_node(CLI::App& bench);      // bench_node.cpp: node (two processes)
void add_bench_compact(CLI::App& bench);   // bench_compact.cpp: compact

void add_server_command(CLI::App& app);  // server.cpp
void add_server_compact_command(CLI::App& server);  // server_compact.cpp: `server compact`
void add_server_backup_commands(CLI::App& server);  // server_backup.cpp: server backup, server restore
void add_server_status_command(CLI::App& server);   // server_status.cpp: `server status`
void add_token_command(CLI::App& app);   // token.cpp
void add_client_command(CLI::App& app);  // client.cpp
// client_inspect.cpp: `client inspect`; `db` is the client's --db value, read when it runs.
void add_client_inspect(CLI::App& client, const std::string* db);
void add_demo_command(CLI::App& app);    // demo.cpp: the main job (server + two nodes)

}  // namespace tandem::app
