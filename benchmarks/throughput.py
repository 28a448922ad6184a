"""Text-log throughput of exhunt against the reading limit and simpler scanners, in one run.

On the same files (made by ``gen_logs.py``), it measures:

- ``cat > /dev/null``: how fast the files can be read at all;
- ``grep -F -c ServerInfo~``: one literal, one core (Test-ProxyLogon's file prefilter);
- a naive reader: Python's ``csv`` over every row, the way Microsoft's script reads (``Import-Csv``);
- ``exhunt scan`` with the full rule set, with ``--jobs 1`` (with and without the pivot pass) and
  ``--jobs N``.

It prints MB/s, the ratios the project's targets are stated in, peak RSS of each exhunt run, and
checks recall and precision against ``OUT_DIR.truth.json``::

    python benchmarks/gen_logs.py /tmp/bench --size-mb 1024
    python benchmarks/throughput.py /tmp/bench [--jobs 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".log")


def timed(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def naive(files: list[Path]) -> int:
    """Every row through ``csv`` with the ``#Fields`` header, then one field test (Test-ProxyLogon's shape)."""
    hits = 0
    for path in files:
        with path.open(encoding="utf-8", newline="") as stream:
            fields: list[str] = []
            for row in csv.reader(stream):
                if row and row[0].startswith("#Fields:"):
                    fields = [row[0][len("#Fields: "):], *row[1:]]
                    continue
                if not row or row[0].startswith("#") or not fields:
                    continue
                record = dict(zip(fields, row, strict=False))
                hits += record.get("AnchorMailbox", "").startswith("ServerInfo~")
    return hits


def exhunt(root: Path, jobs: int, out: Path, *extra: str) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one ``exhunt scan`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    run([sys.executable, "-m", "exhunt.cli", "scan", str(root), "-q", "--jobs", str(jobs), "--json", str(out), *extra])
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def check(root: Path, out: Path) -> str:
    truth_path = root.with_name(root.name + ".truth.json")
    if not truth_path.exists():
        return "no truth file"
    truth = json.loads(truth_path.read_text())
    findings = json.loads(out.read_text())["findings"]
    # Pivot-pass findings are context (the attacker's other requests), not detections.
    found = {(f["source"].replace("\\", "/"), f["line"]) for f in findings if not f["rule"].startswith("PIVOT-")}
    attacks = {(name, line) for name, t in truth.items() for line in t["attacks"]}
    decoys = {(name, line) for name, t in truth.items() for line in t["decoys"]}
    found_lines = {(s.split("/", 0)[-1], line) for s, line in found}
    recall = sum(1 for a in attacks if a in found_lines) / max(len(attacks), 1)
    false = sum(1 for d in decoys if d in found_lines)
    return f"recall {recall:.3f} ({len(attacks)} attack lines), decoys reported: {false} of {len(decoys)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    files = log_files(args.root)
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    names = [str(p) for p in files]
    rows: list[tuple[str, float]] = []
    rows.append(("cat > /dev/null", timed(lambda: run(["cat", *names]), args.repeat)))
    # grep's output goes to a pipe: GNU grep stops at the first match when it writes to /dev/null
    rows.append(("grep -F -c ServerInfo~", timed(lambda: subprocess.run(
        ["grep", "-F", "-c", "ServerInfo~", *names], check=False, capture_output=True), args.repeat)))
    rows.append(("naive csv reader", timed(lambda: naive(files), args.repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        out1, outn = Path(tmp) / "j1.json", Path(tmp) / "jn.json"
        one, rss_one = exhunt(args.root, 1, out1)
        no_pivot, _ = exhunt(args.root, 1, Path(tmp) / "np.json", "--no-pivot")
        many, rss_many = exhunt(args.root, args.jobs, outn)
        rows += [("exhunt --jobs 1", one), ("exhunt --jobs 1 --no-pivot", no_pivot),
                 (f"exhunt --jobs {args.jobs}", many)]
        same = json.loads(out1.read_text())["findings"] == json.loads(outn.read_text())["findings"]
        quality = check(args.root, out1)
    rate = {name: size_mb / seconds for name, seconds in rows}
    print(f"{len(files)} file(s), {size_mb:,.0f} MiB")
    for name, seconds in rows:
        print(f"  {name:<26} {seconds:8.2f} s {rate[name]:10,.1f} MB/s")
    print(f"  exhunt --jobs 1 / grep -F:        {rate['exhunt --jobs 1'] / rate['grep -F -c ServerInfo~']:.2f}x "
          "(target >= 0.5)")
    print(f"  exhunt --jobs 1 / naive csv:      {rate['exhunt --jobs 1'] / rate['naive csv reader']:.1f}x "
          "(target >= 20)")
    print(f"  exhunt --jobs {args.jobs} / --jobs 1:         {one / many:.2f}x (target >= 1.7 with 2 jobs)")
    print(f"  pivot pass:                       {one - no_pivot:+.2f} s")
    print(f"  peak RSS: {rss_one / 1024:.0f} MiB (--jobs 1), {rss_many / 1024:.0f} MiB (--jobs {args.jobs}, "
          "largest single process)")
    print(f"  findings identical across --jobs: {same}; {quality}")


if __name__ == "__main__":
    main()
