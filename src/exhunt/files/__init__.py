"""The file-tree evidence source: web shells, tools, dumps and archives on Exchange servers.

Entry points for the scan pipeline:

* :func:`scan_files` (``exhunt.files.scanner``) examines one collection and returns a :class:`FileScan`;
* :func:`build_baseline`, :func:`load_baseline` (``exhunt.files.baseline``) give a :class:`Baseline`;
* :func:`collect` (``exhunt.files.collect``) copies flagged files into a zip with a manifest;
* :func:`relevant` (``exhunt.files.places``) says which paths are examined and as what place;
* :func:`file_rules` lists every rule the file-tree scan can report.
"""

from __future__ import annotations

from exhunt.files.baseline import BASELINE_RULE, Baseline, build_baseline, load_baseline
from exhunt.files.collect import Collected, collect
from exhunt.files.iocs import IocSet, load_iocs
from exhunt.files.places import PLACES, relevant
from exhunt.files.rules import FileRules, compile_rules, shipped_infos, shipped_rules
from exhunt.files.scanner import DEFAULT_MAX_BYTES, FileScan, scan_files
from exhunt.model import RuleInfo

__all__ = [
    "BASELINE_RULE",
    "DEFAULT_MAX_BYTES",
    "PLACES",
    "Baseline",
    "Collected",
    "FileRules",
    "FileScan",
    "IocSet",
    "build_baseline",
    "collect",
    "compile_rules",
    "file_rules",
    "load_baseline",
    "load_iocs",
    "relevant",
    "scan_files",
    "shipped_rules",
]


def file_rules() -> tuple[RuleInfo, ...]:
    """Every rule the file-tree scan can report: YARA content rules, IOC classes and the baseline rule."""
    from exhunt.files.iocs import shipped

    content = tuple(sorted(shipped_infos().values(), key=lambda info: info.id))
    return (*content, *shipped().rules(), BASELINE_RULE)
