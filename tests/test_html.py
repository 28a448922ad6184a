"""``report.html``: structure, determinism, escaping of hostile evidence, and a real headless Chromium.

The hostile evidence goes through the real pipeline: an HttpProxy log in a KAPE folder whose cells
(and whose server name, which becomes the host name) carry HTML/JS payloads and broken UTF-8.
A finding with a lone surrogate and control characters is added to that result afterwards
(no reader produces lone surrogates) together with a diagnostic that carries payloads.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import html
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exhunt.analysis.mailboxes import CONFIRMED_EXPORTED, MailboxRow
from exhunt.analysis.refs import EvidenceRef
from exhunt.model import Diagnostic, Finding, FindingStage, Level, RuleInfo, ScanResult
from exhunt.outputs import html as report
from exhunt.outputs.contract import write_output_dir
from exhunt.scan import scan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logfmt import CRLF, EXCHANGE, HTTPPROXY_FIELDS_LINE, httpproxy_line

REPO = Path(__file__).resolve().parents[1]
COMMAND = "exhunt scan examples/ -o out"

P_SCRIPT = "<script>alert(1)</script>"
P_IMG = "<img src=x onerror=alert(2)>"
P_JS_URL = "javascript:alert(3)"
P_BREAKOUT = '"><svg onload=alert(4)>'
P_CSS = "</style><style>body{background:url(javascript:alert(5))}"
HOSTILE_HOST = "EXCH<b>9</b>\"'&amp;"
BROKEN_UTF8 = b"\xc3\x28\xff\xfe"
LONE_SURROGATE = "\ud800"
CONTROLS = "bell\x07nul\x00esc\x1b[31mred\u202egnp.exe"
FIXED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

#: Elements the report may contain; anything else in a DOM came from somewhere it should not have.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "main", "footer", "section", "h1", "h2",
                "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "code", "span", "div", "a", "br",
                "details", "summary", "wbr", "svg", "g", "rect", "line", "text"}
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "data", "poster", "background", "xlink:href",
                  "ping", "cite", "manifest"}


class Elements(HTMLParser):
    """Every element (tag and attributes) and all text of a document, as a browser tokenizer sees it."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    @property
    def text(self) -> str:
        return "".join(self.texts)


def assert_inert(document: str, hosts: int) -> Elements:
    """No element, attribute or URL that the report does not create itself."""
    parsed = Elements(document)
    unexpected = {tag for tag, _ in parsed.elements} - ALLOWED_TAGS
    assert not unexpected, unexpected
    assert len(parsed.tags("style")) == 1 and not parsed.tags("script")
    assert len(parsed.tags("svg")) == hosts
    for tag, attrs in parsed.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert "javascript:" not in (value or "").lower(), (tag, name, value)
            if name in URL_ATTRIBUTES:
                assert tag == "a" and name == "href" and re.fullmatch(r"#host-[0-9]+", value or ""), (tag, name)
    metas = parsed.tags("meta")
    assert {"http-equiv": "Content-Security-Policy", "content": report.CSP} in metas
    assert not [m for m in metas if (m.get("http-equiv") or "").lower() == "refresh"]
    return parsed


# --- the examples/ scan ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def result() -> ScanResult:
    return scan([str(REPO / "examples")])


@pytest.fixture(scope="module")
def document(result: ScanResult) -> str:
    return report.render_html(result, COMMAND)


def test_report_has_every_host_with_stage_and_one_chart(result: ScanResult, document: str) -> None:
    assert document.startswith("<!DOCTYPE html>")
    assert "<script" not in document.lower()
    parsed = assert_inert(document, len(result.hosts))
    sections = document.split('<section class="host" id="host-')[1:]
    assert len(sections) == len(result.hosts) == 8
    for index, (host, section) in enumerate(zip(result.hosts, sections, strict=True), start=1):
        assert section.startswith(f'{index}">\n<h2>{html.escape(host.host)} ')
        assert f'<span class="badge {report.STAGE_CLASSES[host.stage]}">{host.stage}</span>' in section
        assert section.count("<svg") == 1
        for cov in host.coverage:
            assert f"<td>{html.escape(cov.kind)}</td>" in section
        for gap in host.not_assessed:
            assert html.escape(gap) in section
        assert f'<a href="#host-{index}">{html.escape(host.host)}</a>' in document
    run = parsed.text
    assert COMMAND in run and f"Rules{len(result.rules)}" in run
    assert "examples" in run and "exhunt version" in run


