"""Byte-exact renderers for the text logs of the demo collections.

One function renders each log type: :func:`httpproxy_log`, :func:`iis_log`,
:func:`ecp_server_log`, :func:`oab_generator_log`, :func:`httperr_log`, :func:`rps_http_log`
and :func:`event_log` (EVTX, through :func:`~exhunt.demo.evtx.write_evtx`). Headers and
quoting follow ``detections.md`` §1.1-§1.7; every text file uses CRLF line endings like the
real logs.

ECP server log caveat: ``EventData`` is the last column and is never CSV double-quoted.
As in the HelseCERT excerpt, an ``S:KEY=value`` item holding a quote or comma is wrapped
in single quotes with inner ``'`` and ``"`` doubled, so a reader must take ``EventData``
as the rest of the line after the third comma.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from exhunt.analysis.exposure import Build
from exhunt.demo.evtx import Event, write_evtx
from exhunt.readers.w3c import EXCHANGE_DEFAULT_FIELDS
from exhunt.sources import HTTPPROXY_FIELDS, RPS_HTTP_FIELDS

CRLF = "\r\n"

IIS_FIELDS = " ".join(EXCHANGE_DEFAULT_FIELDS)
HTTPERR_FIELDS = (
    "date time c-ip c-port s-ip s-port cs-version cs-method cs-uri streamid sc-status s-siteid s-reason s-queuename"
)


def encoded(build: Build) -> int:
    """The integer form Exchange writes as ``FEAuth=BEVersion-<n>`` in HttpProxy ``GenericInfo``."""
    return 0x70000000 | build.major << 22 | build.minor << 16 | 0x8000 | build.build


@dataclass(frozen=True, slots=True)
class Server:
    """The Exchange server that writes the logs."""

    name: str
    ip: str
    build: Build
    exchange_dir: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.contoso.local"


@dataclass(frozen=True, slots=True)
class BackEnd:
    """The request the front end made to the "Exchange Back End" site (port 444)."""

    stem: str
    query: str
    user: str
    status: int


@dataclass(frozen=True, slots=True)
class Request:
    """One client request to the Exchange front end.

    ``time`` is when the response completed; ``user_agent`` is as the client sent it (commas
    intact). ``protocol`` names the HttpProxy folder, ``None`` when IIS served the URL itself.
    An empty ``target_server`` means the front end answered without proxying.
    """

    time: datetime
    request_id: str
    latency_ms: int
    client_ip: str
    method: str
    stem: str
    query: str
    user_agent: str
    status: int
    protocol: str | None
    url_host: str = "mail.contoso.com"
    auth_type: str = ""
    user: str = ""
    anchor: str = ""
    routing_hint: str = ""
    backend_cookie: str = ""
    target_server: str = ""
    client_request_id: str = ""
    referer: str = ""
    backend: BackEnd | None = None


@dataclass(frozen=True, slots=True)
class EcpEvent:
    """One ``ECP.Request`` row of the ECP server log; ``cmd`` is the cmdlet text with single-quoted values."""

    time: datetime
    elapsed_ms: int
    session: str
    user_sid: str
    activity: str
    cmd: str
    url: str
    exception: str = ""


@dataclass(frozen=True, slots=True)
class HttpErr:
    """One row of the HTTP.sys error log."""

    time: datetime
    client_ip: str
    client_port: int
    server_ip: str
    reason: str


@dataclass(frozen=True, slots=True)
class RpsRequest:
    """One request to the back end's remote PowerShell (``/Powershell``), as the Rps_Http log has it.

    ``client_ip`` is the chain of hops, origin first, separated by spaces (CrowdStrike's
    Rps_Http-IOC.ps1 prints it as ``a -> b``); ``client_info`` is the client's user agent.
    """

    time: datetime
    request_id: str
    latency_ms: int
    client_ip: str
    user: str
    client_info: str
    status: int
    query: str
    request_bytes: int
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class WinEvent:
    """One event-log record before its record number is known; ``data`` are (name, value) pairs."""

    channel: str
    provider: str
    event_id: int
    time: datetime
    data: tuple[tuple[str | None, str], ...]
    level: int = 4
    qualifiers: int | None = None
    provider_guid: str | None = None


def iso_ms(moment: datetime) -> str:
    """``2021-03-03T06:49:42.162Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _w3c_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _lines(lines: Iterable[str], *, bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + "".join(line + CRLF for line in lines)).encode("utf-8")


