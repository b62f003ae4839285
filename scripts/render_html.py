"""The HTML matrix report (``<name>.html`` beside ``<name>.md``): one static file.

A grid per TLS mode and transport (rows: client implementation and key, columns: server
implementation and key), one colour per outcome, and every cell's reason, mutual-TLS
evidence and reproduce command one click away (``<details>``). No scripts, no external
CSS, fonts or images: it opens offline and makes no network requests.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

from soup.lab.check.report import STYLE  # one look for every report

OUTCOME_CLASS = {
    "pass": "pass",
    "negative-pass": "pass",
    "fail": "fail",
    "stale": "stale",
    "xfail": "known",
    "unsupported": "unsupported",
}
LABEL = {
    "pass": "pass",
    "fail": "FAIL",
    "stale": "STALE",
    "known": "known failure",
    "unsupported": "unsupported",
}


def _axes_key(v: dict[str, Any]) -> tuple[str, str, str, str]:
    a = v["axes"]
    return a["client"], a["client_key"], a["server"], a["server_key"]


def _cell_html(v: dict[str, Any]) -> str:
    klass = OUTCOME_CLASS.get(v["outcome"], "fail")
    mutual = (v.get("result") or {}).get("mutual_tls") or {}
    lines = [f"cell: {v['cell']}", f"outcome: {v['outcome']}"]
    if v.get("reason"):
        lines.append(f"reason: {v['reason']}")
    if mutual:
        lines += [
            f"plugin verified the host: {mutual.get('plugin_verified_client')}"
            f" ({mutual.get('plugin_evidence')})",
            f"host verified the plugin: {mutual.get('host_verified_plugin')}"
            f" ({mutual.get('host_evidence')})",
        ]
    lines.append(f"reproduce: {v.get('command')}")
    return (
        f'<td class="{klass}" data-outcome="{klass}" data-cell="{escape(v["cell"])}">'
        f"<details><summary>{LABEL[klass]}</summary><pre>{escape(chr(10).join(lines))}</pre>"
        "</details></td>"
    )


def _grid(mode: str, transport: str, cells: list[dict[str, Any]], order: Any) -> list[str]:
    rows = sorted({(v["axes"]["client"], v["axes"]["client_key"]) for v in cells}, key=order)
    cols = sorted({(v["axes"]["server"], v["axes"]["server_key"]) for v in cells}, key=order)
    index = {_axes_key(v): v for v in cells}
    out = [
        f"<h2>tls {escape(mode)}, {escape(transport)}</h2>",
        f'<table class="grid" data-mode="{escape(mode)}" data-transport="{escape(transport)}">',
        "<tr><th>client \\ server</th>"
        + "".join(f"<th>{escape(s)} {escape(k)}</th>" for s, k in cols)
        + "</tr>",
    ]
    for c, ck in rows:
        tds = [
            _cell_html(index[(c, ck, s, sk)])
            if (c, ck, s, sk) in index
            else '<td class="empty"></td>'
            for s, sk in cols
        ]
        out.append(f"<tr><th>{escape(c)} {escape(ck)}</th>{''.join(tds)}</tr>")
    out.append("</table>")
    return out


def render(verdicts: list[dict[str, Any]], env: dict[str, str], title: str, order: Any) -> str:
    """The whole page. order: the sort key for (impl, key) axis labels."""
    counts = Counter(OUTCOME_CLASS.get(v["outcome"], "fail") for v in verdicts)
    body = [
        f"<h1>soup conformance matrix: {escape(title)}</h1>",
        "<h2>Environment</h2>",
        '<table class="env">',
        *(f"<tr><th>{escape(k)}</th><td>{escape(str(val))}</td></tr>" for k, val in env.items()),
        "</table>",
        '<p class="legend">'
        + "".join(
            f'<span class="{k}"><b data-count="{k}">{counts.get(k, 0)}</b> {LABEL[k]}</span>'
            for k in LABEL
        )
        + "</p>",
    ]
    plain = [v for v in verdicts if not v["axes"].get("variant")]
    for mode in dict.fromkeys(v["axes"]["mode"] for v in plain):
        for transport in dict.fromkeys(v["axes"]["transport"] for v in plain):
            cells = [
                v for v in plain if (v["axes"]["mode"], v["axes"]["transport"]) == (mode, transport)
            ]
            if cells:
                body += _grid(mode, transport, cells, order)
    variants = [v for v in verdicts if v["axes"].get("variant")]
    if variants:
        body += [
            "<h2>Negative and variant cells</h2>",
            '<table class="variants"><tr><th>cell</th><th>result</th></tr>',
            *(f"<tr><th>{escape(v['cell'])}</th>{_cell_html(v)}</tr>" for v in variants),
            "</table>",
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>soup matrix: {escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
