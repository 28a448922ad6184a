"""The EVTX reader over real event logs (../shared/samples/evtx, read in place)."""

from __future__ import annotations

import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exhunt import sources
from exhunt.diagnostics import FileDiagnostics
from exhunt.engine.taxonomy import windows_channels
from exhunt.readers import FileFacts, evtx
from exhunt.scan import scan


def read(path: Path) -> tuple[list, FileDiagnostics, FileFacts]:
    diags, facts = FileDiagnostics(path.name), FileFacts()
    with path.open("rb") as stream:
        return list(evtx.read(stream, diags, facts)), diags, facts


def test_msexchange_management_rebuild(samples: Path) -> None:
    records, diags, _ = read(samples / "evtx/malicious/omerbenamram__MSExchange_Management_wec.evtx")
    (record,) = records
    fields = record.fields
    assert (fields["Channel"], fields["EventID"], fields["Provider_Name"]) == (
        "MSExchange Management", "1", "MSExchange CmdletLogs")
    assert fields["CmdletName"] == "Set-Mailbox"
    assert fields["Message"] == ('Cmdlet suceeded. Cmdlet Set-Mailbox, parameters -Identity "Administrateur" '
                                 '-DeliverToMailboxAndForward "False" -ForwardingSmtpAddress "smtp:test2@example.com"')
    assert fields["Data[6]"] == "5668 w3wp#MSExchangePowerShellAppPool"
    assert record.raw.startswith("Cmdlet suceeded. Cmdlet Set-Mailbox")
    # SystemTime has nine fractional digits; the header time is not used
    assert record.time == datetime(2021, 11, 19, 16, 52, 33, 833733, tzinfo=UTC)
    assert diags.total == 0


def test_failed_cmdlets_and_named_sysmon_fields(samples: Path) -> None:
    name = "mdecrevoisier__ID6-Failed_to_install_an_Exchange_transport_agent.evtx"
    records, _, facts = read(samples / "evtx/malicious" / name)
    assert [r.fields["CmdletName"] for r in records].count("Install-TransportAgent") >= 1
    assert all(r.fields["Message"].startswith("Cmdlet failed. Cmdlet ") for r in records)
    assert facts.servers == {"exchange01": 4}
    records, _, _ = read(samples / "evtx/malicious/sbousseaden__LM_typical_IIS_webshell_sysmon_1_10_traces.evtx")
    first = records[0].fields
    assert first["Image"] == "C:\\Windows\\System32\\cmd.exe"
    assert first["ParentImage"] == "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    assert first["Provider_Name"] == "Microsoft-Windows-Sysmon" and first["EventID"] == "1"


def test_security_4688_gets_process_creation_names(samples: Path) -> None:
    name = "mdecrevoisier__ID4688-4663-4656-LSASS_dump_with_LSASSY_process_comsvcs.evtx"
    records, _, _ = read(samples / "evtx/malicious" / name)
    created = [r.fields for r in records if r.fields["EventID"] == "4688"]
    assert created and all(f["Image"] == f["NewProcessName"] for f in created)
    assert any("comsvcs.dll MiniDump" in f["CommandLine"] for f in created)


@pytest.mark.parametrize(("name", "readable", "bad_chunks"), [
    ("parser_edge/omerbenamram__sample_with_a_bad_chunk_magic.evtx", 270, 2),
    ("benign/omerbenamram__sysmon.evtx", 358, 8),
])
def test_corrupt_chunks_are_diagnostics_with_offsets(samples: Path, name: str, readable: int, bad_chunks: int) -> None:
    records, diags, _ = read(samples / "evtx" / name)
    assert len(records) == readable
    chunk_errors = [d for d in diags.finish() if d.code == "EXH-R010"]
    assert len(chunk_errors) == bad_chunks
    assert all(d.offset is not None and (d.offset - evtx.FILE_HEADER) % evtx.CHUNK == 0 for d in chunk_errors)


