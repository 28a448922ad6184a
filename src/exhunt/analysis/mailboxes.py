"""Which mailboxes were read or exported, by which means, when, and how sure the evidence is.

The verdicts follow the table in ``mailbox_access.md`` §0 ("What the evidence can and cannot prove, per
mailbox") word for word, and its rule of thumb: *a mailbox may be called "confirmed" only when a row
names it; an exploit hit that does not name a mailbox widens the "possibly accessed" set, it never
confirms a specific mailbox*. Every :class:`MailboxRow` lists the findings (host, source, line, rule)
that justify it; a row without evidence cannot be built.

What is read (findings only; exhunt does not read the logs again here):

- **Export requests** (§0 rows 1–2, §2.1): ``New-MailboxExportRequest`` in the MSExchange Management
  event log (event 1 = succeeded, 6 = failed), in the ECP server log (``S:CMD=New-MailboxExportRequest.
  Mailbox='…'``; ``S:EX`` empty = no exception) and in process command lines / script blocks (no result
  there). Success is also shown by the export's output file on disk (a file-write or file-tree finding
  with the ``-FilePath`` name) or by an HTTP request for it. Whole-mailbox or date/keyword exports that
  succeeded are **confirmed exported**; ProxyShell exports (``#Drafts#`` and/or a ``Subject -eq`` /
  ``Body -like`` token filter into a server page) are **accessed**: the attacker's own planted item was
  exported to write a web shell, which is not evidence that the owner's mail was copied; a failed
  cmdlet is an **attempt only**; a request whose result the evidence does not show is **possibly
  accessed**. ``Remove-MailboxExportRequest -Identity '<mailbox>\\…'`` is attached to that mailbox's
  rows as clean-up (it does not show success: failed requests are removed too).
- **SSRF to mailbox back ends** (§0 rows 4–5, §1.1, §1.2): HttpProxy rows whose ``AnchorMailbox``
  (``ServerInfo~<server>/<path>``) targets ``/EWS/`` or an OWA back-end path, IIS ProxyShell/ProxyNotShell
  rows whose decoded URL reaches ``/EWS/`` (§1.4), and IIS POSTs to OWA static resources (Volexity)
  that no HttpProxy finding with the same request id (``cafeReqId`` = HttpProxy ``RequestId``, §1.2)
  routes elsewhere: **possibly accessed**, mailbox not named — the victim travels in the SOAP body,
  which no log keeps. A ``/mapi/emsmdb`` SSRF means the attacker **knew at least one valid address**
  (§0 row 5). Rows answered with a non-2xx status are left out.
- **Mailbox-naming front-end rows** (§0 row 6, §2.2): an HttpProxy finding at ``medium`` or above, or a
  pivot-pass row from an attacker address or of a request with a finding, answered 2xx, whose
  ``AnchorMailbox`` names a mailbox (``Sid~``, ``MailboxGuid~``, ``Smtp~`` or an address) is
  **confirmed accessed** for that mailbox (a GUID or SID must be mapped to a person with the
  customer's ``Get-Mailbox`` export).
- **Export files without a request** (§2.1): a mailbox export written into a web folder (``PS-FILE-1``,
  ``WS-PST-1``) that no export request explains: **possibly accessed**, mailbox not named.

Not assessable from disk (§0 last row, §2.4): the mailbox audit log and the admin audit log live in
mailboxes; :data:`NOT_ASSESSABLE` is the sentence a report should print. The EWS back-end log
(``Logging\\Ews``, §1.3), MapiHttp logs and Rps_Cmdlet logs are not read by exhunt, so "confirmed read"
(§0 row 3) cannot be reached from a scan today; message tracking (§0 row 7) neither.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from exhunt.engine.pivot import PREFIX as PIVOT_PREFIX
from exhunt.model import Finding, HostResult, ScanResult, utc_iso

from .refs import (
    MIN_LEVEL,
    EvidenceRef,
    client_addresses,
    first_time,
    in_order,
    last_time,
    request_id,
    shell_name,
)

CONFIRMED_EXPORTED = "confirmed exported"
CONFIRMED_ACCESSED = "confirmed accessed"
ACCESSED = "accessed"
ATTEMPT_ONLY = "attempt only"
POSSIBLY_ACCESSED = "possibly accessed"
ADDRESS_KNOWN = "attacker knew at least one valid address"
#: Every verdict a row can carry, strongest first, with the mailbox_access.md §0 row it comes from.
VERDICTS: dict[str, str] = {
    CONFIRMED_EXPORTED: "mailbox_access.md §0 row 1, §2.1",
    CONFIRMED_ACCESSED: "mailbox_access.md §0 row 6, §2.2",
    ACCESSED: "mailbox_access.md §0 row 2, §2.1",
    POSSIBLY_ACCESSED: "mailbox_access.md §0 row 4 and rule of thumb, §1.2",
    ADDRESS_KNOWN: "mailbox_access.md §0 row 5, §1.1, §2.2",
    ATTEMPT_ONLY: "mailbox_access.md §0 row 1, §2.1",
}
MAILBOX_NOT_NAMED = "mailbox not named in the evidence"
NOT_ASSESSABLE = (
    "Mailbox audit log and admin audit log are stored in mailboxes, not on disk (mailbox_access.md §2.4): "
    "ask an administrator to run Search-MailboxAuditLog -Identity <mailbox> -LogonTypes Admin,Delegate "
    "-ShowDetails -StartDate <first activity> (if AuditEnabled was True) and Search-AdminAuditLog "
    "-Cmdlets New-MailboxExportRequest,Remove-MailboxExportRequest."
)

_EXPORT = "new-mailboxexportrequest"
_REMOVE = "remove-mailboxexportrequest"
_SERVER_INFO = re.compile(r"ServerInfo~([^/,\s]*)/([^?#,\s]*)", re.IGNORECASE)
#: An ``AnchorMailbox`` that names one mailbox (not ProxyShell's ``Smtp~autodiscover/…?@evil.corp``).
_NAMING_ANCHOR = re.compile(r"^(?:Sid|MailboxGuid|ExternalDirectoryObjectId)~[^/?\s]+$|^(?:Smtp~)?[^~/?\s]+@[^~/?\s]+$",
                            re.IGNORECASE)
#: Pivot-pass rules whose HttpProxy rows are the attacker's own requests (by address or by request id).
_ATTACKER_ROWS = (f"{PIVOT_PREFIX}IP-HP", f"{PIVOT_PREFIX}REQ-HP")
_STATIC_RESOURCE = re.compile(r"^/owa/auth/Current/themes/resources/", re.IGNORECASE)
_PS_TOKEN_FILTER = re.compile(r"(Subject\s+-eq|Body\s+-like)", re.IGNORECASE)
_SCRIPT_TARGET = re.compile(r"\.(aspx|ashx|asmx|asp|php|jsp)$", re.IGNORECASE)
_FILE_WRITERS = ("PS-FILE-1", "WS-PST-1")


@dataclass(frozen=True, slots=True)
class MailboxRow:
    """One mailbox (or "mailbox not named") and what the evidence shows was done to it.

    ``verdict`` is one of :data:`VERDICTS`; ``basis`` cites the mailbox_access.md section it follows.
    Raises :class:`ValueError` if built without evidence or with an unknown verdict.
    """

    host: str
    mailbox: str
    verdict: str
    means: str
    first: datetime | None
    last: datetime | None
    evidence: tuple[EvidenceRef, ...]
    client_ips: tuple[str, ...] = ()
    scope: str = ""
    notes: tuple[str, ...] = ()
    mailbox_named: bool = True

    def __post_init__(self) -> None:
        if not self.evidence:
            raise ValueError(f"mailbox row without evidence: {self.host} {self.mailbox} {self.verdict}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown mailbox verdict {self.verdict!r}")

    @property
    def basis(self) -> str:
        """The mailbox_access.md section the verdict follows."""
        return VERDICTS[self.verdict]

    @property
    def confirmed(self) -> bool:
        return self.verdict.startswith("confirmed")

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "mailbox": self.mailbox,
            "mailbox_named": self.mailbox_named,
            "verdict": self.verdict,
            "confirmed": self.confirmed,
            "means": self.means,
            "first": utc_iso(self.first),
            "last": utc_iso(self.last),
            "client_ips": list(self.client_ips),
            "scope": self.scope,
            "basis": self.basis,
            "notes": list(self.notes),
            "evidence": [ref.to_dict() for ref in self.evidence],
        }


def mailbox_exposure(result: ScanResult) -> tuple[MailboxRow, ...]:
    """Every mailbox row of every host, ordered by host, first time and mailbox (see the module doc)."""
    rows: list[MailboxRow] = []
    for host in result.hosts:
        rows.extend(_host_rows(host))
    return tuple(sorted(rows, key=lambda r: (r.host, r.first is None, utc_iso(r.first) or "", r.mailbox.casefold(),
                                             r.verdict)))


# --- export requests ---------------------------------------------------------------------------


@dataclass
class _Export:
    """One export request event (the findings on the same source line), with what was parsed from it."""

    findings: list[Finding]
    mailbox: str
    params: dict[str, str]
    outcome: str  # "succeeded", "failed", "not shown"
    how: str


def _host_rows(host: HostResult) -> list[MailboxRow]:
    findings = list(host.findings)
    rows: list[MailboxRow] = []
    exports = _exports(findings)
    used_files: set[tuple[str, int | None, str]] = set()
    for export in exports:
        rows.append(_export_row(host.host, export, findings, used_files))
    rows.extend(_orphan_export_files(host.host, findings, used_files))
    rows.extend(_ssrf_rows(host.host, findings))
    rows.extend(_naming_rows(host.host, findings))
    return rows


def _exports(findings: list[Finding]) -> list[_Export]:
    events: dict[tuple[str, int], _Export] = {}
    for finding in in_order(findings):
        key = (finding.source, finding.line if finding.line is not None else -id(finding))
        if key in events:
            events[key].findings.append(finding)
            continue
        parsed = _parse_export(finding)
        if parsed is not None:
            mailbox, params, outcome, how = parsed
            events[key] = _Export([finding], mailbox, params, outcome, how)
    return list(events.values())


def _parse_export(finding: Finding) -> tuple[str, dict[str, str], str, str] | None:
    """(mailbox, parameters, outcome, means) of a finding that records ``New-MailboxExportRequest``."""
    evidence = finding.evidence
    cmdlet = (evidence.get("CmdletName") or "").strip().casefold()
    if cmdlet == _EXPORT:
        params = _dash_params(evidence.get("CmdletParameters") or evidence.get("Message") or "")
        event = (evidence.get("EventID") or "").strip()
        outcome = {"1": "succeeded", "6": "failed"}.get(event, "not shown")
        how = f"New-MailboxExportRequest (MSExchange Management event {event or '?'})"
    elif "S:CMD=New-MailboxExportRequest".casefold() in (evidence.get("EventData") or "").casefold():
        items = _ecp_items(evidence["EventData"])
        command = next((v for k, v in items if k.upper() == "S:CMD"), "")
        params = _ecp_params(command)
        ex = [v for k, v in items if k.upper() == "S:EX"]
        outcome = "not shown" if not ex else ("succeeded" if not ex[0].strip() else "failed")
        how = "New-MailboxExportRequest through ECP (ECP server log S:CMD)"
    else:
        text = next((evidence[n] for n in ("CommandLine", "ScriptBlockText")
                     if _EXPORT in (evidence.get(n) or "").casefold()), None)
        if text is None:
            return None
        params = _dash_params(text[text.casefold().index(_EXPORT):])
        outcome = "not shown"
        how = "New-MailboxExportRequest in a command line or script block"
    return _clean(params.get("mailbox", "")), params, outcome, how


def _export_row(host: str, export: _Export, findings: list[Finding],
                used_files: set[tuple[str, int | None, str]]) -> MailboxRow:
    params = export.params
    target = _clean(params.get("filepath", ""))
    folders = _clean(params.get("includefolders", ""))
    content = _clean(params.get("contentfilter", ""))
    notes: list[str] = []
    extra: list[Finding] = []
    written, fetched = _output_file(target, findings, export.findings)
    for finding in written + fetched:
        used_files.add((finding.source, finding.line, finding.rule.id))
    extra.extend(written + fetched)
    if written:
        notes.append(f"export output {shell_name(target)} on disk ({', '.join(sorted({f.rule.id for f in written}))})")
    if fetched:
        notes.append(f"export output {shell_name(target)} requested over HTTP "
                     f"({', '.join(sorted({f.rule.id for f in fetched}))})")
    mailbox = export.mailbox
    cleanup = [f for f in findings if _removes(f, mailbox)]
    if cleanup:
        notes.append("export request removed afterwards (Remove-MailboxExportRequest): clean-up, not proof of success")
        extra.extend(cleanup)
    proxyshell = bool(_SCRIPT_TARGET.search(target)) and ("#drafts#" in folders.casefold()
                                                           or bool(_PS_TOKEN_FILTER.search(content)))
    outcome = export.outcome
    if outcome == "not shown" and (written or fetched):
        outcome = "succeeded"
    if outcome == "failed":
        verdict = ATTEMPT_ONLY
        notes.insert(0, "the cmdlet failed (MSExchange Management event 6 / ECP exception)")
    elif proxyshell:
        verdict = ACCESSED
        notes.insert(0, "ProxyShell pattern: the attacker's planted item was exported to write a web shell; "
                        "not evidence that the owner's mail was copied")
    elif outcome == "succeeded":
        verdict = CONFIRMED_EXPORTED
    else:
        verdict = POSSIBLY_ACCESSED
        notes.insert(0, "export requested; its success is not shown in the evidence")
    if export.how.endswith("(ECP server log S:CMD)") and outcome == "succeeded" and not (written or fetched):
        notes.append("success read from an empty S:EX item (no exception logged); no public sample of this line "
                     "exists (mailbox_access.md §2.1, §5 item 4)")
    scope = "; ".join(part for part in (
        "whole mailbox" if not folders and not content else "",
        f"folders {folders}" if folders else "",
        f"filter {content}" if content else "",
        f"to {target}" if target else "",
    ) if part)
    everything = in_order(export.findings + extra)
    named = bool(mailbox)
    return MailboxRow(
        host=host,
        mailbox=mailbox or MAILBOX_NOT_NAMED,
        mailbox_named=named,
        verdict=verdict if named or verdict in (ATTEMPT_ONLY, POSSIBLY_ACCESSED) else POSSIBLY_ACCESSED,
        means=export.how,
        first=first_time(export.findings),
        last=last_time(export.findings),
        evidence=_refs(everything),
        client_ips=client_addresses(everything),
        scope=scope,
        notes=tuple(notes),
    )


def _output_file(target: str, findings: list[Finding], own: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    """Findings that show the export's output file written, and requested over HTTP."""
    if not target:
        return [], []
    name = shell_name(target)
    written: list[Finding] = []
    fetched: list[Finding] = []
    for finding in findings:
        if finding in own:
            continue
        evidence = finding.evidence
        wrote = (evidence.get("TargetFilename") or (finding.source if finding.source_kind == "file" else ""))
        if wrote and shell_name(wrote) == name:
            written.append(finding)
            continue
        stem = evidence.get("cs-uri-stem") or evidence.get("UrlStem") or ""
        if stem and shell_name(stem) == name and str(evidence.get("sc-status") or evidence.get("HttpStatus") or
                                                       "200").startswith("2"):
            fetched.append(finding)
    return written, fetched


