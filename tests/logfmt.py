"""Write Exchange and IIS log files in their real on-disk formats for pipeline tests.

Each writer takes rows as dicts holding only the fields a test cares about; every other
field gets a realistic default (an Exchange 2016 CU19 server ``EXCH01``, 15.1.2176.2, on
2021-03-03). Files are placed where a KAPE collection of drive ``C`` puts them, so the
scan recognises them by their Windows path exactly as it would in a real collection.

Formats follow detections.md: §1.1 (HttpProxy: directive block, the 2016 CU23 ``#Fields:``
list, CSV-quoted cells), §1.2 (ECP server log: ``S:KEY=value`` items; an item holding a
quote or comma is wrapped in single quotes with ``'`` and ``"`` doubled, as in the
HelseCERT excerpt), §1.3 (OABGeneratorLog: layout unverified, ``<ISO time>,<text>``
assumed) and §1.5 (IIS W3C: the 15 default fields, ``+`` for spaces in the user agent).
All files use CRLF line endings.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exhunt.model import ScanResult
from exhunt.scan import scan

CRLF = "\r\n"

#: Exact ``#Fields:`` list of Exchange 2016 CU23 HttpProxy logs (detections.md §1.1).
HTTPPROXY_FIELDS_LINE = (
    "#Fields: DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,"
    "Protocol,UrlHost,UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,"
    "Organization,AnchorMailbox,UserAgent,ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,"
    "Method,ProxyAction,TargetServer,TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,"
    "ServerLocatorHost,ServerLocatorLatency,RequestBytes,ResponseBytes,TargetOutstandingRequests,"
    "AuthModulePerfContext,HttpPipelineLatency,CalculateTargetBackEndLatency,GlsLatencyBreakup,"
    "TotalGlsLatency,AccountForestLatencyBreakup,TotalAccountForestLatency,ResourceForestLatencyBreakup,"
    "TotalResourceForestLatency,ADLatency,SharedCacheLatencyBreakup,TotalSharedCacheLatency,"
    "ActivityContextLifeTime,ModuleToHandlerSwitchingLatency,ClientReqStreamLatency,BackendReqInitLatency,"
    "BackendReqStreamLatency,BackendProcessingLatency,BackendRespInitLatency,BackendRespStreamLatency,"
    "ClientRespStreamLatency,KerberosAuthHeaderLatency,HandlerCompletionLatency,RequestHandlerLatency,"
    "HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,RoutingLatency,HttpProxyOverhead,"
    "TotalRequestTime,RouteRefresherLatency,UrlQuery,BackEndGenericInfo,GenericInfo,GenericErrors,"
    "EdgeTraceId,DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,RoutingStatus"
)
HTTPPROXY_FIELDS: tuple[str, ...] = tuple(HTTPPROXY_FIELDS_LINE.partition(": ")[2].split(","))

#: Exact ``#Fields:`` line of the ECP server log (detections.md §1.2).
ECP_FIELDS_LINE = "#Fields: TimeStamp,ServerName,EventId,EventData"

#: Exact default ``#Fields:`` line IIS writes on Exchange servers (detections.md §1.5).
IIS_FIELDS_LINE = (
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
)
IIS_FIELDS: tuple[str, ...] = tuple(IIS_FIELDS_LINE.partition(": ")[2].split())

#: The moment of the first HelseCERT SSRF row; default time of every row.
T0 = datetime(2021, 3, 3, 6, 49, 42, 162000, tzinfo=UTC)

SERVER = "EXCH01"
SERVER_FQDN = "exch01.contoso.local"
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML  like Gecko) "
    "Chrome/88.0.4324.182 Safari/537.36"
)
#: The same browser as IIS logs it before ``+`` encoding (IIS keeps the comma).
IIS_BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/88.0.4324.182 Safari/537.36"
)
REQUEST_ID = "47a25adf-57a3-4538-ba98-4bafdfee8095"

#: ``<drive root>/Program Files/Microsoft/Exchange Server/V15`` inside a KAPE ``HOST/C`` tree.
EXCHANGE = ("C", "Program Files", "Microsoft", "Exchange Server", "V15")


def iso_ms(moment: datetime) -> str:
    """Exchange's ``2021-03-03T06:49:42.162Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def at(seconds: float = 0.0) -> datetime:
    """``T0`` plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def _lines(lines: Iterable[str]) -> bytes:
    return "".join(line + CRLF for line in lines).encode("utf-8")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _exchange_header(version: str, log_type: str, created: datetime, fields_line: str) -> list[str]:
    return [
        "#Software: Microsoft Exchange Server",
        f"#Version: {version}",
        f"#Log-type: {log_type}",
        f"#Date: {iso_ms(created)}",
        fields_line,
    ]


# --- HttpProxy --------------------------------------------------------------------------------


def _overlay(values: dict[str, str], row: Mapping[str, str | int | datetime], log: str) -> dict[str, str]:
    """``values`` with the given fields of ``row`` written over them (times as ISO-8601 UTC with ms)."""
    for name, value in row.items():
        if name not in values:
            raise KeyError(f"{name} is not an {log} field")
        values[name] = iso_ms(value) if isinstance(value, datetime) else str(value)
    return values


def _csv_line(values: Mapping[str, str], fields: Sequence[str]) -> str:
    """One CSV data line of ``values`` in ``fields`` order, quoted where needed."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([values[name] for name in fields])
    return out.getvalue()


