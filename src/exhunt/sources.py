"""Evidence source kinds: how an artefact is recognised, read and matched to rules.

A file is classified by its Windows path first (Exchange's ``Logging`` folder wherever it
is installed, IIS ``LogFiles``), then by content for loose files (log-type directives,
column headers, the EVTX magic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

from exhunt.readers import LineReader, StreamReader, evtx, exchange_csv, iisconfig, textlog, w3c

HTTPPROXY_FIELDS = tuple(
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,"
    "UrlHost,UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,"
    "AnchorMailbox,UserAgent,ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,"
    "ProxyAction,TargetServer,TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,"
    "ServerLocatorHost,ServerLocatorLatency,RequestBytes,ResponseBytes,TargetOutstandingRequests,"
    "AuthModulePerfContext,HttpPipelineLatency,CalculateTargetBackEndLatency,GlsLatencyBreakup,"
    "TotalGlsLatency,AccountForestLatencyBreakup,TotalAccountForestLatency,ResourceForestLatencyBreakup,"
    "TotalResourceForestLatency,ADLatency,SharedCacheLatencyBreakup,TotalSharedCacheLatency,"
    "ActivityContextLifeTime,ModuleToHandlerSwitchingLatency,ClientReqStreamLatency,"
    "BackendReqInitLatency,BackendReqStreamLatency,BackendProcessingLatency,BackendRespInitLatency,"
    "BackendRespStreamLatency,ClientRespStreamLatency,KerberosAuthHeaderLatency,HandlerCompletionLatency,"
    "RequestHandlerLatency,HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,RoutingLatency,"
    "HttpProxyOverhead,TotalRequestTime,RouteRefresherLatency,UrlQuery,BackEndGenericInfo,GenericInfo,"
    "GenericErrors,EdgeTraceId,DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,"
    "RoutingStatus".split(",")
)
ECP_FIELDS = ("TimeStamp", "ServerName", "EventId", "EventData")
RPS_HTTP_FIELDS = tuple(
    "DateTime,StartTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,"
    "UrlHost,UrlStem,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,"
    "ManagedOrganization,ClientIpAddress,ServerHostName,FrontEndServer,HttpStatus,SubStatus,ErrorCode,"
    "Action,CommandId,CommandName,SessionId,ShellId,FailFast,ContributeToFailFast,RequestBytes,"
    "ClientInfo,CPU,Memory,ActivityContextLifeTime,TotalTime,UrlQuery,GenericLatency,GenericInfo,"
    "GenericErrors".split(",")
)


@dataclass(frozen=True, slots=True)
class SourceKind:
    """A kind of evidence exhunt reads, with its reader and the record field of the client IP."""

    name: str
    label: str
    reader: LineReader | StreamReader
    client_ip_field: str | None = None
    #: The reader takes the byte stream (binary formats) instead of lines.
    binary: bool = False
    #: Records are kept for host-level analysis (configuration), not only matched against rules.
    keep_records: bool = False


KINDS: dict[str, SourceKind] = {
    kind.name: kind
    for kind in (
        SourceKind("httpproxy", "Exchange HttpProxy logs",
                   partial(exchange_csv.read, default_fields=HTTPPROXY_FIELDS), "ClientIpAddress"),
        SourceKind("ecp-server", "Exchange ECP server logs",
                   partial(exchange_csv.read, default_fields=ECP_FIELDS)),
        SourceKind("ecp-activity", "Exchange ECP activity logs",
                   partial(exchange_csv.read, default_fields=ECP_FIELDS)),
        SourceKind("oabgenerator", "Exchange OABGeneratorLog", textlog.read),
        SourceKind("rps-http", "Exchange Rps_Http (remote PowerShell) logs",
                   partial(exchange_csv.read, default_fields=RPS_HTTP_FIELDS), "ClientIpAddress"),
        SourceKind("iis", "IIS W3C logs", w3c.read, "c-ip"),
        SourceKind("evtx", "Windows event logs (EVTX)", evtx.read, binary=True),
        SourceKind("iis-config", "IIS configuration (applicationHost.config, web.config)", iisconfig.read,
                   keep_records=True),
    )
}

_PATH_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"(^|\\)Logging\\HttpProxy\\[^\\]+\\[^\\]+\.log$", "httpproxy"),
        (r"(^|\\)Logging\\ECP\\Server\\[^\\]+\.log$", "ecp-server"),
        (r"(^|\\)Logging\\ECP\\Activity\\[^\\]+\.log$", "ecp-activity"),
        (r"(^|\\)OABGeneratorLog\\.+\.log$", "oabgenerator"),
        (r"(^|\\)OABGenerator[^\\]*\.log$", "oabgenerator"),  # loose copies keep the file name
        (r"(^|\\)ECPServer[^\\]*\.log$", "ecp-server"),
        (r"(^|\\)ECPActivity[^\\]*\.log$", "ecp-activity"),
        (r"(^|\\)Rps_Http_[^\\]*\.log$", "rps-http"),
        (r"(^|\\)LogFiles\\W3SVC\d*\\[^\\]+\.log$", "iis"),
        (r"\.evtx$", "evtx"),
        (r"\\inetsrv\\config\\applicationHost\.config$", "iis-config"),
        (r"\\(inetpub\\wwwroot|FrontEnd\\HttpProxy\\[^\\]+)\\web\.config$", "iis-config"),
    )
)

_LOG_TYPES = {
    "httpproxy logs": "httpproxy",
    "ecp server log": "ecp-server",
    "ecp activity context log": "ecp-activity",
    "rps http logs": "rps-http",
}
_IIS_DIRECTIVE = re.compile(r"^#(software: microsoft internet information services|fields: (date )?time( |$))")
_IIS_ROW = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+ [A-Z_]+ /")
#: How many bytes of a file are read to recognise it by content.
SNIFF_BYTES = 8192


def classify_path(path: str) -> str | None:
    """Source kind implied by a Windows path, or ``None``."""
    for pattern, kind in _PATH_RULES:
        if pattern.search(path):
            return kind
    return None


def classify_content(head: bytes) -> str | None:
    """Source kind implied by the first bytes of a file, or ``None``."""
    if head.startswith(b"ElfFile\x00"):
        return "evtx"
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    lines = text.lower().splitlines()[:12]
    for line in lines:
        if line.startswith("#log-type:"):
            kind = _LOG_TYPES.get(line.partition(":")[2].strip())
            if kind:
                return kind
    if any(_IIS_DIRECTIVE.match(line) for line in lines):
        return "iis"
    for line in lines:
        header = line.replace('"', "")
        if header.startswith("datetime,") and "anchormailbox" in header and "urlstem" in header:
            return "httpproxy"
        if header.startswith("timestamp,servername,eventid,eventdata"):
            return "ecp-server"
    if any(_IIS_ROW.match(line) for line in text.splitlines()[:5]):
        return "iis"
    return None
