"""Text-log throughput of exhunt against the reading limit and simpler scanners, in one run.

On the same files (made by ``gen_logs.py``), it measures:

- ``cat > /dev/null``: how fast the files can be read at all;
- ``grep -F -c ServerInfo~``: one literal, one core (Test-ProxyLogon's file prefilter);
- a naive reader: Python's ``csv`` over every row, the way Microsoft's script reads (``Import-Csv``);
- the floor of any prefiltered scan: the files read in 1 MiB windows, each searched for exhunt's rule
  literals with Hyperscan and its line ends counted, in this process (no Python per line);
- ``exhunt scan`` with the full rule set, with ``--jobs 1`` (with and without the pivot pass) and
  ``--jobs N``.

It prints MB/s, the ratios the project's targets are stated in, peak RSS of each exhunt run, and
checks recall and precision against ``OUT_DIR.truth.json``::

    python benchmarks/gen_logs.py /tmp/bench --size-mb 1024
    python benchmarks/throughput.py /tmp/bench [--jobs 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import compileall
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

import exhunt as exhunt_package


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


def floor(files: list[Path]) -> float:
    """What no prefiltered scan avoids, in this process: reading every file in 1 MiB windows, searching each
    with its kind's prefilter database (exhunt's own) and counting its line ends."""
    import numpy as np

    from exhunt.engine.rules import shipped_rules
    from exhunt.sources import classify_path

    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    start = time.perf_counter()
    for path in files:
        prefilter = shipped_rules().prefilter(classify_path(str(path).replace("/", "\\")) or "")
        if prefilter is None:
            continue
        db = prefilter.database
        with path.open("rb") as stream:
            while size := stream.readinto(view):
                db.scan(view[:size], match_event_handler=lambda *_: None)
                np.count_nonzero(np.frombuffer(buffer, np.uint8, size) == 10)
    return time.perf_counter() - start


def exhunt(root: Path, jobs: int, out: Path, repeat: int, *extra: str) -> tuple[float, int]:
    """Best wall time of ``repeat`` ``exhunt scan`` processes, and the peak RSS (KiB) of any child so far."""
    command = [sys.executable, "-m", "exhunt.cli", "scan", str(root), "-q", "--jobs", str(jobs), "--json", str(out),
               *extra]
    return timed(lambda: run(command), repeat), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def tiny_copy(files: list[Path], root: Path, target: Path) -> Path:
    """The same collection with only the first 100 lines of each file: start-up and fixed costs."""
    for path in files:
        copy = target / path.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as stream:
            copy.write_bytes(b"".join(stream.readline() for _ in range(100)))
    return target


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
    rows.append(("read + literal search + count", min(floor(files) for _ in range(args.repeat))))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # exhunt as installed and run before: byte-compiled (pip does that at install time, and
        # PYTHONDONTWRITEBYTECODE may keep an editable install from it) and with its rule cache filled
        compileall.compile_dir(Path(exhunt_package.__file__).parent, quiet=1)
        os.environ["EXHUNT_CACHE_DIR"] = str(work / "cache")
        tiny = tiny_copy(files, args.root, work / "tiny")
        exhunt(tiny, 1, work / "t.json", 1)
        startup, _ = exhunt(tiny, 1, work / "t.json", args.repeat)
        runs = {}
        for jobs in sorted({1, args.jobs}):
            for extra in (("--no-pivot",), ()):
                name = f"exhunt --jobs {jobs}{' --no-pivot' if extra else ''}"
                runs[name] = exhunt(args.root, jobs, work / f"{jobs}{bool(extra)}.json", args.repeat, *extra)
        rows += [(name, seconds) for name, (seconds, _) in runs.items()]
        same = json.loads((work / "1False.json").read_text())["findings"] == \
            json.loads((work / f"{args.jobs}False.json").read_text())["findings"]
        quality = check(args.root, work / "1False.json")
    peak = max(rss for _, rss in runs.values())
    rate = {name: size_mb / seconds for name, seconds in rows}
    # exhunt's start-up (interpreter, imports, rule compilation, reports), measured on 100-line copies of
    # the same files, is paid once per run whatever the evidence size: the scan rate leaves it out.
    net = {name: size_mb / max(seconds - startup, 1e-9) for name, seconds in rows if name.startswith("exhunt")}
    print(f"{len(files)} file(s), {size_mb:,.0f} MiB; exhunt start-up (100 lines a file): {startup:.2f} s")
    print(f"  {'':<28} {'seconds':>8} {'MB/s':>10} {'MB/s without start-up':>22}")
    for name, seconds in rows:
        after = f"{net[name]:22,.1f}" if name in net else ""
        print(f"  {name:<28} {seconds:8.2f} {rate[name]:10,.1f} {after}")
    rules, default = "exhunt --jobs 1 --no-pivot", "exhunt --jobs 1"
    grep, naive_rate = rate["grep -F -c ServerInfo~"], rate["naive csv reader"]
    print("  targets (rule pass = --no-pivot; whole process / without start-up):")
    print(f"    rule pass / grep -F:        {rate[rules] / grep:5.2f}x / {net[rules] / grep:5.2f}x   (target >= 0.5)")
    print(f"    rule pass / naive csv:      {rate[rules] / naive_rate:5.1f}x / {net[rules] / naive_rate:5.1f}x   "
          "(target >= 20)")
    for suffix in (" --no-pivot", ""):
        one, many = runs[f"exhunt --jobs 1{suffix}"][0], runs[f"exhunt --jobs {args.jobs}{suffix}"][0]
        print(f"    --jobs {args.jobs} / --jobs 1{suffix or ' (pivot)':<11}: {one / many:5.2f}x / "
              f"{(one - startup) / max(many - startup, 1e-9):5.2f}x   (target >= 1.7 with 2 jobs)")
    print(f"  pivot pass (--jobs 1): {runs[default][0] - runs[rules][0]:+.2f} s; default run / grep -F: "
          f"{rate[default] / grep:.2f}x / {net[default] / grep:.2f}x")
    print(f"  peak RSS of any exhunt process: {peak / 1024:.0f} MiB")
    print(f"  findings identical across --jobs: {same}; {quality}")


if __name__ == "__main__":
    main()