def httpproxy_values(row: Mapping[str, str | int | datetime]) -> dict[str, str]:
    """Every HttpProxy field of one row: the given ones over realistic defaults."""
    moment = row.get("DateTime", T0)
    when = iso_ms(moment) if isinstance(moment, datetime) else str(moment)
    begin = iso_ms(moment - timedelta(milliseconds=12)) if isinstance(moment, datetime) else when
    values: dict[str, str] = {name: "" for name in HTTPPROXY_FIELDS}
    values.update({
        "DateTime": when,
        "RequestId": REQUEST_ID,
        "MajorVersion": "15",
        "MinorVersion": "1",
        "BuildVersion": "2176",
        "RevisionVersion": "2",
        "Protocol": "Ecp",
        "UrlHost": "mail.contoso.com",
        "UrlStem": "/ecp/",
        "AuthenticationType": "FBA",
        "IsAuthenticated": "false",
        "UserAgent": BROWSER_UA,
        "ClientIpAddress": "198.51.100.23",
        "ServerHostName": SERVER,
        "HttpStatus": "200",
        "BackEndStatus": "200",
        "Method": "GET",
        "ProxyAction": "Proxy",
        "TargetServer": SERVER_FQDN,
        "TargetServerVersion": "15.01.2176.000",
        "RoutingType": "IntraForest",
        "ServerLocatorLatency": "0",
        "RequestBytes": "0",
        "ResponseBytes": "2436",
        "HttpPipelineLatency": "0",
        "CalculateTargetBackEndLatency": "1",
        "TotalGlsLatency": "0",
        "TotalAccountForestLatency": "0",
        "TotalResourceForestLatency": "0",
        "ADLatency": "0",
        "TotalSharedCacheLatency": "0",
        "ActivityContextLifeTime": "12",
        "ModuleToHandlerSwitchingLatency": "0",
        "BackendProcessingLatency": "9",
        "ProxyTime": "11",
        "CoreLatency": "2",
        "RoutingLatency": "1",
        "HttpProxyOverhead": "3",
        "TotalRequestTime": "12",
        "GenericInfo": (f"BeginRequest={begin};CorrelationID=<empty>;ProxyState-Run=None;"
                        f"SharedCacheGuard=0;EndRequest={when};"),
        "RoutingStatus": "CafeV1",
    })
    return _overlay(values, row, "HttpProxy")


def httpproxy_line(row: Mapping[str, str | int | datetime]) -> str:
    """One data line: a cell per field, CSV-quoted where needed."""
    return _csv_line(httpproxy_values(row), HTTPPROXY_FIELDS)


def httpproxy_log(rows: Sequence[Mapping[str, str | int | datetime]]) -> bytes:
    """A complete ``HttpProxy_YYYYMMDDHH-N.LOG``."""
    first = rows[0].get("DateTime", T0)
    created = first if isinstance(first, datetime) else T0
    header = _exchange_header("15.01.2176.002", "HttpProxy Logs", created.replace(minute=0, second=0),
                              HTTPPROXY_FIELDS_LINE)
    return _lines([*header, *(httpproxy_line(row) for row in rows)])


