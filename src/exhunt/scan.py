"""The scan pipeline: collections -> classified artefacts -> records -> findings -> host verdicts."""

from __future__ import annotations

import codecs
import hashlib
import json
import sys
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import IO

from exhunt import diagnostics as diag
from exhunt import files
from exhunt.analysis import exposure, mitigations, verdict
from exhunt.analysis.chains import BuildSeen, chains
from exhunt.analysis.indicators import observed_indicators, pivot_values
from exhunt.case import Case, fingerprint, register
from exhunt.engine.correlate import BaseMatch, correlate
from exhunt.engine.matcher import CompiledRule
from exhunt.engine.pivot import pivot_rules
from exhunt.engine.pivot import rank as pivot_rank
from exhunt.engine.prefilter import LineCounts, LineHits, Prefilter, cut_points, part_of, top_of
from exhunt.engine.rules import RuleSet, load_rules
from exhunt.layouts import discover
from exhunt.layouts.evidence import Collection, EvidenceFile
from exhunt.model import (
    Diagnostic,
    Exposure,
    Finding,
    HostResult,
    Record,
    RuleInfo,
    ScanResult,
    SourceCoverage,
    utc_iso,
)
from exhunt.readers import FileFacts
from exhunt.readers.lines import iter_lines
from exhunt.sources import KINDS, SNIFF_BYTES, classify_content, classify_path

#: Longest text of one evidence field kept in a finding.
EVIDENCE_CHARS = 512
#: File name endings worth opening to recognise by content when the path says nothing.
_SNIFFABLE = (".log", ".txt", ".csv", ".evtx")

Progress = Callable[[str, int, int], None]


class StrictStop(Exception):
    """Raised in strict mode at the first evidence problem; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic)  # the diagnostic is the only argument, so the exception pickles
        self.diagnostic = diagnostic

    def __str__(self) -> str:
        return f"{self.diagnostic.code} {self.diagnostic.source}: {self.diagnostic.message}"


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What to scan and how; ``since``/``until`` restrict findings to a UTC window."""

    paths: tuple[str, ...]
    host: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    rule_dirs: tuple[str, ...] = ()
    strict: bool = False
    prefilter: bool = True
    jobs: int = 1
    baseline: str | None = None
    pivot: bool = True
    #: Set for the second pass only: the ``(kind, value)`` pairs its generated rules search for.
    pivot_values: tuple[tuple[str, str], ...] = ()

    def signature(self) -> dict[str, object]:
        """What must match for a case file to be resumed (not ``jobs``: it does not change results)."""
        return {"paths": list(self.paths), "host": self.host, "since": utc_iso(self.since),
                "until": utc_iso(self.until), "rule_dirs": list(self.rule_dirs), "prefilter": self.prefilter,
                "baseline": self.baseline, "pivot": self.pivot}

    def in_window(self, moment: datetime | None) -> bool:
        if moment is None:
            return True
        return (self.since is None or moment >= self.since) and (self.until is None or moment <= self.until)


