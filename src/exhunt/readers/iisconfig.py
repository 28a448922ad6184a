"""IIS configuration files (``applicationHost.config``, ``web.config``) as element records.

Only the elements that matter to Exchange incidents are kept: URL Rewrite ``rule`` elements
(the EOMT, EOMTv2 and Emergency Mitigation Service mitigations), ``site``, ``application`` and
``virtualDirectory`` (rogue virtual directories, detections.md PS-FILE-4). The file is scanned
tag by tag rather than parsed as XML: it is attacker-influenced, and a scanner needs neither
entity expansion nor a well-formed document. A record has ``Element``, every attribute by name
and ``Location`` (the enclosing ``<location path=...>``, if any).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record
from exhunt.readers import FileFacts
from exhunt.readers.lines import Lines

ELEMENTS = ("rule", "site", "application", "virtualDirectory", "location")
_TAG = re.compile(r"<(/?)(" + "|".join(ELEMENTS) + r")\b([^<>]*?)(/?)>")
_ATTRIBUTE = re.compile(r"([\w.:-]+)\s*=\s*\"([^\"]*)\"")


def read(lines: Lines, diags: FileDiagnostics, facts: FileFacts) -> Iterator[Record]:
    """Stream one record per element of interest, with the line it starts on."""
    location = ""
    for number, text in lines:
        for closing, name, attributes, empty in _TAG.findall(text):
            if name == "location":
                if closing:
                    location = ""
                elif not empty:
                    location = dict(_ATTRIBUTE.findall(attributes)).get("path", "")
                continue
            if closing:
                continue
            fields = {key: html.unescape(value) for key, value in _ATTRIBUTE.findall(attributes)}
            fields["Element"] = name
            fields["Location"] = location
            facts.records += 1
            yield Record(number, None, fields, text.strip())