def write_httpproxy(host: Path, rows: Sequence[Mapping[str, str | int | datetime]]) -> Path:
    """Write the rows under ``Logging\\HttpProxy\\<Protocol of the first row>``."""
    protocol = str(rows[0].get("Protocol", "Ecp"))
    name = f"HttpProxy_{T0:%Y%m%d%H}-1.LOG"
    return _write(host.joinpath(*EXCHANGE, "Logging", "HttpProxy", protocol, name), httpproxy_log(rows))


# --- ECP server log ----------------------------------------------------------------------------


def ecp_item(key: str, value: str) -> str:
    """One ``S:KEY=value`` item, single-quoted with inner quotes doubled when it holds a quote or comma."""
    item = f"S:{key}={value}"
    if any(char in item for char in "'\",\r\n"):
        return "'" + item.replace("'", "''").replace('"', '""') + "'"
    return item


def ecp_line(row: Mapping[str, str | datetime]) -> str:
    """One ``ECP.Request`` line; ``row`` holds ``TimeStamp`` and ``S:`` items by key (``CMD``, ``URL``, ...)."""
    moment = row.get("TimeStamp", T0)
    items: dict[str, str] = {
        "TIME": "47",
        "SID": "S-1-5-18",
        "CMD": "",
        "REQID": "",
        "URL": "/ecp/DDI/DDIService.svc/GetObject?msExchEcpCanary=M1xSxxxDuw.&schema=OABVirtualDirectory",
        "REFERRER": "",
        "EX": "",
        "ACTID": "9b2d1c0e-54c4-4a55-9a3b-2f1ad9e8c7b1",
        "RS": "0",
        "BLD": "15.1.2176.2",
        "TNAME": "<null>",
        "TID": "",
        "USID": "b1d3e5f7-1234-4cde-8f01-23456789abcd",
        "EDOID": "",
        "ACID": "",
    }
    for key, value in row.items():
        if key == "TimeStamp":
            continue
        if key not in items:
            raise KeyError(f"{key} is not an ECP server log item")
        items[key] = str(value)
    data = ";".join(ecp_item(key, value) for key, value in items.items())
    when = iso_ms(moment) if isinstance(moment, datetime) else str(moment)
    return f"{when},{SERVER},ECP.Request,{data}"


def ecp_log(rows: Sequence[Mapping[str, str | datetime]]) -> bytes:
    """A complete ``ECPServerYYYYMMDD-N.LOG``."""
    header = _exchange_header("15.0.0.0", "ECP Server Log", T0.replace(hour=0, minute=0, second=0),
                              ECP_FIELDS_LINE)
    return _lines([*header, *(ecp_line(row) for row in rows)])


def write_ecp(host: Path, rows: Sequence[Mapping[str, str | datetime]]) -> Path:
    name = f"ECPServer{T0:%Y%m%d}-1.LOG"
    return _write(host.joinpath(*EXCHANGE, "Logging", "ECP", "Server", name), ecp_log(rows))


# --- OABGeneratorLog ---------------------------------------------------------------------------


def oab_log(rows: Sequence[Mapping[str, str | datetime]]) -> bytes:
    """A ``OABGeneratorLog_YYYYMMDD-N.LOG`` of ``<ISO time>,<text>`` lines (layout unverified, §1.3)."""
    lines = []
    for row in rows:
        moment = row.get("DateTime", T0)
        when = iso_ms(moment) if isinstance(moment, datetime) else str(moment)
        lines.append(f"{when},{row['Message']}")
    return _lines(lines)


def write_oab(host: Path, rows: Sequence[Mapping[str, str | datetime]]) -> Path:
    name = f"OABGeneratorLog_{T0:%Y%m%d}-1.LOG"
    return _write(host.joinpath(*EXCHANGE, "Logging", "OABGeneratorLog", name), oab_log(rows))


# --- IIS W3C -----------------------------------------------------------------------------------