def test_scoping_sections(result: ScanResult, document: str) -> None:
    sections = dict(zip((h.host for h in result.hosts), document.split('<section class="host" id="host-')[1:],
                        strict=True))
    exch05 = sections["EXCH05"]
    mailboxes = exch05[exch05.index("<h3>Mailboxes</h3>"):]
    assert "<td>bob</td><td>confirmed exported</td>" in mailboxes
    assert "EXCH05 C:\\Windows\\System32\\winevt\\Logs\\MSExchange Management.evtx:4 PS-CMD-1" in mailboxes
    exch01 = sections["EXCH01"]
    incidents = exch01[exch01.index("<h3>Incidents</h3>"):exch01.index("<h3>Mailboxes</h3>")]
    assert "203.0.113.45" in incidents and "ssrf: " in incidents and "webshell-used: " in incidents
    assert "No mailbox access shown" in sections["EXCH03"] and "No attacker activity" in sections["EXCH03"]
    seen = document[document.index("<h2>Seen on several hosts</h2>"):document.index('<section class="host"')]
    assert "python-requests/2.26.0" in seen and "EXCH06" in seen and "EXCH08" in seen
    summary = document[:document.index("<h2>Seen on several hosts</h2>")]
    assert "First compromise" in summary and "1 confirmed exported" in summary
    assert "Context (pivot pass)" in sections["EXCH02"]


def test_no_resource_is_loaded_from_anywhere(document: str) -> None:
    style = document.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    for tag, attrs in Elements(document).elements:
        for name, value in attrs.items():
            assert "http:" not in (value or "") and "https:" not in (value or ""), (tag, name)
    # Text may mention URLs (user agents do); they are never links.
    assert "duckduckgo.com" in document
    assert not re.search(r"<a [^>]*href=\"(?!#host-)", document)


def test_report_is_deterministic(result: ScanResult, document: str) -> None:
    assert report.render_html(result, COMMAND) == document
    again = scan([str(REPO / "examples")])
    pinned = [dataclasses.replace(r, started=FIXED, finished=FIXED) for r in (result, again)]
    assert report.render_html(pinned[0], COMMAND) == report.render_html(pinned[1], COMMAND)


def test_summary_row_has_attacker_window_and_level_counts(result: ScanResult, document: str) -> None:
    host = next(h for h in result.hosts if h.host == "EXCH01")
    medium_up = sorted(f.time for f in host.findings if f.time and f.rule.level >= Level.MEDIUM)
    assert report.attacker_window(host) == (medium_up[0], medium_up[-1])
    summary = document.split("<h2>Executive summary</h2>", 1)[1].split("</table>", 1)[0]
    row = summary.split('<a href="#host-1">EXCH01</a>', 1)[1].split("</tr>", 1)[0]
    assert "2021-03-03<wbr>T06:41:10.000Z" in row  # first medium+ finding (a line-break opportunity, no text)
    assert "15.1.2176.2" in row and "ProxyLogon 4/4" in row and "none found" in row
    critical = sum(f.rule.level == Level.CRITICAL for f in host.findings)
    assert f'<td class="num">{critical}</td>' in row


def test_chart_counts_every_dated_finding_per_utc_day(result: ScanResult) -> None:
    for host in result.hosts:
        chart = report.activity_chart(host)
        dated = sum(f.time is not None for f in host.findings)
        bars = re.findall(r"<g><title>(\d{4}-\d{2}-\d{2}) \(UTC\): (\d+) finding", chart)
        assert sum(int(count) for _, count in bars) == dated
        days = {f.time.astimezone(UTC).date().isoformat() for f in host.findings if f.time}
        assert {day for day, _ in bars} == days
        first, last = report.evidence_window(host)
        assert first and last and f"window {first.date().isoformat()} .. {last.date().isoformat()}" in chart


def test_output_dir_writes_report_html(result: ScanResult, tmp_path: Path) -> None:
    written = write_output_dir(result, tmp_path, COMMAND)
    assert written[-1] == tmp_path / "report.html"
    assert written[-1].read_text(encoding="utf-8") == report.render_html(result, COMMAND)


def test_host_without_evidence_still_gets_a_chart(result: ScanResult) -> None:
    empty = dataclasses.replace(result.hosts[0], coverage=(), findings=(), chains=(), stage_reasons=())
    chart = report.activity_chart(empty)
    assert chart.count("<svg") == 1 and "no dated evidence" in chart


# --- hostile evidence ------------------------------------------------------------------------------

