#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: lint, then pytest on 2 workers.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${LESION_RESPONSE_VENV:-.venv}/bin/python
echo "[test] ruff"
"$PY" -m ruff check LesionResponseLib LesionResponse Testing benchmarks
echo "[test] pytest"
"$PY" -m pytest -n 2 --dist loadgroup "$@"