def _csv_line(values: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def _exchange_header(version: str, log_type: str, created: datetime, fields: str) -> list[str]:
    return [
        "#Software: Microsoft Exchange Server",
        f"#Version: {version}",
        f"#Log-type: {log_type}",
        f"#Date: {iso_ms(created)}",
        f"#Fields: {fields}",
    ]


def _httpproxy_values(req: Request, server: Server) -> dict[str, str]:
    begin = req.time - timedelta(milliseconds=req.latency_ms)
    proxied = bool(req.target_server)
    build = server.build
    info = f"BeginRequest={iso_ms(begin)};CorrelationID=<empty>;"
    if proxied:
        info += (
            f"ProxyState-Run=None;FEAuth=BEVersion-{encoded(build)};"
            "ProxyState-Complete=ProxyResponseData;SharedCacheGuard=0;"
        )
    elif req.status == 302:
        info += f"SharedCacheGuard=0;NoCookies=302 - {req.method}/E14AuthPost;"
    info += f"EndRequest={iso_ms(req.time)};"
    values = {
        "DateTime": iso_ms(req.time),
        "RequestId": req.request_id,
        "MajorVersion": str(build.major),
        "MinorVersion": str(build.minor),
        "BuildVersion": str(build.build),
        "RevisionVersion": str(build.revision),
        "ClientRequestId": req.client_request_id,
        "Protocol": req.protocol or "",
        "UrlHost": req.url_host,
        "UrlStem": req.stem,
        "AuthenticationType": req.auth_type,
        "IsAuthenticated": "true" if req.user else "false",
        "AuthenticatedUser": req.user,
        "Organization": "contoso.local" if req.user else "",
        "AnchorMailbox": req.anchor,
        "UserAgent": req.user_agent.replace(",", " "),
        "ClientIpAddress": req.client_ip,
        "ServerHostName": server.name,
        "HttpStatus": str(req.status),
        "Method": req.method,
        "RoutingHint": req.routing_hint,
        "BackEndCookie": req.backend_cookie,
        "HttpPipelineLatency": "0",
        "ActivityContextLifeTime": str(req.latency_ms),
        "TotalRequestTime": str(req.latency_ms),
        "UrlQuery": f"?{req.query}" if req.query else "",
        "GenericInfo": info,
    }
    if proxied:
        values |= {
            "BackEndStatus": str(req.backend.status) if req.backend else "",
            "ProxyAction": "Proxy",
            "TargetServer": req.target_server,
            "TargetServerVersion": replace(build, revision=0).long,
            "RoutingType": "IntraForest",
            "ProxyTime": str(max(req.latency_ms - 3, 0)),
            "RoutingStatus": "CafeV1",
        }
    return values


def httpproxy_log(requests: Sequence[Request], server: Server, *, bare_header: bool = False) -> bytes:
    """One ``HttpProxy_YYYYMMDDHH-N.LOG`` file; ``bare_header`` adds the plain column-name first line."""
    fields = ",".join(HTTPPROXY_FIELDS)
    lines = [fields] if bare_header else []
    lines += _exchange_header(server.build.long, "HttpProxy Logs", requests[0].time, fields)
    for req in requests:
        values = _httpproxy_values(req, server)
        lines.append(_csv_line([values.get(name, "") for name in HTTPPROXY_FIELDS]))
    return _lines(lines)


@dataclass(frozen=True, slots=True)
class IisEntry:
    """One W3C line; empty strings become ``-``."""

    time: datetime
    server_ip: str
    method: str
    stem: str
    query: str
    port: int
    user: str
    client_ip: str
    user_agent: str
    referer: str
    status: int
    latency_ms: int


def front_end_entry(req: Request, server: Server) -> IisEntry:
    """The "Default Web Site" (W3SVC1, port 443) line of a request, with Exchange's query suffix."""
    query = req.query
    if req.protocol is not None:
        query += f"&CorrelationID=<empty>;&cafeReqId={req.request_id};"
    iis_user = req.user if req.auth_type in ("Basic", "NTLM", "Negotiate") else ""
    return IisEntry(req.time, server.ip, req.method, req.stem, query, 443, iis_user, req.client_ip,
                    req.user_agent, req.referer, req.status, req.latency_ms)


def back_end_entry(req: Request, server: Server) -> IisEntry | None:
    """The "Exchange Back End" (W3SVC2, port 444) line a proxied request caused, if any."""
    if req.backend is None:
        return None
    hop = req.backend
    return IisEntry(req.time, server.ip, req.method, hop.stem, hop.query, 444, hop.user, server.ip,
                    req.user_agent, "", hop.status, max(req.latency_ms - 4, 1))


def _iis_row(entry: IisEntry) -> str:
    values = [
        _w3c_time(entry.time), entry.server_ip, entry.method, entry.stem, entry.query, str(entry.port),
        entry.user, entry.client_ip, entry.user_agent.replace(" ", "+"), entry.referer,
        str(entry.status), "0", "0", str(entry.latency_ms),
    ]
    return " ".join(value or "-" for value in values)


def _iis_header(created: datetime) -> list[str]:
    return [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        f"#Date: {_w3c_time(created)}",
        f"#Fields: {IIS_FIELDS}",
    ]


def iis_log(entries: Sequence[IisEntry], *, restart_before: int | None = None, bom: bool = False) -> bytes:
    """One ``u_exYYMMDD.log``; ``restart_before`` repeats the directive block before that entry (IIS restart)."""
    lines = _iis_header(entries[0].time)
    for index, entry in enumerate(entries):
        if index == restart_before:
            lines += _iis_header(entry.time - timedelta(seconds=7))
        lines.append(_iis_row(entry))
    return _lines(lines, bom=bom)


def _ecp_item(key: str, value: str) -> str:
    item = f"S:{key}={value}"
    if any(char in item for char in "'\",\r\n"):
        return "'" + item.replace("'", "''").replace('"', '""') + "'"
    return item


def ecp_server_log(events: Sequence[EcpEvent], server: Server) -> bytes:
    """One ``ECPServerYYYYMMDD-N.LOG``."""
    lines = _exchange_header("15.0.0.0", "ECP Server Log", events[0].time, "TimeStamp,ServerName,EventId,EventData")
    for event in events:
        items = [
            ("TIME", str(event.elapsed_ms)), ("SID", event.session), ("CMD", event.cmd),
            ("REQID", ""), ("URL", event.url), ("REFERRER", ""), ("EX", event.exception),
            ("ACTID", event.activity), ("RS", "0"), ("BLD", str(server.build)), ("TNAME", "<null>"),
            ("TID", ""), ("USID", event.user_sid), ("EDOID", ""), ("ACID", ""),
        ]
        data = ";".join(_ecp_item(key, value) for key, value in items)
        lines.append(f"{iso_ms(event.time)},{server.name},ECP.Request,{data}")
    return _lines(lines)


def oab_generator_log(lines: Sequence[tuple[datetime, str]]) -> bytes:
    """One ``OABGeneratorLog_YYYYMMDD-N.LOG`` as ``<ISO time>,<text>`` lines.

    The real layout of this log is unverified (detections.md §1.3); only the phrase
    ``Download failed and temporary file '<path>' needs to be removed.`` is known, so the
    plain ``time,text`` lines here are an assumption.
    """
    return _lines(f"{iso_ms(moment)},{text}" for moment, text in lines)


def httperr_log(rows: Sequence[HttpErr]) -> bytes:
    """One ``httperr<N>.log`` of HTTP.sys (connection-level errors, no URL)."""
    lines = [
        "#Software: Microsoft HTTP API 2.0",
        "#Version: 1.0",
        f"#Date: {_w3c_time(rows[0].time)}",
        f"#Fields: {HTTPERR_FIELDS}",
    ]
    lines += [
        f"{_w3c_time(r.time)} {r.client_ip} {r.client_port} {r.server_ip} 443 - - - - - - {r.reason} -" for r in rows
    ]
    return _lines(lines)


def _rps_http_values(req: RpsRequest, server: Server) -> dict[str, str]:
    build = server.build
    content = "application/soap+xml charset UTF-8" if req.method == "POST" else "text/html"
    return {
        "DateTime": iso_ms(req.time),
        "StartTime": iso_ms(req.time - timedelta(milliseconds=req.latency_ms)),
        "RequestId": req.request_id,
        "MajorVersion": str(build.major),
        "MinorVersion": str(build.minor),
        "BuildVersion": str(build.build),
        "RevisionVersion": str(build.revision),
        "UrlHost": server.fqdn.lower(),
        "UrlStem": "/Powershell",
        "AuthenticationType": "Kerberos",
        "IsAuthenticated": "true",
        "AuthenticatedUser": req.user,
        "ClientIpAddress": req.client_ip,
        "ServerHostName": server.name,
        "FrontEndServer": server.fqdn.upper(),
        "HttpStatus": str(req.status),
        "SubStatus": "0",
        "RequestBytes": str(req.request_bytes),
        "ClientInfo": req.client_info.replace(",", " "),
        "ActivityContextLifeTime": str(req.latency_ms),
        "TotalTime": str(max(req.latency_ms - 2, 0)),
        "UrlQuery": f"?{req.query}" if req.query else "",
        "GenericLatency": "RequestMonitor.Register=1;WinRMDataSender.Send=0;RpsHttpDatabaseValidationModule=0;"
                          "ThrottlingHttpModule=0;",
        "GenericInfo": "WinRMDataSender.AuthenticationType=Sent;WinRMDataSender.NamedPipe=Sent;"
                       f"OnEndRequest.End.ContentType={content};S:ServiceCommonMetadata.HttpMethod={req.method}",
    }


def rps_http_log(requests: Sequence[RpsRequest], server: Server) -> bytes:
    """One ``Rps_Http_YYYYMMDDHH-N.LOG``: the bare column-name line, the directive block, then the rows.

    The layout follows the ProxyShell lab excerpt of debugprivilege (samples/text_logs) and the
    column list of CrowdStrike's Rps_Http-IOC.ps1 (detections.md §1.7); user agents have their
    commas replaced by spaces as in that excerpt.
    """
    fields = ",".join(RPS_HTTP_FIELDS)
    lines = [fields, *_exchange_header(server.build.long, "Rps Http Logs", requests[0].time, fields)]
    for req in requests:
        values = _rps_http_values(req, server)
        lines.append(_csv_line([values.get(name, "") for name in RPS_HTTP_FIELDS]))
    return _lines(lines)


def evtx_name(channel: str) -> str:
    """The file name Windows gives a channel's log: ``/`` becomes ``%4`` (``...Sysmon%4Operational.evtx``)."""
    return channel.replace("/", "%4") + ".evtx"


def event_log(events: Sequence[WinEvent], server: Server) -> bytes:
    """One ``.evtx`` file of a channel: the events in time order, record numbers from 1."""
    ordered = sorted(events, key=lambda e: e.time)
    return write_evtx([
        Event(e.provider, e.event_id, e.channel, server.fqdn, e.time, number, e.level, e.data, e.qualifiers,
              e.provider_guid)
        for number, e in enumerate(ordered, start=1)
    ])
