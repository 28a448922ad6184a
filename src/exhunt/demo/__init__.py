"""Deterministic sample evidence: four Exchange servers hit (or not) by ProxyLogon in March 2021.

:func:`generate` writes one collection per host of :data:`HOSTS`, each in a different
collector layout, with a week (2021-03-01..08 UTC) of realistic HttpProxy, ECP server,
OAB generator and IIS logs. Output depends only on ``seed``: the same seed gives the same
bytes (zips included). Addresses are RFC 5737 documentation ranges outside and RFC 1918
inside; the domain is ``contoso.local`` / ``mail.contoso.com``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exhunt.analysis.exposure import Build
from exhunt.demo.collection import render
from exhunt.demo.formats import Server
from exhunt.demo.layouts import WRITERS
from exhunt.demo.scenarios import SCENARIOS
from exhunt.demo.traffic import Traffic, benign_week

__all__ = ["HOSTS", "DemoHost", "generate"]

DEFAULT_EXCHANGE_DIR = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


@dataclass(frozen=True, slots=True)
class DemoHost:
    """One demo Exchange server and the verdict a scanner should reach for it."""

    name: str
    layout: Literal["kape", "velociraptor", "cylr", "windows-root"]
    expected_stage: Literal["clean", "probed", "exploited", "compromised"]
    build: str
    description: str
    ip: str
    exchange_dir: str = DEFAULT_EXCHANGE_DIR

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
)


def _host_files(host: DemoHost, seed: int) -> dict[str, bytes]:
    traffic = Traffic(host.server, random.Random(f"{seed}:{host.name}"))
    benign_week(traffic)
    quirks = SCENARIOS[host.name](traffic)
    return render(host.server, traffic.evidence, quirks)


def generate(out_dir: Path, *, seed: int = 2021) -> list[Path]:
    """Write one collection per host into ``out_dir``; return their paths in :data:`HOSTS` order.

    An existing collection of the same name (``EXCH01/``, ``EXCH02.zip``...) is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [WRITERS[host.layout](out_dir, host.name, _host_files(host, seed)) for host in HOSTS]
