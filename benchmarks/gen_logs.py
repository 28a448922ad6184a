"""Generate large, realistic HttpProxy and IIS logs with known attack and decoy lines.

Benign rows imitate an Exchange 2016 front end (OWA, EWS, MAPI, ActiveSync, Autodiscover,
health probes) with the exact headers of detections.md §1.1/§1.5. Every ``--attack-every``
rows one ProxyLogon attack row is injected, and as many decoys: rows that carry the words the
rules look for (``ServerInfo~``, ``/owa/auth/``, ``X-BEResource-Cookie``...) without matching any
rule. The line numbers of both are written to ``<file>.truth.json`` so a benchmark can check
recall (every attack found) and precision (no decoy reported).

    python benchmarks/gen_logs.py OUT_DIR --size-mb 1024 [--iis-size-mb 256] [--files 1]
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exhunt.readers.w3c import EXCHANGE_DEFAULT_FIELDS
from exhunt.sources import HTTPPROXY_FIELDS

START = datetime(2021, 3, 1, tzinfo=UTC)
USERS = [f"user{n:03d}" for n in range(300)]
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.190 "
    "Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13628; Pro)",
    "Apple-iPhone12C1/1805.103",
    "AMProbe/Local/ClientAccess",
    "ExchangeServicesClient/15.01.2176.002",
]
BENIGN = [  # protocol, stem, method, status, routing hint, weight (share of requests, in %)
    # Outlook (MAPI), mobile devices (ActiveSync) and EWS clients poll all day; OWA pages and the
    # logon form are a small share, ECP an admin's (the Qazeer/plaso samples show the same protocols)
    ("Mapi", "/mapi/emsmdb/", "POST", "200", "MailboxGuid-UserPrincipalName", 36),
    ("Eas", "/Microsoft-Server-ActiveSync/default.eas", "POST", "200", "ActiveSyncDeviceId", 20),
    ("Ews", "/EWS/Exchange.asmx", "POST", "200", "WindowsIdentity", 18),
    ("Owa", "/owa/service.svc", "POST", "200", "Smtp-UserPrincipalName", 12),
    ("Autodiscover", "/autodiscover/autodiscover.xml", "POST", "200", "Smtp", 6),
    ("Owa", "/owa/", "GET", "200", "Smtp-UserPrincipalName", 5),
    ("Owa", "/owa/auth/logon.aspx", "GET", "200", "Anonymous", 1),
    ("Ecp", "/ecp/", "GET", "200", "Smtp-UserPrincipalName", 2),
]
WEIGHTS = [entry[-1] for entry in BENIGN]
ATTACKS = [  # (rule expected, field overrides)
    ("PL-SSRF-1", {"Protocol": "Ecp", "UrlStem": "/ecp/y.js", "Method": "POST", "RoutingHint": "X-BEResource-Cookie",
                   "AnchorMailbox": "ServerInfo~a]@EXCH01.contoso.local:444/mapi/emsmdb/?#",
                   "UserAgent": "python-requests/2.25.1"}),
    ("PL-SSRF-2", {"Protocol": "Ecp", "UrlStem": "/ecp/y.js", "Method": "POST", "RoutingHint": "X-BEResource-Cookie",
                   "AnchorMailbox": "ServerInfo~a]@EXCH01.contoso.local:444/ecp/proxyLogon.ecp?#",
                   "HttpStatus": "241", "UserAgent": "python-requests/2.25.1"}),
    ("PL-27065-3", {"Protocol": "Ecp", "UrlStem": "/ecp/y.js", "Method": "POST",
                    "AnchorMailbox": "ServerInfo~a]@EXCH01.contoso.local:444/ecp/DDI/DDIService.svc/SetObject?"
                                     "msExchEcpCanary=x&schema=ResetOABVirtualDirectory#",
                    "RoutingHint": "X-BEResource-Cookie", "UserAgent": "python-requests/2.25.1"}),
    ("PL-WS-5-USE-HP", {"Protocol": "Owa", "UrlStem": "/owa/auth/RedirSuiteServerProxy.aspx", "Method": "GET"}),
]
DECOYS = [  # words the rules look for, in places where they mean nothing
    {"Protocol": "Owa", "UrlStem": "/owa/auth/logon.aspx", "UserAgent": "ServerInfo~ checker (X-BEResource-Cookie)"},
    {"Protocol": "Owa", "UrlStem": "/owa/auth/RedirSuiteServiceProxy.aspx", "Method": "GET"},
    {"Protocol": "Ecp", "UrlStem": "/ecp/y.js", "RoutingHint": "Smtp-UserPrincipalName"},
    {"Protocol": "Owa", "UrlStem": "/owa/auth/signout.aspx", "GenericInfo": "AnchorMailbox=ServerInfo~;"},
]


def row(values: dict[str, str]) -> str:
    cells = []
    for name in HTTPPROXY_FIELDS:
        cell = values.get(name, "")
        cells.append('"' + cell.replace('"', '""') + '"' if ("," in cell or '"' in cell) else cell)
    return ",".join(cells)


def benign(rng: random.Random) -> dict[str, str]:
    protocol, stem, method, status, hint, _ = rng.choices(BENIGN, WEIGHTS)[0]
    user = rng.choice(USERS)
    return {
        "RequestId": str(uuid.UUID(int=rng.getrandbits(128))), "MajorVersion": "15", "MinorVersion": "1",
        "BuildVersion": "2176", "RevisionVersion": "2", "Protocol": protocol, "UrlHost": "mail.contoso.com",
        "UrlStem": stem, "AuthenticationType": "Negotiate", "IsAuthenticated": "true",
        "AuthenticatedUser": f"CONTOSO\\{user}", "AnchorMailbox": f"Smtp~{user}@contoso.com",
        "UserAgent": rng.choice(UAS), "ClientIpAddress": f"10.0.{rng.randint(1, 40)}.{rng.randint(2, 250)}",
        "ServerHostName": "EXCH01", "HttpStatus": status, "BackEndStatus": status, "Method": method,
        "ProxyAction": "Proxy", "TargetServer": "EXCH01.contoso.local", "TargetServerVersion": "15.01.2176.000",
        "RoutingType": "IntraForest", "RoutingHint": hint,
        "BackEndCookie": f"Database~{uuid.UUID(int=rng.getrandbits(128))}~~2021-03-31T00:00:00",
        "RequestBytes": str(rng.randint(200, 9000)), "ResponseBytes": str(rng.randint(200, 90000)),
        "TotalRequestTime": str(rng.randint(2, 900)),
        "GenericInfo": "BeginRequest=2021-03-01T00:00:00.000Z;CorrelationID=<empty>;ProxyState-Run=None;"
                       "FEAuth=BEVersion-1942063431;EndRequest=2021-03-01T00:00:00.100Z;",
    }


def write_httpproxy(path: Path, size: int, attack_every: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    pool = [benign(rng) for _ in range(5000)]
    truth: dict[str, list[int]] = {"attacks": [], "decoys": []}
    expected: dict[str, int] = {}
    header = ("#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.002\r\n#Log-type: HttpProxy Logs\r\n"
              f"#Date: {START:%Y-%m-%dT%H:%M:%S.000Z}\r\n#Fields: {','.join(HTTPPROXY_FIELDS)}\r\n")
    line, moment, written = 5, START, 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header)
        written += len(header)
        while written < size:
            line += 1
            moment += timedelta(milliseconds=rng.randint(1, 400))
            values = dict(pool[line % len(pool)])
            if line % attack_every == 0:
                rule, overrides = ATTACKS[(line // attack_every) % len(ATTACKS)]
                values.update(overrides, ClientIpAddress="203.0.113.45", AuthenticatedUser="", IsAuthenticated="false")
                truth["attacks"].append(line)
                expected[rule] = expected.get(rule, 0) + 1
            elif line % attack_every == attack_every // 2:
                values.update(DECOYS[(line // attack_every) % len(DECOYS)])
                truth["decoys"].append(line)
            values["DateTime"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            text = row(values) + "\r\n"
            out.write(text)
            written += len(text)
    return {**truth, "expected": expected, "lines": line}


def write_iis(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    header = ("#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
              f"#Date: {START:%Y-%m-%d %H:%M:%S}\r\n#Fields: {' '.join(EXCHANGE_DEFAULT_FIELDS)}\r\n")
    moment, written = START, 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header)
        written += len(header)
        while written < size:
            moment += timedelta(milliseconds=rng.randint(1, 400))
            protocol, stem, method, status, _, _ = rng.choices(BENIGN, WEIGHTS)[0]
            ua = rng.choice(UAS).replace(" ", "+")
            user = rng.choice(USERS)
            # ActiveSync names the user in the query, its backslash escaped (the Qazeer Eas HttpProxy sample)
            query = (f"Cmd=Ping&User=CONTOSO%5C{user}&DeviceId={rng.getrandbits(64):016X}&DeviceType=Android"
                     if protocol == "Eas" else "")
            text = (f"{moment:%Y-%m-%d %H:%M:%S} 10.0.1.11 {method} {stem} {query}&CorrelationID=<empty>;&cafeReqId="
                    f"{uuid.UUID(int=rng.getrandbits(128))}; 443 CONTOSO\\{user} "
                    f"10.0.{rng.randint(1, 40)}.{rng.randint(2, 250)} {ua} - {status} 0 0 {rng.randint(2, 900)}\r\n")
            out.write(text)
            written += len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--iis-size-mb", type=float, default=0)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--attack-every", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    folder = args.out / "Logging" / "HttpProxy" / "Ecp"
    folder.mkdir(parents=True, exist_ok=True)
    truths: dict[str, object] = {}
    for index in range(args.files):
        path = folder / f"HttpProxy_20210301{index % 24:02d}-{index // 24 + 1}.LOG"
        truths[str(path.relative_to(args.out))] = write_httpproxy(
            path, int(args.size_mb * 2**20 / args.files), args.attack_every, args.seed + index)
    args.out.with_name(args.out.name + ".truth.json").write_text(json.dumps(truths), encoding="utf-8")
    if args.iis_size_mb:
        iis = args.out / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
        iis.mkdir(parents=True, exist_ok=True)
        write_iis(iis / "u_ex210301.log", int(args.iis_size_mb * 2**20), args.seed)


if __name__ == "__main__":
    main()