def _removes(finding: Finding, mailbox: str) -> bool:
    if not mailbox or (finding.evidence.get("CmdletName") or "").strip().casefold() != _REMOVE:
        return False
    identity = _clean(_dash_params(finding.evidence.get("CmdletParameters") or "").get("identity", ""))
    return identity.split("\\")[0].casefold() == mailbox.casefold()


def _orphan_export_files(host: str, findings: list[Finding],
                         used: set[tuple[str, int | None, str]]) -> list[MailboxRow]:
    rows = []
    for finding in in_order(findings):
        if finding.rule.id not in _FILE_WRITERS or (finding.source, finding.line, finding.rule.id) in used:
            continue
        path = finding.evidence.get("TargetFilename") or finding.source
        _written, fetched = _output_file(path, findings, [finding])
        fetched = [f for f in fetched if f.rule.id not in _FILE_WRITERS]
        notes = ["a mailbox export was written into a web folder; no export request in the evidence names the mailbox"]
        if fetched:
            notes.append(f"{shell_name(path)} requested over HTTP afterwards")
        everything = in_order([finding, *fetched])
        rows.append(MailboxRow(host, MAILBOX_NOT_NAMED, POSSIBLY_ACCESSED,
                               "mailbox export file written to a web folder",
                               first_time(everything), last_time(everything), _refs(everything),
                               client_addresses(everything),
                               scope=f"export file {path}", notes=tuple(notes), mailbox_named=False))
    return rows


