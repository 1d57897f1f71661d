"""Marked sections of a markdown report (`<!-- NAME:begin --> ... <!-- NAME:end -->`).

The quality suite (`benchmarks.quality`) regenerates BENCHMARKS.md as a whole and keeps its
speed and reproduction sections; the speed suite (`benchmarks.speed`) replaces one speed
section per machine (e.g. `speed-h100`) and each reproduction script
(`benchmarks.reproduce.NAME`) its section `reproduce-NAME`; `benchmarks.shift_gain`,
`benchmarks.validators` and `benchmarks.large_data` write the sections `shift-gain`,
`validators` and `large-data`. All use the rules here, so none overwrites another's.
"""

from __future__ import annotations

import pathlib
import re


def is_speed_section(name: str) -> bool:
    """Whether `name` is a speed section's: `benchmarks.speed` writes those (one per machine,
    e.g. speed-h100) and `benchmarks.quality` keeps them."""
    return re.fullmatch(r"speed[\w.-]*", name) is not None


def is_reproduce_section(name: str) -> bool:
    """Whether `name` is a reproduction's section (`reproduce-NAME`, written by
    `python -m benchmarks.reproduce.NAME`)."""
    return re.fullmatch(r"reproduce-[\w.-]+", name) is not None


OTHER_SECTIONS = ("shift-gain", "validators", "large-data")  # their scripts: benchmarks.NAME


def is_kept_section(name: str) -> bool:
    """Whether `benchmarks.quality` keeps section `name` when it regenerates the report: the
    speed, reproduction and other scripts' sections (`OTHER_SECTIONS`)."""
    return is_speed_section(name) or is_reproduce_section(name) or name in OTHER_SECTIONS


def section_names(text: str) -> list[str]:
    """Names of the complete marked sections of `text`, in order (an unclosed marker is not a
    section)."""
    return [n for n in re.findall(r"<!-- ([\w.-]+):begin -->", text) if f"<!-- {n}:end -->" in text]


def section(text: str, name: str) -> str:
    """The marked section `<!-- NAME:begin --> ... <!-- NAME:end -->` of `text`, or ""."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin in text and end in text:
        return text[text.index(begin) : text.index(end) + len(end)]
    return ""


def put_section(path, name: str, body: str) -> None:
    """Writes `body` as the marked section NAME of the markdown file at `path` (replacing it in
    place, or appending it when the file has none)."""
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"<!-- {name}:begin -->\n{body.strip()}\n<!-- {name}:end -->"
    old = section(text, name)
    text = text.replace(old, block) if old else (text.rstrip() + "\n\n" + block + "\n")
    path.write_text(text, encoding="utf-8")
