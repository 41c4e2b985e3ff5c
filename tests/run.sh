#!/usr/bin/env bash
# The project's test command (README: "Run the tests").  Creates .venv with the
# package and its test extras, then runs every suite.  Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$(mktemp -d -t nbadam-numba-XXXXXX)}"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[test,plot,docs,mpi]"
echo "== ruff"
.venv/bin/ruff check nbadam tests benchmarks
# The simulator's tests (one Python thread) run beside the asv pass (another), each with
# its own Numba cache, and report when both are done.
sim_log=$(mktemp -t nbadam-cudasim-XXXXXX.log)
NUMBA_ENABLE_CUDASIM=1 NUMBA_CACHE_DIR="$(mktemp -d -t nbadam-numba-sim-XXXXXX)" \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_minimize_cuda.py \
    tests/test_groups_cuda.py tests/test_minimize_batch_cuda.py tests/test_schedulefree_cuda.py \
    tests/test_prodigy_cuda.py tests/test_compact_cuda.py tests/test_blockwise_cuda.py \
    >"$sim_log" 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
echo "== asv: the benchmark suite imports, and one quick pass of every benchmark runs"
.venv/bin/asv machine --yes --machine ci >/dev/null
.venv/bin/asv check --python=same
.venv/bin/asv run --python=same --quick --show-stderr --machine ci
echo "== pytest: CUDA kernels under Numba's CUDA simulator (run beside asv)"
sim_status=0
wait "$sim" || sim_status=$?
cat "$sim_log"
if [ "$sim_status" -ne 0 ]; then
    echo "the CUDA simulator tests failed (exit status $sim_status)" >&2
    exit "$sim_status"
fi
echo "== pytest: everything (docstring examples and the docs build included), two workers"
# Most of the suite's time is Numba compiling (one thread each), so two workers halve it.
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" tests \
    --doctest-modules nbadam
