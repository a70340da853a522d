"""Plain-text tables and the number formats the commands print."""

from __future__ import annotations

from collections.abc import Sequence


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]], rule_before_last: bool = False) -> str:
    """Fixed-width columns; each column is (header, "<" or ">")."""
    widths = [max([len(header)] + [len(row[i]) for row in rows]) for i, (header, _) in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, align), width in zip(cells, columns, widths,
                                                                                     strict=True)).rstrip()

    lines = [line([header for header, _ in columns])] + [line(row) for row in rows]
    if rule_before_last and rows:
        lines.insert(len(lines) - 1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def count(value: int | float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def dollars(value: float) -> str:
    return f"{value:.6f}"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
