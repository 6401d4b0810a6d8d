#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: lint, the documentation site, then pytest on 2 workers.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${LESION_RESPONSE_VENV:-.venv}/bin/python
echo "[test] ruff"
lint_paths=()
for d in LesionResponseLib LesionResponse Testing benchmarks scripts; do [ -d "$d" ] && lint_paths+=("$d"); done
"$PY" -m ruff check "${lint_paths[@]}"
echo "[test] docs"
# --strict: any warning fails, and mkdocs.yml makes broken internal links, anchors and pages left out of the
# nav warnings; the site goes to site/ (git-ignored)
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet  # the variable silences the theme's end-of-life notice
echo "[test] pytest"
"$PY" -m pytest -n 2 --dist loadgroup "$@"
