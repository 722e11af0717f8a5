"""The charter engine: applies validated events and clock advances to keyed state, returns output records.

Shaped like a Kafka Streams processor: ``apply`` is ``process()``, ``advance`` is a stream-time punctuation.
Deadlines live in a heap of ``(due, kind, key)`` that pops only what is due; each entry is checked against the
state that armed it (lazy deletion), so a superseded deadline costs nothing and the heap can always be rebuilt
from the states alone.

Time (SPEC section 5): ``advance(t)`` moves the clock up to ``t`` and fires every deadline D with
D + grace < clock, in deadline order; ``finish(until)`` fires every D with D + grace <= until. An event whose
``occurred_at`` equals a deadline is therefore applied before that deadline fires.
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
from heapq import heappop, heappush
from typing import Any

from schemas.inputs import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    BoxShipment,
    CallQueue,
    LineConfirmed,
    OrderCancelled,
    OrderPlaced,
    ServiceActive,
    ServiceStatus,
    SwitchClaim,
)
from streams.charter import Charter
from streams.core.changes import ElementChange
from streams.core.deadlines import (
    K_ALERT,
    K_APPOINTMENT,
    K_BREACH,
    K_KPI,
    K_LATE,
    K_OUTAGE,
    K_PROVISION,
    K_REPAIR,
    K_RISK,
)
from streams.core.localdays import LocalDays
from streams.core.state import (
    APPT_ATTEND_AT,
    APPT_BOOKED_ID,
    APPT_CANCEL_AT,
    APPT_CANCEL_ID,
    APPT_DONE,
    APPT_DUE,
    APPT_END,
    APPT_START,
    ESC,
    SEP,
    SERVICE_BIT,
    SERVICES,
    TOPIC_CODE,
    Call,
    Ids,
    Seen,
    Subscriber,
    Window,
    new_appt,
)
from streams.core.timeutil import iso, to_us

Output = tuple[str, str, dict[str, Any]]  # (topic, key, value)

_ID_NAMESPACE = uuid.UUID("6f1c1f0e-2f54-4d0a-9a43-5c0a7d0c2007")


_ID_PREFIX = _ID_NAMESPACE.bytes


def compensation_id(charter: str, rule: str, customer_id: str, breach: str) -> str:
    """A pure function of (charter, rule, customer, the breach it pays for): SPEC section 3.

    The text of ``uuid.uuid5(_ID_NAMESPACE, name)``, built without UUID objects (4x faster, same text)."""
    name = f"{charter}\x1f{rule}\x1f{customer_id}\x1f{breach}".encode()
    d = bytearray(hashlib.sha1(_ID_PREFIX + name).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50  # version 5
    d[8] = (d[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = d.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def round_half_up_div(num: int, den: int) -> int:
    """round half up (num / den) for non-negative integers, exactly (no float)."""
    return (2 * num + den) // (2 * den)


class Engine:
    """State, clock and deadlines of one partition (live) or of a whole replay."""

    def __init__(self, charter: Charter, *, track_dirty: bool = False, report_elements: bool = False) -> None:
        self.charter = charter
        self.clock: int | None = None
        self.subscribers: dict[str, Subscriber] = {}
        self.calls: dict[str, Call] = {}
        self.windows: dict[tuple[str, int], Window] = {}
        self._heap: list[tuple[int, int, Any]] = []
        # Hotline state is dropped one dedup_retention after the latest call event (``_expire_hotline``):
        # ``_hot_latest`` is the latest occurred_at of a call event that changed a call, ``_hot_expiry`` a heap of
        # (instant, 0 for a call or 1 for a window, key): a heap, not a queue in arrival order, so that one event
        # stamped far ahead (a wrong upstream clock) cannot hold back everything behind it.
        self._hot_latest: int | None = None
        self._hot_expiry: list[tuple[int, int, Any]] = []
        # The live adapter persists what changed after each batch; replay keeps everything in memory.
        self.track_dirty = track_dirty
        self.dirty_subscribers: set[str] = set()
        self.dirty_calls: set[str] = set()
        self.dirty_windows: set[tuple[str, int]] = set()
        c = charter
        self._grace = c.grace_us
        self._retention = c.dedup_retention
        # A rule whose section the charter lacks is not enforced (SPEC 7): it arms nothing and emits nothing. The
        # facts it would read (milestones, the outage in progress) are still recorded: other rules share them.
        self._late = c.late_activation is not None
        if c.late_activation is not None:
            self._late_deadline = c.late_activation.deadline
            self._alert_after = c.late_activation.alert_after
        self._outage = c.outage is not None
        if c.outage is not None:
            self._tiers = [(t.after, t.credit_days) for t in c.outage.tiers]
            self._first_month = c.outage.first_month
            self._dpm = c.outage.days_per_month
        # SPEC section 10: outage_at_risk alerts, and the element changes an ElementEngine counts. Only a caller
        # that drains them (take_element_changes) asks for them, and only a charter with incidents makes them.
        self._risk_after = None if c.outage is None else c.outage.alert_after
        self._elements = report_elements and c.incident is not None
        self.element_changes: list[ElementChange] = []
        self._hotline = c.hotline is not None
        if c.hotline is not None:
            self._answer_within = c.hotline.answer_within
            self._window = c.hotline.window
        # SPEC section 9: per-day rules, in local days of the charter's time zone
        self._days = None if c.tz is None else LocalDays(c.tz, c.holidays)
        self._repair = c.delayed_repair
        self._provision = c.delayed_provision
        self._appointment = c.missed_appointment
        self._handlers = {
            OrderPlaced: self._order_placed,
            LineConfirmed: self._line_confirmed,
            ServiceActive: self._service_active,
            OrderCancelled: self._order_cancelled,
            BoxShipment: self._box_shipment,
            ServiceStatus: self._service_status,
            SwitchClaim: self._switch_claim,
            AppointmentBooked: self._appointment_event,
            AppointmentAttended: self._appointment_event,
            AppointmentCancelled: self._appointment_event,
        }
        # indexed by deadline kind (streams/core/deadlines.py)
        self._fire_kind = (self._fire_alert, self._fire_late, self._fire_outage, self._fire_breach, self._fire_kpi,
                           self._fire_repair, self._fire_provision, self._fire_appointment, self._fire_risk)

    # ------------------------------------------------------------------ time

    def advance(self, now: int) -> list[Output]:
        """Move the clock up to ``now`` and fire every deadline D with D + grace < clock."""
        if self.clock is None or now > self.clock:
            self.clock = now
        heap = self._heap
        if not heap or heap[0][0] >= self.clock - self._grace:
            return []  # nothing due: the common case
        return self._fire(self.clock - self._grace, inclusive=False)

    def finish(self, until: int | None = None) -> list[Output]:
        """End of input: fire every deadline D with D + grace <= ``until`` (default: the clock)."""
        limit = self.clock if until is None else until
        if limit is None:
            return []
        return self._fire(limit - self._grace, inclusive=True)

    def rebuild_deadlines(self) -> None:
        """Rebuild the heap from the states (after loading them from a changelog)."""
        heap: list[tuple[int, int, Any]] = []
        for key, sub in self.subscribers.items():
            heap += sub.deadlines(key)
        for key, call in self.calls.items():
            if call.breach_due is not None:
                heap.append((call.breach_due, K_BREACH, key))
        for key, win in self.windows.items():
            if not win.closed:
                heap.append((win.close_due, K_KPI, key))
        heapq.heapify(heap)
        self._heap = heap
        # the hotline's expiry order and latest instant are what the calls and windows say (a dropped call was
        # never the latest: it is a retention older)
        calls = [(max(c.queued_at, c.settled_at or c.queued_at), 0, k) for k, c in self.calls.items()]
        self._hot_latest = max(calls)[0] if calls else None
        expiry = calls + [(w.close_due, 1, k) for k, w in self.windows.items()]
        heapq.heapify(expiry)
        self._hot_expiry = expiry

    def take_element_changes(self) -> list[ElementChange]:
        """The element changes made since the last call, in the order made (SPEC section 10), and forget them."""
        changes, self.element_changes = self.element_changes, []
        return changes

    def _arm(self, due: int, kind: int, key: Any) -> None:
        heappush(self._heap, (due, kind, key))

    def _fire(self, limit: int, inclusive: bool) -> list[Output]:
        out: list[Output] = []
        heap, fire = self._heap, self._fire_kind
        while heap and (heap[0][0] <= limit if inclusive else heap[0][0] < limit):
            due, kind, key = heappop(heap)
            fire[kind](due, key, out)
        return out

    # ------------------------------------------------------------------ events

    def apply(self, topic: str, event: Any, at: int | None = None) -> list[Output]:
        """Apply one validated event of ``topic``; duplicates (same topic, key, event_id) change nothing.

        ``at`` is ``to_us(event.occurred_at)`` when the caller already has it (it is a real part of the cost)."""
        if at is None:
            at = to_us(event.occurred_at)
        out: list[Output] = []
        if topic == "call-queue":
            if self._hotline:
                self._call(event, at, out)
            return out
        if topic == "appointment" and self._appointment is None:
            return out  # no rule reads appointments: keep no trace of them
        key = event.customer_id
        sub = self.subscribers.get(key)
        if sub is None:
            sub = self.subscribers[key] = Subscriber()
        event_id = event.event_id
        if " " in event_id or "~" in event_id or event_id[:1] == ESC:
            ids_key = Ids.key(topic, event_id)
        else:
            ids_key = f" {TOPIC_CODE[topic]}{event_id}~"  # Ids.key's common case, inline
        ids = sub.ids
        if ids_key in ids:
            return out
        if sub.seen != SEP:  # a row written before dedup_retention (Seen.EMPTY is SEP): its ids move into ``ids``
            if Seen.token(topic, event_id) in sub.seen:
                return out
            ids = sub.ids = Ids.from_seen(sub.seen, at)
            sub.seen = Seen.EMPTY
        # _remember's common case, inline (this runs for every event): an event newer than every id kept
        at_hex = f"{at:013x}"
        if ids != " " and at_hex > ids[-14:-1]:
            k = ids.find("~") + 1
            before = at - self._retention
            if ids[k:k + 13] < f"{before:013x}":
                ids = Ids.prune(ids, before)
            sub.ids = f"{ids}{ids_key[1:]}{at_hex} "
        else:
            self._remember(sub, ids_key, at)
        if self.track_dirty:
            self.dirty_subscribers.add(key)
        self._handlers[type(event)](key, sub, event, at, out)
        return out

    def _remember(self, sub: Subscriber, ids_key: str, at: int) -> None:
        """Record an applied event id and forget those older than the retention (SPEC 1).

        Decided from the events of this key alone (the latest ``occurred_at`` applied to it), never from a clock,
        so that live and replay forget the same ids at the same point of the key's history. Inlined for the
        common case (an event newer than every id kept: it is appended): this runs for every event."""
        ids = sub.ids
        if ids != " ":
            newest = ids[-14:-1]
            at_hex = f"{at:013x}"
            if at_hex >= newest:
                if at_hex > newest:
                    k = ids.find("~") + 1
                    before = at - self._retention
                    if ids[k:k + 13] < f"{before:013x}":
                        ids = Ids.prune(ids, before)
                sub.ids = f"{ids}{ids_key[1:]}{at_hex} "
                return
            newest = int(newest, 16)
            horizon = self._horizon(sub, newest)
        else:
            horizon = sub.forgot_before
        if horizon is not None and at < horizon:
            return  # already older than the memory: it would be forgotten at once
        sub.ids = Ids.add(ids, ids_key, at)

    def _horizon(self, sub: Subscriber, newest: int | None) -> int | None:
        """Ids of this key's events older than this instant are forgotten (None: nothing is yet): the retention
        before the latest ``occurred_at`` applied, or later if the row bound dropped more (``forgot_before``)."""
        horizon = None if newest is None else newest - self._retention
        if sub.forgot_before is not None and (horizon is None or sub.forgot_before > horizon):
            return sub.forgot_before
        return horizon

    # rule 1 and 3 -----------------------------------------------------------

    def _order_placed(self, key: str, sub: Subscriber, ev: OrderPlaced, at: int, out: list[Output]) -> None:
        sub.fee = ev.monthly_fee_cents
        sub.zone = "u" if ev.zone == "unbundled" else "n"
        sub.tv = ev.tv
        sub.order_at = at
        sub.order_id = ev.event_id
        # rule 7: only the first order_placed carrying a promised_start counts
        if ev.promised_start is not None and sub.prov_id is None and self._provision is not None:
            sub.prov_id = ev.event_id
            sub.prov_day = 1
            sub.prov_due = self._days.midnight(ev.promised_start.toordinal() + 1)  # the end of the promised day
            heappush(self._heap, (sub.prov_due, K_PROVISION, key))

    def _line_confirmed(self, key: str, sub: Subscriber, ev: LineConfirmed, at: int, out: list[Output]) -> None:
        if sub.confirmed_at is not None:  # the clock starts at the first confirmation only
            return
        sub.confirmed_at = at
        sub.confirmed_id = ev.event_id
        if not self._late:
            return
        sub.alert_due = at + self._alert_after
        sub.late_due = at + self._late_deadline
        heappush(self._heap, (sub.alert_due, K_ALERT, key))
        heappush(self._heap, (sub.late_due, K_LATE, key))

    def _service_active(self, key: str, sub: Subscriber, ev: ServiceActive, at: int, out: list[Output]) -> None:
        if sub.active_at is not None:  # billing starts once
            if at < sub.active_at:
                sub.active_at = at
            return
        sub.active_at = at
        sub.active_id = ev.event_id
        sub.billing_at = at  # rule 4's first month counts from here, whether or not rule 3 bills anything
        c = self.charter.installation
        if c is None:
            return
        fee = c.unbundled_fee_cents if sub.zone == "u" else c.other_fee_cents
        out.append(("billing", key, {"type": "billing_start", "customer_id": key, "starts_at": iso(at),
                                     "installation_fee_cents": fee}))

    def _order_cancelled(self, key: str, sub: Subscriber, ev: OrderCancelled, at: int, out: list[Output]) -> None:
        if sub.cancelled_at is None or at < sub.cancelled_at:
            sub.cancelled_at = at

    def _box_shipment(self, key: str, sub: Subscriber, ev: BoxShipment, at: int, out: list[Output]) -> None:
        if ev.status != "delivered":  # shipped and returned change nothing the charter measures
            return
        if ev.item == "modem":
            if sub.modem_at is None or at < sub.modem_at:
                sub.modem_at = at
        elif sub.decoder_at is None or at < sub.decoder_at:
            sub.decoder_at = at

    def _kept_by(self, sub: Subscriber, t: int) -> bool:
        """Rule 1's promise: service active, modem and (tv order) decoder delivered, all at or before t."""
        if sub.active_at is None or sub.active_at > t or sub.modem_at is None or sub.modem_at > t:
            return False
        needs_decoder = True if sub.tv is None else sub.tv
        return not needs_decoder or (sub.decoder_at is not None and sub.decoder_at <= t)

    def _cancelled_by(self, sub: Subscriber, t: int) -> bool:
        return sub.cancelled_at is not None and sub.cancelled_at <= t

    def _fire_alert(self, due: int, key: str, out: list[Output]) -> None:
        sub = self.subscribers.get(key)
        if sub is None or sub.alert_due != due:
            return
        sub.alert_due = None
        self._dirty_sub(key)
        if not self._kept_by(sub, due) and not self._cancelled_by(sub, due):
            out.append(("sla-alert", key, {"alert": "activation_at_risk", "customer_id": key,
                                           "crossed_at": iso(due)}))

    def _fire_late(self, due: int, key: str, out: list[Output]) -> None:
        sub = self.subscribers.get(key)
        if sub is None or sub.late_due != due:
            return
        sub.late_due = None
        self._dirty_sub(key)
        if self._kept_by(sub, due) or self._cancelled_by(sub, due) or sub.first_month_given:
            return
        sub.first_month_given = True
        evidence = [e for e in (sub.order_id, sub.confirmed_id) if e is not None]
        out.append(self._compensation(key, "late_activation", "", self._fee(sub), due, evidence))

    # rule 2 -----------------------------------------------------------------

    def _switch_claim(self, key: str, sub: Subscriber, ev: SwitchClaim, at: int, out: list[Output]) -> None:
        if self.charter.switch_fee_refund is None:
            return
        if sub.refund_granted:
            decision, reason = "rejected", "already_refunded"
        elif not ev.proof_id:
            decision, reason = "rejected", "missing_proof"
        else:
            decision, reason = "granted", None
            sub.refund_granted = True
            amount = min(ev.termination_fee_cents, self.charter.switch_fee_refund.cap_cents)
            if amount > 0:
                out.append(self._compensation(key, "switch_fee_refund", ev.event_id, amount, at, [ev.event_id]))
        out.append(("claim-decision", key, {"customer_id": key, "claim_event_id": ev.event_id,
                                            "decision": decision, "reason": reason}))

    # rule 4 -----------------------------------------------------------------

    def _service_status(self, key: str, sub: Subscriber, ev: ServiceStatus, at: int, out: list[Output]) -> None:
        bit = SERVICE_BIT[ev.service]
        if ev.status == "down":
            if sub.down & bit:
                return
            if sub.down == 0:  # the first service down opens an outage
                sub.out_start = at
                sub.out_start_id = ev.event_id
                sub.out_services = 0
                sub.out_tier = 0
                if self._replayed_outage(sub, at):
                    sub.down |= bit
                    sub.out_services |= bit
                    return  # open, as the events say, but it earns nothing: see _replayed_outage
                sub.out_last = at
                if self._outage:
                    sub.out_due = at + self._tiers[0][0]
                    heappush(self._heap, (sub.out_due, K_OUTAGE, key))
                if self._risk_after is not None:
                    sub.risk_due = at + self._risk_after
                    heappush(self._heap, (sub.risk_due, K_RISK, key))
                if self._elements and ev.element_id:  # an outage opened without an element counts for none
                    sub.out_element = ev.element_id
                    stake, due = self._first_stake(sub, at)
                    self.element_changes.append(ElementChange(ev.element_id, key, True, at, stake, due))
                if self._repair is not None:  # rule 6: the working days after the start's day are allowed
                    days = self._days
                    sub.rep_day = 1
                    sub.rep_due = days.midnight(days.after_working_days(days.day_of(at),
                                                                        self._repair.after_working_days))
                    heappush(self._heap, (sub.rep_due, K_REPAIR, key))
            sub.down |= bit
            sub.out_services |= bit
        else:
            if not sub.down & bit:
                return
            sub.down &= ~bit
            if sub.down == 0:  # the last service back closes the outage
                # A threshold passed while the outage was still open is owed even if it has not fired yet (it
                # can only be pending here under grace_seconds > 0: grace delays a deadline, never a decision).
                while True:
                    pending = [(d, k) for d, k in ((sub.out_due, K_OUTAGE), (sub.rep_due, K_REPAIR),
                                                   (sub.risk_due, K_RISK))
                               if d is not None and d < at]
                    if not pending:
                        break
                    due, kind = min(pending)
                    self._fire_kind[kind](due, key, out)
                if sub.out_element is not None:
                    self.element_changes.append(ElementChange(sub.out_element, key, False, at))
                sub.out_start = sub.out_start_id = sub.out_due = sub.rep_due = sub.rep_day = None
                sub.risk_due = sub.out_element = None
                sub.out_services = 0
                sub.out_tier = 0

    def _replayed_outage(self, sub: Subscriber, start: int) -> bool:
        """An outage opened by an event older than the de-duplication memory (``_horizon``), at or before the
        start of an outage already opened: it cannot be told from a copy of that outage's ``down`` arriving after
        its id was forgotten, and paying it would pay the same breach twice (same compensation ids). So it arms no
        deadline. A genuinely new event that late is rarer than a redelivery, and its breach, if any, is older
        than the retention."""
        if sub.out_last is None or start > sub.out_last:
            return False
        horizon = self._horizon(sub, Ids.newest(sub.ids))
        return horizon is not None and start < horizon

    def _fire_outage(self, due: int, key: str, out: list[Output]) -> None:
        sub = self.subscribers.get(key)
        if sub is None or sub.out_due != due:
            return
        sub.out_due = None
        self._dirty_sub(key)
        start = sub.out_start
        if not self._outage_earns(sub, start):
            return
        tier = sub.out_tier
        services = [s for s in SERVICES if sub.out_services & SERVICE_BIT[s]]
        breach = f"{start}\x1f{sub.out_start_id}\x1f{tier}"  # two outages may start at the same instant
        if (tier == 0 and not sub.first_month_given and sub.billing_at is not None
                and 0 <= start - sub.billing_at < self._first_month):
            sub.first_month_given = True  # the whole first month instead, and nothing more for this outage
            out.append(self._compensation(key, "outage", breach, self._fee(sub), due, [sub.out_start_id],
                                          credit_days=self._dpm, services=services))
            return
        days = self._tiers[tier][1] - (self._tiers[tier - 1][1] if tier else 0)
        amount = round_half_up_div(self._fee(sub) * days, self._dpm)
        out.append(self._compensation(key, "outage", breach, amount, due, [sub.out_start_id],
                                      credit_days=days, services=services))
        sub.out_tier = tier + 1
        if tier + 1 < len(self._tiers):
            sub.out_due = start + self._tiers[tier + 1][0]
            heappush(self._heap, (sub.out_due, K_OUTAGE, key))

    def _fire_risk(self, due: int, key: str, out: list[Output]) -> None:
        """SPEC section 10: an outage still open at start + alert_after, of a kind that would earn, is at risk."""
        sub = self.subscribers.get(key)
        if sub is None or sub.risk_due != due:
            return
        sub.risk_due = None
        self._dirty_sub(key)
        if self._outage_earns(sub, sub.out_start):
            out.append(("sla-alert", key, {"alert": "outage_at_risk", "customer_id": key, "crossed_at": iso(due)}))

    def _first_stake(self, sub: Subscriber, start: int) -> tuple[int, int | None]:
        """What an outage starting at ``start`` would earn at its first threshold, and when: the incident's
        at_stake_cents and next_due (an estimate: a cancellation read later may still void it)."""
        if not self._outage or not self._outage_earns(sub, start):
            return 0, None
        due = start + self._tiers[0][0]
        if (not sub.first_month_given and sub.billing_at is not None
                and 0 <= start - sub.billing_at < self._first_month):
            return self._fee(sub), due
        return round_half_up_div(self._fee(sub) * self._tiers[0][1], self._dpm), due

    @classmethod
    def _outage_earns(cls, sub: Subscriber, start: int) -> bool:
        """Rule 4 (and rule 6): an outage starting while an order is pending earns nothing (rule 1 covers that
        time), nor one starting at or after an order_cancelled (no contract, active or not)."""
        if sub.cancelled_at is not None and sub.cancelled_at <= start:
            return False
        return not cls._pending_order_at(sub, start)

    @staticmethod
    def _pending_order_at(sub: Subscriber, t: int) -> bool:
        """An order placed, not cancelled and not yet service_active at instant t."""
        if sub.order_at is None or sub.order_at > t:
            return False
        if sub.active_at is not None and sub.active_at <= t:
            return False
        return not (sub.cancelled_at is not None and sub.cancelled_at <= t)

    # rule 6: delayed repair ------------------------------------------------------

    def _fire_repair(self, due: int, key: str, out: list[Output]) -> None:
        sub = self.subscribers.get(key)
        if sub is None or sub.rep_due != due:
            return
        self._dirty_sub(key)
        start = sub.out_start
        if not self._outage_earns(sub, start):
            sub.rep_due = sub.rep_day = None  # this outage earns nothing, as under rule 4
            return
        day = sub.rep_day
        out.append(self._compensation(key, "delayed_repair", f"{start}\x1f{sub.out_start_id}\x1f{day}",
                                      self._repair.per_day_cents, due, [sub.out_start_id], day=day))
        sub.rep_day = day + 1
        sub.rep_due = self._days.next_midnight(due)
        heappush(self._heap, (sub.rep_due, K_REPAIR, key))

    # rule 7: delayed provision ----------------------------------------------------

    def _fire_provision(self, due: int, key: str, out: list[Output]) -> None:
        sub = self.subscribers.get(key)
        if sub is None or sub.prov_due != due:
            return
        self._dirty_sub(key)
        if (sub.active_at is not None and sub.active_at <= due) or self._cancelled_by(sub, due):
            sub.prov_due = None  # provided or cancelled by this midnight: no more days (prov_id stays: promised)
            return
        day = sub.prov_day
        out.append(self._compensation(key, "delayed_provision", str(day), self._provision.per_day_cents, due,
                                      [sub.prov_id], day=day))
        sub.prov_day = day + 1
        sub.prov_due = self._days.next_midnight(due)
        heappush(self._heap, (sub.prov_due, K_PROVISION, key))

    # rule 8: missed appointment ---------------------------------------------------

    def _appointment_event(self, key: str, sub: Subscriber, ev: Any, at: int, out: list[Output]) -> None:
        appts = sub.appts
        if appts is None:
            appts = sub.appts = {}
        a = appts.get(ev.appointment_id)
        if a == APPT_DONE:
            return  # decided: nothing changes it any more
        if a is None:
            a = appts[ev.appointment_id] = new_appt()
        if ev.type == "booked":
            if a[APPT_START] is not None:
                return  # a later booked of the same id changes nothing
            a[APPT_START], a[APPT_END], a[APPT_BOOKED_ID] = to_us(ev.slot_start), to_us(ev.slot_end), ev.event_id
        elif ev.type == "cancelled":
            if a[APPT_CANCEL_AT] is not None and a[APPT_CANCEL_AT] <= at:
                return  # only the first cancellation counts
            a[APPT_CANCEL_AT], a[APPT_CANCEL_ID] = at, ev.event_id
        else:
            if a[APPT_ATTEND_AT] is not None and a[APPT_ATTEND_AT] <= at:
                return
            a[APPT_ATTEND_AT] = at
        if a[APPT_START] is None:
            return  # not booked yet: nothing to decide
        cancel = a[APPT_CANCEL_AT]
        if cancel is not None and cancel <= a[APPT_START] - self._appointment.notice:
            appts[ev.appointment_id] = APPT_DONE  # cancelled with enough notice: nothing owed, ever
            return
        # the instant the appointment is decided: a cancellation within the notice period, else the slot's end
        due = cancel if cancel is not None and cancel <= a[APPT_END] else a[APPT_END]
        if due != a[APPT_DUE]:
            a[APPT_DUE] = due
            heappush(self._heap, (due, K_APPOINTMENT, (key, ev.appointment_id)))

    def _fire_appointment(self, due: int, akey: tuple[str, str], out: list[Output]) -> None:
        key, appt_id = akey
        sub = self.subscribers.get(key)
        a = None if sub is None or sub.appts is None else sub.appts.get(appt_id)
        if not a or a[APPT_DUE] != due:
            return
        self._dirty_sub(key)
        sub.appts[appt_id] = APPT_DONE
        cancel, attend = a[APPT_CANCEL_AT], a[APPT_ATTEND_AT]
        if cancel is not None and cancel <= a[APPT_END]:
            # (a) cancelled within the notice period, at or before the slot's end: missed unless attended before
            if attend is not None and attend < cancel:
                return
            evidence = [a[APPT_BOOKED_ID], a[APPT_CANCEL_ID]]
        elif attend is not None and attend <= a[APPT_END]:
            return  # kept
        else:
            evidence = [a[APPT_BOOKED_ID]]  # (b) nobody came and nothing was said by the slot's end
        out.append(self._compensation(key, "missed_appointment", appt_id, self._appointment.amount_cents, due,
                                      evidence, appointment_id=appt_id))

    # rule 5 -----------------------------------------------------------------

    def _expire_hotline(self, at: int) -> None:
        """Drop the calls and windows that nothing can change any more (issue 12: bounded state).

        A call whose last event (queued or settled) and a window whose close are older than the retention before
        the latest call event have had their deadlines fire (the clock is past them), and a later event of them
        changes nothing: an answer for an unknown call is ignored, and so is a ``queued`` that old (``_call``),
        since it could be a copy of a dropped call or fall in a dropped window and would breach or count again.
        Decided from the call events alone, never from the clock, so a worker restored from the changelog (which
        rebuilds ``_hot_latest`` from the calls kept: the latest event's call is never dropped) decides the same.
        Whether a droppable call or window is dropped now or later changes no output (its events are ignored either
        way: ``_call``)."""
        if self._hot_latest is not None and at <= self._hot_latest:
            return
        self._hot_latest = at
        self._drop_expired(at - self._retention)

    def _drop_expired(self, horizon: int) -> None:
        """``_expire_hotline``'s work once the latest call event moved: drop what is older than ``horizon``."""
        expiry = self._hot_expiry
        while expiry and expiry[0][0] < horizon:
            _, kind, key = heappop(expiry)
            if kind == 0:
                call = self.calls.get(key)
                if call is None or max(call.queued_at, call.settled_at or call.queued_at) >= horizon:
                    continue  # dropped already, or settled since: its later entry decides
                if call.breach_due is not None:  # not fired yet (an unusually long grace): look again later
                    heappush(expiry, (horizon, 0, key))
                    continue
                del self.calls[key]
                self._dirty_call(key)
            else:
                win = self.windows.get(key)
                if win is None:
                    continue
                if not win.closed:
                    heappush(expiry, (horizon, 1, key))
                    continue
                del self.windows[key]
                self._dirty_window(key)

    def _call(self, ev: CallQueue, at: int, out: list[Output]) -> None:
        key = ev.call_id
        call = self.calls.get(key)
        if ev.type == "queued":
            if call is not None:  # a call is queued once; a repeat (or a duplicate) changes nothing
                return
            if self._hot_latest is not None and at < self._hot_latest - self._retention:
                return  # older than the hotline's memory: maybe a copy of a call already dropped
            if self._hot_latest is None or at > self._hot_latest:  # _expire_hotline(at), inline
                self._hot_latest = at
                expiry = self._hot_expiry
                if expiry and expiry[0][0] < at - self._retention:
                    self._drop_expired(at - self._retention)
            call = self.calls[key] = Call(ev.queue, at, ev.event_id)
            heappush(self._hot_expiry, (at, 0, key))
            call.seen = Seen.token("call-queue", ev.event_id)
            call.breach_due = at + self._answer_within
            heappush(self._heap, (call.breach_due, K_BREACH, key))
            wkey = (ev.queue, at - at % self._window)
            win = self.windows.get(wkey)
            if win is None:
                win = self.windows[wkey] = Window(wkey[1] + self._window + self._answer_within)
                heappush(self._heap, (win.close_due, K_KPI, wkey))
                heappush(self._hot_expiry, (win.close_due, 1, wkey))
            if not win.closed:  # a call arriving after its window closed is not in that window's one record
                win.offered += 1
                if self.track_dirty:
                    self.dirty_windows.add(wkey)
            if self.track_dirty:
                self.dirty_calls.add(key)
            return
        if call is None or call.status != Call.QUEUED:
            return  # unknown, already answered or already abandoned: changes nothing
        token = Seen.token("call-queue", ev.event_id)
        if token in call.seen:
            return  # an event_id already applied for this call is a duplicate (SPEC 1)
        call.seen += token[1:]
        call.settled_at = at
        self._dirty_call(key)
        heappush(self._hot_expiry, (at, 0, key))  # kept one retention after it settled
        if self._hot_latest is None or at > self._hot_latest:  # _expire_hotline(at), inline
            self._hot_latest = at
            expiry = self._hot_expiry
            if expiry and expiry[0][0] < at - self._retention:
                self._drop_expired(at - self._retention)
        wkey = (call.queue, call.queued_at - call.queued_at % self._window)
        win = self.windows.get(wkey)
        counts = win is not None and not win.closed and at <= win.close_due
        if ev.type == "answered":
            call.status = Call.ANSWERED
            if counts:
                wait = at - call.queued_at
                win.answered += 1
                win.wait_us += wait
                if wait <= self._answer_within:
                    win.within += 1
        else:
            call.status = Call.ABANDONED
            if counts:
                win.abandoned += 1
        if counts:
            self._dirty_window(wkey)

    def _fire_breach(self, due: int, key: str, out: list[Output]) -> None:
        call = self.calls.get(key)
        if call is None or call.breach_due != due:
            return
        call.breach_due = None
        self._dirty_call(key)
        if call.status == Call.QUEUED or call.settled_at > due:
            out.append(("hotline-breach", key, {"call_id": key, "queue": call.queue,
                                                "queued_at": iso(call.queued_at), "crossed_at": iso(due)}))

    def _fire_kpi(self, due: int, wkey: tuple[str, int], out: list[Output]) -> None:
        win = self.windows.get(wkey)
        if win is None or win.closed or win.close_due != due:
            return
        win.closed = True
        self._dirty_window(wkey)
        queue, start = wkey
        out.append(("hotline-kpi", queue, {
            "queue": queue, "window_start": iso(start), "window_end": iso(start + self._window),
            "offered": win.offered, "answered": win.answered, "answered_within": win.within,
            "abandoned": win.abandoned, "service_level": win.within / win.offered,
            "asa_seconds": (win.wait_us / win.answered / 1e6) if win.answered else None,
        }))

    # helpers ------------------------------------------------------------------

    def _fee(self, sub: Subscriber) -> int:
        return self.charter.default_monthly_fee_cents if sub.fee is None else sub.fee

    def _compensation(self, key: str, rule: str, breach: str, amount: int, crossed: int, evidence: list[str],
                      **extra: Any) -> Output:
        c = self.charter
        value = {"compensation_id": compensation_id(c.name, rule, key, breach), "charter": c.name, "rule": rule,
                 "customer_id": key, "amount_cents": amount, "currency": c.currency, "crossed_at": iso(crossed),
                 "evidence": evidence}
        value.update(extra)
        return ("compensation", key, value)

    def _dirty_sub(self, key: str) -> None:
        if self.track_dirty:
            self.dirty_subscribers.add(key)

    def _dirty_call(self, key: str) -> None:
        if self.track_dirty:
            self.dirty_calls.add(key)

    def _dirty_window(self, key: tuple[str, int]) -> None:
        if self.track_dirty:
            self.dirty_windows.add(key)
