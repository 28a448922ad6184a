"""Turn a host's :class:`~exhunt.demo.traffic.Evidence` into its log files, keyed by Windows path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from exhunt.demo.formats import (
    Server,
    back_end_entry,
    ecp_server_log,
    event_log,
    evtx_name,
    front_end_entry,
    httperr_log,
    httpproxy_log,
    iis_log,
    oab_generator_log,
    rps_http_log,
)
from exhunt.demo.scenarios import Quirks
from exhunt.demo.traffic import Evidence

IIS_ROOT = "C:\\inetpub\\logs\\LogFiles"
EVENT_LOGS = "C:\\Windows\\System32\\winevt\\Logs"
T = TypeVar("T")


def _by(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return dict(sorted(groups.items()))


def _day(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def render(server: Server, evidence: Evidence, quirks: Quirks) -> dict[str, bytes]:
    """All log files of a host by Windows path, in sorted path order."""
    logging = f"{server.exchange_dir}\\Logging"
    requests = sorted(evidence.requests, key=lambda r: r.time)
    files: dict[str, bytes] = {}
    proxied = [r for r in requests if r.protocol is not None]
    for key, rows in _by(proxied, lambda r: f"{r.protocol}\\HttpProxy_{r.time:%Y%m%d%H}").items():
        files[f"{logging}\\HttpProxy\\{key}-1.LOG"] = httpproxy_log(rows, server, bare_header=quirks.bare_header)
    for site, entry_of in (("W3SVC1", front_end_entry), ("W3SVC2", back_end_entry)):
        entries = [e for e in (entry_of(r, server) for r in requests) if e is not None]
        for day, rows in _by(entries, lambda e: f"{e.time:%y%m%d}").items():
            restart = None
            if site == "W3SVC1" and quirks.iis_restart and f"{quirks.iis_restart:%y%m%d}" == day:
                restart = next(i for i, e in enumerate(rows) if e.time >= quirks.iis_restart)
            bom = site == "W3SVC1" and day == quirks.iis_bom_day
            files[f"{IIS_ROOT}\\{site}\\u_ex{day}.log"] = iis_log(rows, restart_before=restart, bom=bom)
    for day, events in _by(sorted(evidence.ecp, key=lambda e: e.time), lambda e: _day(e.time)).items():
        files[f"{logging}\\ECP\\Server\\ECPServer{day}-1.LOG"] = ecp_server_log(events, server)
    for day, lines in _by(sorted(evidence.oab), lambda line: _day(line[0])).items():
        files[f"{logging}\\OABGeneratorLog\\OABGeneratorLog_{day}-1.LOG"] = oab_generator_log(lines)
    if evidence.httperr:
        rows = sorted(evidence.httperr, key=lambda r: r.time)
        files["C:\\Windows\\System32\\LogFiles\\HTTPERR\\httperr1.log"] = httperr_log(rows)
    rps = f"{logging}\\CmdletInfra\\Powershell-Proxy\\Http"
    for hour, rows in _by(sorted(evidence.rps, key=lambda r: r.time), lambda r: f"{r.time:%Y%m%d%H}").items():
        files[f"{rps}\\Rps_Http_{hour}-1.LOG"] = rps_http_log(rows, server)
    for channel, events in _by(evidence.events, lambda e: e.channel).items():
        files[f"{EVENT_LOGS}\\{evtx_name(channel)}"] = event_log(events, server)
    return dict(sorted(files.items()))
