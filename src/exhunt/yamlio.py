"""YAML through libyaml when PyYAML was built with it: parsing the shipped rules and IOC table is
most of exhunt's start-up time otherwise. Safe loading and dumping only."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(text: str) -> Any:
    """The one document of ``text``."""
    return yaml.load(text, Loader=_LOADER)


def load_all(text: str) -> list[Any]:
    """Every document of ``text``."""
    return list(yaml.load_all(text, Loader=_LOADER))


def dump_all(documents: list[Any], **options: Any) -> str:
    """``documents`` as a multi-document YAML text."""
    return yaml.dump_all(documents, Dumper=_DUMPER, **options)