# --- SSRF to mailbox back ends ---------------------------------------------------------------


def _ssrf_target(finding: Finding) -> tuple[str, str] | None:
    """(back end, path) a ProxyLogon HttpProxy row's ``ServerInfo~`` routes to, for mailbox back ends only."""
    if finding.source_kind != "httpproxy":
        return None
    evidence = finding.evidence
    for text in (evidence.get("AnchorMailbox"), evidence.get("BackEndCookie"), evidence.get("raw")):
        match = _SERVER_INFO.search(text or "")
        if match is None:
            continue
        server, path = match.group(1), match.group(2).lstrip("/")
        if server.casefold().startswith("localhost"):
            return None
        lower = path.casefold()
        if lower.startswith("ews/"):
            return "EWS", path
        if lower.startswith("mapi/emsmdb"):
            return "MAPI", path
        if lower.startswith("owa/") and not lower.startswith("owa/auth"):
            return "OWA", path
        return None
    return None


def _answered(finding: Finding) -> bool:
    status = str(finding.evidence.get("HttpStatus") or finding.evidence.get("sc-status") or "")
    return not status or status.startswith("2")


def _ssrf_rows(host: str, findings: list[Finding]) -> list[MailboxRow]:
    groups: dict[str, list[Finding]] = {}
    request_ids = {ident for f in findings if f.source_kind == "httpproxy" and (ident := request_id(f))}
    for finding in findings:
        target = _ssrf_target(finding)
        if target is not None and _answered(finding):
            groups.setdefault(target[0], []).append(finding)
            continue
        if finding.source_kind != "iis" or not _answered(finding):
            continue
        decoded = (finding.evidence.get("cs-uri-decoded") or finding.evidence.get("cs-uri-query") or "").casefold()
        if finding.rule.id.startswith(("PS-SSRF-", "PNS-SSRF-")) and "ATTEMPT" not in finding.rule.id \
                and "/ews/" in decoded:
            groups.setdefault("EWS via Autodiscover", []).append(finding)
        elif finding.rule.id == "PL-SSRF-5" and _STATIC_RESOURCE.match(finding.evidence.get("cs-uri-stem") or ""):
            if request_id(finding) in request_ids:
                continue  # the HttpProxy row of the same request says where it went; it is judged on its own
            groups.setdefault("OWA static resource", []).append(finding)
    rows = []
    for backend, members in groups.items():
        members = in_order(members)
        if backend == "MAPI":
            verdict, means = ADDRESS_KNOWN, "ProxyLogon SSRF to the MAPI back end (/mapi/emsmdb)"
            scope = ("attacker knew at least one valid address (sent in the request body, not logged); "
                     "mailbox not identifiable from the logs")
        else:
            verdict = POSSIBLY_ACCESSED
            means = {
                "EWS": "ProxyLogon SSRF to the EWS back end",
                "OWA": "ProxyLogon SSRF to an OWA back-end path",
                "EWS via Autodiscover": "ProxyShell/ProxyNotShell Autodiscover SSRF to EWS",
                "OWA static resource": "POST to an OWA static resource (Volexity's EWS theft), back end not logged",
            }[backend]
            scope = ("organisation-wide: every mailbox the server can reach is possibly accessed unless other "
                     "evidence narrows it")
        notes = ("the victim is named only in the SOAP body, which no log keeps; the EWS back-end log "
                 "(Logging\\Ews: ImpersonatedUser, ActAsUser, SoapAction) may name it (mailbox_access.md §1.3) "
                 "and is not read by exhunt",) if backend != "MAPI" else ()
        rows.append(MailboxRow(host, MAILBOX_NOT_NAMED, verdict, means, first_time(members), last_time(members),
                               _refs(members), client_addresses(members), scope=scope, notes=notes,
                               mailbox_named=False))
    return rows


