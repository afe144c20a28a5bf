#!/usr/bin/env bash
# Run the whole test suite on a fresh machine (sets up .venv first). Extra args go to pytest.
# A throw-away PostgreSQL (scripts/postgres.sh) runs the catalog tests on PostgreSQL too
# (DREAMS_TEST_POSTGRES_URL); without one they skip, except in CI (CI=true), where that fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
if [ -z "${DREAMS_TEST_POSTGRES_URL:-}" ]; then
  pgdir=$(mktemp -d -t dreams-pg.XXXXXX)
  trap 'scripts/postgres.sh stop "$pgdir" || true; rm -rf "$pgdir"' EXIT
  if url=$(scripts/postgres.sh start "$pgdir"); then
    export DREAMS_TEST_POSTGRES_URL=$url
  elif [ "${CI:-}" = true ]; then
    echo "error: could not start PostgreSQL (scripts/postgres.sh); CI needs the PostgreSQL catalog tests" >&2
    exit 1
  else
    echo "warning: could not start PostgreSQL (scripts/postgres.sh); the PostgreSQL catalog tests will skip" >&2
    export DREAMS_TEST_POSTGRES_SKIP="scripts/postgres.sh could not start PostgreSQL"
  fi
fi
.venv/bin/python -m pytest "$@"
