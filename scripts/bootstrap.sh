#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the pinned stack.
# Idempotent: re-running it after pyproject.toml changes re-installs; otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[dev]'
# bytecode for every module, as pip writes it at install (uv does not, and PYTHONDONTWRITEBYTECODE may stop
# Python from caching it at import): without it every `dreams` start compiles typer, pydantic, rich and
# DuckDB's Python side again (CLI start-up, bench/cli.py). Sources edited later are recompiled as usual.
.venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages dreaming flows tasks >/dev/null || true
rm -f .venv/.installed-*; touch "$stamp"
echo "ready: .venv (activate with 'source .venv/bin/activate', or call .venv/bin/dreams)"
