"""The scoping layer of one scan, computed once and shared by every writer."""

from __future__ import annotations

from dataclasses import dataclass

from exhunt.model import ScanResult

from .fleet import Fleet, fleet
from .incidents import Incident, incidents
from .indicators import Indicator, observed_indicators
from .mailboxes import MailboxRow, mailbox_exposure
from .timeline import TimelineEvent, timeline


@dataclass(frozen=True, slots=True)
class Scope:
    """Timeline, incidents, mailbox table, indicators and fleet view of a scan."""

    timeline: tuple[TimelineEvent, ...]
    incidents: tuple[Incident, ...]
    mailboxes: tuple[MailboxRow, ...]
    indicators: tuple[Indicator, ...]
    fleet: Fleet

    def to_dict(self) -> dict[str, object]:
        """The JSON contract's scoping keys."""
        return {
            "timeline": [row.to_dict() for row in self.timeline],
            "incidents": [incident.to_dict() for incident in self.incidents],
            "mailboxes": [row.to_dict() for row in self.mailboxes],
            "indicators": [indicator.to_dict() for indicator in self.indicators],
            "fleet": self.fleet.to_dict(),
        }


def scope_of(result: ScanResult) -> Scope:
    """Each part of the scope once: incidents reuse the mailbox table, the fleet view the indicators."""
    mailboxes = mailbox_exposure(result)
    indicators = observed_indicators(result)
    return Scope(timeline(result), incidents(result, mailboxes=mailboxes), mailboxes, indicators,
                 fleet(result, indicators))