def iis_values(row: Mapping[str, str | int | datetime]) -> dict[str, str]:
    """The 15 default W3C fields of one request; ``time`` may be given as a datetime."""
    moment = row.get("time", T0)
    values = {
        "date": f"{T0:%Y-%m-%d}",
        "time": f"{T0:%H:%M:%S}",
        "s-ip": "10.10.1.5",
        "cs-method": "GET",
        "cs-uri-stem": "/owa/",
        "cs-uri-query": "",
        "s-port": "443",
        "cs-username": "",
        "c-ip": "198.51.100.23",
        "cs(User-Agent)": IIS_BROWSER_UA,
        "cs(Referer)": "",
        "sc-status": "200",
        "sc-substatus": "0",
        "sc-win32-status": "0",
        "time-taken": "133",
    }
    for name, value in row.items():
        if name not in values:
            raise KeyError(f"{name} is not a default IIS field")
        values[name] = str(value)
    if isinstance(moment, datetime):
        values["date"], values["time"] = f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"
    return values


def iis_line(row: Mapping[str, str | int | datetime]) -> str:
    """One W3C line: ``-`` for empty fields, ``+`` for spaces in the user agent and referer."""
    values = iis_values(row)
    cells = []
    for name in IIS_FIELDS:
        value = values[name]
        if name in ("cs(User-Agent)", "cs(Referer)"):
            value = value.replace(" ", "+")
        if any(char.isspace() for char in value):
            raise ValueError(f"IIS field {name} cannot hold whitespace: {value!r}")
        cells.append(value or "-")
    return " ".join(cells)


def iis_log(rows: Sequence[Mapping[str, str | int | datetime]]) -> bytes:
    """A complete ``u_exYYMMDD.log``."""
    header = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        f"#Date: {T0:%Y-%m-%d} 00:00:00",
        IIS_FIELDS_LINE,
    ]
    return _lines([*header, *(iis_line(row) for row in rows)])


def write_iis(host: Path, rows: Sequence[Mapping[str, str | int | datetime]], site: int = 1) -> Path:
    """Write ``inetpub\\logs\\LogFiles\\W3SVC<site>\\u_exYYMMDD.log`` (1 = front end, 2 = back end)."""
    name = f"u_ex{T0:%y%m%d}.log"
    return _write(host.joinpath("C", "inetpub", "logs", "LogFiles", f"W3SVC{site}", name), iis_log(rows))


# --- Rps_Http (CmdletInfra\Powershell-Proxy\Http) ------------------------------------------------

#: Exact ``#Fields:`` line of ``Rps_Http_*.LOG`` (detections.md §1.7, CrowdStrike's header list; the
#: debugprivilege ProxyShell lab excerpt has the same line).
RPS_HTTP_FIELDS_LINE = (
    "#Fields: DateTime,StartTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,"
    "ClientRequestId,UrlHost,UrlStem,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,"
    "ManagedOrganization,ClientIpAddress,ServerHostName,FrontEndServer,HttpStatus,SubStatus,ErrorCode,Action,"
    "CommandId,CommandName,SessionId,ShellId,FailFast,ContributeToFailFast,RequestBytes,ClientInfo,CPU,Memory,"
    "ActivityContextLifeTime,TotalTime,UrlQuery,GenericLatency,GenericInfo,GenericErrors"
)
RPS_HTTP_FIELDS: tuple[str, ...] = tuple(RPS_HTTP_FIELDS_LINE.partition(": ")[2].split(","))


