#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: lint, then pytest on 2 workers.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${LESION_RESPONSE_VENV:-.venv}/bin/python
echo "[test] ruff"
lint_paths=()
for d in LesionResponseLib LesionResponse Testing benchmarks; do [ -d "$d" ] && lint_paths+=("$d"); done
"$PY" -m ruff check "${lint_paths[@]}"
echo "[test] pytest"
"$PY" -m pytest -n 2 --dist loadgroup "$@"
