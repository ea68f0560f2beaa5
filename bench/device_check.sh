#!/usr/bin/env bash
# GPU checks of llm-surgeon, run on a machine with an accelerator from the repository root:
#
#   bash bench/device_check.sh [--dry-run]
#
# Each section writes one JSON file under $OUT (default: bench/results/device) and the script
# exits non-zero if any section failed. --dry-run runs every section's plan without a GPU (a CPU
# test exercises it). llm-surgeon need not be installed: a shim on PYTHONPATH maps the source
# tree's core/ and plugins/ to the llm_surgeon package. Sections are independent; add new ones
# as their own clearly marked block below.
set -u
cd "$(dirname "$0")/.."
DRY_RUN=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN="--dry-run" ;;
    *) echo "usage: bash bench/device_check.sh [--dry-run]" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-bench/results/device}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"

SHIM="$(mktemp -d)"
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/llm_surgeon"
for entry in core/*; do ln -s "$PWD/$entry" "$SHIM/llm_surgeon/"; done
ln -s "$PWD/plugins" "$SHIM/llm_surgeon/plugins"
export PYTHONPATH="$SHIM:$PWD${PYTHONPATH:+:$PYTHONPATH}"

STATUS=0
section() {  # section NAME COMMAND...: run one check, remember a failure
  local name="$1"; shift
  echo "== $name $(date -u +%H:%M:%S)"
  "$@" || { echo "== $name FAILED"; STATUS=1; }
}

# --- section: semi-structured 2:4 inference (issue 15) ---------------------------------------
# torch.sparse semi-structured kernels on SmolLM2-135M's Linear shapes and on a SmolLM2-shaped
# random model converted by llm_surgeon.export.semi_structured: errors, logits, prefill and
# decode against dense. Writes $OUT/semi_structured.json (about 2 minutes on an H100/H200).
section semi_structured "$PYTHON" -m bench.gpu_semi_structured "$OUT/semi_structured.json" $DRY_RUN
# --- end of section: semi-structured ---------------------------------------------------------

exit $STATUS