def _naming_rows(host: str, findings: list[Finding]) -> list[MailboxRow]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        wanted = finding.rule.level >= MIN_LEVEL or finding.rule.id in _ATTACKER_ROWS
        if finding.source_kind != "httpproxy" or not wanted or not _answered(finding):
            continue
        anchor = (finding.evidence.get("AnchorMailbox") or "").strip()
        if anchor and _NAMING_ANCHOR.match(anchor):
            groups.setdefault(anchor, []).append(finding)
    return [MailboxRow(host, anchor, CONFIRMED_ACCESSED,
                       "front-end request naming the mailbox (HttpProxy AnchorMailbox)"
                       if any(f.rule.level >= MIN_LEVEL for f in members) else
                       "request from an attacker address naming the mailbox (pivot pass, HttpProxy AnchorMailbox)",
                       first_time(members), last_time(members), _refs(in_order(members)), client_addresses(members),
                       notes=("map a Sid~/MailboxGuid~ value to a person with Get-Mailbox "
                              "| Select ExchangeGuid,Sid,PrimarySmtpAddress",))
            for anchor, members in groups.items()]


# --- parsing helpers -----------------------------------------------------------------------


_DASH = re.compile(r"(?:^|\s)-(\w+)(?::|\s+)(\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|\([^)]*\)|[^\s\"']+)?")


