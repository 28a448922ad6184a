"""Deterministic sample evidence: eight Exchange servers hit (or not) by ProxyLogon, ProxyShell, ProxyNotShell.

:func:`generate` writes one collection per host of :data:`HOSTS`, each in a collector layout,
with a week of realistic HttpProxy, ECP server, OAB generator and IIS logs (2021-03-01..08 UTC
for ProxyLogon, 2021-08-09..16 for ProxyShell, 2022-09-29..10-06 for ProxyNotShell), plus
Rps_Http logs and Windows event logs (EVTX) where a host's story needs them. Output depends
only on ``seed``: the same seed gives the same bytes (zips included). Addresses are RFC 5737
documentation ranges outside and RFC 1918 inside; the domain is ``contoso.local`` /
``mail.contoso.com``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from exhunt.analysis.exposure import Build
from exhunt.demo.collection import render
from exhunt.demo.formats import Server
from exhunt.demo.layouts import WRITERS
from exhunt.demo.scenarios import AUGUST_2021, OCTOBER_2022, SCENARIOS
from exhunt.demo.traffic import DAYS, FIRST_DAY, Traffic, benign_week

__all__ = ["HOSTS", "DemoHost", "generate"]

DEFAULT_EXCHANGE_DIR = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


@dataclass(frozen=True, slots=True)
class DemoHost:
    """One demo Exchange server and the verdict a scanner should reach for it."""

    name: str
    layout: Literal["kape", "kape-zip", "velociraptor", "velociraptor-dir", "cylr", "cylr-slash", "windows-root",
                    "files"]
    expected_stage: Literal["clean", "probed", "exploited", "compromised"]
    build: str
    description: str
    ip: str
    exchange_dir: str = DEFAULT_EXCHANGE_DIR
    #: First day of the host's week of ordinary traffic (UTC midnight).
    first_day: datetime = FIRST_DAY

    @property
    def collected(self) -> datetime:
        """When the evidence was collected: 10:00 UTC the day after the week."""
        return self.first_day + timedelta(days=DAYS, hours=10)

    @property
    def server(self) -> Server:
        build = Build.parse(self.build)
        assert build is not None, self.build
        return Server(self.name, self.ip, build, self.exchange_dir)


HOSTS: tuple[DemoHost, ...] = (
    DemoHost(
        "EXCH01", "kape", "compromised", "15.1.2176.2",
        "Exchange 2016 CU19 without the March 2021 SU, installed on D:\\Exchange. HAFNIUM chain from "
        "203.0.113.45 on 2021-03-03 (SSRF via /ecp/y.js, proxyLogon.ecp 241, China Chopper in the OAB "
        "ExternalUrl, discover.aspx written), then web-shell use until 03-06.",
        "10.0.1.11", "D:\\Exchange",
    ),
    DemoHost(
        "EXCH02", "velociraptor", "probed", "15.2.792.3",
        "Exchange 2019 CU8 without SU. Failed SSRF (Autodiscover only, HTTP 500) from 198.51.100.7, "
        "Microsoft's nmap checker from 10.0.5.20, and a web-shell hunt from 198.51.100.23 (all 302).",
        "10.0.1.12",
    ),
    DemoHost(
        "EXCH03", "cylr", "clean", "15.1.2375.37",
        "Exchange 2016 CU22 Nov22SU. Only false-positive traps: an admin OAB ExternalUrl change, legitimate "
        "OAB temp downloads, Autodiscover v2 JSON, the nmap checker, RedirSuiteServiceProxy.aspx.",
        "10.0.1.13",
    ),
    DemoHost(
        "EXCH04", "windows-root", "exploited", "15.1.2106.2",
        "Exchange 2016 CU18. SSRF via /ecp/x.js to EWS from 192.0.2.77 on 2021-03-02 (mailbox read), "
        "no web shell.",
        "10.0.1.14",
    ),
    DemoHost(
        "EXCH05", "velociraptor-dir", "compromised", "15.2.721.2",
        "Exchange 2019 CU7 without SU, Velociraptor collection extracted to a folder. HttpProxy and IIS logs "
        "are quiet; the event logs show the compromise on 2021-03-03: a UM InvalidCastException, "
        "UMWorkerProcess running cmd.exe /c whoami, w3wp writing owa\\auth\\errorEE.aspx, an LSASS dump with "
        "comsvcs.dll, New-MailboxExportRequest to aspnet_client\\bob.aspx, and 7-Zip staging of "
        "C:\\ProgramData\\pst on 03-04.",
        "10.0.1.15",
    ),
    DemoHost(
        "EXCH06", "kape-zip", "compromised", "15.1.2242.4",
        "Exchange 2016 CU20 without the April/May 2021 SUs, KAPE output zipped. ProxyShell from 203.0.113.61 on "
        "2021-08-12 (autodiscover.json explicit logon to Autodiscover, MAPI/NSPI and PowerShell with X-Rps-CAT, "
        "Python PSRP Client), Mailbox Import Export role and a mailbox export to aspnet_client\\<random>.aspx, "
        "export request removed, then the page used until 08-15.",
        "10.0.1.16", first_day=AUGUST_2021,
    ),
    DemoHost(
        "EXCH07", "files", "exploited", "15.2.1118.15",
        "Exchange 2019 CU12 Oct22SU (still open to ProxyNotShell), loose log files. ProxyNotShell "
        "(@zdi/Powershell, answered 200) from 203.0.113.99 with a user's credentials on 2022-10-03 and OWASSRF "
        "(/owa/mastermailbox%40outlook.com/powershell) on 10-05; Rps_Http shows the foreign clients. No web shell.",
        "10.0.1.17", first_day=OCTOBER_2022,
    ),
    DemoHost(
        "EXCH08", "cylr-slash", "probed", "15.1.2242.10",
        "Exchange 2016 CU20 May21SU, CyLR zip with forward-slash entries. The same ProxyShell requests as EXCH06, "
        "answered 200 but against a build that had the ProxyShell fixes: attempts only; no export, no web shell.",
        "10.0.1.18", first_day=AUGUST_2021,
    ),
)


def _host_files(host: DemoHost, seed: int) -> dict[str, bytes]:
    traffic = Traffic(host.server, random.Random(f"{seed}:{host.name}"))
    benign_week(traffic, host.first_day)
    quirks = SCENARIOS[host.name](traffic)
    return render(host.server, traffic.evidence, quirks)


def generate(out_dir: Path, *, seed: int = 2021) -> list[Path]:
    """Write one collection per host into ``out_dir``; return their paths in :data:`HOSTS` order.

    An existing collection of the same name (``EXCH01/``, ``EXCH02.zip``...) is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [WRITERS[host.layout](out_dir, host.name, _host_files(host, seed), host.collected) for host in HOSTS]
