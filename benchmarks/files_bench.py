"""File-tree scan throughput: exhunt's scan against the ``yara`` command-line scanner, same tree, same rules.

A KAPE-layout tree of web files (aspx, js, css, html of realistic sizes, plus a few shells) is
generated, then scanned by :func:`exhunt.files.scan_files` (hash every file, YARA-X content rules,
IOC lookups) and by ``yara -r`` with exhunt's own ``.yar`` files (externals defined empty). Both
run in the same process invocation, so the ratio does not depend on the machine. Usage::

    python benchmarks/files_bench.py [--files 20000] [--out DIR] [--threads 1]

``yara`` is the Debian/Ubuntu package of the same name; without it only exhunt is measured.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from exhunt.files import scan_files, shipped_rules
from exhunt.files.rules import EXTERNALS, RULES_DIR
from exhunt.layouts import discover

EX = Path("C", "Program Files", "Microsoft", "Exchange Server", "V15")
FOLDERS = (
    EX / "FrontEnd" / "HttpProxy" / "owa" / "auth",
    EX / "FrontEnd" / "HttpProxy" / "ecp",
    EX / "ClientAccess" / "owa" / "prem" / "15.1.2176.2" / "scripts",
    EX / "ClientAccess" / "owa" / "prem" / "15.1.2176.2" / "resources" / "styles",
    EX / "ClientAccess" / "ecp" / "DDI",
    EX / "ClientAccess" / "ecp" / "UsersGroups",
    Path("C", "inetpub", "wwwroot"),
    Path("C", "inetpub", "wwwroot", "aspnet_client", "system_web", "4_0_30319"),
)
SCRIPT_FOLDERS = (FOLDERS[1], FOLDERS[4], FOLDERS[5], FOLDERS[6])
#: extension -> (share of files, typical size range in bytes)
KINDS = {".js": (0.62, (2_000, 180_000)), ".css": (0.12, (800, 60_000)), ".aspx": (0.16, (1_500, 30_000)),
         ".html": (0.10, (500, 12_000))}
SHELLS = {
    "k1.aspx": '<script language="JScript" runat="server">function Page_Load(){eval(Request["k"],"unsafe");}</script>',
    "k2.aspx": '<%@ Page Language="Jscript" Debug=true%><%var c=Request.Form("c");eval(c);%>',
    "k3.ps1": "function powercat\n{\n  param($c)\n  $CommandToExecute = $c\n}\n",
}
WORDS = ("var", "function", "return", "this", "document", "window", "Microsoft", "Exchange", "Owa", "ctl00",
         "div", "span", "class", "style", "color", "margin", "padding", "width", "height", "Request", "Page")


def text(kind: str, size: int, rng: random.Random) -> bytes:
    if kind == ".aspx":
        head = '<%@ Page Language="C#" AutoEventWireup="true" Inherits="Microsoft.Exchange.Page" %>\n<html><body>\n'
    elif kind == ".html":
        head = "<!DOCTYPE html>\n<html><head><title>page</title></head><body>\n"
    elif kind == ".css":
        head = ".owa { margin: 0; }\n"
    else:
        head = "/* Copyright (c) Microsoft Corporation. */\n"
    parts = [head]
    length = len(head)
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + ";\n"
        parts.append(line)
        length += len(line)
    return "".join(parts).encode()[:size]


def generate(root: Path, count: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[kind][0] for kind in kinds]
    total = 0
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        low, high = KINDS[kind][1]
        size = int(min(high, max(low, rng.lognormvariate(8.6, 1.0))))
        # server pages only where Exchange and IIS keep them (not in the drop locations the IOC table flags)
        folders = SCRIPT_FOLDERS if kind == ".aspx" else FOLDERS
        folder = root / rng.choice(folders) / f"d{index % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = text(kind, size, rng)
        (folder / f"f{index:05d}{kind}").write_bytes(data)
        total += len(data)
    for name, body in SHELLS.items():
        target = root / "C" / "inetpub" / "wwwroot" / "aspnet_client" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        total += len(body)
    return total


def run_exhunt(root: Path) -> tuple[float, int, int, int]:
    shipped_rules()  # compile outside the timing, as a scan of many hosts would
    start = time.perf_counter()
    collections, _ = discover([root])
    result = scan_files(collections[0])
    elapsed = time.perf_counter() - start
    by_rule = Counter(finding.rule.id for finding in result.findings)
    print("  exhunt findings by rule:", dict(sorted(by_rule.items())))
    return elapsed, result.files_examined, result.bytes_read, len({f.source for f in result.findings})


def run_yara(root: Path, threads: int) -> tuple[float, int] | None:
    binary = shutil.which("yara")
    if binary is None:
        return None
    rules = sorted(str(path) for path in RULES_DIR.glob("*.yar"))
    defines = [arg for name in EXTERNALS for arg in ("-d", f"{name}=")]
    command = [binary, "-r", "-p", str(threads), *defines, *rules, str(root)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"yara failed: {done.stderr.strip()}")
    flagged = {line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    return elapsed, len(flagged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="where to generate the tree (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="yara -p (exhunt scans on one thread)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        root = Path(scratch) / "HOST"
        size = generate(root, args.files)
        files = args.files + len(SHELLS)
        print(f"tree: {files} files, {size / 1e6:.1f} MB (KAPE layout, {len(SHELLS)} shells)")
        # warm the page cache so that neither side pays for the first read
        run_exhunt(root)
        seconds, examined, read, flagged = run_exhunt(root)
        print(f"exhunt scan_files: {examined} files, {read / 1e6:.1f} MB in {seconds:.2f} s = "
              f"{examined / seconds:,.0f} files/s, {read / 1e6 / seconds:.1f} MB/s; {flagged} files flagged")
        measured = run_yara(root, args.threads)
        if measured is None:
            print("yara command-line scanner not installed (apt-get install yara): no comparison")
            return
        yara_seconds, yara_flagged = measured
        print(f"yara -r -p {args.threads}: {files} files, {size / 1e6:.1f} MB in {yara_seconds:.2f} s = "
              f"{files / yara_seconds:,.0f} files/s, {size / 1e6 / yara_seconds:.1f} MB/s; "
              f"{yara_flagged} files flagged")
        print(f"ratio exhunt/yara (time): {seconds / yara_seconds:.2f}x")


if __name__ == "__main__":
    main()