def write_hostile_kape(root: Path) -> Path:
    """A KAPE collection of one host whose HttpProxy line (a ProxyLogon SSRF) carries the payloads."""
    row = {
        "AnchorMailbox": "ServerInfo~a]@exch01.contoso.local:444/ecp/" + P_SCRIPT,
        "UserAgent": P_IMG + " BROKEN " + P_BREAKOUT,
        "UrlStem": "/ecp/y.js",
        "Method": "POST",
        "RoutingHint": P_CSS,
        "BackEndCookie": P_JS_URL + "\u2028end",
        "ServerHostName": HOSTILE_HOST,
    }
    header = ["#Software: Microsoft Exchange Server", "#Version: 15.01.2176.002", "#Log-type: HttpProxy Logs",
              "#Date: 2021-03-03T06:00:00.000Z", HTTPPROXY_FIELDS_LINE]
    data = "".join(line + CRLF for line in [*header, httpproxy_line(row)]).encode("utf-8")
    target = root.joinpath("HOSTX", *EXCHANGE, "Logging", "HttpProxy", "Ecp", "HttpProxy_2021030306-1.LOG")
    target.parent.mkdir(parents=True)
    target.write_bytes(data.replace(b"BROKEN", BROKEN_UTF8))
    return root / "HOSTX"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    collection = write_hostile_kape(tmp_path_factory.mktemp("kape"))
    scanned = scan([str(collection)])
    assert [h.host for h in scanned.hosts] == [HOSTILE_HOST]
    host = scanned.hosts[0]
    assert host.findings and any(f.rule.id == "PL-SSRF-1" for f in host.findings)
    rule = RuleInfo(id="X<i>1</i>", title=P_SCRIPT, level=Level.HIGH, stage=FindingStage.POST,
                    cves=("CVE-2021-26855",))
    extra = Finding(host=host.host, rule=rule, time=datetime(2021, 3, 4, 1, 2, 3, tzinfo=UTC),
                    source="C:\\x\\" + P_BREAKOUT, line=3, client_ip=P_IMG,
                    evidence={P_SCRIPT: "surrogate " + LONE_SURROGATE + " here", "controls": CONTROLS,
                              "css": P_CSS})
    diagnostic = Diagnostic(code="EXH-T001", level="warning", message=P_IMG + LONE_SURROGATE,
                            source=P_BREAKOUT, host=host.host)
    return dataclasses.replace(scanned, hosts=(dataclasses.replace(host, findings=(*host.findings, extra)),),
                               diagnostics=(*scanned.diagnostics, diagnostic))


@pytest.fixture(scope="module")
def hostile_document(hostile: ScanResult) -> str:
    return report.render_html(hostile, "exhunt scan " + P_SCRIPT)


def test_payloads_are_visible_text_never_markup(hostile: ScanResult, hostile_document: str) -> None:
    doc = hostile_document
    parsed = assert_inert(doc, hosts=1)
    for payload in (P_SCRIPT, P_IMG, P_BREAKOUT, P_CSS, HOSTILE_HOST):
        assert payload not in doc
        assert html.escape(payload, quote=True) in doc
        assert payload in parsed.text  # what a reader sees
    assert P_JS_URL in parsed.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "EXCH&lt;b&gt;9&lt;/b&gt;&quot;&#x27;&amp;amp;" in doc  # an entity in the evidence stays text
    assert not [t for t, _ in parsed.elements if t in ("b", "i", "img", "script")]
    # The host name never reaches an attribute, so it cannot break out of one.
    assert not [v for _, attrs in parsed.elements for v in attrs.values() if v and "EXCH" in v]


def test_invalid_and_invisible_characters_are_replaced_or_shown(hostile: ScanResult, hostile_document: str) -> None:
    doc = hostile_document
    doc.encode("utf-8")  # strict: no lone surrogate survived
    assert not re.search("[\ud800-\udfff\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", doc)
    assert "surrogate \ufffd here" in doc
    assert "\ufffd(\ufffd\ufffd" in doc  # the broken UTF-8 bytes, as the reader replaced them
    assert "javascript:alert(3)\\u2028end" in doc
    assert "bell\\x07nul\\x00esc\\x1b[31mred\\u202egnp.exe" in doc
    assert any(d.code == "EXH-R003" for d in hostile.diagnostics)
    assert "EXH-R003" in doc and "EXH-T001" in doc


def test_clean_and_text_helpers() -> None:
    assert report.text('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert report.clean("a\r\nb\tc\u2029\ufeff\U0010ffff\udc80") == "a\\r\\nb\\tc\\u2029\\ufeff\\U0010ffff\ufffd"
    assert report.text("x" * 10, limit=4) == "xxxx… (6 more characters)"


# --- headless Chromium -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--mute-audio"]
BASH = shutil.which("bash") or "/bin/bash"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def hostile_file(hostile: ScanResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.write_html(hostile, tmp_path_factory.mktemp("report") / "report.html", "exhunt scan x")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *args], capture_output=True, timeout=60, check=False)