def test_scan_counts_event_logs_in_coverage(samples: Path) -> None:
    result = scan([str(samples / "evtx" / "benign" / "omerbenamram__system.evtx")])
    (host,) = result.hosts
    rows = {c.kind: c for c in host.coverage}
    assert (rows["evtx"].records, rows["evtx"].files) == (1881, 1)
    assert sum(c.records for kind, c in rows.items() if kind.startswith("evtx:")) == 1881
    assert rows["evtx:System"].records > 1800  # one row per channel
    assert rows["evtx"].first is not None and rows["evtx"].first.year == 2017
    assert Counter(d.code for d in result.diagnostics) == Counter()


def test_windows_taxonomy() -> None:
    assert windows_channels("msexchange-management", None) == {"MSExchange Management": None}
    assert windows_channels(None, "process_creation") == {
        "Microsoft-Windows-Sysmon/Operational": frozenset({1}), "Security": frozenset({4688})}
    assert windows_channels("sysmon", "process_creation") == {"Microsoft-Windows-Sysmon/Operational": frozenset({1})}
    assert windows_channels(None, "no_such_category") is None
    assert windows_channels("no-such-service", None) is None


def test_event_logs_inside_velociraptor_and_kape_collections(samples: Path, tmp_path: Path) -> None:
    source = samples / "evtx" / "malicious" / "omerbenamram__MSExchange_Management_wec.evtx"
    archive = tmp_path / "VR1.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("client_info.json", '{"Hostname": "VR1"}')
        out.writestr("uploads.json", "[]")
        logs = "uploads/auto/C%3A/Windows/System32/winevt/Logs/"
        out.write(source, logs + "MSExchange Management.evtx")
        out.write(source, logs + "Microsoft-Windows-PowerShell%254Operational.evtx")
    kape = tmp_path / "KAPE1" / "C" / "Windows" / "System32" / "winevt" / "Logs"
    kape.mkdir(parents=True)
    (kape / "MSExchange Management.evtx").write_bytes(source.read_bytes())
    result = scan([str(archive), str(tmp_path / "KAPE1")])
    assert [h.host for h in result.hosts] == ["VR1", "WEC"]  # metadata, then the events' Computer
    assert [next(c.records for c in h.coverage if c.kind == "evtx") for h in result.hosts] == [2, 1]
    sources = {f.source for f in result.findings} | {d.source for d in result.diagnostics if d.source}
    assert not any("%25" in s for s in sources)
    assert not [d for d in result.diagnostics if d.level == "error"]


def test_a_failing_reader_is_a_diagnostic_not_a_crash(samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(stream, diags, facts):
        raise TypeError("simulated reader bug")
        yield


    monkeypatch.setitem(sources.KINDS, "evtx", sources.SourceKind("evtx", "event logs", broken))
    result = scan([str(samples / "evtx" / "benign" / "omerbenamram__system.evtx")])
    assert [d.code for d in result.diagnostics] == ["EXH-R001"]
    assert "simulated reader bug" in result.diagnostics[0].message


def test_strict_mode_stops_at_the_first_problem(samples: Path) -> None:
    from exhunt.cli import main

    bad = str(samples / "evtx" / "parser_edge")
    assert main(["scan", bad, "-q"]) == 0  # lenient: diagnostics, and the scan goes on
    assert main(["scan", bad, "-q", "--strict"]) == 2


def test_rules_picked_by_channel_and_event_id_include_every_matching_rule(samples: Path) -> None:
    from exhunt.engine.rules import shipped_rules

    rules = shipped_rules()
    select, every = rules.selector("evtx"), rules.for_kind("evtx")
    matched = 0
    for path in sorted(samples.rglob("*.evtx")):
        with path.open("rb") as stream:
            for record in evtx.read(stream, FileDiagnostics(path.name), FileFacts()):
                picked = select.pick(record, None)
                assert {r.name for r in every if r.match(record)} <= {r.name for r in picked}
                assert len(picked) < len(every)
                matched += any(r.match(record) for r in picked)
    assert matched > 10
