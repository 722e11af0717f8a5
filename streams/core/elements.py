"""Incidents (SPEC section 10): per network element, the customers whose outage of that element is open.

The per-customer ``Engine`` cannot count them: an element's customers are spread over every partition. Each engine
reports an ``ElementChange`` when an outage opened on an element begins or ends; this engine takes those changes,
from all partitions merged in event-time order, and writes the ``incident`` records. It is pure and deterministic
like the rest of the core, and its state is a set of rows (``rows``/``load``) that live keeps in a changelog.

Ties: changes at the same instant are held until a later instant arrives (``feed``) or the clock passes them
(``advance``, ``flush``), then applied ordered by customer id, each customer's own changes in the order its engine
made them. The records therefore do not depend on how changes of different customers at one instant were
interleaved by the merge of partitions. docs/design.md ("Prevention") says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from streams.charter import Charter
from streams.core.changes import ElementChange
from streams.core.engine import Output, compensation_id
from streams.core.state import StateFormatError
from streams.core.timeutil import iso

ELEMENT_FORMAT_VERSION = 1
"""The format of the rows written by ``ElementEngine.rows``: ``{"v": 1, ...}``."""

PENDING_KEY = ""
"""The row key of the changes held at the latest instant. The engine never counts an outage for the element ``""``
(an empty ``element_id`` names no element), so no element row can have this key."""


def incident_id(charter: str, element_id: str, opened_at: int) -> str:
    """A pure function of (charter, element, opening instant): SPEC section 10.

    The same name-based UUID as ``compensation_id``, under a rule name no compensation uses."""
    return compensation_id(charter, "incident", element_id, str(opened_at))


class Element:
    """One element: its customers with an open outage (customer -> [stake_cents, due]), the incident open on it
    (``opened_at`` None: none) with the highest count it reached, and when each customer's last outage on it closed
    (customer -> instant; kept for the charter's ``dedup_retention``, to recognise a repeated change)."""

    __slots__ = ("closed", "open", "opened_at", "peak")

    def __init__(self) -> None:
        self.open: dict[str, list[Any]] = {}
        self.opened_at: int | None = None
        self.peak = 0
        self.closed: dict[str, int] = {}

    def encode(self) -> dict[str, Any]:
        row: dict[str, Any] = {"v": ELEMENT_FORMAT_VERSION, "open": self.open}
        if self.opened_at is not None:
            row["opened_at"], row["peak"] = self.opened_at, self.peak
        if self.closed:
            row["closed"] = self.closed
        return row

    @classmethod
    def decode(cls, row: Any) -> Element:
        _check(row, "Element")
        unknown = set(row) - {"v", "open", "opened_at", "peak", "closed"}
        if unknown or not isinstance(row.get("open"), dict):
            raise StateFormatError(f"Element row has unknown fields {sorted(unknown)} or no 'open' mapping")
        e = cls()
        e.open = {str(k): list(v) for k, v in row["open"].items()}
        e.opened_at = row.get("opened_at")
        e.peak = row.get("peak", 0)
        e.closed = {str(k): int(v) for k, v in row.get("closed", {}).items()}
        return e

    def empty(self) -> bool:
        """Nothing worth a row: nobody out, no incident, no close to recognise a repeat by."""
        return not self.open and self.opened_at is None and not self.closed

    def forget_closes(self, before: int) -> None:
        if self.closed and min(self.closed.values()) < before:
            self.closed = {c: at for c, at in self.closed.items() if at >= before}


def _check(row: Any, what: str) -> None:
    if not isinstance(row, dict) or row.get("v") != ELEMENT_FORMAT_VERSION:
        version = row.get("v") if isinstance(row, dict) else type(row).__name__
        raise StateFormatError(f"{what} row of format {version!r}: this version of charter-streams reads format "
                               f"{ELEMENT_FORMAT_VERSION}")


class ElementEngine:
    """Counts customers out per element from ``ElementChange`` s in event-time order; returns ``incident`` records."""

    def __init__(self, charter: Charter) -> None:
        self.charter = charter
        self.min_customers = None if charter.incident is None else charter.incident.min_customers
        self.retention = charter.dedup_retention
        self.elements: dict[str, Element] = {}
        self.pending: list[ElementChange] = []  # all at one instant, not applied yet
        # keys of the rows changed since the last take_dirty (PENDING_KEY included), for live's changelog
        self.dirty: set[str] = set()

    # ------------------------------------------------------------------ input

    def feed(self, change: ElementChange) -> list[Output]:
        """Take one change (event-time order); returns the records of the instants completed by it."""
        if self.min_customers is None:
            return []  # the charter has no incident section
        out = self.flush() if self.pending and change.at != self.pending[0].at else []
        self.pending.append(change)
        self.dirty.add(PENDING_KEY)
        return out

    def apply(self, topic: str, change: ElementChange, at: int | None = None) -> list[Output]:
        """``feed``, under the name a stream task (streams/core/task.py) calls its engine by."""
        return self.feed(change)

    def feed_all(self, changes: Iterable[ElementChange]) -> list[Output]:
        out: list[Output] = []
        for c in changes:
            out += self.feed(c)
        return out

    def advance(self, now: int) -> list[Output]:
        """The clock (event time, or live's wall clock) reached ``now``: an instant before it is complete."""
        if self.pending and self.pending[0].at < now:
            return self.flush()
        return []

    def flush(self) -> list[Output]:
        """Apply the changes held (end of input, or their instant is known complete)."""
        if not self.pending:
            return []
        # the tie rule: by customer id; sorted() is stable, so a customer's own changes keep their order
        batch = sorted(self.pending, key=lambda c: c.customer_id)
        self.pending = []
        self.dirty.add(PENDING_KEY)
        out: list[Output] = []
        for c in batch:
            self._apply(c, out)
        return out

    def _apply(self, c: ElementChange, out: list[Output]) -> None:
        key = c.element_id
        el = self.elements.get(key)
        if c.opened:
            if el is None:
                el = self.elements[key] = Element()
            el.forget_closes(c.at - self.retention)
            if el.closed.get(c.customer_id, c.at - 1) >= c.at:
                # a repeat (at-least-once: a partition's changes sent again after a crash, before the rows that
                # recorded them landed): this outage of the customer has already closed here
                if el.empty():
                    del self.elements[key]
                return
            known = c.customer_id in el.open
            el.open[c.customer_id] = [c.stake_cents, c.due]
            self.dirty.add(key)
            if known:
                return  # a customer counts once (a repeated open only refreshes its stake)
            n = len(el.open)
            if el.opened_at is not None:
                el.peak = max(el.peak, n)
            elif n >= self.min_customers:
                el.opened_at, el.peak = c.at, n
                out.append(self._record(key, el, "open", c.at, n))
            return
        if el is None or el.open.pop(c.customer_id, None) is None:
            return  # a close of an outage this element does not count changes nothing
        self.dirty.add(key)
        el.closed[c.customer_id] = c.at
        el.forget_closes(c.at - self.retention)
        if el.open:
            return
        if el.opened_at is not None:
            out.append(self._record(key, el, "closed", c.at, el.peak))
            el.opened_at, el.peak = None, 0
        if el.empty():
            del self.elements[key]

    def _record(self, element_id: str, el: Element, status: str, at: int, customers: int) -> Output:
        name = self.charter.name
        value: dict[str, Any] = {"incident_id": incident_id(name, element_id, el.opened_at),
                                 "element_id": element_id, "status": status, "crossed_at": iso(at),
                                 "customers": customers, "charter": name, "opened_at": iso(el.opened_at)}
        if status == "open":
            # only first thresholds still ahead (a threshold at this very instant fires after it: SPEC 5)
            ahead = [(stake, due) for stake, due in el.open.values() if due is not None and due >= at]
            value["at_stake_cents"] = sum(stake for stake, _due in ahead)
            value["next_due"] = iso(min(due for _stake, due in ahead)) if ahead else None
        return ("incident", element_id, value)

    # ------------------------------------------------------------------ state

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every row of the state: (element id, row), and (``PENDING_KEY``, row) when changes are held."""
        for key, el in self.elements.items():
            yield key, el.encode()
        if self.pending:
            yield PENDING_KEY, self._pending_row()

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """The rows changed since the last call: key -> row, or None for a row to delete (a tombstone)."""
        out: dict[str, dict[str, Any] | None] = {}
        for key in sorted(self.dirty):
            if key == PENDING_KEY:
                out[key] = self._pending_row() if self.pending else None
            else:
                el = self.elements.get(key)
                out[key] = None if el is None else el.encode()
        self.dirty.clear()
        return out

    def load(self, rows: Iterable[tuple[str, Any]]) -> None:
        """Replace the state by ``rows`` as ``rows``/``take_dirty`` wrote them (raises ``StateFormatError``)."""
        self.elements, self.pending = {}, []
        for key, row in rows:
            if key == PENDING_KEY:
                _check(row, "pending element changes")
                self.pending = [ElementChange.from_dict(d) for d in row["changes"]]
            else:
                self.elements[key] = Element.decode(row)
        self.dirty.clear()

    def _pending_row(self) -> dict[str, Any]:
        return {"v": ELEMENT_FORMAT_VERSION, "changes": [c.to_dict() for c in self.pending]}
