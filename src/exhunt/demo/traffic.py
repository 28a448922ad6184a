"""Benign Exchange client traffic, drawn from one ``random.Random`` per host.

:class:`Traffic` turns requests into :class:`~exhunt.demo.formats.Request` objects (ids and
latencies from the RNG) and collects everything a host's logs will hold in
:class:`Evidence`. :func:`benign_week` adds a week of ordinary use: OWA, Outlook
(Autodiscover, MAPI, EWS), ActiveSync, Exchange health probes and an administrator in ECP.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from exhunt.demo.formats import BackEnd, EcpEvent, HttpErr, Request, RpsRequest, Server, WinEvent

DOMAIN = "CONTOSO"
SID_PREFIX = "S-1-5-21-1004336348-1177238915-682003330"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
ADMIN = "administrator"
ADMIN_WORKSTATION = "10.0.5.20"
FIRST_DAY = datetime(2021, 3, 1, tzinfo=UTC)
DAYS = 8

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/88.0.4324.190 Safari/537.36"
)
BROWSERS = (
    CHROME,
    CHROME + " Edg/88.0.705.81",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:86.0) Gecko/20100101 Firefox/86.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.0.3 Safari/605.1.15",
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13801; Pro)"
MOBILE = ("Apple-iPhone12C1/1804.40", "Outlook-iOS-Android/1.0", "Android-Mail/2021.02.07.356393683.Release")
PROBE = "AMProbe/Local/ClientAccess"
OWA_ACTIONS = ("FindItem", "GetItem", "GetConversationItems", "GetReminders", "FindConversation")


def user_sid(user: str) -> str:
    """The domain SID of a demo user (``administrator`` is RID 500)."""
    rid = 500 if user == ADMIN else 1105 + USERS.index(user)
    return f"{SID_PREFIX}-{rid}"


def mailbox_guid(user: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{user}@contoso.com"))


@dataclass
class Evidence:
    """Everything the logs of one host will contain, in no particular order."""

    requests: list[Request] = field(default_factory=list)
    ecp: list[EcpEvent] = field(default_factory=list)
    oab: list[tuple[datetime, str]] = field(default_factory=list)
    httperr: list[HttpErr] = field(default_factory=list)
    rps: list[RpsRequest] = field(default_factory=list)
    events: list[WinEvent] = field(default_factory=list)


class Traffic:
    """Builds the evidence of one server; every random choice comes from ``rng``."""

    def __init__(self, server: Server, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.evidence = Evidence()
        self.database = str(uuid.uuid5(uuid.NAMESPACE_DNS, server.fqdn))
        self.health_mailbox = "HealthMailbox" + uuid.uuid5(uuid.NAMESPACE_OID, server.name).hex[:7]

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def canary(self) -> str:
        """An ``msExchEcpCanary`` value."""
        return "".join(self.rng.choices(string.ascii_letters + string.digits + "-_", k=43)) + "."

    def later(self, moment: datetime, low_ms: int = 300, high_ms: int = 9000) -> datetime:
        return moment + timedelta(milliseconds=self.rng.randint(low_ms, high_ms))

    def add(
        self, moment: datetime, client: str, method: str, stem: str, status: int, *,
        ua: str, protocol: str | None, query: str = "", proxy: bool = False, latency_ms: int | None = None,
        **fields: Any,
    ) -> Request:
        """Record a request; ``proxy`` sends it to this server's back end under the same user."""
        if proxy:
            fields.setdefault("target_server", self.server.fqdn)
            fields.setdefault("backend", BackEnd(stem, query, fields.get("user", ""), status))
        request = Request(
            time=moment, request_id=self.guid(), latency_ms=latency_ms or self.rng.randint(4, 180), client_ip=client,
            method=method, stem=stem, query=query, user_agent=ua, status=status, protocol=protocol, **fields,
        )
        self.evidence.requests.append(request)
        return request

    def ecp(self, moment: datetime, session: str, user: str, cmd: str, url: str, exception: str = "") -> None:
        """Record an ``ECP.Request`` row run for ``user`` in ECP session ``session``."""
        event = EcpEvent(moment, self.rng.randint(9, 420), session, user_sid(user), self.guid(), cmd, url, exception)
        self.evidence.ecp.append(event)

    def rps(self, moment: datetime, hops: str, user: str, client_info: str, status: int, query: str = "",
            method: str = "POST") -> RpsRequest:
        """Record a request to the back-end remote PowerShell (a row of the Rps_Http log)."""
        request = RpsRequest(moment, self.guid(), self.rng.randint(20, 400), hops, user, client_info, status, query,
                             self.rng.randint(800, 6000) if method == "POST" else 0, method)
        self.evidence.rps.append(request)
        return request

    def event(self, channel: str, provider: str, event_id: int, moment: datetime,
              data: tuple[tuple[str | None, str], ...], **fields: Any) -> WinEvent:
        """Record an event-log record (``fields``: ``level``, ``qualifiers``, ``provider_guid``)."""
        event = WinEvent(channel, provider, event_id, moment, data, **fields)
        self.evidence.events.append(event)
        return event

    def signed_in(self, user: str, moment: datetime, anchor: str, hint: str) -> dict[str, Any]:
        """Request fields of an authenticated, proxied request with a mailbox back-end cookie."""
        expiry = (moment + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
        return {
            "user": f"{DOMAIN}\\{user}", "anchor": anchor, "routing_hint": hint,
            "backend_cookie": f"Database~{self.database}~~{expiry}", "proxy": True,
        }


def _external_ip(user: str) -> str:
    index = USERS.index(user)
    return f"198.51.100.{101 + index}" if index % 2 else f"192.0.2.{101 + index}"


def _internal_ip(user: str) -> str:
    return f"10.0.6.{21 + USERS.index(user)}"


def owa_session(t: Traffic, user: str, moment: datetime) -> None:
    """Forms-based sign-in to OWA, then a few ``service.svc`` calls."""
    rng = t.rng
    client = rng.choice((_external_ip(user), _internal_ip(user)))
    ua = BROWSERS[USERS.index(user) % len(BROWSERS)]
    t.add(moment, client, "GET", "/owa/", 302, ua=ua, protocol="Owa", auth_type="FBA")
    moment = t.later(moment, 100, 900)
    t.add(moment, client, "GET", "/owa/auth/logon.aspx", 200, ua=ua, protocol="Owa", auth_type="FBA",
          query="url=https%3a%2f%2fmail.contoso.com%2fowa%2f&reason=0")
    moment = t.later(moment, 3000, 15000)
    t.add(moment, client, "POST", "/owa/auth.owa", 302, ua=ua, protocol="Owa", auth_type="FBA",
          referer="https://mail.contoso.com/owa/auth/logon.aspx")
    signed = {"auth_type": "FBA", **t.signed_in(user, moment, f"Smtp~{user}@contoso.com", "Smtp-UserPrincipalName")}
    moment = t.later(moment, 200, 1500)
    t.add(moment, client, "GET", "/owa/", 200, ua=ua, protocol="Owa", **signed)
    for _ in range(rng.randint(1, 3)):
        moment = t.later(moment, 500, 30000)
        action = rng.choice(OWA_ACTIONS)
        t.add(moment, client, "POST", "/owa/service.svc", 200, ua=ua, protocol="Owa",
              query=f"action={action}&app=Mail&n={rng.randint(1, 90)}",
              referer="https://mail.contoso.com/owa/", **signed)


def outlook_session(t: Traffic, user: str, moment: datetime) -> None:
    """Outlook start-up: Autodiscover, a few MAPI/HTTP calls, one EWS call."""
    client = _internal_ip(user) if t.rng.random() < 0.7 else _external_ip(user)
    sid_fields = t.signed_in(user, moment, f"Sid~{user_sid(user)}", "WindowsIdentity")
    t.add(moment, client, "POST", "/autodiscover/autodiscover.xml", 200, ua=OUTLOOK, protocol="Autodiscover",
          url_host="autodiscover.contoso.com", auth_type="NTLM", **sid_fields)
    mailbox = mailbox_guid(user)
    connection = t.guid()
    mapi = t.signed_in(user, moment, f"MailboxGuid~{mailbox}", "MailboxGuidWithDomain")
    for number in range(1, t.rng.randint(3, 5)):
        moment = t.later(moment, 50, 4000)
        t.add(moment, client, "POST", "/mapi/emsmdb/", 200, ua=OUTLOOK, protocol="Mapi", auth_type="Negotiate",
              query=f"MailboxId={mailbox}@contoso.com",
              client_request_id=f"R:{connection}:{number};RT:Execute;CI:{connection}:1;CID:{t.guid()}", **mapi)
    moment = t.later(moment, 500, 20000)
    t.add(moment, client, "POST", "/EWS/Exchange.asmx", 200, ua=OUTLOOK, protocol="Ews",
          auth_type="Negotiate", **sid_fields)


def mobile_session(t: Traffic, user: str, moment: datetime) -> None:
    """An ActiveSync device syncing with Basic authentication."""
    index = USERS.index(user)
    ua = MOBILE[index % len(MOBILE)]
    device = uuid.uuid5(uuid.NAMESPACE_URL, user).hex.upper()[:24]
    fields = t.signed_in(user, moment, f"Smtp~{user}@contoso.com", "Smtp-UserPrincipalName")
    fields["user"] = f"{user}@contoso.com"
    for command in ("FolderSync", "Sync", "Ping")[: t.rng.randint(2, 3)]:
        moment = t.later(moment, 200, 5000)
        t.add(moment, f"192.0.2.{201 + index}", "POST", "/Microsoft-Server-ActiveSync/default.eas", 200,
              ua=ua, protocol="Eas", auth_type="Basic",
              query=f"Cmd={command}&User={user}&DeviceId={device}&DeviceType={ua.split('-')[0]}", **fields)


def health_probes(t: Traffic, moment: datetime) -> None:
    """Managed-availability probes of OWA and EWS from the server itself."""
    probe = {
        "ua": PROBE, "url_host": "localhost", "auth_type": "Negotiate", "user": f"{DOMAIN}\\{t.health_mailbox}",
        "anchor": f"Sid~{SID_PREFIX}-1142", "routing_hint": "WindowsIdentity", "proxy": True,
    }
    t.add(moment, "127.0.0.1", "GET", "/owa/", 200, protocol="Owa", **probe)
    t.add(t.later(moment, 20, 400), "127.0.0.1", "GET", "/ews/", 200, protocol="Ews", **probe)


def admin_session(t: Traffic, moment: datetime, cmds: tuple[tuple[str, str], ...] = ()) -> None:
    """The administrator browses ECP from the admin workstation; ``cmds`` are extra (DDI method, cmdlet) pairs."""
    ua = BROWSERS[1]
    fields = {"auth_type": "FBA", **t.signed_in(ADMIN, moment, f"Sid~{user_sid(ADMIN)}", "WindowsIdentity")}
    t.add(moment, ADMIN_WORKSTATION, "GET", "/ecp/", 200, ua=ua, protocol="Ecp", **fields)
    session, canary = t.guid(), t.canary()
    steps = [("GetList", "MailboxService", "Get-Recipient.PropertySet=ConsoleSmallSet.ResultSize=500")]
    steps += [(method, "OABVirtualDirectory", cmd) for method, cmd in cmds]
    for method, schema, cmd in steps:
        moment = t.later(moment, 1000, 25000)
        query = f"msExchEcpCanary={canary}&schema={schema}"
        request = t.add(moment, ADMIN_WORKSTATION, "POST", f"/ecp/DDI/DDIService.svc/{method}", 200, ua=ua,
                        protocol="Ecp", query=query, referer="https://mail.contoso.com/ecp/", **fields)
        ran = moment - timedelta(milliseconds=request.latency_ms // 2)
        t.ecp(ran, session, ADMIN, cmd, f"/ecp/DDI/DDIService.svc/{method}?{query}")


def oab_generation(t: Traffic, moment: datetime) -> None:
    """A routine OAB generation run (message text assumed, see ``formats.oab_generator_log``)."""
    oab = "'\\Default Offline Address Book'"
    t.evidence.oab.append((moment, f"Beginning generation of OAB {oab}."))
    finished = f"Finished generation of OAB {oab}; {len(USERS) + 3} entries."
    t.evidence.oab.append((t.later(moment, 4000, 40000), finished))


def benign_week(t: Traffic, first_day: datetime = FIRST_DAY) -> None:
    """Two busy hours a day for :data:`DAYS` days from ``first_day`` (default 2021-03-01), a nightly
    OAB run, the admin in ECP twice."""
    rng = t.rng
    sessions = (owa_session, outlook_session, mobile_session)
    for day in range(DAYS):
        midnight = first_day + timedelta(days=day)
        oab_generation(t, midnight + timedelta(hours=2, seconds=rng.randint(0, 900)))
        for hour in sorted(rng.sample(range(7, 18), 2)):
            start = midnight + timedelta(hours=hour)
            health_probes(t, start + timedelta(seconds=rng.randint(0, 300)))
            for _ in range(rng.randint(2, 3)):
                session = rng.choice(sessions)
                session(t, rng.choice(USERS), start + timedelta(seconds=rng.randint(0, 3300)))
        if day in (0, 4):
            admin_session(t, midnight + timedelta(hours=15, seconds=rng.randint(0, 3000)))


def rps_probes(t: Traffic, first_day: datetime) -> None:
    """Ordinary remote-PowerShell use in the Rps_Http log: Exchange's own back-end probes twice a day and the
    administrator's Exchange Management Shell (``Microsoft WinRM Client``) on two days."""
    rng = t.rng
    query = f"serializationLevel=Full;ExchClientVer={t.server.build};clientApplication=ManagementShell;TargetServer=;"
    for day in range(DAYS):
        midnight = first_day + timedelta(days=day)
        for hour in sorted(rng.sample(range(24), 2)):
            moment = midnight + timedelta(hours=hour, seconds=rng.randint(0, 3000))
            t.rps(moment, t.server.ip, f"{t.health_mailbox}@contoso.com", "Exchange BackEnd Probes", 200,
                  query + "PSVersion=5.1.17763.1852", method="GET")
        if day in (1, 4):
            moment = midnight + timedelta(hours=14, seconds=rng.randint(0, 3000))
            for _ in range(rng.randint(3, 5)):
                t.rps(moment, ADMIN_WORKSTATION, f"{ADMIN}@contoso.com", "Microsoft WinRM Client", 200,
                      query + "PSVersion=5.1.17763.1852")
                moment = t.later(moment, 300, 5000)
