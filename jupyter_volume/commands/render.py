"""What a command returns, and how it shows: text, HTML and JSON from one object.

A handler returns a :class:`Result`; the front end picks the form: the CLI prints
:meth:`Result.text` (or :meth:`Result.to_json` with ``--json``), the magic displays the
object (IPython calls ``_repr_html_`` in a notebook and ``__repr__`` in a terminal) or
returns :meth:`Result.to_json` with ``--json``.

- :class:`Message`: one sentence saying what was done.
- :class:`Table`: rows under :class:`Column` headers (JSON: the raw values).
- :class:`Record`: one object as field/value lines (JSON: one object).
- :class:`Group`: several results one after another.
- :class:`DisplayObject`: something the magic displays as is (a widget).

Layer: part of the commands front end; imports ``jupyter_volume.formatting`` only.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..formatting import iso_time
from .exits import EXIT_OK, UsageError

__all__ = [
    "Column",
    "DisplayObject",
    "Group",
    "Message",
    "Record",
    "Result",
    "Table",
    "jsonable",
]


class Result:
    """What a handler returns: renders as text (``repr``), HTML and JSON."""

    exit_code = EXIT_OK

    def text(self) -> str:
        """The plain-text form (what the CLI prints)."""
        raise NotImplementedError

    def html(self) -> str:
        """The HTML form (what a notebook shows); by default the text, preformatted."""
        return f"<pre>{html.escape(self.text())}</pre>"

    def to_json(self) -> Any:
        """The data form (``--json``): JSON-ready Python values."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class Message(Result):
    """A sentence saying what was done (printed, never a table)."""

    to_stderr = False

    def __init__(self, text: str, data: dict[str, Any] | None = None) -> None:
        self._text = text
        self.data = data or {}

    def text(self) -> str:
        """The sentence."""
        return self._text

    def to_json(self) -> Any:
        """``{"message": ..., **data}``."""
        return {"message": self._text, **self.data}


def jsonable(v: Any) -> Any:
    """A value as JSON can hold it: datetimes as ISO 8601 in UTC, paths as strings."""
    if isinstance(v, datetime):
        return iso_time(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _html_table_open(title: str) -> list[str]:
    """The opening of a result's HTML table, with its title as the caption."""
    parts = ['<table class="jupyter-volume">']
    if title:
        parts.append(f'<caption style="text-align:left">{html.escape(title)}</caption>')
    return parts


@dataclass(repr=False)
class Column:
    """One column of a :class:`Table`: JSON key, header label and cell formatter."""

    key: str
    label: str
    fmt: Callable[[Any], str] = str
    right: bool = False


@dataclass(repr=False)
class Table(Result):
    """Rows of dicts keyed by column key: JSON gets the raw values, text/HTML formatted ones."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    title: str = ""
    empty: str = "(nothing)"
    json_rows: list[dict[str, Any]] | None = None
    exit_code: int = EXIT_OK

    def _cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = []
            for c in self.columns:
                v = row.get(c.key)
                cells.append("" if v is None else c.fmt(v))
            out.append(cells)
        return out

    def text(self) -> str:
        """The title, a header row, a rule, and the rows in aligned columns."""
        lines = [self.title] if self.title else []
        if not self.rows:
            lines.append(self.empty)
            return "\n".join(lines)
        cells = self._cells()
        widths = [len(c.label) for c in self.columns]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]

        def fmt(values: Sequence[str]) -> str:
            parts = [
                v.rjust(w) if c.right else v.ljust(w)
                for v, w, c in zip(values, widths, self.columns, strict=True)
            ]
            return "  ".join(parts).rstrip()

        lines.append(fmt([c.label for c in self.columns]))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt(row) for row in cells)
        return "\n".join(lines)

    def html(self) -> str:
        """An HTML table with the title as its caption."""
        esc = html.escape
        parts = _html_table_open(self.title)
        if not self.rows:
            parts.append(f"<tbody><tr><td><i>{esc(self.empty)}</i></td></tr></tbody></table>")
            return "".join(parts)

        def align(c: Column) -> str:
            return "right" if c.right else "left"

        parts.append("<thead><tr>")
        parts.extend(f'<th style="text-align:{align(c)}">{esc(c.label)}</th>' for c in self.columns)
        parts.append("</tr></thead><tbody>")
        for row in self._cells():
            parts.append("<tr>")
            parts.extend(
                f'<td style="text-align:{align(c)}">{esc(v)}</td>'
                for v, c in zip(row, self.columns, strict=True)
            )
            parts.append("</tr>")
        parts.append("</tbody></table>")
        return "".join(parts)

    def to_json(self) -> Any:
        """A list of objects keyed by column key (or ``json_rows`` when given)."""
        if self.json_rows is not None:
            return self.json_rows
        return [{c.key: jsonable(row.get(c.key)) for c in self.columns} for row in self.rows]


@dataclass(repr=False)
class Record(Result):
    """One object shown as a two-column field/value table; JSON is a single object."""

    fields: list[tuple[str, str, Any, str]]  # (key, label, raw value, shown value)
    title: str = ""
    extra: list[Result] = field(default_factory=list)  # e.g. a table of errors below
    json_extra: dict[str, Any] = field(default_factory=dict)
    exit_code: int = EXIT_OK

    def _table(self) -> Table:
        return Table(
            [Column("field", "Field"), Column("value", "Value")],
            [{"field": label, "value": shown} for _k, label, _v, shown in self.fields],
            title=self.title,
        )

    def text(self) -> str:
        """The title, then one ``Label  value`` line per field, then any extra results."""
        t = self._table()
        body = t.text().splitlines()
        # a field/value listing needs no header row
        head = 1 if self.title else 0
        lines = body[:head] + body[head + 2 :]
        lines.extend(e.text() for e in self.extra)
        return "\n".join(lines)

    def html(self) -> str:
        """A two-column HTML table (field names as row headers), then any extra results."""
        esc = html.escape
        parts = _html_table_open(self.title)
        parts.append("<tbody>")
        for _k, label, _v, shown in self.fields:
            parts.append(
                f'<tr><th style="text-align:left">{esc(label)}</th>'
                f'<td style="text-align:left">{esc(shown)}</td></tr>'
            )
        parts.append("</tbody></table>")
        parts.extend(e.html() for e in self.extra)
        return "".join(parts)

    def to_json(self) -> Any:
        """One object: each field's key and raw value, plus ``json_extra``."""
        out = {k: jsonable(v) for k, _label, v, _shown in self.fields}
        out.update(self.json_extra)
        return out


@dataclass(repr=False)
class Group(Result):
    """Several results shown one after another (JSON: ``json``)."""

    parts: list[Result]
    json: Any = None
    exit_code: int = EXIT_OK

    def text(self) -> str:
        """Each part's text, separated by a blank line."""
        return "\n\n".join(p.text() for p in self.parts)

    def html(self) -> str:
        """Each part's HTML, one after another."""
        return "".join(p.html() for p in self.parts)

    def to_json(self) -> Any:
        """The ``json`` given at construction."""
        return self.json


class DisplayObject(Result):
    """Something the magic displays as is (a widget); no text or JSON form."""

    def __init__(self, obj: Any, text: str = "") -> None:
        self.obj = obj
        self._text = text

    def text(self) -> str:
        """A short description of the object (the CLI never gets one)."""
        return self._text or repr(self.obj)

    def to_json(self) -> Any:
        """Refused: a widget has no data form."""
        raise UsageError("this command has no JSON output")
