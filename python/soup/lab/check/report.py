"""The checker's report: one JSON document, and the same as Markdown, HTML and JUnit XML.

The HTML is one static file in the matrix report's colours (no scripts, nothing fetched).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from soup.lab.check.catalogue import FAIL, SKIP, WARN, Outcome, summary

# The matrix report (scripts/render_html.py) uses it too: one look for every report.
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #999; padding: 0.2em 0.4em; vertical-align: top; font-size: 0.85em; }
th { background: #eee; }
.pass { background: #b7e1b0; } .fail { background: #f28b82; }
.known { background: #fdd663; } .unsupported { background: #dadce0; color: #555; }
.stale { background: #c58af9; } .empty { background: #fff; }
.warn { background: #fdd663; } .skip { background: #dadce0; color: #555; }
details > summary { cursor: pointer; font-weight: bold; }
pre { white-space: pre-wrap; max-width: 40em; font-size: 0.9em; }
.legend span { display: inline-block; padding: 0.2em 0.6em; margin-right: 0.4em; }
"""
BASENAME = "check"


def document(target: dict[str, Any], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The JSON report: target, one entry per check, summary."""
    return {
        "target": target,
        "checks": [o.as_json() for o in outcomes],
        "summary": summary(outcomes),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    target, s = doc["target"], doc["summary"]
    lines = [
        f"# soup check {target['role']}: {s['verdict'].upper()}",
        "",
        f"Command: `{' '.join(target['command'])}`; cookie `{target['cookie']}`; "
        f"versions {','.join(map(str, target['versions']))}.",
        "",
        f"{s['pass']} pass, {s['fail']} fail, {s['warn']} warn, {s['skip']} skip.",
        "",
        "| check | outcome | ms | detail | rule | reference |",
        "|---|---|---|---|---|---|",
    ]
    for c in doc["checks"]:
        outcome = c["outcome"].upper() if c["outcome"] in (FAIL, WARN) else c["outcome"]
        lines.append(
            f"| `{c['id']}` | {outcome} | {c['ms']} | {_cell(c['detail'])} | "
            f"{_cell(c['rule'])} | {_cell(c['ref'])} |"
        )
    return "\n".join(lines) + "\n"


def html(doc: dict[str, Any]) -> str:
    target, s = doc["target"], doc["summary"]
    rows = "".join(
        f'<tr><td><code>{escape(c["id"])}</code></td><td class="{escape(c["outcome"])}">'
        f"{escape(c['outcome'])}</td><td>{c['ms']}</td><td><pre>{escape(c['detail'])}</pre></td>"
        f"<td>{escape(c['rule'])}</td><td>{escape(c['ref'])}</td></tr>"
        for c in doc["checks"]
    )
    title = f"soup check {target['role']}: {s['verdict']}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p>Command: <code>{escape(' '.join(target['command']))}</code></p>"
        f"<p class='legend'><span class='pass'>{s['pass']} pass</span>"
        f"<span class='fail'>{s['fail']} fail</span><span class='warn'>{s['warn']} warn</span>"
        f"<span class='skip'>{s['skip']} skip</span></p>"
        "<table><tr><th>check</th><th>outcome</th><th>ms</th><th>detail</th><th>rule</th>"
        f"<th>reference</th></tr>{rows}</table></body></html>\n"
    )


def junit(doc: dict[str, Any]) -> str:
    """JUnit XML: a testcase per check; fail is a failure, warn a system-out, skip skipped."""
    s = doc["summary"]
    suite = ET.Element(
        "testsuite",
        name=f"soup check {doc['target']['role']}",
        tests=str(len(doc["checks"])),
        failures=str(s[FAIL]),
        skipped=str(s[SKIP]),
        time=f"{sum(c['ms'] for c in doc['checks']) / 1000:.3f}",
    )
    for c in doc["checks"]:
        case = ET.SubElement(
            suite, "testcase", classname=f"check.{doc['target']['role']}", name=c["id"],
            time=f"{c['ms'] / 1000:.3f}",
        )  # fmt: skip
        if c["outcome"] == FAIL:
            ET.SubElement(case, "failure", message=c["detail"][:200]).text = c["detail"]
        elif c["outcome"] == SKIP:
            ET.SubElement(case, "skipped", message=c["detail"][:200])
        elif c["outcome"] == WARN:
            ET.SubElement(case, "system-out").text = f"warning: {c['detail']}"
    return ET.tostring(suite, encoding="unicode") + "\n"


def write(doc: dict[str, Any], directory: Path) -> list[Path]:
    """check.json, check.md, check.html, check.xml in ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {
        "json": json.dumps(doc, indent=2) + "\n",
        "md": markdown(doc),
        "html": html(doc),
        "xml": junit(doc),
    }
    paths = []
    for suffix, text in out.items():
        path = directory / f"{BASENAME}.{suffix}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
