#!/usr/bin/env bash
# Set up LesionResponse on a fresh machine (Python 3.11, no GPU): system tools, a venv, the library.
# Idempotent: re-running only installs what is missing. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LESION_RESPONSE_VENV:-.venv}

missing=()
command -v dciodvfy >/dev/null || missing+=(dicom3tools)
command -v dsrdump >/dev/null || missing+=(dcmtk)
command -v Orthanc >/dev/null || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)  # DICOMweb for cohort --pacs tests
command -v plastimatch >/dev/null || missing+=(plastimatch)
command -v elastix >/dev/null || missing+=(elastix)
command -v chromium >/dev/null || missing+=(chromium)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system tools: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/lesion-response-apt.log 2>&1 \
      || echo "[setup] warning: apt-get failed (see /tmp/lesion-response-apt.log); tests needing ${missing[*]} will be skipped"
  else
    echo "[setup] warning: not root; missing system tools: ${missing[*]} (tests needing them will be skipped)"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null
# torch: the CPU build on disk; any other spec can pull a multi-GB CUDA build.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev,slicer,web,docs]"
echo "[setup] ready: $VENV"
