"""The documentation: its examples run, it covers the API, and it builds cleanly.

* Every ``>>>`` example on the pages in ``docs/`` runs (the examples in the
  docstrings run under ``pytest --doctest-modules nbadam``).
* Every public name (``__all__`` of nbadam and its public modules) is in the
  API reference, and every public function and class has an Examples section.
* ``sphinx-build -W`` (warnings are errors) succeeds on a copy of ``docs/``,
  the API pages are generated and not empty, and the maths is rendered by the
  MathJax copy in ``_static``, not a CDN.  Skipped without the docs extra
  (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst")) + sorted((DOCS / "api").glob("*.rst"))
#: Modules whose ``__all__`` is the public API; checkpoint has no ``__all__``.
PUBLIC_MODULES = ["nbadam", "nbadam.schedules", "nbadam.datasets", "nbadam.nn",
                  "nbadam.distributed"]
CHECKPOINT_FUNCTIONS = ["save_npz", "load_npz"]
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _sphinx_missing() -> str | None:
    for module in ("sphinx", "numpydoc", "pydata_sphinx_theme"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[docs]')"
    return None


# -- the examples on the pages ------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    parser = doctest.DocTestParser()
    test = parser.get_doctest(page.read_text(encoding="utf-8"), {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report: list[str] = []  # doctest replaces sys.stdout while it runs
    result = runner.run(test, out=report.append)
    assert result.failed == 0, (f"{result.failed} of {result.attempted} examples in "
                                f"{page.name} failed:\n" + "".join(report))


# -- coverage of the API --------------------------------------------------------------
def _public_objects() -> dict[str, object]:
    """Qualified name -> object for every public name."""
    found = {}
    for name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            if name == "nbadam":
                raise
            continue
        for attr in getattr(module, "__all__", []):
            found[f"{name}.{attr}"] = getattr(module, attr)
    checkpoint = importlib.import_module("nbadam.checkpoint")
    for attr in CHECKPOINT_FUNCTIONS:
        found[f"nbadam.checkpoint.{attr}"] = getattr(checkpoint, attr)
    return found


def _documented() -> tuple[set[int], set[str], list[str]]:
    """What api/index.rst documents: ids of the objects its autosummary tables
    list, the modules it automodules, and listed names that do not resolve."""
    objects, modules, unresolved = set(), set(), []
    current, in_summary = "nbadam", False
    for line in (DOCS / "api" / "index.rst").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if match := re.match(r"\.\. currentmodule:: (\S+)", stripped):
            current = match.group(1)
        elif match := re.match(r"\.\. automodule:: (\S+)", stripped):
            modules.add(match.group(1))
        if stripped.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and line and not line[0].isspace():
            in_summary = False
        elif in_summary and stripped and not stripped.startswith(":"):
            module_name, _, attr = f"{current}.{stripped}".rpartition(".")
            try:
                objects.add(id(getattr(importlib.import_module(module_name), attr)))
            except (ImportError, AttributeError):
                unresolved.append(f"{current}.{stripped}")
    return objects, modules, unresolved


def test_every_public_name_is_in_the_api_reference():
    objects, modules, unresolved = _documented()
    assert not unresolved, f"docs/api/index.rst lists names nbadam does not have: {unresolved}"
    missing = []
    for name, obj in _public_objects().items():
        if inspect.ismodule(obj):
            if obj.__name__ not in modules:
                missing.append(f"{name} (add '.. automodule:: {obj.__name__}')")
        elif id(obj) not in objects:
            missing.append(name)
    assert not missing, f"public names missing from docs/api/index.rst: {missing}"


def test_every_public_function_and_class_has_an_example():
    lacking = []
    for name, obj in _public_objects().items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if not re.search(r"^Examples\n-{8}\n", doc, re.MULTILINE) or ">>>" not in doc:
            lacking.append(name)
    assert not lacking, f"no numpydoc Examples section with >>> in: {lacking}"


# -- the Sphinx build -------------------------------------------------------------------
def _load_extension():
    spec = importlib.util.spec_from_file_location(
        "benchmark_report", DOCS / "_ext" / "benchmark_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPORT = """\
# Adam step on the CPU (float32)

Measured with `python -m benchmarks.scripts.compare`: float32, 15 rounds
per size.

- CPU: some CPU; 2 cores
- NumPy 2.1, Numba 0.61 (threading layer `omp`)

## Summary (medians)

| n | nbadam (us) | roofline (us) | nbadam / roofline |
|---:|---:|---:|---:|
| 1,000 | 1.5 | 1.2 | 1.25 |
| 10,000,000 | 9,800 | 9,700 | 1.01 |

- nbadam within 10% of the roofline at n >= 1e+07: **met**
"""


@pytest.mark.skipif(_sphinx_missing() is not None, reason=str(_sphinx_missing()))
def test_benchmark_report_reads_the_compare_markdown():
    from docutils import nodes

    ext = _load_extension()
    kinds = [type(node).__name__ for node in ext.markdown(REPORT)]
    assert kinds == ["rubric", "paragraph", "bullet_list", "rubric", "table", "bullet_list"]
    table = ext.markdown(REPORT)[4]
    rows = list(table.findall(nodes.row))
    assert len(rows) == 3
    cells = list(rows[2].findall(nodes.entry))
    assert [cell.astext() for cell in cells] == ["10,000,000", "9,800", "9,700", "1.01"]
    assert cells[0]["classes"] == ["benchmark-right"]
    paragraph = ext.markdown(REPORT)[1]
    assert paragraph.astext().startswith(
        "Measured with python -m benchmarks.scripts.compare: float32")
    assert list(paragraph.findall(nodes.literal))


@pytest.mark.skipif(_sphinx_missing() is not None, reason=str(_sphinx_missing()))
def test_sphinx_build_has_no_warnings(tmp_path):
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build", "generated"))
    out = tmp_path / "html"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(source), str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"

    # autosummary regenerated every API page, and none is empty.
    generated = source / "api" / "generated"
    objects, _, _ = _documented()
    assert len(list(generated.glob("*.rst"))) >= len(objects)
    adam = (out / "api" / "generated" / "nbadam.Adam.html").read_text(encoding="utf-8")
    assert "Examples" in adam and "step" in adam and "state_dict" in adam
    # The maths comes from the vendored MathJax, which is copied into the site.
    page = (out / "optimizers.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml-full.js" in page and "cdn.jsdelivr" not in page
    assert (out / "_static" / "mathjax" / "tex-chtml-full.js").is_file()
    assert (out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert "mnist_curves.png" in (out / "mnist.html").read_text(encoding="utf-8")