def page_messages(stderr: bytes) -> list[str]:
    """Console output and alerts of the page, as Chromium logs them (``INFO:CONSOLE:1] "..."``)."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    return [line for line in lines if "CONSOLE" in line or "alert" in line.lower() or "Refused to" in line]


def png_colours(data: bytes, rows: int = 400) -> set[bytes]:
    """Distinct pixel values in the first ``rows`` rows of an 8-bit RGB/RGBA PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(min(rows, height)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
        previous = line
    return colours


@needs_chromium
def test_chromium_renders_payloads_as_text(hostile_file: Path, tmp_path: Path) -> None:
    url = hostile_file.as_uri()
    dumped = chromium("--dump-dom", url, profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout.decode("utf-8")
    # Chromium's serialisation of text nodes: the payloads are text, escaped again on output.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=alert(2)&gt;" in dom
    assert "\"&gt;&lt;svg onload=alert(4)&gt;" in dom
    assert "&lt;/style&gt;&lt;style&gt;body{background:url(javascript:alert(5))}" in dom
    assert '<img src="x"' not in dom and "<script" not in dom
    parsed = assert_inert(dom, hosts=1)
    assert P_SCRIPT in parsed.text and P_IMG in parsed.text and P_JS_URL in parsed.text
    assert not page_messages(dumped.stderr), page_messages(dumped.stderr)

    png = tmp_path / "shot.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1280,2000", url, profile=tmp_path / "profile-png")
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    assert not page_messages(shot.stderr), page_messages(shot.stderr)
    colours = png_colours(png.read_bytes())
    assert len(colours) > 16, len(colours)  # text, table lines, badge and chart colours: not blank


def _above_four(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class DevTools:
    """The Chrome DevTools Protocol over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out; NUL-separated JSON)."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # Above fd 9, so that bash's ``3<&N 4>&M`` cannot overwrite one with the other.
        to_chrome, from_chrome = (_above_four(fd) for fd in (to_chrome, from_chrome))
        self.proc = subprocess.Popen(
            [BASH, "-c", f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome}', CHROMIUM, *FLAGS,
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self.events: list[dict] = []
        self._replies: dict[int, dict] = {}
        self._inbox: queue.Queue[dict | None] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        buffer = b""
        while chunk := os.read(self._read, 65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def _receive(self, deadline: float) -> bool:
        try:
            message = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if message is None:
            raise AssertionError("Chromium closed the DevTools pipe")
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append(message)
        return True

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        message: dict[str, object] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 20
        while self._next not in self._replies:
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply to {method}")
            self._receive(deadline)
        reply = self._replies.pop(self._next)
        assert "error" not in reply, reply
        return reply["result"]

    def wait_for(self, method: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not any(e["method"] == method for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method} event")
            self._receive(deadline)

    def settle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._receive(deadline)

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)


@needs_chromium
def test_chromium_devtools_sees_no_request_script_or_console_message(hostile_file: Path, tmp_path: Path) -> None:
    url = hostile_file.as_uri()
    tools = DevTools(tmp_path / "profile-cdp")
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            tools.call(f"{domain}.enable", session=session)
        tools.events.clear()
        tools.call("Page.navigate", {"url": url}, session=session)
        tools.wait_for("Page.loadEventFired", 20)
        tools.settle(0.5)
        probe = ("JSON.stringify({scripts: document.scripts.length, images: document.images.length,"
                 " svgs: document.querySelectorAll('svg').length, styles: document.querySelectorAll('style').length,"
                 " handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.getAttributeNames()])"
                 ".filter(n => n.startsWith('on')).length, text: document.body.innerText})")
        state = json.loads(tools.call("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                      session=session)["result"]["value"])
        screenshot = tools.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    finally:
        tools.close()
    page_events = [e for e in tools.events if e.get("sessionId") == session]
    requests = [e["params"]["request"]["url"] for e in page_events if e["method"] == "Network.requestWillBeSent"]
    assert requests == [url]  # the report itself, nothing else
    noisy = {"Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded", "Page.javascriptDialogOpening"}
    assert not [e for e in page_events if e["method"] in noisy]
    assert state["scripts"] == state["images"] == state["handlers"] == 0
    assert state["svgs"] == 1 and state["styles"] == 1
    for payload in (P_SCRIPT, P_IMG, P_JS_URL, P_BREAKOUT, P_CSS, HOSTILE_HOST):
        assert payload in state["text"], payload
    assert len(png_colours(base64.b64decode(screenshot))) > 16


def test_mailbox_and_incident_text_is_escaped() -> None:
    ref = EvidenceRef(P_IMG, "C:\\" + P_SCRIPT, 1, "PS-CMD-1")
    row = MailboxRow(P_IMG, P_SCRIPT, CONFIRMED_EXPORTED, P_IMG, None, None, (ref,), notes=(P_SCRIPT,))
    table = report._mailbox_table([row])
    assert P_SCRIPT not in table and P_IMG not in table
    assert table.count(html.escape(P_SCRIPT, quote=True)) == 3
