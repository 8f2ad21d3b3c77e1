#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"tandem: a local-first sync engine"};
  CLI11_PARSE(app, argc, argv);
  return 0;
}
