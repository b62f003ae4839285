"""A generated section of a Markdown file: the text between a start and an end marker
(HTML comments naming the script that writes it) replaced by a tool's output."""

from __future__ import annotations

from pathlib import Path


def rewrite(path: Path, start_marker: str, end_marker: str, md: str) -> None:
    """Replace what lies between the markers in ``path`` with ``md``; ValueError names the
    missing marker (the file must carry both, in order)."""
    text = path.read_text(encoding="utf-8")
    for marker in (start_marker, end_marker):
        if marker not in text:
            raise ValueError(f"{path}: no {marker!r} marker for the generated section")
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    if end < start:
        raise ValueError(f"{path}: {end_marker!r} comes before {start_marker!r}")
    path.write_text(text[:start] + "\n" + md + text[end:], encoding="utf-8")