def rps_http_values(row: Mapping[str, str | int | datetime]) -> dict[str, str]:
    """Every Rps_Http field of one row: the given ones over a proxied ``/powershell`` POST's defaults."""
    moment = row.get("DateTime", T0)
    when = iso_ms(moment) if isinstance(moment, datetime) else str(moment)
    start = iso_ms(moment - timedelta(milliseconds=101)) if isinstance(moment, datetime) else when
    values: dict[str, str] = {name: "" for name in RPS_HTTP_FIELDS}
    values.update({
        "DateTime": when,
        "StartTime": start,
        "RequestId": "0cd07968-a191-4883-aa5b-101cd097efcf",
        "MajorVersion": "15",
        "MinorVersion": "1",
        "BuildVersion": "2176",
        "RevisionVersion": "2",
        "UrlHost": SERVER_FQDN,
        "UrlStem": "/powershell",
        "AuthenticationType": "Kerberos",
        "IsAuthenticated": "true",
        "AuthenticatedUser": "CONTOSO\\exadmin",
        "ClientIpAddress": "10.10.1.5",
        "ServerHostName": SERVER,
        "FrontEndServer": SERVER_FQDN.upper(),
        "HttpStatus": "200",
        "SubStatus": "0",
        "RequestBytes": "3236",
        "ClientInfo": "Microsoft WinRM Client",
        "ActivityContextLifeTime": "100",
        "TotalTime": "100",
        "UrlQuery": "?serializationLevel=Full;clientApplication=EMC;PSVersion=5.1.14393.4467",
        "GenericLatency": "RequestMonitor.Register=1;WinRMDataSender.Send=0;RpsHttpDatabaseValidationModule=0;"
                          "ThrottlingHttpModule=0;",
        "GenericInfo": "WinRMDataSender.AuthenticationType=Sent;WinRMDataSender.NamedPipe=Sent;"
                       "OnEndRequest.End.ContentType=application/soap+xml charset UTF-8;"
                       "S:ServiceCommonMetadata.HttpMethod=POST",
    })
    return _overlay(values, row, "Rps_Http")


def rps_http_line(row: Mapping[str, str | int | datetime]) -> str:
    """One data line: a cell per field, CSV-quoted where needed."""
    return _csv_line(rps_http_values(row), RPS_HTTP_FIELDS)


def rps_http_log(rows: Sequence[Mapping[str, str | int | datetime]], bare_header: bool = True) -> bytes:
    """A complete ``Rps_Http_YYYYMMDDHH-N.LOG``; like the debugprivilege excerpt it starts with the bare
    column-name line before the directive block when ``bare_header``."""
    first = rows[0].get("DateTime", T0) if rows else T0
    created = first if isinstance(first, datetime) else T0
    header = _exchange_header("15.01.2176.002", "Rps Http Logs", created, RPS_HTTP_FIELDS_LINE)
    bare = [RPS_HTTP_FIELDS_LINE.partition(": ")[2]] if bare_header else []
    return _lines([*bare, *header, *(rps_http_line(row) for row in rows)])


def write_rps_http(host: Path, rows: Sequence[Mapping[str, str | int | datetime]],
                   bare_header: bool = True) -> Path:
    """Write ``Logging\\CmdletInfra\\Powershell-Proxy\\Http\\Rps_Http_YYYYMMDDHH-1.LOG`` (hour of the first row)."""
    first = rows[0].get("DateTime", T0) if rows else T0
    name = f"Rps_Http_{first if isinstance(first, datetime) else T0:%Y%m%d%H}-1.LOG"
    return _write(host.joinpath(*EXCHANGE, "Logging", "CmdletInfra", "Powershell-Proxy", "Http", name),
                  rps_http_log(rows, bare_header))


def scan_clean(host: Path, write: Callable[[Path, Sequence[Mapping[str, object]]], Path],
               source_kind: str, rows: Sequence[Mapping[str, object]]) -> ScanResult:
    """Write one log with ``write`` into the KAPE tree ``host`` and scan it; the file must be read in full
    (one file of ``source_kind``, a record per row) and without a diagnostic."""
    write(host, rows)
    result = scan([str(host)])
    assert len(result.hosts) == 1
    coverage = {c.kind: c for c in result.hosts[0].coverage}
    assert coverage[source_kind].files == 1
    assert coverage[source_kind].records == len(rows)
    assert result.diagnostics == (), result.diagnostics
    return result



def check_case(ids: set[str], rule: str, present: bool, others: Iterable[str], absent: Iterable[str],
               hidden: Iterable[str] = ()) -> None:
    """One rule case: ``rule`` found or not, ``others`` found, ``absent`` and ``hidden`` (base rules) not."""
    assert (rule in ids) is present, ids
    for other in others:
        assert other in ids, ids
    for other in (*absent, *hidden):
        assert other not in ids, ids
