"""Event-log throughput: exhunt's EVTX reading + rule matching against the raw ``evtx`` parse.

Both are measured in the same run over the same files, so the ratio does not depend on the
machine. Usage::

    python benchmarks/evtx_bench.py [EVTX_OR_FOLDER ...] [--repeat N]

Without paths it uses ``../shared/samples/evtx``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import evtx

from exhunt.diagnostics import FileDiagnostics
from exhunt.engine.rules import shipped_rules
from exhunt.readers import FileFacts
from exhunt.readers import evtx as reader

T = TypeVar("T")
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "samples" / "evtx"


def files_of(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.rglob("*.evtx")) if path.is_dir() else [path])
    return found


def raw_parse(files: list[Path]) -> int:
    """Records the Rust parser yields, read to JSON as exhunt does, nothing else."""
    count = 0
    for path in files:
        records = evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()
        while True:
            try:
                next(records)
            except StopIteration:
                break
            except RuntimeError:
                continue
            count += 1
    return count


def exhunt_scan(files: list[Path]) -> tuple[int, int]:
    """Records read by exhunt as the scan reads them: every one counted, those some event-log rule admits (by
    channel and event ID) flattened and evaluated against those rules."""
    select = shipped_rules().selector("evtx")
    count = hits = 0
    for path in files:
        facts = FileFacts()
        with path.open("rb") as stream:
            for record in reader.read(stream, FileDiagnostics(path.name), facts, select.admits):
                hits += sum(1 for rule in select.pick(record, None) if rule.match(record))
        count += facts.records
    return count, hits


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeat`` timed runs (after one warm-up run) and the result."""
    best, result = float("inf"), work()
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = files_of(args.paths)
    raw_seconds, raw_count = best_of(args.repeat, lambda: raw_parse(files))
    scan_seconds, (scan_count, hits) = best_of(args.repeat, lambda: exhunt_scan(files))
    rules = len(shipped_rules().for_kind("evtx"))
    print(f"files: {len(files)}, records: {raw_count} (raw) / {scan_count} (exhunt), "
          f"event-log rules: {rules}, rule hits: {hits}")
    print(f"raw evtx parse:        {raw_count / raw_seconds:12,.0f} records/s")
    print(f"exhunt read + match:   {scan_count / scan_seconds:12,.0f} records/s")
    print(f"ratio exhunt / raw:    {scan_seconds and (scan_count / scan_seconds) / (raw_count / raw_seconds):.2f}")


if __name__ == "__main__":
    main()