@dataclass
class _HostState:
    """Accumulates one collection's results while its files are read."""

    coverage: dict[str, list[int]] = field(default_factory=dict)
    times: dict[str, list[datetime]] = field(default_factory=dict)
    builds: list[BuildSeen] = field(default_factory=list)
    servers: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    base_matches: list[BaseMatch] = field(default_factory=list)
    kept: list[tuple[Record, str, float | None]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: For a part read with relative line numbers: its physical lines, and header lines inside it.
    part_lines: int = 0
    part_headers: int = 0

    def count(self, kind: str, files: int = 0, records: int = 0, problems: int = 0, size: int = 0) -> None:
        row = self.coverage.setdefault(kind, [0, 0, 0, 0])
        for index, amount in enumerate((files, records, problems, size)):
            row[index] += amount

    def shift(self, lines: int) -> _HostState:
        """The same results with every line number moved by ``lines`` (a part's place in its file)."""
        def moved(line: int | None) -> int | None:
            return None if line is None else line + lines

        return replace(
            self,
            findings=[replace(f, line=moved(f.line)) for f in self.findings],
            base_matches=[replace(m, record=replace(m.record, line=moved(m.record.line))) for m in self.base_matches],
            diagnostics=[replace(d, line=moved(d.line)) for d in self.diagnostics],
        )

    def merge(self, other: _HostState) -> None:
        """Add what one file (or one part of a file) contributed."""
        for kind, row in other.coverage.items():
            self.count(kind, *row)
        for kind, times in other.times.items():
            self.times.setdefault(kind, []).extend(times)
        self.builds.extend(other.builds)
        self.servers.update(other.servers)
        self.findings.extend(other.findings)
        self.base_matches.extend(other.base_matches)
        self.kept.extend(other.kept)
        self.diagnostics.extend(other.diagnostics)


@dataclass(frozen=True, slots=True)
class _Task:
    """One unit of work: a file of a collection, or a line-aligned byte range of a large file."""

    collection: int
    evidence: EvidenceFile
    layout: str
    span: tuple[int, int] | None = None
    #: For a part: read the header lines and line count before it (slow) instead of assuming the
    #: file's top header block and numbering lines from the part's start.
    exact: bool = False


def scan(paths: Sequence[str | Path], *, host: str | None = None, since: datetime | None = None,
         until: datetime | None = None, rule_dirs: Sequence[str | Path] = (), strict: bool = False,
         prefilter: bool = True, jobs: int = 1, baseline: str | Path | None = None,
         case: str | Path | None = None, command: str = "", progress: Progress | None = None,
         pivot: bool = True) -> ScanResult:
    """Scan evidence paths and return every host's verdict, findings and diagnostics.

    Bad evidence becomes diagnostics and the scan goes on; with ``strict`` the first error or
    warning about the evidence raises :class:`StrictStop`. ``prefilter`` (on by default) parses
    only the lines that hold a rule's literal, and ``jobs`` processes (this one and ``jobs - 1``
    workers) read files and parts of large files in parallel; neither changes the result. ``baseline`` (known-good
    hashes, :mod:`exhunt.files.baseline`) limits the file-tree scan of Exchange web folders to
    deviations. With ``pivot`` (on by default) a second pass looks for the request ids, ECP
    sessions, shell names, addresses and user agents of the findings in every host's IIS and
    HttpProxy logs (:mod:`exhunt.engine.pivot`; ``informational`` findings, the stages do not
    change). With
    ``case`` (a SQLite file, :mod:`exhunt.case`) every finished unit of work is stored at once
    and a rerun with the same arguments reuses it. Raises :class:`ValueError`
    for contradictory arguments (:class:`exhunt.case.CaseMismatch` for another scan's case file).
    """
    options = ScanOptions(tuple(str(p) for p in paths), host, since, until, tuple(str(d) for d in rule_dirs),
                          strict, prefilter, max(1, jobs), None if baseline is None else str(baseline), pivot)
    started = datetime.now(UTC)
    rules = _rules(options.rule_dirs)  # cached: forked workers inherit the compiled rules
    collections, problems = discover(options.paths)
    if host and len(collections) > 1:
        raise ValueError(f"a host name was given, but the paths hold {len(collections)} collections")
    store = Case(case) if case else None
    try:
        if store:
            store.bind(options.signature(), command, rules_version(rules))
        prints: dict[str, str] = {}  # evidence fingerprints of the case file, shared by both passes
        states = _run_tasks(_tasks(collections, rules, options), collections, options, progress, store, prints)
        known_good = files.load_baseline(options.baseline) if options.baseline else None
        for index, (collection, state) in enumerate(zip(collections, states, strict=True)):
            state.merge(_file_tree(index, collection, known_good, options, store, prints))
        hosts = [_host_result(c, state, rules, options) for c, state in zip(collections, states, strict=True)]
        result = _result(hosts, collections, problems, rules, options, started)
        values = pivot_values(observed_indicators(result), result.findings) if options.pivot else ()
        if values:
            second = replace(options, pivot_values=values)
            extra = _run_tasks(_tasks(collections, _pivot_rules(values), second), collections, second, None, store,
                               prints)
            hosts = [_with_context(host, diags, found) for (host, diags), found in zip(hosts, extra, strict=True)]
            result = _result(hosts, collections, problems, rules, options, started, _pivot_rules(values))
        if store:
            store.save_result(result)
        return result
    finally:
        if store:
            store.close()


def rule_infos(rules: RuleSet, pivots: RuleSet | None = None) -> tuple[RuleInfo, ...]:
    """Every rule in use (Sigma rules, file rules, and the pivot pass's generated ones), sorted by id."""
    return tuple(sorted(rules.infos + files.file_rules() + (pivots.infos if pivots else ()), key=lambda i: i.id))


def rules_version(rules: RuleSet) -> str:
    """A short hash of every rule text in use (shipped, user and file rules)."""
    digest = hashlib.sha256()
    for info in rule_infos(rules):
        digest.update(repr(info).encode())
    return digest.hexdigest()[:16]


def _result(hosts: list[tuple[HostResult, list[Diagnostic]]], collections: Sequence[Collection],
            problems: list[Diagnostic], rules: RuleSet, options: ScanOptions, started: datetime,
            pivots: RuleSet | None = None) -> ScanResult:
    attached = {d for c in collections for d in c.diagnostics}
    all_diags = list(rules.diagnostics) + [d for d in problems if d not in attached]
    for (result, file_diags), collection in zip(hosts, collections, strict=True):
        all_diags.extend(replace(d, host=result.host) for d in collection.diagnostics)
        all_diags.extend(file_diags)
    return ScanResult(
        hosts=tuple(result for result, _ in hosts),
        diagnostics=tuple(all_diags),
        started=started,
        finished=datetime.now(UTC),
        rules=rule_infos(rules, pivots),
        options={"paths": list(options.paths), "host": options.host, "since": options.since,
                 "until": options.until, "rule_dirs": list(options.rule_dirs), "baseline": options.baseline,
                 "pivot": options.pivot},
    )


#: Plain files larger than this are split into parts read in parallel (with ``jobs`` > 1).
SPLIT_BYTES = 64 << 20


def _tasks(collections: Sequence[Collection], rules: RuleSet, options: ScanOptions) -> list[_Task]:
    """The units of work; the pivot pass skips files whose name shows a kind it has no rule for."""
    tasks = []
    for index, collection in enumerate(collections):
        for evidence in collection.files:
            kind = classify_path(evidence.path)
            if options.pivot_values and kind is not None and kind not in rules.kinds:
                continue
            prefilter = _prefilter(kind, rules, options) if kind is not None else None  # before workers fork
            splittable = (options.jobs > 1 and evidence.container is None and evidence.size > SPLIT_BYTES
                          and prefilter is not None)
            if not splittable:
                tasks.append(_Task(index, evidence, collection.layout))
                continue
            parts = min(options.jobs, evidence.size // SPLIT_BYTES + 1)
            with evidence.open() as stream:
                utf16 = stream.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
                spans = [(0, evidence.size)] if utf16 else cut_points(stream, evidence.size, parts)
            tasks.extend(_Task(index, evidence, collection.layout, None if utf16 else span) for span in spans)
    return tasks


def _run_tasks(tasks: list[_Task], collections: Sequence[Collection], options: ScanOptions,
               progress: Progress | None, store: Case | None = None,
               prints: dict[str, str] | None = None) -> list[_HostState]:
    """Run every task, also in ``jobs - 1`` worker processes when ``jobs`` > 1, and merge in task order.

    Parts of a split file are read assuming the file's top header block and numbered from their
    own start; the merge moves their line numbers into place. If a part holds header lines of
    its own (a mid-file ``#Fields`` change), the parts after it are read again exactly. With a
    case file, units finished by an earlier run are reused and new ones stored as they finish.
    In the pivot pass each rule lists at most :data:`PIVOT_LISTED` lines per host, the first in
    task and line order; a task is told how many each rule listed before it, so it can stop early.
    """
    prints = {} if prints is None else prints
    if store:
        _fingerprints(tasks, collections, store, prints)
    stored = [store.outcome(_key(task, options), prints[task.evidence.origin]) if store else None for task in tasks]
    states = [_HostState() for _ in collections]
    listed: list[Counter[str]] = [Counter() for _ in collections]
    offset, redo = 0, False
    for number, (index, outcome) in enumerate(_outcomes(tasks, stored, options, listed), 1):
        task = tasks[index]
        if stored[index] is None:
            _stored(store, task, options, prints, outcome)
        if task.span is None or task.span[0] == 0:
            offset, redo = 0, False
        if redo:
            outcome = _run_task(replace(task, exact=True), options, listed[task.collection])
        shifted = outcome.shift(offset) if task.span and not redo else outcome
        if options.pivot_values:
            shifted.findings = _admitted(shifted.findings, listed[task.collection])
        states[task.collection].merge(shifted)
        offset += outcome.part_lines
        redo = redo or outcome.part_headers > 0
        if progress:
            progress(task.evidence.path, number, len(tasks))
    return states


def _outcomes(tasks: list[_Task], stored: list[_HostState | None], options: ScanOptions,
              listed: list[Counter[str]]) -> Iterator[tuple[int, _HostState]]:
    """``(task index, outcome)`` in task order: stored ones, or run by ``jobs - 1`` worker processes and by
    this one while it waits (small files in batches: one round trip per file costs more than its scan; a
    few batches ahead at a time, so each starts with the pivot listings merged so far)."""
    pending = [index for index, outcome in enumerate(stored) if outcome is None]
    if options.jobs == 1 or len(pending) < 2:
        for index, task in enumerate(tasks):
            yield index, stored[index] or _run_task(task, options, listed[task.collection])
        return
    # smaller batches in the pivot pass: a batch only learns the listings merged before it was handed out
    size = max(1, len(pending) // (options.jobs * (128 if options.pivot_values else 32)))
    batches = deque(pending[start:start + size] for start in range(0, len(pending), size))
    running: deque[tuple[list[int], Future[list[_HostState]]]] = deque()
    ready: dict[int, _HostState] = {}

    def run(group: list[int], submit: Callable[..., Future[list[_HostState]]] | None = None) -> None:
        # copies: the counters go on growing here while a submission waits to be pickled
        work = ([tasks[i] for i in group], options, [Counter(listed[tasks[i].collection]) for i in group])
        if submit is None:
            ready.update(zip(group, _run_batch(*work), strict=True))
        else:
            running.append((group, submit(_run_batch, *work)))

    workers = options.jobs - 1
    context = get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for index, done in enumerate(stored):
            if done is not None:
                yield index, done
                continue
            while index not in ready:
                # a batch queued behind each running one, so that no worker waits for this process to come back
                while batches and len(running) < workers * (2 if len(batches) > 1 else 1):
                    run(batches.popleft(), pool.submit)
                if batches and not running[0][1].done() and len(ready) < 2 * size:
                    # this process takes the next batch instead of waiting, but runs at most two batches ahead of
                    # the merge (what runs ahead holds its results, and does not know the pivot listings yet)
                    run(batches.popleft())
                else:
                    group, future = running.popleft()
                    ready.update(zip(group, future.result(), strict=True))
            yield index, ready.pop(index)


def _run_batch(tasks: list[_Task], options: ScanOptions, listed: list[Counter[str]]) -> list[_HostState]:
    return [_run_task(task, options, before) for task, before in zip(tasks, listed, strict=True)]


def _admitted(findings: list[Finding], listed: Counter[str]) -> list[Finding]:
    """The pivot-pass findings still listed after those of earlier tasks (``listed`` is updated)."""
    kept = []
    for finding in findings:
        if listed[finding.rule.id] < PIVOT_LISTED:
            listed[finding.rule.id] += 1
            kept.append(finding)
    return kept


def _key(task: _Task, options: ScanOptions) -> str:
    pivot = f"pivot:{_digest(options.pivot_values)}:" if options.pivot_values else ""
    return f"{pivot}{task.collection}:{task.evidence.origin}:{task.span}"


def _digest(values: tuple[tuple[str, str], ...]) -> str:
    return _digest_text(json.dumps(values))


def _digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fingerprints(tasks: list[_Task], collections: Sequence[Collection], store: Case, prints: dict[str, str]) -> None:
    """Fingerprint and record the evidence of ``tasks`` not in ``prints`` yet."""
    for task in tasks:
        origin = task.evidence.origin
        if origin not in prints:
            try:
                prints[origin] = fingerprint(task.evidence)
            except (OSError, zipfile.BadZipFile, zlib.error, EOFError):
                prints[origin] = f"{task.evidence.size}:unreadable"
                continue
            store.record_evidence(task.evidence, prints[origin], task.layout, collections[task.collection].root)


def _stored(store: Case | None, task: _Task, options: ScanOptions, prints: dict[str, str],
            outcome: _HostState) -> _HostState:
    if store:
        store.save_outcome(_key(task, options), prints[task.evidence.origin], outcome)
    return outcome


@cache
def _rules(rule_dirs: tuple[str, ...]) -> RuleSet:
    return load_rules(rule_dirs)


@cache
def _pivot_rules(values: tuple[tuple[str, str], ...]) -> RuleSet:
    return pivot_rules(values)


def _run_task(task: _Task, options: ScanOptions, listed: Counter[str] | None = None) -> _HostState:
    """Classify and read one file or part (also the entry point of worker processes); ``listed``: in the
    pivot pass, the lines each rule listed in earlier tasks of the host."""
    state = _HostState()
    if task.span is None or task.span[0] == 0:
        kind = _classify(task.evidence, task.layout, state)
    else:
        kind = classify_path(task.evidence.path)
    rules = _pivot_rules(options.pivot_values) if options.pivot_values else _rules(options.rule_dirs)
    if kind is not None and (not options.pivot_values or kind in rules.kinds):
        _read_file(task.evidence, kind, rules, options, state, task.span, task.exact, listed)
    return state


#: Most pivot-pass findings of one generated rule listed per host: a value that links more lines than
#: this is ordinary traffic (a proxy's address, a common client) rather than one actor's; the rest of the
#: lines are neither parsed nor kept (EXH-P001), which bounds the pass's time and memory.
PIVOT_LISTED = 5000


def _with_context(host: HostResult, diags: list[Diagnostic],
                  found: _HostState) -> tuple[HostResult, list[Diagnostic]]:
    """A host's result with what the pivot pass found added; those findings are informational, so the
    stage, chains, exposure and correlations stay as they are."""
    context = [replace(f, host=host.host) for f in _context(found.findings, host.findings)]
    findings = tuple(sorted((*host.findings, *context), key=Finding.sort_key))
    return replace(host, findings=findings), diags + [replace(d, host=host.host) for d in _listing_limits(found)]


def _listing_limits(state: _HostState) -> list[Diagnostic]:
    counts = Counter(f.rule.id for f in state.findings)
    return [diag.make("EXH-P001", f"{rule}: {PIVOT_LISTED:,} lines hold the values it follows; later ones are not "
                                  "listed (values this common are ordinary traffic rather than one actor's)")
            for rule, count in sorted(counts.items()) if count >= PIVOT_LISTED]


def _context(found: list[Finding], first_pass: Sequence[Finding]) -> list[Finding]:
    """One second-pass finding (the most specific link) per line no first-pass finding already reports."""
    reported = {(f.source, f.line) for f in first_pass}
    kept: dict[tuple[str, int | None], Finding] = {}
    for finding in sorted(found, key=lambda f: pivot_rank(f.rule.id)):
        kept.setdefault((finding.source, finding.line), finding)
    return [f for key, f in kept.items() if key not in reported]


def _file_tree(index: int, collection: Collection, baseline: files.Baseline | None, options: ScanOptions,
               store: Case | None, prints: dict[str, str]) -> _HostState:
    """Web shells, dumps and staging archives among the collection's files (``exhunt.files``); with a case
    file, a stored result is reused only while every file's fingerprint (size, time, SHA-256) is unchanged."""
    key = f"tree:{index}:{collection.root}"
    contents = json.dumps(sorted(prints.get(f.origin, "") for f in collection.files))
    tree_print = f"{_digest_text(contents)}:{options.baseline}"
    if store and (stored := store.outcome(key, tree_print)) is not None:
        return stored
    state = _HostState()
    tree = files.scan_files(collection, baseline=baseline)
    state.findings.extend(f for f in tree.findings if options.in_window(f.time))
    state.diagnostics.extend(tree.diagnostics)
    if tree.files_examined:
        state.count("file", files=tree.files_examined, records=tree.files_examined,
                    problems=len(tree.diagnostics), size=tree.bytes_read)
    if store:
        store.save_outcome(key, tree_print, state)
    return state


def _host_result(collection: Collection, state: _HostState, rules: RuleSet,
                 options: ScanOptions) -> tuple[HostResult, list[Diagnostic]]:
    host = options.host or collection.hostname or _most_common(state.servers) or collection.label
    findings = [replace(f, host=host) for f in state.findings]
    for correlation in rules.correlations:
        findings.extend(f for f in correlate(correlation, state.base_matches, host)
                        if options.in_window(f.time))
    findings.sort(key=Finding.sort_key)
    coverage = {
        kind: SourceCoverage(kind, files, records, min(state.times.get(kind, []), default=None),
                             max(state.times.get(kind, []), default=None), problems, size)
        for kind, (files, records, problems, size) in sorted(state.coverage.items())
    }
    assessed, not_assessed = verdict.assessment(coverage)
    builds = _distinct(state.builds)
    stage, reasons = verdict.host_stage(findings, bool(assessed), builds)
    result = HostResult(
        host=host,
        layout=collection.layout,
        evidence=(collection.root,),
        stage=stage,
        exposure=_exposure(state),
        coverage=tuple(coverage.values()),
        not_assessed=not_assessed,
        assessed=assessed,
        findings=tuple(findings),
        stage_reasons=reasons,
        chains=chains(findings, builds),
    )
    return result, [replace(d, host=host) for d in state.diagnostics]


def _distinct(builds: Sequence[BuildSeen]) -> tuple[BuildSeen, ...]:
    """One entry per build, spanning the first and last time any file saw it."""
    spans: dict[str, tuple[datetime | None, datetime | None]] = {}
    for seen in builds:
        first, last = spans.get(seen.text, (seen.first, seen.last))
        spans[seen.text] = (min((t for t in (first, seen.first) if t), default=None),
                            max((t for t in (last, seen.last) if t), default=None))
    return tuple(BuildSeen(text, first, last) for text, (first, last) in sorted(spans.items()))


def _exposure(state: _HostState) -> Exposure:
    assessed = exposure.assess((seen.text, seen.last) for seen in state.builds)
    found = mitigations.find(state.kept)
    return replace(assessed, mitigations=found, notes=assessed.notes + mitigations.notes(found, assessed.unpatched))


def _classify(evidence: EvidenceFile, layout: str, state: _HostState) -> str | None:
    kind = classify_path(evidence.path)
    if kind is None and (layout == "files" or evidence.path.lower().endswith(_SNIFFABLE)):
        try:
            with evidence.open() as stream:
                kind = classify_content(stream.read(SNIFF_BYTES))
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            state.diagnostics.append(diag.make("EXH-R001", f"cannot read: {exc}", evidence.path))
            state.count("unreadable", files=1, problems=1, size=evidence.size)
            return None
    if kind is None:
        state.count("unrecognised", files=1, size=evidence.size)
        if layout == "files":
            state.diagnostics.append(diag.make("EXH-S001", "not a log format exhunt reads", evidence.path))
    return kind


def _prefilter(kind: str, rules: RuleSet, options: ScanOptions) -> Prefilter | None:
    """The literal prefilter a file of ``kind`` is read through (text logs whose records are not kept)."""
    source = KINDS[kind]
    return rules.prefilter(kind) if options.prefilter and not source.binary and not source.keep_records else None


def _read_file(evidence: EvidenceFile, kind: str, rules: RuleSet, options: ScanOptions, state: _HostState,
               span: tuple[int, int] | None = None, exact: bool = False, before: Counter[str] | None = None) -> None:
    source = KINDS[kind]
    file_diags = diag.FileDiagnostics(evidence.path)
    facts = FileFacts()
    select = rules.selector(kind)
    prefilter = _prefilter(kind, rules, options)
    counts, found = LineCounts(), LineHits()
    listed: Counter[str] | None = Counter(before) if options.pivot_values else None

    def unlisted(literals: tuple[str, ...]) -> bool:  # a rule these literals select may still list a line
        return any(listed[rule.info.id] < PIVOT_LISTED for rule in select.possible(literals))  # type: ignore[index]

    more = unlisted if listed is not None else None
    done = frozenset(rule for rule, count in (listed or {}).items() if count >= PIVOT_LISTED)
    refused = select.refused(prefilter.literals, done) if prefilter is not None and done else frozenset()
    try:
        with evidence.open() as stream:
            if source.binary:  # event logs: events no rule reads are counted, not flattened (unless no prefilter)
                records = source.reader(stream, file_diags, facts, select.admits if select.gated and options.prefilter
                                        else None)
            elif prefilter is not None and span is not None:
                part = part_of(stream, span[0]) if exact or span[0] == 0 else top_of(stream, span[0])
                lines = prefilter.lines(_Bounded(stream, span[1]), file_diags, counts, part, found, more, refused)
                records = source.reader(lines, file_diags, facts)
            else:
                lines = (prefilter.lines(stream, file_diags, counts, found=found, wanted=more, refused=refused)
                         if prefilter else iter_lines(stream, file_diags))
                records = source.reader(lines, file_diags, facts)
            for record in records:
                if source.keep_records:
                    state.kept.append((record, evidence.path, evidence.mtime))
                if options.in_window(record.time):
                    rules_here = select.pick(record, found.take(record.line) if prefilter is not None else None)
                    if listed is None:
                        _match(record, rules_here, evidence, kind, state)
                        continue
                    known = len(state.findings)
                    _match(record, [r for r in rules_here if listed[r.info.id] < PIVOT_LISTED], evidence, kind, state)
                    listed.update(f.rule.id for f in state.findings[known:])
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        file_diags.add("EXH-R001", f"read failed after {facts.records} records: {exc}")
    except Exception as exc:  # a reader must never end the scan: report it and go on
        file_diags.add("EXH-R001", f"reader error after {facts.records} records: {type(exc).__name__}: {exc}")
    if prefilter is not None and not counts.full:
        facts.records = counts.data_lines
    if span is not None:
        state.part_lines, state.part_headers = counts.physical, counts.late_headers
    first_part = span is None or span[0] == 0
    size = evidence.size if span is None else span[1] - span[0]
    state.count(kind, files=int(first_part), records=facts.records, problems=file_diags.total, size=size)
    state.times.setdefault(kind, []).extend(t for t in (facts.first, facts.last) if t is not None)
    for part, (records, first, last) in facts.parts.items():
        state.count(f"{kind}:{part}", files=int(first_part), records=records)
        state.times.setdefault(f"{kind}:{part}", []).extend(t for t in (first, last) if t is not None)
    state.builds.extend(BuildSeen(text, first, last) for text, (first, last) in facts.builds.items())
    state.servers.update(facts.servers)
    problems = file_diags.finish()
    if options.strict:
        first = next((d for d in problems if d.level in ("error", "warning")), None)
        if first is not None:
            raise StrictStop(first)
    state.diagnostics.extend(problems)


def _match(record: Record, rules: list[CompiledRule], evidence: EvidenceFile, kind: str, state: _HostState) -> None:
    for rule in rules:
        if not rule.match(record):
            continue
        if rule.hidden:
            state.base_matches.append(BaseMatch(rule.name, record, evidence.path, evidence.origin))
            continue
        state.findings.append(_finding(rule, record, evidence, kind))


def _finding(rule: CompiledRule, record: Record, evidence: EvidenceFile, kind: str) -> Finding:
    shown = {name: record.fields[name][:EVIDENCE_CHARS] for name in rule.fields if record.fields.get(name)}
    if not shown:
        shown = {"raw": record.raw[:EVIDENCE_CHARS]}
    ip_field = KINDS[kind].client_ip_field
    return Finding(
        host="",
        rule=rule.info,
        time=record.time,
        source=evidence.path,
        line=record.line,
        evidence=shown,
        client_ip=_origin(record.fields.get(ip_field, "")) if ip_field else None,
        source_kind=kind,
        origin=evidence.origin,
    )


def _origin(addresses: str) -> str | None:
    """The originating client of a ``ClientIpAddress`` that may list proxy hops (``a b``, ``a -> b``, ``a,b``)."""
    for token in addresses.replace("->", " ").replace(",", " ").split():
        return token
    return None


def _most_common(counter: Counter[str]) -> str | None:
    return counter.most_common(1)[0][0] if counter else None


class _Bounded:
    """Reads a stream up to an end offset (one part of a split file)."""

    def __init__(self, stream: IO[bytes], end: int) -> None:
        self._stream, self._end = stream, end

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._stream.tell()
        if left <= 0:
            return b""
        return self._stream.read(left if size < 0 else min(size, left))

    def readinto(self, target: memoryview) -> int:
        left = self._end - self._stream.tell()
        return self._stream.readinto(target[:left]) if left > 0 else 0

    def readline(self, size: int = -1) -> bytes:
        left = self._end - self._stream.tell()
        if left <= 0:
            return b""
        return self._stream.readline(left if size < 0 else min(size, left))


register(_HostState, BaseMatch, BuildSeen)
