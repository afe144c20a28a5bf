#!/usr/bin/env bash
# Run the whole test suite on a fresh machine (sets up .venv first). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
exec .venv/bin/python -m pytest "$@"
