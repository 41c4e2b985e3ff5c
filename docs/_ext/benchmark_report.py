"""The ``benchmark-report`` directive: show a benchmark report if it has been measured.

``python -m benchmarks.scripts.compare`` writes ``compare_cpu.md`` (a short markdown
report: headings, paragraphs, bullet lists and pipe tables) and
``compare_cpu.png`` into ``docs/performance/``.  The directive ::

    .. benchmark-report:: /performance/compare_cpu

       Caption of the plot.

renders the markdown report (headings become rubrics, so the report never
changes the page's section structure) followed by the plot, and, when
neither file exists yet, a note saying how to produce them, so the
documentation builds cleanly before anything has been measured.

Only the markdown subset that the report uses is understood; anything else
is shown as plain text.  Nothing in the report is parsed as reStructuredText,
so a report cannot break the build.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")


def inline(text: str) -> list[nodes.Node]:
    """Nodes for one line of markdown: code spans, bold and links; the rest is text."""
    out: list[nodes.Node] = []
    pos = 0
    for match in _INLINE.finditer(text):
        if match.start() > pos:
            out.append(nodes.Text(text[pos:match.start()]))
        code, bold, label, url = match.groups()
        if code is not None:
            out.append(nodes.literal(code, code))
        elif bold is not None:
            out.append(nodes.strong(bold, bold))
        else:
            out.append(nodes.reference(label, label, refuri=url))
        pos = match.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _alignment(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    if cell.endswith(":"):
        return "right"
    return "left"


def table(lines: list[str]) -> nodes.table:
    """A docutils table from markdown pipe-table lines (header, separator, rows)."""
    header = _cells(lines[0])
    body = lines[1:]
    aligns = ["left"] * len(header)
    if body and _SEPARATOR.match(body[0]):
        aligns = [_alignment(cell) for cell in _cells(body[0])]
        body = body[1:]
    rows = [_cells(line) for line in body]
    width = max([len(header)] + [len(row) for row in rows])
    aligns += ["left"] * (width - len(aligns))

    def row_node(cells: list[str]) -> nodes.row:
        row = nodes.row()
        for k in range(width):
            entry = nodes.entry(classes=[f"benchmark-{aligns[k]}"])
            entry += nodes.paragraph("", "", *inline(cells[k] if k < len(cells) else ""))
            row += entry
        return row

    node = nodes.table(classes=["benchmark-table"])
    group = nodes.tgroup(cols=width)
    node += group
    for _ in range(width):
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += row_node(header)
    group += head
    tbody = nodes.tbody()
    for cells in rows:
        tbody += row_node(cells)
    group += tbody
    return node


def markdown(text: str) -> list[nodes.Node]:
    """Nodes for a markdown report (the subset described in the module docstring)."""
    lines = text.splitlines()
    out: list[nodes.Node] = []
    i = 0

    def starts_block(line: str) -> bool:
        stripped = line.lstrip()
        return (not stripped or stripped.startswith(("#", "|", "```"))
                or bool(_BULLET.match(line)))

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("#"):
            title = stripped.lstrip("#").strip()
            out.append(nodes.rubric(title, "", *inline(title)))
            i += 1
        elif stripped.startswith("```"):
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            code = "\n".join(lines[i + 1:end])
            out.append(nodes.literal_block(code, code))
            i = end + 1
        elif stripped.startswith("|"):
            end = i
            while end < len(lines) and lines[end].strip().startswith("|"):
                end += 1
            out.append(table(lines[i:end]))
            i = end
        elif _BULLET.match(line):
            items = nodes.bullet_list()
            while i < len(lines) and _BULLET.match(lines[i]):
                words = [_BULLET.match(lines[i]).group(2).strip()]
                i += 1
                # Continuation lines: indented, and not a new item or block.
                while (i < len(lines) and lines[i].startswith((" ", "\t"))
                       and not starts_block(lines[i])):
                    words.append(lines[i].strip())
                    i += 1
                item = nodes.list_item()
                item += nodes.paragraph("", "", *inline(" ".join(words)))
                items += item
            out.append(items)
        else:
            words = []
            while i < len(lines) and not starts_block(lines[i]):
                words.append(lines[i].strip())
                i += 1
            out.append(nodes.paragraph("", "", *inline(" ".join(words))))
    return out


class BenchmarkReport(SphinxDirective):
    """``.. benchmark-report:: PATH`` (no suffix); the content is the plot's caption."""

    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged, "command": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        stem = self.arguments[0]
        rel_md, md_path = self.env.relfn2path(stem + ".md", self.env.docname)
        _, png_path = self.env.relfn2path(stem + ".png", self.env.docname)
        md_file, png_file = Path(md_path), Path(png_path)
        self.env.note_dependency(md_path)
        self.env.note_dependency(png_path)
        command = self.options.get("command", "python -m benchmarks.scripts.compare")
        result: list[nodes.Node] = []
        if md_file.is_file():
            result += markdown(md_file.read_text(encoding="utf-8"))
        if png_file.is_file():
            figure = [f".. figure:: /{Path(rel_md).with_suffix('.png').as_posix()}",
                      f"   :alt: {self.options.get('alt', 'benchmark plot')}",
                      "   :width: 100%", ""]
            figure += ["   " + line for line in self.content]
            container = nodes.container()
            self.state.nested_parse(StringList(figure, source=self.get_source_info()[0]),
                                    self.content_offset, container)
            result += container.children
        if not result:
            note = nodes.admonition(classes=["note"])
            note += nodes.title("", "Not yet measured")
            text = (f"No report yet: {rel_md} and its plot are written by running ")
            note += nodes.paragraph("", "", nodes.Text(text),
                                    nodes.literal(command, command),
                                    nodes.Text(" from the repository root."))
            result.append(note)
        return result


def setup(app):
    app.add_directive("benchmark-report", BenchmarkReport)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
