#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the built-in demo patient.
# Usage: bash scripts/demo.sh [OUT]   (default OUT: demo-output)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${LESION_RESPONSE_VENV:-.venv}/bin/lesion-response" demo --out "${1:-demo-output}"
