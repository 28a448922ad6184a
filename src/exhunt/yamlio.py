"""YAML through libyaml when PyYAML was built with it (parsing the shipped rules and IOC table is most of
exhunt's start-up time otherwise), and through the cache (:mod:`exhunt.cache`) for data read at every
start. Safe loading only."""

from __future__ import annotations

import json
from typing import Any

from exhunt import cache


def load(text: str, cached: bool = False) -> Any:
    """The one document of ``text``; with ``cached``, kept as JSON when JSON holds it unchanged."""
    entry = cache.entry("yaml", ("yamlio.py",), (("yaml", "PyYAML"),), [("", text)]) if cached else None
    found = cache.read(entry) if entry else None
    if isinstance(found, dict) and "data" in found:
        return found["data"]
    import yaml

    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if entry and _json_keeps(data):
        cache.write(entry, {"data": data})
    return data


def load_all(text: str) -> list[Any]:
    """Every document of ``text``."""
    import yaml

    return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def _json_keeps(data: Any) -> bool:
    """Whether ``data`` comes back from JSON as it is (no dates, no non-string keys)."""
    try:
        return json.loads(json.dumps(data)) == data
    except (TypeError, ValueError):
        return False
