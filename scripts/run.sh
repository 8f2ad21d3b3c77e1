#!/usr/bin/env bash
# Sets up (packages + build) and runs Tandem's main job on embedded defaults.
# Extra arguments are passed to the demo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec "$TANDEM_BUILD_DIR/apps/tandem" demo --data-dir "${TANDEM_DATA_DIR:-$TANDEM_ROOT/data}" "$@"
