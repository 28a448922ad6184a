"""The JSON contract (``--json``, ``summary.json``) and ``findings.jsonl``.

Keys are only ever added, never renamed; ``contract.schema.json`` beside this module is
the machine-readable form and is checked by the tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO

from exhunt import __version__
from exhunt.analysis.scope import Scope, scope_of
from exhunt.model import Finding, ScanResult, utc_iso
from exhunt.outputs.common import json_line

SCHEMA_FILE = Path(__file__).with_name("contract.schema.json")


def document(result: ScanResult, command: str = "", scope: Scope | None = None) -> dict[str, object]:
    """The whole scan as one JSON-ready document (``scope``: the result's, when already built)."""
    return {
        "exhunt_version": __version__,
        "run": {
            "command": command,
            "started": utc_iso(result.started),
            "finished": utc_iso(result.finished),
            "elapsed_seconds": round((result.finished - result.started).total_seconds(), 3),
            "options": {key: (utc_iso(value) if isinstance(value, datetime) else value)
                        for key, value in result.options.items()},
            "rules": len(result.rules),
        },
        "hosts": [host.to_dict() for host in result.hosts],
        "findings": [finding.to_dict() for finding in result.findings],
        "diagnostics": [d.to_dict() for d in result.diagnostics],
        **(scope_of(result) if scope is None else scope).to_dict(),
    }


def write_json(result: ScanResult, target: str | Path, command: str = "", scope: Scope | None = None) -> None:
    """Write the contract document to a file, or to stdout when ``target`` is ``-``."""
    content = document(result, command, scope)
    if str(target) == "-":
        _write_layout(content, sys.stdout)
        return
    with Path(target).open("w", encoding="utf-8") as out:
        _write_layout(content, out)


def _write_layout(content: dict[str, object], out: IO[str]) -> None:
    """The document with a line per top-level key and per list item: readable, written as it is encoded,
    and each item goes through the C encoder (``indent`` would send all of it through the pure-Python
    one, ~10x slower)."""
    out.write("{")
    for number, (key, value) in enumerate(content.items()):
        out.write(f"{',' if number else ''}\n  {json.dumps(key)}: ")
        if isinstance(value, list) and value:
            out.write("[")
            for index, item in enumerate(value):
                out.write(f"{',' if index else ''}\n    {json.dumps(item, ensure_ascii=False)}")
            out.write("\n  ]")
        else:
            out.write(json.dumps(value, ensure_ascii=False))
    out.write("\n}\n")


def write_jsonl(findings: Iterable[Finding], stream: IO[str]) -> None:
    """Write one finding per line in the contract's finding shape (line separators inside values escaped)."""
    for finding in findings:
        stream.write(json_line(finding.to_dict()) + "\n")


def write_output_dir(result: ScanResult, folder: str | Path, command: str = "",
                     scope: Scope | None = None) -> list[Path]:
    """Write the fixed-name output files into ``folder`` and return their paths, in this order:
    ``findings.jsonl``, ``summary.json``, ``findings.csv``, ``hosts.csv``, ``mailboxes.csv``,
    ``indicators.csv``, ``timeline.jsonl``
    (Timesketch), ``findings.ecs.ndjson`` (Elastic), ``indicators.stix.json`` (STIX 2.1) and
    ``report.html`` (a self-contained HTML report).

    File names are fixed: nothing read from the evidence ever names an output file.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    scope = scope_of(result) if scope is None else scope
    findings_path = out / "findings.jsonl"
    with findings_path.open("w", encoding="utf-8", newline="\n") as stream:
        write_jsonl(result.findings, stream)
    summary_path = out / "summary.json"
    write_json(result, summary_path, command, scope)
    written = [findings_path, summary_path]
    # Imported here: the format writers import this package's helpers (and stix2 is heavy).
    from exhunt.outputs import csv_out, ecs, html, stix, timesketch

    findings = result.findings
    written.extend(csv_out.write_csv_files(result, out, scope=scope))
    written.append(timesketch.write_timeline_file(findings, out))
    written.append(ecs.write_ecs_file(findings, out, created=result.finished))
    written.append(stix.write_stix_file(findings, out, hosts=[host.host for host in result.hosts]))
    written.append(html.write_html(result, out / html.FILE_NAME, command, scope))
    return written
