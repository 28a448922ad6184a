"""Command line: parses arguments, calls the library, prints and writes results.

Exit codes: 0 the scan ran; 1 usage or fatal error; 2 ``--strict`` stopped at a problem in
the evidence; 3 ``--fail-on`` found findings at or above the given level.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from exhunt import __version__
from exhunt.analysis.scope import scope_of
from exhunt.analysis.timeline import timeline
from exhunt.case import Case
from exhunt.engine.rules import load_rules
from exhunt.files import build_baseline, collect
from exhunt.layouts import discover
from exhunt.model import Level, ScanResult
from exhunt.outputs.common import json_line
from exhunt.outputs.contract import write_json, write_output_dir
from exhunt.scan import Progress, StrictStop, rule_infos, scan

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_ERROR, EXIT_STRICT, EXIT_FINDINGS = 0, 1, 2, 3
LEVELS = [str(level) for level in Level]


def _console(stderr: bool) -> Console:
    """A console that only colours a real terminal and honours NO_COLOR (rich is imported only to print)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    colour = stream.isatty() and not os.environ.get("NO_COLOR")
    return Console(file=stream, no_color=not colour, highlight=False,
                   force_terminal=None if colour else False, width=None if colour else 160)


def _utc(value: str | None, name: str) -> datetime | None:
    """Parse ``--from``/``--to``: ISO-8601 date or date-time; without an offset it is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date or time: {value!r}", param_hint=name) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="exhunt")
def cli() -> None:
    """Find ProxyLogon-era exploitation in evidence collected from Exchange servers."""


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--json", "json_out", metavar="FILE", help="Write the JSON result document (- for stdout).")
@click.option("-o", "--output", metavar="DIR",
              help="Write the report files (JSON, JSONL, CSV, Timesketch, ECS, STIX) into DIR.")
@click.option("--host", help="Host name to use (only with a single collection).")
@click.option("--from", "since", metavar="UTC", help="Only report activity at or after this time.")
@click.option("--to", "until", metavar="UTC", help="Only report activity at or before this time.")
@click.option("--rules", "rule_dirs", multiple=True, metavar="DIR",
              help="Also load Sigma rules from DIR (repeatable).")
@click.option("--fail-on", type=click.Choice(LEVELS), help="Exit 3 if a finding at or above LEVEL exists.")
@click.option("--strict", is_flag=True, help="Stop (exit 2) at the first unreadable or malformed evidence.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Processes reading files (and parts of large files) in parallel: this one and N-1 workers.")
@click.option("--no-prefilter", is_flag=True,
              help="Parse every line, not only lines holding a rule literal; flatten every event, not only those "
                   "a rule reads.")
@click.option("--no-pivot", is_flag=True,
              help="Skip the second pass that searches every host's web logs for the attacker's values.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Known-good hashes (from `exhunt baseline`): report only deviations in Exchange web folders.")
@click.option("--case", "case_file", metavar="FILE",
              help="Keep everything in a SQLite case file; rerun with the same arguments to resume.")
@click.option("--collect", "collect_dir", metavar="DIR",
              help="Copy flagged files into DIR/NNN-<host>-collected.zip with a hash manifest (never executed).")
@click.option("--no-cache", is_flag=True,
              help="Keep no parsed rules in the user's cache folder (write nothing but the outputs asked for).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="-v lists findings; -vv also logs debug messages.")
def scan_command(paths: tuple[str, ...], json_out: str | None, output: str | None, host: str | None,
                 since: str | None, until: str | None, rule_dirs: tuple[str, ...], fail_on: str | None,
                 strict: bool, jobs: int, no_prefilter: bool, no_pivot: bool, baseline: str | None,
                 case_file: str | None, collect_dir: str | None, no_cache: bool, quiet: bool, verbose: int) -> None:
    """Scan evidence PATHS: files, folders or zips (live roots, KAPE, Velociraptor, CyLR)."""
    if no_cache:
        os.environ["EXHUNT_CACHE_DIR"] = ""  # read by exhunt.cache, in this process and its workers
    if verbose > 1:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    window = (_utc(since, "--from"), _utc(until, "--to"))
    command = shlex.join(["exhunt", *sys.argv[1:]])
    with _progress_bar(shown=not quiet) as progress:
        try:
            result = scan(paths, host=host, since=window[0], until=window[1], rule_dirs=rule_dirs,
                          strict=strict, prefilter=not no_prefilter, pivot=not no_pivot, jobs=jobs, baseline=baseline,
                          case=case_file, command=command, progress=progress)
        except ValueError as problem:  # contradictory arguments, or another scan's case file
            raise click.UsageError(str(problem)) from None
        except StrictStop as stop:
            click.echo(f"exhunt: --strict: {stop}", err=True)
            raise SystemExit(EXIT_STRICT) from None
    scope = scope_of(result) if output or json_out or not quiet else None  # built once, only when shown
    written = []
    if output:
        written.extend(write_output_dir(result, output, command, scope))
    if collect_dir:
        written.extend(_collect(result, paths, Path(collect_dir)))
    if json_out:
        write_json(result, json_out, command, scope)
        if json_out != "-":
            written.append(Path(json_out))
    if not quiet:
        from exhunt.outputs import console as console_out

        console_out.render(result, _console(stderr=json_out == "-"), verbose, written, scope)
    if fail_on and any(f.rule.level >= Level.parse(fail_on) for f in result.findings):
        raise SystemExit(EXIT_FINDINGS)


@contextmanager
def _progress_bar(shown: bool) -> Iterator[Progress | None]:
    """A progress callback drawing a bar on stderr when it is a terminal; ``None`` otherwise."""
    err = _console(stderr=True) if shown else None
    if err is None or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("scanning", total=None)

        def progress(path: str, index: int, total: int) -> None:
            bar.update(task, completed=index, total=total, description=f"scanning {Path(path).name[:40]}")

        yield progress


def _collect(result: ScanResult, paths: tuple[str, ...], folder: Path) -> list[Path]:
    """One zip of flagged files per host; its name is the host's, reduced to safe characters."""
    folder.mkdir(parents=True, exist_ok=True)
    collections, _ = discover(paths)
    written = []
    for index, (host, collection) in enumerate(zip(result.hosts, collections, strict=True), 1):
        flagged = [f for f in host.findings if f.source_kind == "file"]
        if flagged:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", host.host)[:64].strip(".") or "host"
            target = folder / f"{index:03d}-{safe}-collected.zip"
            collect(flagged, collection, target)
            written.append(target)
    return written


