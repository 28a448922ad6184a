"""Which files of a collection the file-tree scan examines, and what kind of place each is in.

Places come from the detection reference (§1.8, §2.1 PL-WS-*, §2.2 PS-FILE-*, §3.1): the Exchange
web folders wherever Exchange is installed (matched on the ``\\FrontEnd\\HttpProxy\\`` and
``\\ClientAccess\\`` components, never on a fixed prefix), the IIS web root, ASP.NET's compilation
folders, the folders HAFNIUM and later actors staged tools, dumps and archives in, IIS's
``applicationHost.config`` and the Microsoft Safety Scanner log. A file outside these places is
still examined when its path is a published IOC path (place ``ioc-path``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Place names, in the order they are tested (the first that fits wins).
PLACES: tuple[str, ...] = (
    "aspnet-temp",   # ...\Temporary ASP.NET Files\... (compiled pages, App_Web_*.dll)
    "msert-log",     # %WINDIR%\debug\msert.log
    "iis-config",    # ...\inetsrv\config\applicationHost.config
    "exchange-web",  # <EX>\FrontEnd\HttpProxy\..., <EX>\ClientAccess\...
    "iis-web",       # ...\inetpub\wwwroot\... (aspnet_client, system_web)
    "staging",       # C:\ProgramData, C:\Users\All Users, C:\root, C:\PerfLogs, C:\Users\Public, %WINDIR%\Temp
    "ioc-path",      # a published IOC path anywhere else
)

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (place, re.compile(pattern, re.IGNORECASE))
    for place, pattern in (
        ("aspnet-temp", r"\\Temporary ASP\.NET Files\\"),
        ("msert-log", r"^(?:[A-Z]:)?\\Windows\\debug\\msert\.log$"),
        ("iis-config", r"\\inetsrv\\config\\applicationHost\.config$"),
        ("exchange-web", r"\\(?:FrontEnd\\HttpProxy|ClientAccess)\\"),
        ("iis-web", r"\\inetpub\\wwwroot\\"),
        ("staging", r"^(?:[A-Z]:)?\\(?:ProgramData|Users\\All Users|root|PerfLogs|Users\\Public|Windows\\Temp)\\"),
    )
)

_EXCHANGE_PART = re.compile(r"\\(?:FrontEnd\\HttpProxy|ClientAccess)\\", re.IGNORECASE)
#: Generated Offline Address Book data (not shipped, rewritten by the OAB generator): never a
#: baseline deviation (CompareExchangeHashes false positives, CSS-Exchange #320/#345).
_BASELINE_EXCLUDED = re.compile(r"^\\ClientAccess\\OAB\\", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Z]:(?=\\)", re.IGNORECASE)


def windows(path: str) -> str:
    """``path`` with backslashes only."""
    return path.replace("/", "\\")


def relevant(path: str, listed: Callable[[str], bool] | None = None) -> str | None:
    """The place name of a Windows path if the file-tree scan examines it, else ``None``; with ``listed``
    (the IOC table the scan uses), a path it lists is examined as ``ioc-path`` wherever it lies."""
    path = windows(path)
    for place, pattern in _RULES:
        if pattern.search(path):
            return place
    return "ioc-path" if listed is not None and listed(path) else None


def exchange_relative(path: str) -> str | None:
    """The part of a path below the Exchange install folder (``\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx``).

    This is how the CSS-Exchange baselines key their files. ``None`` when the path is not in an
    Exchange web folder.
    """
    path = windows(path)
    found = _EXCHANGE_PART.search(path)
    return path[found.start():] if found else None


def baseline_key(path: str) -> str | None:
    """The case-folded install-relative key of a file the baseline covers, else ``None``."""
    relative = exchange_relative(path)
    if relative is None or _BASELINE_EXCLUDED.search(relative):
        return None
    return relative.casefold()


def without_drive(path: str) -> str:
    """``C:\\inetpub\\x`` -> ``\\inetpub\\x``: IOC paths outside Exchange match on any drive."""
    return _DRIVE.sub("", windows(path))