def _dash_params(text: str) -> dict[str, str]:
    """``-Name value`` pairs of a PowerShell command (values keep their quotes; see :func:`_clean`)."""
    params: dict[str, str] = {}
    for match in _DASH.finditer(text):
        params.setdefault(match.group(1).casefold(), match.group(2) or "")
    return params


def _ecp_items(data: str) -> list[tuple[str, str]]:
    """The ``S:KEY=value`` items of an ECP ``EventData`` (single-quoted items with ``''``/``""`` unescaped)."""
    items: list[tuple[str, str]] = []
    index, size = 0, len(data)
    while index < size:
        if data[index] == "'":
            end, chars = index + 1, []
            while end < size:
                if data[end] == "'" and end + 1 < size and data[end + 1] == "'":
                    chars.append("'")
                    end += 2
                elif data[end] == "'":
                    break
                else:
                    chars.append(data[end])
                    end += 1
            item = "".join(chars).replace('""', '"')
            index = end + 1
            if index < size and data[index] == ";":
                index += 1
        else:
            end = data.find(";", index)
            end = size if end < 0 else end
            item, index = data[index:end], end + 1
        key, _, value = item.partition("=")
        items.append((key.strip(), value))
    return items


_ECP_PARAM = re.compile(r"\.(\w+)=(?:'((?:[^']|'')*)'|([^.;]*))")


def _ecp_params(command: str) -> dict[str, str]:
    """``Cmdlet.Param='value'.Param2='value'`` of an ECP ``S:CMD`` item."""
    _cmdlet, _, rest = command.partition(".")
    params: dict[str, str] = {}
    for match in _ECP_PARAM.finditer("." + rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params.setdefault(match.group(1).casefold(), (value or "").replace("''", "'"))
    return params


def _clean(value: str) -> str:
    """A parameter value without its surrounding quotes or parentheses."""
    text = value.strip()
    for _ in range(3):
        if len(text) >= 2 and ((text[0] == text[-1] and text[0] in "\"'") or (text[0] == "(" and text[-1] == ")")):
            text = text[1:-1].strip()
    return text.replace('""', '"').replace("''", "'")


def _refs(findings: Sequence[Finding]) -> tuple[EvidenceRef, ...]:
    return tuple(dict.fromkeys(EvidenceRef.of(f) for f in findings))