@cli.command("report")
@click.argument("case_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", metavar="DIR", help="Write every report file into DIR.")
@click.option("--json", "json_out", metavar="FILE", help="Write the JSON result document (- for stdout).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def report_command(case_file: str, output: str | None, json_out: str | None, quiet: bool) -> None:
    """Render the reports of a finished scan from its case file (the evidence is not needed)."""
    result, command = _load_case(case_file)
    scope = scope_of(result)
    written = write_output_dir(result, output, command, scope) if output else []
    if json_out:
        write_json(result, json_out, command, scope)
        if json_out != "-":
            written.append(Path(json_out))
    if not quiet:
        from exhunt.outputs import console as console_out

        console_out.render(result, _console(stderr=json_out == "-"), 0, written, scope)


def _load_case(case_file: str) -> tuple[ScanResult, str]:
    store = Case(case_file)
    try:
        return store.result(), store.command()
    except ValueError as problem:
        raise click.ClickException(str(problem)) from None
    finally:
        store.close()


@cli.command("timeline")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--case", "case_file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Read a finished scan's case file instead of scanning PATHS.")
@click.option("--from", "since", metavar="UTC", help="Only activity at or after this time.")
@click.option("--to", "until", metavar="UTC", help="Only activity at or before this time.")
@click.option("--level", "min_level", type=click.Choice(LEVELS), default="informational", show_default=True,
              help="Leave out findings below LEVEL.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores")
def timeline_command(paths: tuple[str, ...], case_file: str | None, since: str | None, until: str | None,
                     min_level: str, fmt: str, jobs: int) -> None:
    """Print every finding of every host in UTC time order, with its source and line."""
    if bool(paths) == bool(case_file):
        raise click.UsageError("give evidence PATHS or --case FILE (one of them)")
    window = (_utc(since, "--from"), _utc(until, "--to"))
    result = _load_case(case_file)[0] if case_file else scan(paths, since=window[0], until=window[1], jobs=jobs)
    level = Level.parse(min_level)
    rows = [row for row in timeline(result) if Level.parse(row.level) >= level
            and (window[0] is None or (row.time is not None and row.time >= window[0]))
            and (window[1] is None or (row.time is not None and row.time <= window[1]))]
    if fmt == "jsonl":
        for row in rows:
            click.echo(json_line(row.to_dict()))
        return
    from exhunt.outputs import console as console_out

    out = _console(stderr=False)
    out.print(console_out.timeline_table(rows))
    out.print(f"{len(rows)} row(s), {len(result.hosts)} host(s), {len(result.diagnostics)} diagnostic(s)"
              " (the JSON output lists each one)", highlight=False)


@cli.command("baseline")
@click.argument("root", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="CSV of SHA256,build,path for the Exchange web folders.")
@click.option("--build", default="local", show_default=True, help="Build label written into the baseline.")
def baseline_command(root: str, output: str, build: str) -> None:
    """Record the hashes of a known-good Exchange server's web folders (for `scan --baseline`)."""
    collections, problems = discover([root])
    known_good = build_baseline(collections, build=build)
    known_good.save(output)
    from rich.markup import escape

    out = _console(stderr=False)
    out.print(f"{len(known_good)} files recorded in {output}", highlight=False)
    for problem in (*problems, *known_good.unreadable):
        out.print(escape(f"{problem.code} {problem.source}: {problem.message}"), highlight=False)


@cli.command("rules")
@click.option("--rules", "rule_dirs", multiple=True, metavar="DIR", help="Also load Sigma rules from DIR.")
def rules_command(rule_dirs: tuple[str, ...]) -> None:
    """List the detection rules, and any that could not be loaded."""
    from rich.markup import escape
    from rich.table import Table

    from exhunt.engine.literals import ENCODED

    ruleset = load_rules(rule_dirs)
    out = _console(stderr=False)
    table = Table(title=f"exhunt {__version__}: rules")
    for column in ("Rule", "Level", "Stage", "CVEs", "Title"):
        table.add_column(column)
    by_id = {rule.info.id: rule for rule in ruleset.rules}
    table.add_column("Prefilter")
    for info in rule_infos(ruleset):
        rule = by_id.get(info.id)
        if rule is None:
            prefilter = "-"  # file rules and correlations: no text prefilter
        elif rule.channels is not None:
            prefilter = "channel, event ID"  # event logs: picked by these, never parsed in full for a rule
        else:
            shown = sorted("%-encoded" if literal == ENCODED else literal for literal in rule.literals or ())
            prefilter = ", ".join(shown)[:40] if shown else "full parse"
        table.add_row(info.id, str(info.level), info.stage.value, ", ".join(info.cves), info.title, prefilter)
    out.print(table)
    for problem in ruleset.diagnostics:
        out.print(escape(f"{problem.code} {problem.source}: {problem.message}"), highlight=False)


@cli.command("demo")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--seed", default=2021, show_default=True, help="Seed of the generator.")
def demo_command(out_dir: Path, seed: int) -> None:
    """Write sample evidence collections (one host per supported layout) into OUT_DIR."""
    from exhunt.demo import HOSTS, generate

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = generate(out_dir, seed=seed)
    out = _console(stderr=False)
    for host, path in zip(HOSTS, paths, strict=True):
        out.print(f"{path}  {host.layout:<13} expected stage: {host.expected_stage}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``exhunt`` console script; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="exhunt", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as problem:
        problem.show()
        return EXIT_ERROR
    except click.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_ERROR
    except SystemExit as done:
        return int(done.code or 0)
    except OSError as problem:
        click.echo(f"exhunt: {problem}", err=True)
        return EXIT_ERROR
    return EXIT_OK


def run() -> NoReturn:
    """The ``exhunt`` console script: :func:`main`, then exit without tearing the interpreter down (freeing
    a scan's modules and objects takes ~20 ms; by then every file is closed, the worker pool is shut down,
    and the output is flushed here)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the reader stopped reading (``| head``): nothing is lost that it wanted
    except (OSError, ValueError) as problem:  # a full disk: say so, as the interpreter would have
        with suppress(OSError, ValueError):
            sys.stderr.write(f"exhunt: the output could not be written: {problem}\n")
        code = code or EXIT_ERROR
    with suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
