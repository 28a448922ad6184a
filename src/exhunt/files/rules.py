"""The YARA rules of the file-tree scan: compiled once with YARA-X, with their metadata as RuleInfo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yara_x

from exhunt.model import FindingStage, Level, RuleInfo

RULES_DIR = Path(__file__).resolve().parents[1] / "rules" / "yara"
#: External variables every rule may use; exhunt sets them for each file it scans.
EXTERNALS = ("place", "filename")
REQUIRED_META = ("id", "title", "stage", "level", "cves", "reference")

_COMMENTS = re.compile(r"/\*.*?\*/|^\s*//[^\n]*", re.MULTILINE | re.DOTALL)
_RULE = re.compile(r"(?:^|\s)(?:private\s+|global\s+)*rule\s+(\w+)\s*(?::[^{]*)?\{(.*?)\bcondition\s*:", re.DOTALL)
_META_BLOCK = re.compile(r"\bmeta\s*:(.*?)(?:\bstrings\s*:|\Z)", re.DOTALL)
_META_ITEM = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class FileRules:
    """Compiled rules and the RuleInfo of each rule, by YARA rule identifier."""

    compiled: yara_x.Rules
    infos: dict[str, RuleInfo]

    def scanner(self, timeout: int = 30) -> yara_x.Scanner:
        """A new scanner (not thread-safe: one per scan) with every external defined."""
        scanner = yara_x.Scanner(self.compiled)
        scanner.set_timeout(timeout)
        return scanner


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_meta(text: str, origin: str = "") -> dict[str, RuleInfo]:
    """RuleInfo for each rule of a .yar text; ``ValueError`` when a rule lacks required metadata."""
    infos: dict[str, RuleInfo] = {}
    for found in _RULE.finditer(_COMMENTS.sub(" ", text)):
        name, body = found.group(1), found.group(2)
        block = _META_BLOCK.search(body)
        meta = {key: _unescape(value) for key, value in _META_ITEM.findall(block.group(1) if block else "")}
        missing = [key for key in REQUIRED_META if key not in meta]
        if missing:
            raise ValueError(f"{origin}: rule {name} lacks meta {', '.join(missing)}")
        infos[name] = RuleInfo(
            id=meta["id"],
            title=meta["title"],
            level=Level.parse(meta["level"]),
            stage=FindingStage(meta["stage"]),
            cves=tuple(cve.strip() for cve in meta["cves"].split(",") if cve.strip()),
            attack=tuple(tag.strip() for tag in meta.get("attack", "").split(",") if tag.strip()),
            references=(meta["reference"],),
            description=meta.get("description", ""),
            path=f"rules/yara/{Path(origin).name}" if origin else "",
            after_exploitation=meta.get("after_exploitation", "") == "true",
        )
    return infos


def compile_rules(directory: str | Path = RULES_DIR) -> FileRules:
    """Compile every ``*.yar`` of ``directory`` into one rule set (``yara_x.CompileError`` on bad rules)."""
    compiler = yara_x.Compiler()
    for name in EXTERNALS:
        compiler.define_global(name, "")
    sources = _sources(directory)
    for origin, text in sources:
        compiler.add_source(text, origin=origin)
    return FileRules(compiler.build(), _infos(sources))


def _sources(directory: str | Path) -> list[tuple[str, str]]:
    return [(str(path), path.read_text(encoding="utf-8")) for path in sorted(Path(directory).glob("*.yar"))]


def _infos(sources: list[tuple[str, str]]) -> dict[str, RuleInfo]:
    infos: dict[str, RuleInfo] = {}
    for origin, text in sources:
        infos.update(parse_meta(text, origin))
    ids = [info.id for info in infos.values()]
    duplicated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
    if duplicated:
        raise ValueError(f"duplicate rule ids: {', '.join(duplicated)}")
    return infos


@cache
def shipped_rules() -> FileRules:
    """The rules shipped with exhunt, compiled once per process."""
    return compile_rules()


@cache
def shipped_infos() -> dict[str, RuleInfo]:
    """The shipped rules' metadata, without compiling them (listing rules needs no scanner)."""
    return _infos(_sources(RULES_DIR))
