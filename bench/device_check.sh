#!/usr/bin/env bash
# GPU checks of llm-surgeon, run from the repository root on a machine with an accelerator:
#
#   bash bench/device_check.sh [--dry-run]
#
# Each section writes one JSON file under $OUT (default: bench/results/device); the script
# exits non-zero if any section failed. Budget: about 10 minutes on one H200 (issue 16's
# sections under 8, semi-structured about 2). --dry-run runs
# every section on the CPU at toy sizes (tests/bench/test_device_check.py runs it in CI);
# nothing in CI depends on a GPU. Sections are independent: add new ones as their own
# clearly marked block below.
#
# Without an installed llm-surgeon, a shim on PYTHONPATH maps the source tree (core/, plugins/)
# to the llm_surgeon package, with a generated .dist-info so that the built-in plugins' entry
# points are found. Wheels in .whl/ (e.g. cattrs, missing from a bare CUDA image) are installed
# into a temporary folder first.
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
export PYTHONUNBUFFERED=1

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SCRATCH/site" .whl/*.whl \
    && export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "import llm_surgeon.plugins" 2>/dev/null; then
  mkdir -p "$SCRATCH/shim/llm_surgeon" "$SCRATCH/shim/llm_surgeon-0.1.0.dist-info"
  for entry in core/*; do ln -s "$PWD/$entry" "$SCRATCH/shim/llm_surgeon/"; done
  ln -s "$PWD/plugins" "$SCRATCH/shim/llm_surgeon/plugins"
  printf 'Metadata-Version: 2.1\nName: llm-surgeon\nVersion: 0.1.0\n' > "$SCRATCH/shim/llm_surgeon-0.1.0.dist-info/METADATA"
  "$PYTHON" - "$SCRATCH/shim/llm_surgeon-0.1.0.dist-info/entry_points.txt" <<'PY'
import re, sys
text = open("pyproject.toml").read()
block = text.split("[project.entry-points.llm_surgeon]", 1)[1].split("\n[", 1)[0]
names = re.findall(r'^"([^"]+)"\s*=', block, re.M)
with open(sys.argv[1], "w") as f:
    f.write("[llm_surgeon]\n" + "".join(f"{n} = {n}\n" for n in names))
PY
  export PYTHONPATH="$SCRATCH/shim:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

STATUS=0
section() {  # section NAME COMMAND...: run one check, remember a failure
  local name="$1"; shift
  echo "== $name $(date -u +%H:%M:%S)"
  "$@" || { echo "== $name FAILED"; STATUS=1; }
}

# --- section: CUDA tests, pruning on the GPU, NCCL (issue 16) ----------------------------------
# The test suite's CUDA-marked tests; surgeon row-col 0.8, element 0.5 and 2:4 (5 shots each) on
# SmolLM2-135M at 128 x 2048 calibration tokens in bfloat16 (the real model and WikiText-2 when
# they are there, else a random model of its architecture), timed; a 2-rank NCCL run when more
# than one GPU is visible. Writes $OUT/cuda_tests.json, $OUT/prune.json and $OUT/nccl.json.
section cuda_tests "$PYTHON" -m bench.gpu_check cuda-tests "$OUT/cuda_tests.json" $DRY_RUN
section prune "$PYTHON" -m bench.gpu_check prune "$OUT/prune.json" $DRY_RUN
section nccl "$PYTHON" -m bench.gpu_check nccl "$OUT/nccl.json" $DRY_RUN
# --- end of section: issue 16 ------------------------------------------------------------------

# --- section: semi-structured 2:4 inference (issue 15) ---------------------------------------
# torch.sparse semi-structured kernels on SmolLM2-135M's Linear shapes and on a SmolLM2-shaped
# random model converted by llm_surgeon.export.semi_structured: errors, logits, prefill and
# decode against dense. Writes $OUT/semi_structured.json (about 2 minutes on an H100/H200).
section semi_structured "$PYTHON" -m bench.gpu_semi_structured "$OUT/semi_structured.json" $DRY_RUN
# --- end of section: semi-structured ---------------------------------------------------------

exit $STATUS
