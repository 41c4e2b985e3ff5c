#!/usr/bin/env bash
# Every check that needs a real NVIDIA GPU, in one run, logs and results in OUTDIR:
#
#     bash benchmarks/gpu_checks.sh [OUTDIR]        (default: gpu-results)
#
# 1. the GPU tests: CUDA kernels vs CPU kernels, minimize on the device,
#    PyTorch/CuPy interop against torch.optim, the float32 PTX check;
# 2. python -m benchmarks.scripts.gpu_step (float32, then float64), the issue's table;
# 3. the GPU table of python -m benchmarks.scripts.compare (compare_gpu.md/.png);
# 4. when asv is importable and nbadam is installed in this Python, one quick
#    pass of the GPU asv benchmarks in this environment (asv run -E existing;
#    ASV=0 leaves it out).
#
# Set PYTHON to choose the interpreter (default python3).  Exits non-zero if
# any step failed; every step runs regardless.
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$(mktemp -d)}
unset NUMBA_ENABLE_CUDASIM
failed=()

step() {  # step NAME LOGFILE COMMAND...: run, tee the log, remember a failure
    local name=$1 log=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$out/$log" || failed+=("$name")
    echo "== $name: $((SECONDS - start)) s"
}

step environment environment.txt "$python" - <<'EOF'
import importlib.metadata as md
import platform
import subprocess

import numba
import numpy
from numba import cuda

def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"

print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                      "clocks.max.sm,clocks.max.mem", "--format=csv"],
                     capture_output=True, text=True).stdout.strip())
print(f"Python {platform.python_version()}, NumPy {numpy.__version__}, Numba {numba.__version__}, "
      f"numba-cuda {version('numba-cuda')}, torch {version('torch')}, "
      f"cupy {version('cupy-cuda13x')}")
device = cuda.get_current_device()
print(f"numba.cuda device: {device.name}, compute capability {device.compute_capability}, "
      f"{device.MULTIPROCESSOR_COUNT} multiprocessors")
EOF

step tests tests.log "$python" -m pytest -q -rs -p no:cacheprovider \
    tests/test_cuda.py tests/test_minimize_cuda.py tests/test_cuda_interop.py
step gpu_step_float32 gpu_step_float32.md "$python" -m benchmarks.scripts.gpu_step \
    --json "$out/gpu_step_float32.json"
step gpu_step_float64 gpu_step_float64.md "$python" -m benchmarks.scripts.gpu_step --dtype float64 \
    --sizes 1e6 1e7 1e8 --json "$out/gpu_step_float64.json"
step compare compare.log "$python" -m benchmarks.scripts.compare --no-cpu \
    --sizes 1e3 1e4 1e5 1e6 1e7 1e8 --out "$out"

if [[ ${ASV:-1} == 0 ]]; then
    echo "== asv: left out (ASV=0)"
elif why=$(cd / && "$python" -c "import asv, nbadam" 2>&1); then
    "$python" -m asv machine --yes >/dev/null
    step asv asv.log timeout 300 "$python" -m asv run -E "existing:$(command -v "$python")" --quick \
        --bench bench_gpu --show-stderr --dry-run
else
    echo "== asv: skipped (asv or an installed nbadam is missing in $python: ${why##*$'\n'})"
fi

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
