#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite with ctest.
#   TANDEM_PROPERTY_RUNS=N  runs N random workloads per property test instead of the CI default.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$TANDEM_BUILD_DIR"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
