"""Readers: header mapping, quoting, encodings and bad lines, on bytes shaped like real logs."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from exhunt.diagnostics import FileDiagnostics
from exhunt.readers import FileFacts
from exhunt.readers.lines import MAX_LINE, iter_lines
from exhunt.sources import ECP_FIELDS, HTTPPROXY_FIELDS, KINDS, classify_content, classify_path

HP_HEADER = "#Fields: " + ",".join(HTTPPROXY_FIELDS)
HP_DIRECTIVES = (
    "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.002\r\n#Log-type: HttpProxy Logs\r\n"
    "#Date: 2021-03-03T06:00:00.000Z\r\n"
)
IIS_HEADER = (
    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2021-03-03 00:00:01\r\n"
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r\n"
)


def hp_row(**values: str) -> str:
    """A full HttpProxy row, CSV-quoted like Exchange writes it."""
    defaults = {"DateTime": "2021-03-03T06:49:42.162Z", "MajorVersion": "15", "MinorVersion": "1",
                "BuildVersion": "2176", "RevisionVersion": "2", "ServerHostName": "EXCH01", "HttpStatus": "200"}
    defaults.update(values)
    cells = []
    for name in HTTPPROXY_FIELDS:
        cell = defaults.get(name, "")
        cells.append('"' + cell.replace('"', '""') + '"' if ("," in cell or '"' in cell) else cell)
    return ",".join(cells)


def read(kind: str, data: bytes) -> tuple[list, FileDiagnostics, FileFacts]:
    diags, facts = FileDiagnostics("C:\\test.log"), FileFacts()
    lines = iter_lines(io.BytesIO(data), diags)
    return list(KINDS[kind].reader(lines, diags, facts)), diags, facts


def read_w3c(data: bytes) -> tuple[list, FileDiagnostics, FileFacts]:
    return read("iis", data)


def test_httpproxy_fields_by_header_with_quoted_comma_and_build() -> None:
    data = (HP_DIRECTIVES + HP_HEADER + "\r\n"
            + hp_row(UrlStem="/mapi/emsmdb/", ClientRequestId="R:1,2;RT:Execute", UserAgent="Outlook") + "\r\n")
    records, diags, facts = read("httpproxy", data.encode())
    assert len(records) == 1
    record = records[0]
    assert record.fields["ClientRequestId"] == "R:1,2;RT:Execute"
    assert record.fields["UrlStem"] == "/mapi/emsmdb/"
    assert record.line == 6  # physical line, header lines counted
    assert record.time == datetime(2021, 3, 3, 6, 49, 42, 162000, tzinfo=UTC)
    assert facts.builds == {"15.1.2176.2": [record.time, record.time]}
    assert facts.servers["EXCH01"] == 1
    assert diags.total == 0


def test_httpproxy_bare_header_line_then_directives_and_bom() -> None:
    bare = ",".join(HTTPPROXY_FIELDS)
    data = "\ufeff" + bare + "\r\n" + HP_DIRECTIVES + HP_HEADER + "\r\n" + hp_row(UrlStem="/owa/") + "\r\n"
    records, diags, _ = read("httpproxy", data.encode("utf-8"))
    assert [r.fields["UrlStem"] for r in records] == ["/owa/"]
    assert diags.total == 0


def test_header_repeated_mid_file_with_different_columns() -> None:
    short_header = "#Fields: DateTime,RequestId,UrlStem,AnchorMailbox,HttpStatus"
    data = (HP_DIRECTIVES + HP_HEADER + "\r\n" + hp_row(UrlStem="/ews/exchange.asmx") + "\r\n"
            + HP_DIRECTIVES + short_header + "\r\n"
            + "2021-03-03T07:00:00.000Z,abc,/ecp/y.js,ServerInfo~a]@x:444/mapi/emsmdb/?#,200\r\n")
    records, diags, _ = read("httpproxy", data.encode())
    assert [r.fields["UrlStem"] for r in records] == ["/ews/exchange.asmx", "/ecp/y.js"]
    assert records[1].fields["AnchorMailbox"] == "ServerInfo~a]@x:444/mapi/emsmdb/?#"
    assert records[1].line == 12
    assert diags.total == 0


def test_powershell_export_csv_with_type_line() -> None:
    data = ('#TYPE Selected.System.Management.Automation.PSCustomObject\n'
            '"DateTime","ClientIpAddress","UrlStem","AnchorMailbox","HttpStatus"\n'
            '"2021-03-03T06:49:46.210Z","130.255.189.21","/ecp/y.js","ServerInfo~a]@s:444/ecp/proxyLogon.ecp?#","241"\n')
    records, diags, _ = read("httpproxy", data.encode())
    assert records[0].fields["HttpStatus"] == "241"
    assert records[0].fields["ClientIpAddress"] == "130.255.189.21"
    assert diags.total == 0


def test_malformed_lines_are_counted_not_fatal() -> None:
    good = hp_row(UrlStem="/owa/")
    too_many = good + ",extra,cells"
    data = HP_DIRECTIVES + HP_HEADER + "\r\n" + good + "\r\n" + too_many + "\r\n" + "garbage\r\n" + good
    records, diags, facts = read("httpproxy", data.encode())
    assert len(records) == 4
    assert records[1].fields == {} and records[1].raw == too_many  # kept as raw text for keyword rules
    assert diags.counts["EXH-R002"] == 2  # too many cells, and 'garbage' (too few)
    assert diags.counts["EXH-R006"] == 1  # file ends without a line terminator
    assert facts.records == 4


def test_invalid_utf8_is_replaced_with_a_diagnostic() -> None:
    row = hp_row(UserAgent="x").encode().replace(b",x,", b",\xff\xfe,")
    data = (HP_DIRECTIVES + HP_HEADER + "\r\n").encode() + row + b"\r\n"
    records, diags, _ = read("httpproxy", data)
    assert records[0].fields["UserAgent"] == "\ufffd\ufffd"
    assert diags.counts["EXH-R003"] == 1


def test_utf16_file_is_decoded() -> None:
    text = ("#Fields: TimeStamp,ServerName,EventId,EventData\r\n"
            "2021-03-03T06:49:51.389Z,EX,ECP.Request,S:CMD=Get-Mailbox\r\n")
    records, diags, _ = read("ecp-server", text.encode("utf-16"))
    assert records[0].fields["EventData"] == "S:CMD=Get-Mailbox"
    assert diags.counts["EXH-R009"] == 1


def test_overlong_line_is_cut_and_reading_continues() -> None:
    header = (HP_DIRECTIVES + HP_HEADER + "\r\n").encode()
    data = header + b"A" * (MAX_LINE + 10) + b"\r\n" + hp_row().encode() + b"\r\n"
    records, diags, _ = read("httpproxy", data)
    assert diags.counts["EXH-R007"] == 1
    assert records[-1].fields["ServerHostName"] == "EXCH01"


def test_ecp_build_and_missing_header_assumes_default() -> None:
    data = b"2021-03-03T06:49:51.389Z,EXCH01,ECP.Request,S:CMD=Get-Mailbox;S:BLD=15.1.2176.2;S:ACTID=1\r\n"
    records, diags, facts = read("ecp-server", data)
    assert tuple(records[0].fields) == ECP_FIELDS
    assert diags.counts["EXH-R004"] == 1
    assert "15.1.2176.2" in facts.builds


def test_bad_timestamp_is_a_diagnostic() -> None:
    data = HP_DIRECTIVES + HP_HEADER + "\r\n" + hp_row(DateTime="03/03/2021 06:49") + "\r\n"
    records, diags, _ = read("httpproxy", data.encode())
    assert records[0].time is None
    assert diags.counts["EXH-R005"] == 1


def test_iis_plus_decoding_aliases_and_mid_file_fields_change() -> None:
    data = (IIS_HEADER
            + "2021-03-03 06:50:01 10.0.0.5 POST /ecp/y.js &CorrelationID=<empty>;&cafeReqId=a; 443 - 203.0.113.45 "
              "python-requests/2.25.1 - 200 0 0 31\r\n"
            + "#Fields: date time cs-method cs-uri-stem cs(User-Agent) sc-status\r\n"
            + "2021-03-03 06:51:00 GET /owa/ Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) 200\r\n")
    records, diags, facts = read_w3c(data.encode())
    assert records[0].fields["cs-uri"] == "/ecp/y.js?&CorrelationID=<empty>;&cafeReqId=a;"
    assert records[0].fields["cs-username"] == ""
    assert records[1].fields["cs-user-agent"] == "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    assert records[1].time == datetime(2021, 3, 3, 6, 51, tzinfo=UTC)
    assert diags.total == 0
    assert (facts.first, facts.last) == (datetime(2021, 3, 3, 6, 50, 1, tzinfo=UTC), records[1].time)



def test_iis_line_fields_are_worked_out_when_asked_as_the_reader_takes_them() -> None:
    from exhunt.readers.w3c import LineFields, line_values

    fields = ("date", "cs-uri-stem", "cs-uri-query", "cs(User-Agent)", "cs-user-agent", "date")
    line = LineFields(fields, ["2021-03-03", "/autodiscover/autodiscover.json", "@x.com/%3F&Email=a%40b",
                               "python+requests", "-", "2021-03-04"])
    assert line.get("cs-uri-decoded") == "/autodiscover/autodiscover.json?@x.com/?&Email=a@b"
    assert line.get("cs-user-agent") == line["cs(User-Agent)"] == "python requests"  # the alias follows it
    assert line.get("date") == "2021-03-04" and line.get("cs-referer") is None and "s-ip" not in line
    assert list(dict(line)) == ["date", "cs-uri-stem", "cs-uri-query", "cs(User-Agent)", "cs-user-agent",
                                "cs-uri", "cs-uri-decoded"]
    assert line_values(fields, "too few tokens") is None

def test_iis_without_header_assumes_exchange_fields_and_skips_separators() -> None:
    data = (b"2021-03-05 03:06:27 xxx GET /owa/auth/RedirSuiteServerProxy.aspx &CorrelationID=<empty>; 443 - "
            b"139.162.202.236 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 133\n-----\n")
    records, diags, _ = read_w3c(data)
    assert records[0].fields["c-ip"] == "139.162.202.236"
    assert records[1].fields == {}
    assert diags.counts["EXH-R004"] == 1 and diags.counts["EXH-R002"] == 1


def test_iis_date_from_directive_when_no_date_field() -> None:
    data = (b"#Date: 2013-07-30 00:00:00\n#Fields: time c-ip cs-method cs-uri-stem sc-status\n"
            b"00:00:03 10.1.1.1 GET /a 200\n")
    records, _, _ = read_w3c(data)
    assert records[0].time == datetime(2013, 7, 30, 0, 0, 3, tzinfo=UTC)


def test_textlog_leading_time_and_message() -> None:
    data = b"2021-03-03T06:50:11.904Z,Download failed and temporary file 'x' needs to be removed.\r\n\r\n"
    records, _, _ = read("oabgenerator", data)
    assert len(records) == 1
    assert records[0].time == datetime(2021, 3, 3, 6, 50, 11, 904000, tzinfo=UTC)
    assert records[0].fields["Message"].startswith("2021-03-03T06:50:11.904Z,Download failed")


def test_classification_by_path_anywhere_and_by_content() -> None:
    assert classify_path("D:\\Exchange\\Logging\\HttpProxy\\Owa\\HttpProxy_2021030300-1.LOG") == "httpproxy"
    ecp = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging\\ECP\\Server\\ECPServer20210303-1.LOG"
    assert classify_path(ecp) == "ecp-server"
    assert classify_path("C:\\inetpub\\logs\\LogFiles\\W3SVC2\\u_ex210303.log") == "iis"
    assert classify_path("C:\\Windows\\System32\\winevt\\Logs\\Application.evtx") == "evtx"
    assert classify_path("C:\\Windows\\notepad.exe") is None
    assert classify_content(HP_DIRECTIVES.encode()) == "httpproxy"
    assert classify_content(IIS_HEADER.encode()) == "iis"
    assert classify_content(b'#TYPE x\n"DateTime","UrlStem","AnchorMailbox"\n') == "httpproxy"
    assert classify_content(b"ElfFile\x00\x00") == "evtx"
    assert classify_content(b"# Markdown\nAnchorMailbox and UrlStem mentioned in prose\n") is None


def test_iis_decoded_uri_for_proxyshell_forms() -> None:
    data = (IIS_HEADER
            + "2021-08-13 09:13:18 10.0.0.5 POST /autodiscover/autodiscover.json "
              "@evil.corp/powershell/?&Email=autodiscover/autodiscover.json%3F@evil.corp&X-Rps-CAT=VgEA+x/y= 443 - "
              "203.0.113.45 Python+PSRP+Client - 200 0 0 55\r\n"
            + "2022-11-15 08:21:04 10.0.0.5 POST /owa/mastermailbox%40outlook.com/powershell - 443 - 203.0.113.45 "
              "- - 200 0 0 12\r\n"
            + "2022-11-15 08:21:05 10.0.0.5 GET /owa/%zz%4/%E9t%C3%A9 a=%25+b 443 - 203.0.113.45 - - 404 0 0 1\r\n")
    records, diags, _ = read_w3c(data.encode())
    assert diags.total == 0
    first, second, third = (record.fields for record in records)
    # cs-uri is unchanged; the decoded form turns %3F into '?', keeps '+' (not a space in a URI)
    assert first["cs-uri"] == ("/autodiscover/autodiscover.json?@evil.corp/powershell/?&Email=autodiscover/"
                               "autodiscover.json%3F@evil.corp&X-Rps-CAT=VgEA+x/y=")
    assert first["cs-uri-decoded"] == ("/autodiscover/autodiscover.json?@evil.corp/powershell/?&Email=autodiscover/"
                                       "autodiscover.json?@evil.corp&X-Rps-CAT=VgEA+x/y=")
    assert first["cs-uri-query"].endswith("%3F@evil.corp&X-Rps-CAT=VgEA+x/y=")
    assert first["cs-user-agent"] == "Python PSRP Client"
    # no query: cs-uri is the stem; %40 decodes to '@'
    assert second["cs-uri"] == "/owa/mastermailbox%40outlook.com/powershell"
    assert second["cs-uri-decoded"] == "/owa/mastermailbox@outlook.com/powershell"
    assert second["cs-uri-stem"] == "/owa/mastermailbox%40outlook.com/powershell"
    # invalid escapes stay as they are, a lone Latin-1 byte is replaced, decoding happens once (%25 -> %)
    assert third["cs-uri-decoded"] == "/owa/%zz%4/\ufffdté?a=%+b"


def test_iis_line_that_does_not_fit_has_no_decoded_uri() -> None:
    data = IIS_HEADER + "2021-03-03 06:50:01 only four tokens\r\n"
    records, _, _ = read_w3c(data.encode())
    assert records[0].fields == {}
