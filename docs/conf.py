"""Sphinx configuration of the nbadam documentation.

Build with ``make -C docs html`` (warnings are errors) or
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The API pages under ``api/generated/`` are written by autosummary on every
build and are not kept in git.
"""

from __future__ import annotations

import datetime
import re
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# Build from a checkout without installing nbadam; an installed copy is
# shadowed by the checkout the docs belong to.
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))
import nbadam  # noqa: E402

project = "nbadam"
author = "the nbadam developers"
copyright = f"{datetime.date.today().year}, {author}"
release = nbadam.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "benchmark_report",
]

templates_path = ["_templates"]
# docs/performance/ holds the benchmark reports (markdown and PNG) that the
# benchmark-report directive reads; it has no pages of its own.
exclude_patterns = ["_build", "performance", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "code"
pygments_style = "sphinx"

# -- API pages ----------------------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autodoc_typehints = "none"  # the numpydoc Parameters sections say it better
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Maths --------------------------------------------------------------------
# MathJax is served from _static (a vendored copy, see _static/mathjax/README.txt)
# so that the equations render offline; Sphinx's default loads it from a CDN.
mathjax_path = "mathjax/tex-chtml-full.js"
mathjax3_config = {
    "tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
    "options": {"enableMenu": False},
}

# -- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"nbadam {release}"
html_static_path = ["_static"]
html_css_files = ["nbadam.css"]
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 8,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The pages form one level, so only the API section has a left sidebar.
html_sidebars = {"*": [], "api/**": ["sidebar-nav-bs"]}
html_context = {"default_mode": "light"}


# -- "Options" sections -------------------------------------------------------
# Functions that take an ``options`` dict document its keys in an "Options"
# section, as SciPy does.  numpydoc does not know that section and would drop
# it, so it is cut out before numpydoc runs and rendered after it, as a field
# list like numpydoc's "Parameters", ahead of "Raises".  (numpydoc also parses
# docstrings while it formats signatures, and warns there about the section.)
warnings.filterwarnings("ignore", message="Unknown section Options", category=UserWarning)

_OPTIONS: dict[int, list[str]] = {}
_AFTER_OPTIONS = re.compile(
    r"^(:(Other Parameters|Raises|Warns):|\.\. (rubric:: (Notes|References|Examples)"
    r"|seealso::|warning::))")


def _is_underline(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 3 and set(stripped) == {"-"}


def _is_heading(lines: list[str], i: int) -> bool:
    return (bool(lines[i].strip()) and not lines[i][0].isspace()
            and i + 1 < len(lines) and _is_underline(lines[i + 1]))


def _cut_options(app, what, name, obj, options, lines):
    for start in range(len(lines) - 1):
        if lines[start].strip() == "Options" and _is_underline(lines[start + 1]):
            end = start + 2
            while end < len(lines) and not _is_heading(lines, end):
                end += 1
            _OPTIONS[id(lines)] = lines[start + 2:end]
            del lines[start:end]
            return


def _render_options(app, what, name, obj, options, lines):
    body = _OPTIONS.pop(id(lines), None)
    if body is None:
        return
    entries: list[tuple[str, list[str]]] = []
    for line in body:
        if line.strip() and not line[0].isspace():
            entries.append((line, []))
        elif entries:
            entries[-1][1].append(line)
    rendered = [":Options:", ""]
    for header, description in entries:
        key, _, kind = header.partition(" : ")
        rendered.append(f"    **{key.strip()}** : {kind.strip()}" if kind
                        else f"    **{key.strip()}**")
        while description and not description[-1].strip():
            description.pop()
        indent = min((len(line) - len(line.lstrip()) for line in description if line.strip()),
                     default=0)
        rendered += ["        " + line[indent:] if line.strip() else ""
                     for line in description]
        rendered.append("")
    at = next((i for i, line in enumerate(lines) if _AFTER_OPTIONS.match(line)), len(lines))
    lines[at:at] = rendered


def _module_sections_as_rubrics(app, what, name, obj, options, lines):
    # numpydoc leaves module docstrings alone, so their "Examples" headings
    # would become sections of the API page (and entries of its contents).
    if what != "module":
        return
    for i in range(len(lines) - 1):
        if _is_heading(lines, i):
            lines[i], lines[i + 1] = f".. rubric:: {lines[i].strip()}", ""


def _skip_scikit_learn_members(app, what, name, obj, skip, options):
    """MLPClassifier's members that scikit-learn defines (get_params, set_fit_request, ...)
    are scikit-learn's to document; their docstrings refer to its own glossary."""
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_scikit_learn_members)
    app.connect("autodoc-process-docstring", _module_sections_as_rubrics)
    app.connect("autodoc-process-docstring", _cut_options, priority=400)
    app.connect("autodoc-process-docstring", _render_options, priority=600)
