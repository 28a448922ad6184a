"""Sigma log sources exhunt reads: Exchange's text logs, and Windows ones mapped onto event-log channels
and event IDs.

Services and categories follow the Sigma taxonomy (SigmaHQ ``sigma-specification``,
``Taxonomy_specification.md``); the Sysmon event IDs are Sysmon's own. A category that
Security auditing also records (``process_creation`` = 4688) lists both sources; the EVTX
reader adds the Sysmon field names (``Image``, ``ParentImage``) to 4688 events.
"""

from __future__ import annotations

#: ``product: exchange`` services: exhunt's own taxonomy for Exchange's text logs, each named as the source
#: kind it reads (``category: webserver`` is SigmaHQ's for IIS).
EXCHANGE_SERVICES = frozenset({"httpproxy", "ecp-server", "ecp-activity", "oabgenerator", "rps-http"})

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"

#: ``product: windows, service: X`` -> channel.
SERVICES: dict[str, str] = {
    "security": "Security",
    "system": "System",
    "application": "Application",
    "sysmon": SYSMON,
    "powershell": POWERSHELL,
    "powershell-classic": "Windows PowerShell",
    "msexchange-management": "MSExchange Management",
    "windefend": "Microsoft-Windows-Windows Defender/Operational",
    "taskscheduler": "Microsoft-Windows-TaskScheduler/Operational",
    "wmi": "Microsoft-Windows-WMI-Activity/Operational",
    "bits-client": "Microsoft-Windows-Bits-Client/Operational",
    "codeintegrity-operational": "Microsoft-Windows-CodeIntegrity/Operational",
    "terminalservices-localsessionmanager": "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "dns-server": "DNS Server",
}

#: ``product: windows, category: X`` -> (channel, event IDs) pairs.
CATEGORIES: dict[str, tuple[tuple[str, frozenset[int]], ...]] = {
    name: tuple((channel, frozenset(ids)) for channel, ids in pairs)
    for name, pairs in {
        "process_creation": ((SYSMON, {1}), ("Security", {4688})),
        "file_change": ((SYSMON, {2}),),
        "network_connection": ((SYSMON, {3}),),
        "process_termination": ((SYSMON, {5}),),
        "driver_load": ((SYSMON, {6}),),
        "image_load": ((SYSMON, {7}),),
        "create_remote_thread": ((SYSMON, {8}),),
        "raw_access_thread": ((SYSMON, {9}),),
        "process_access": ((SYSMON, {10}),),
        "file_event": ((SYSMON, {11}),),
        "registry_add": ((SYSMON, {12}),),
        "registry_delete": ((SYSMON, {12}),),
        "registry_set": ((SYSMON, {13}),),
        "registry_rename": ((SYSMON, {14}),),
        "registry_event": ((SYSMON, {12, 13, 14}),),
        "create_stream_hash": ((SYSMON, {15}),),
        "pipe_created": ((SYSMON, {17, 18}),),
        "wmi_event": ((SYSMON, {19, 20, 21}),),
        "dns_query": ((SYSMON, {22}),),
        "file_delete": ((SYSMON, {23, 26}),),
        "clipboard_capture": ((SYSMON, {24}),),
        "process_tampering": ((SYSMON, {25}),),
        "file_block_executable": ((SYSMON, {27}),),
        "file_block_shredding": ((SYSMON, {28}),),
        "file_executable_detected": ((SYSMON, {29}),),
        "ps_module": ((POWERSHELL, {4103}),),
        "ps_script": ((POWERSHELL, {4104}),),
        "ps_classic_start": (("Windows PowerShell", {400}),),
        "ps_classic_provider_start": (("Windows PowerShell", {600}),),
    }.items()
}


def windows_channels(service: str | None, category: str | None) -> dict[str, frozenset[int] | None] | None:
    """Channels (and event IDs, ``None`` = any) a Windows logsource selects; ``None`` if unknown."""
    if category is not None:
        pairs = CATEGORIES.get(category)
        if pairs is None:
            return None
        channels: dict[str, frozenset[int] | None] = dict(pairs)
        if service is not None:
            wanted = SERVICES.get(service)
            channels = {name: ids for name, ids in channels.items() if name == wanted}
        return channels or None
    if service is not None and service in SERVICES:
        return {SERVICES[service]: None}
    return None
