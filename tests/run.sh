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
echo "== pytest: CUDA kernels under Numba's CUDA simulator"
NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_minimize_cuda.py \
    tests/test_groups_cuda.py tests/test_minimize_batch_cuda.py tests/test_schedulefree_cuda.py \
    tests/test_prodigy_cuda.py tests/test_compact_cuda.py
echo "== asv: the benchmark suite imports, and one quick pass of every benchmark runs"
.venv/bin/asv machine --yes --machine ci >/dev/null
.venv/bin/asv check --python=same
.venv/bin/asv run --python=same --quick --show-stderr --machine ci
echo "== pytest: everything (docstring examples and the docs build included)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests --doctest-modules nbadam
