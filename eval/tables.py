"""Tables the evaluation prints and writes: one data form, rendered as a rich table or as Markdown.

Usage::

    table = TableData("azure-retrain", ["planner", "goodput"], [["ilp", "0.867"]], right={"goodput"})
    console.print(table.to_rich())
    markdown = table.to_markdown()
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.markup import escape
from rich.table import Table


@dataclass
class TableData:
    """A titled table of strings; `right` names the right-aligned columns, `notes` go under it."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    right: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to emphasise

    def to_rich(self) -> Table:
        """The table for a rich console (notes become the caption)."""
        caption = "\n".join(escape(note) for note in self.notes) or None
        table = Table(title=escape(self.title), caption=caption, caption_justify="left")
        for column in self.columns:
            table.add_column(column, justify="right" if column in self.right else "left")
        for r, row in enumerate(self.rows):
            cells = [escape(c) for c in row]
            table.add_row(*(f"[bold]{c}[/bold]" if (r, i) in self.bold else c for i, c in enumerate(cells)))
        return table

    def to_markdown(self, heading: str | None = "###") -> str:
        """The table as GitHub Markdown, under a heading of the title (none when `heading` is None)."""
        lines = [f"{heading} {self.title}", ""] if heading else []
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---:" if c in self.right else "---" for c in self.columns) + "|")
        for r, row in enumerate(self.rows):
            cells = [c.replace("|", "\\|") for c in row]
            cells = [f"**{c}**" if (r, i) in self.bold and c != "-" else c for i, c in enumerate(cells)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines) + "\n"


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number for a table cell: '-' when missing, integers as integers, else `digits` decimals."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_ms(value: float) -> str:
    """A latency in milliseconds, with precision suited to its size."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"
