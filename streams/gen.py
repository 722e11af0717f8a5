"""A deterministic generator of realistic upstream traffic, as replay-file records (SPEC sections 2 and 6).

``generate(subscribers, events, seed)`` yields ``{"topic": ..., "value": {...}}`` dicts in (roughly) arrival
order: the same arguments always give the same stream. What it simulates, over ``days`` (30 by default):

- new customers (a share of ``subscribers``): ``order_placed`` (zone mix, fees 2995/2999/3490/4499, tv or not)
  -> ``line_confirmed`` -> modem and tv decoder ``shipped``/``delivered`` (some past the 14-day deadline, some
  returned, a few lost) -> ``service_active`` (some late, a few on the deadline, a few before the confirmation,
  a few never); some cancel; a few confirmations arrive without any ``order_placed``;
- legacy customers (the rest): no order at all, they only show up in outages, calls and claims;
- outages of internet/telephony/tv, single or overlapping services, lengths spread around the 24 h, 72 h and
  168 h thresholds (a few exactly on them), repeated ``down``/``up`` messages, a few never repaired;
- network elements: customers are served by elements (DSLAMs) of 60 to 200 consecutive customers. The network
  monitoring names the ``element_id`` on the ``service-status`` events of an element failure (below); a fault of
  one line is reported without it. (Were every outage named, the generator's many single-line outages would keep
  each element's count of customers out above zero for the whole run, and no incident would ever close.)
- network element failures (``mass_outage``, one every 30 days): every customer of one or more whole elements goes
  down within the same minute and comes back 26 to 50 hours later, most within a quarter of an hour of the repair (an
  ``incident`` under a charter with ``incident.min_customers`` up to 60);
- switch claims from new customers, with or without proof, fees above and below the 9900 cap, repeats;
- hotline calls in the ``technical``, ``billing`` and ``sales`` queues, daytime-weighted, waits around the
  180 s promise (a few exactly at it), abandoned calls, calls never settled, answers for unknown calls;
- transport noise: a small share of events arrives late (``disorder``) and a small share twice
  (``duplicates``, same ``event_id`` and bytes); both can be turned off;
- for the per-day charters (SPEC section 9, ``per_day``, on by default): orders carry a ``promised_start`` date
  (most kept, some late by days), and engineer ``appointment``s are booked for new lines and for long outages:
  mostly attended, some no-shows, cancellations with and without 24 h notice, late visits, a few repeated
  bookings and re-bookings.

The per-day additions draw from their own random stream and number their own events, so with ``per_day`` off the
output is byte for byte the generator's before them, and with it on the other events are the same except that
``order_placed`` carries ``promised_start`` (which Alice's rules ignore). With an ``events`` count, appointments
take some of the count, so the stream stops a little earlier in simulated time than without them.

``scale`` multiplies every simulated duration and instant offset from ``start``: ``scale=1/86400`` turns the
30 days into 30 seconds, for live tests against a charter whose durations are scaled the same way.
``hotline_scale`` (default: ``scale``) scales hotline waits on their own, for charters that scale the hotline
differently: the shipped ``alice-2007-seconds`` turns 180 s into 3 s (``hotline_scale=1/60``).

With ``events`` the stream stops after exactly that many records (the traffic rates are sized so that it ends
near ``days``); with ``events=None`` it stops at the end of ``days``, sized for about 10 events per subscriber.

Command line: ``python -m streams.gen --subscribers N --events M --seed S [--scale X] > file.jsonl``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from streams.errors import OneLineArgumentParser, UserFacingError

DEFAULT_START = datetime(2007, 5, 1, tzinfo=UTC)
MINUTE, HOUR, DAY = 60, 3600, 86400
_US = 1_000_000
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LA, BS, SS, CQ, SC = "line-activation", "box-shipment", "service-status", "call-queue", "switch-claim"
AP = "appointment"
TOPICS = (LA, BS, SS, CQ, SC, AP)

# Shares of the event budget, and the mean number of events one scenario of each kind produces (measured on
# large runs of this generator; they only size the traffic, nothing depends on them being exact).
NEW_SHARE = 0.30  # at most this share of subscribers are new customers (the rest are legacy)
ONBOARD_BUDGET, MASS_BUDGET, CALL_BUDGET = 0.22, 0.05, 0.35
EVENTS_PER_ONBOARDING, EVENTS_PER_MASS_CUSTOMER, EVENTS_PER_CALL, EVENTS_PER_OUTAGE = 6.8, 4.6, 1.97, 2.74
MASS_BLOCK_SHARE = 0.10  # the failing network elements serve about this share of subscribers (one at least)
ELEMENT_MIN, ELEMENT_MAX = 60, 200  # customers per network element
MASS_EVERY = 30 * DAY  # a long run has an element failure every 30 days
ONBOARD_WINDOW = 0.6  # new customers order during the first 60 % of the horizon, so most deadlines play out

# (offset in seconds, suffix), cumulative weights: the source systems do not agree on a time zone.
_PARIS, _UTC, _Z, _WINTER = (2 * HOUR, "+02:00"), (0, "+00:00"), (0, "Z"), (HOUR, "+01:00")
_OFFSETS = {
    LA: ((85, 95, 100), (_PARIS, _UTC, _Z)),
    BS: ((60, 90, 100), (_UTC, _Z, _PARIS)),
    SS: ((70, 90, 100), (_UTC, _Z, _PARIS)),
    CQ: ((90, 100), (_PARIS, _UTC)),
    SC: ((95, 100), (_PARIS, _WINTER)),
    AP: ((60, 90, 100), (_UTC, _Z, _WINTER)),
}

_FEES = ((45, 60, 85, 100), (2995, 2999, 3490, 4499))
_CLAIM_FEES = (4900, 5900, 7500, 9000, 9900, 9900, 10000, 12000, 14900, 15000)
_OPERATORS = ("France Telecom", "Free", "Neuf Cegetel", "Club Internet", "Noos", "AOL", "Tele2", "Darty Box")
_QUEUES = ((60, 85, 100), ("technical", "billing", "sales"))
_QUEUE_MEDIAN_WAIT = {"technical": 125.0, "billing": 85.0, "sales": 45.0}
_SERVICE_SETS = ((50, 75, 85, 95, 100), (("internet",), ("internet", "telephony"), ("telephony",), ("tv",),
                                          ("internet", "telephony", "tv")))
# Hotline traffic by hour of the day (Paris time), relative to the busiest hours.
_CALL_PROFILE = (0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.2, 0.6, 1.0, 1.0, 0.9,
                 0.7, 0.8, 1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.6, 0.4, 0.15, 0.06)
_CALL_PROFILE_MEAN = sum(_CALL_PROFILE) / 24

# Outage lengths, seconds: mostly short, the rest spread around (and a few exactly on) the thresholds.
_OUTAGE_KINDS = (
    (55.0, "short"),
    (8.0, (HOUR, 20 * HOUR)),
    (10.0, (20 * HOUR, 28 * HOUR)),
    (1.0, 24 * HOUR),
    (7.0, (28 * HOUR, 64 * HOUR)),
    (7.0, (64 * HOUR, 80 * HOUR)),
    (0.5, 72 * HOUR),
    (5.5, (80 * HOUR, 150 * HOUR)),
    (4.5, (150 * HOUR, 190 * HOUR)),
    (0.5, 168 * HOUR),
    (1.0, (190 * HOUR, 12 * DAY)),
)
_OUTAGE_CUM = tuple(accumulate(w for w, _ in _OUTAGE_KINDS))


class _Generator:
    """One run. Scenarios are started in time order; each pushes its future events on a heap keyed by arrival
    time, and the heap is drained up to the start of the next scenario, so memory is bounded by what is pending."""

    def __init__(self, subscribers: int, events: int | None, seed: int, start: datetime, scale: float,
                 hotline_calls_per_hour: float | None, mass_outage: bool, days: float, disorder: float,
                 duplicates: float, hotline_scale: float | None = None, per_day: bool = True) -> None:
        if subscribers < 1:
            raise ValueError("subscribers must be >= 1")
        if events is not None and events < 0:
            raise ValueError("events must be >= 0")
        if scale <= 0 or days <= 0 or (hotline_scale is not None and hotline_scale <= 0):
            raise ValueError("scale, hotline_scale and days must be > 0")
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self.rng = random.Random(seed)
        # the per-day additions (promised starts, appointments) have a stream of their own: see the module doc
        self.per_day = per_day
        self.rng2 = random.Random(f"{seed}/per-day")
        self.appt_ids = 0
        self.start = start
        self.n = subscribers
        self.limit = events
        self.k = scale * _US  # simulated seconds -> output microseconds
        self.start_us = (start - _EPOCH) // timedelta(microseconds=1)
        self.horizon = days * DAY
        self.wait_factor = 1.0 if hotline_scale is None else hotline_scale / scale  # hotline waits, simulated
        self.disorder = disorder
        self.duplicates = duplicates
        self.cids = [f"C{i:07d}" for i in range(subscribers)]
        # the element layout has a random stream of its own: it changes no other draw
        layout, self.element_starts = random.Random(f"{seed}/elements"), []
        at = 0
        while at < subscribers:
            self.element_starts.append(at)
            at += layout.randint(ELEMENT_MIN, ELEMENT_MAX)
        self.heap: list[tuple[int, int, int, str, dict[str, Any], int]] = []
        self.seq = 0
        self.ids = 0
        self.calls = 0
        self.proofs = 0
        self._days: dict[int, str] = {}

        budget = events if events is not None else 10 * subscribers
        self.n_new = min(round(NEW_SHARE * subscribers), round(ONBOARD_BUDGET * budget / EVENTS_PER_ONBOARDING))
        self.block = (min(round(MASS_BLOCK_SHARE * subscribers), round(MASS_BUDGET * budget / EVENTS_PER_MASS_CUSTOMER))
                      if mass_outage else 0)
        # which elements fail: drawn from the layout's stream; the first failure's whole elements are known now, so
        # that the traffic is sized with their real count of customers
        self.failing: list[range] = []
        if self.block:
            self.failing.append(self._whole_elements(layout.randrange(self.n - self.block + 1), self.block))
            self.block = len(self.failing[0])
        self.layout = layout
        if hotline_calls_per_hour is None:
            n_calls = CALL_BUDGET * budget / EVENTS_PER_CALL
        else:
            n_calls = hotline_calls_per_hour * self.horizon / HOUR
        rest = (budget - self.n_new * EVENTS_PER_ONBOARDING - self.block * EVENTS_PER_MASS_CUSTOMER
                - n_calls * EVENTS_PER_CALL)
        n_outages = max(rest / EVENTS_PER_OUTAGE, 0.02 * subscribers)
        self.call_rate = n_calls / self.horizon  # per simulated second, averaged over the day
        self.outage_rate = n_outages / self.horizon
        # With an event count the Poisson traffic goes on past the horizon until the count is reached.
        self.end = self.horizon if events is None else 4 * self.horizon

    # ------------------------------------------------------------------ plumbing

    def _id(self, topic: str) -> str:
        self.ids += 1
        return f"{topic[0]}{self.ids}"

    def push(self, t: float, topic: str, value: dict[str, Any]) -> None:
        """Schedule ``value`` (its ``occurred_at`` still None) at simulated second ``t`` (whole seconds)."""
        if t > self.end or t < 0:
            return
        us = round(round(t) * self.k)
        self.seq += 1
        heapq.heappush(self.heap, (us, self.seq, us, topic, value, 0))

    def fmt(self, us: int, topic: str, rng: random.Random | None = None) -> str:
        cum, offs = _OFFSETS[topic]
        off, suffix = offs[bisect(cum, (rng or self.rng).random() * cum[-1])]
        local = self.start_us + us + off * _US
        day, rem = divmod(local, 86_400 * _US)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = (_EPOCH_DATE + timedelta(days=day)).isoformat() + "T"
        s, frac = divmod(rem, _US)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        if frac:
            return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{frac:06d}{suffix}"
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}{suffix}"

    def pick(self, table: tuple[tuple[float, ...], tuple[Any, ...]]) -> Any:
        cum, items = table
        return items[bisect(cum, self.rng.random() * cum[-1])]

    def drain(self, upto: int | None) -> Iterator[dict[str, Any]]:
        """Pop (and yield) every pending event arriving at or before ``upto`` microseconds (None: all)."""
        heap, pop, push = self.heap, heapq.heappop, heapq.heappush
        main, rng2 = self.rng, self.rng2
        disorder, duplicates = self.disorder, self.duplicates
        while heap and (upto is None or heap[0][0] <= upto):
            arrival, _, occurred, topic, value, flag = pop(heap)
            rng = rng2 if topic == AP else main
            if flag == 0:
                value["occurred_at"] = self.fmt(occurred, topic, rng)
                if disorder and rng.random() < disorder:
                    # arrives late: a producer retried, a batch was held back (30 s to 6 h)
                    self.seq += 1
                    push(heap, (arrival + round(round(rng.uniform(30, 6 * HOUR)) * self.k), self.seq, occurred,
                                topic, value, 1))
                    continue
            if flag != 2 and duplicates and rng.random() < duplicates:
                # at-least-once delivery: the same message again, 1 s to 10 min later
                self.seq += 1
                push(heap, (arrival + round(rng.uniform(1, 600) * self.k), self.seq, occurred, topic, dict(value), 2))
            yield {"topic": topic, "value": value}

    # ------------------------------------------------------------------ scenario sources (each in time order)

    def _onboardings(self) -> Iterator[tuple[float, int, int]]:
        rng = self.rng
        times = sorted(rng.uniform(0, ONBOARD_WINDOW * self.horizon) for _ in range(self.n_new))
        first = self.n - self.n_new  # new customers got the newest ids
        for i, t in enumerate(times):
            yield t, 0, first + i

    def _poisson(self, rate: float, kind: int, profile: bool) -> Iterator[tuple[float, int, int]]:
        if rate <= 0:
            return
        rng = self.rng
        peak = rate / _CALL_PROFILE_MEAN if profile else rate
        t = 0.0
        while True:
            t += rng.expovariate(peak)
            if t > self.end:
                return
            if profile:
                hour = int((t / HOUR + 2) % 24)  # Paris time
                if rng.random() >= _CALL_PROFILE[hour]:
                    continue
            yield t, kind, rng.randrange(self.n)

    def _mass(self) -> Iterator[tuple[float, int, int]]:
        """Element failures: the first 45 % into the horizon (of 30 days at most), then one every 30 days."""
        if self.block:
            day, k = math.floor(0.45 * min(self.horizon, MASS_EVERY) / DAY), 0
            while day * DAY < self.end:
                if k == len(self.failing):
                    self.failing.append(self._whole_elements(self.layout.randrange(self.n - self.block + 1),
                                                             self.block))
                yield day * DAY + 12 * HOUR + 7 * MINUTE, 3, k
                day, k = day + MASS_EVERY // DAY, k + 1

    # ------------------------------------------------------------------ scenarios

    def onboarding(self, t0: float, idx: int) -> None:
        rng, r, push, cid = self.rng, self.rng.random, self.push, self.cids[idx]
        tv = r() < 0.65
        if r() >= 0.01:  # 1 %: the confirmation arrives without any order_placed (default fee, unknown zone)
            order = {"event_id": self._id(LA), "occurred_at": None, "customer_id": cid, "type": "order_placed",
                     "zone": "unbundled" if r() < 0.7 else "non_unbundled", "monthly_fee_cents": self.pick(_FEES)}
            if not tv or r() < 0.9:  # tv defaults to true
                order["tv"] = tv
            if self.per_day:
                order["promised_start"] = self._date(t0 + DAY * self.rng2.uniform(6, 24))
            push(t0, LA, order)
        conf = t0 + DAY * min(2 + rng.expovariate(1 / 3), 20)
        deadline = conf + 14 * DAY
        push(conf, LA, self._la(cid, "line_confirmed"))
        if r() < 0.01:  # a second confirmation: the clock starts at the first one only
            push(conf + DAY * rng.uniform(1, 5), LA, self._la(cid, "line_confirmed"))
        cancelled = r() < 0.025
        if cancelled:
            push(conf + DAY * rng.uniform(-1, 12), LA, self._la(cid, "order_cancelled"))
        self._box(cid, "modem", conf, deadline)
        if tv or r() < 0.02:
            self._box(cid, "tv_decoder", conf, deadline)
        x = r()
        if cancelled and r() < 0.8:
            pass  # cancelled: usually never activated
        elif x < 0.02:
            pass  # never activated within the run
        elif x < 0.09:
            push(deadline + DAY * rng.uniform(0.02, 12), LA, self._la(cid, "service_active"))  # late
        elif x < 0.10:
            push(deadline, LA, self._la(cid, "service_active"))  # exactly on the deadline: kept
        elif x < 0.11:
            push(conf - DAY * rng.uniform(0.2, 2), LA, self._la(cid, "service_active"))  # before confirmation
        else:
            push(conf + DAY * rng.uniform(3, 12), LA, self._la(cid, "service_active"))
        if r() < 0.4:  # switching from another operator: a claim for the termination fee
            self.claim(t0 + DAY * rng.uniform(1, 40), cid)
        if self.per_day and self.rng2.random() < 0.6:  # an engineer installs the line
            self.appointment(conf - DAY * self.rng2.uniform(0, 2), conf + DAY * self.rng2.uniform(1, 8), cid)

    def _la(self, cid: str, kind: str) -> dict[str, Any]:
        return {"event_id": self._id(LA), "occurred_at": None, "customer_id": cid, "type": kind}

    def _box(self, cid: str, item: str, conf: float, deadline: float) -> None:
        rng, r = self.rng, self.rng.random
        shipped = max(conf + DAY * rng.uniform(-2, 3), conf - 2 * DAY)
        self.push(shipped, BS, self._ship(cid, item, "shipped"))
        x = r()
        if x < 0.01:
            return  # lost in transit
        if x < 0.03:  # refused or damaged: returned, then shipped again
            back = shipped + DAY * rng.uniform(2, 6)
            self.push(back, BS, self._ship(cid, item, "returned"))
            shipped = back + DAY * rng.uniform(0.5, 2)
            self.push(shipped, BS, self._ship(cid, item, "shipped"))
            delivered = shipped + DAY * rng.uniform(1, 4)
        elif x < 0.11:
            delivered = deadline + DAY * rng.uniform(0.01, 8)  # late, past the 14 days
        elif x < 0.115:
            delivered = deadline  # on the deadline: kept
        else:
            delivered = shipped + DAY * rng.uniform(1, 4)
        self.push(delivered, BS, self._ship(cid, item, "delivered"))

    def _ship(self, cid: str, item: str, status: str) -> dict[str, Any]:
        return {"event_id": self._id(BS), "occurred_at": None, "customer_id": cid, "item": item, "status": status}

    def claim(self, t: float, cid: str, repeat: bool = False, proof: bool | None = None) -> None:
        rng, r = self.rng, self.rng.random
        if proof is None:
            proof = r() < 0.7
        if proof:
            self.proofs += 1
            proof_id: str | None = f"PRF-{self.proofs:07d}"
        else:
            proof_id = "" if r() < 0.05 else None
        fee = 0 if r() < 0.06 else (rng.choice(_CLAIM_FEES) if r() < 0.6 else rng.randrange(30, 170) * 100)
        self.push(t, SC, {"event_id": self._id(SC), "occurred_at": None, "customer_id": cid,
                          "previous_operator": rng.choice(_OPERATORS), "termination_fee_cents": fee,
                          "proof_id": proof_id})
        if not repeat and r() < 0.15:  # again, with the proof this time (or once more after a grant)
            self.claim(t + DAY * rng.uniform(3, 20), cid, repeat=True, proof=True)

    def _outage_length(self) -> float:
        rng = self.rng
        kind = _OUTAGE_KINDS[bisect(_OUTAGE_CUM, rng.random() * _OUTAGE_CUM[-1])][1]
        if kind == "short":
            return min(max(60.0, math.exp(rng.gauss(math.log(40 * MINUTE), 1.0))), 20 * HOUR)
        if isinstance(kind, tuple):
            return rng.uniform(*kind)
        return float(kind)

    def outage(self, t: float, idx: int) -> None:
        rng, r, cid = self.rng, self.rng.random, self.cids[idx]
        t = round(t)
        services = self.pick(_SERVICE_SETS)
        length = round(self._outage_length())
        end = t + length
        repaired = r() >= 0.02  # 2 %: still down when the run ends
        if self.per_day and length > 20 * HOUR and self.rng2.random() < 0.5:  # an engineer comes to repair it
            self.appointment(t + self.rng2.uniform(2, 20) * HOUR, t + DAY * self.rng2.uniform(1, 4), cid)
        last = rng.randrange(len(services))
        for i, service in enumerate(services):
            if i == 0:
                down = t
            elif r() < 0.85:
                down = t + rng.uniform(0, 120)  # the same fault, seconds apart
            else:
                down = t + rng.uniform(0.05, 0.6) * length  # a second fault overlapping the first
            self.push(down, SS, self._status(cid, service, "down"))
            if r() < 0.03:  # the monitoring repeats itself
                self.push(down + rng.uniform(60, 0.9 * length + 60), SS, self._status(cid, service, "down"))
            if repaired:
                up = end if i == last else down + rng.uniform(0.1, 1.0) * (end - down)
                self.push(up, SS, self._status(cid, service, "up"))
                if r() < 0.02:
                    self.push(up + rng.uniform(1, 900), SS, self._status(cid, service, "up"))

    def _status(self, cid: str, service: str, status: str, element: bool = False) -> dict[str, Any]:
        value = {"event_id": self._id(SS), "occurred_at": None, "customer_id": cid, "service": service,
                 "status": status}
        if element:
            value["element_id"] = self._element(int(cid[1:]))
        return value

    def _element(self, idx: int) -> str:
        return f"E{bisect(self.element_starts, idx) - 1:05d}"

    def _whole_elements(self, first: int, size: int) -> range:
        """The customers of the elements serving customers ``first`` to ``first + size - 1``: whole elements."""
        starts = self.element_starts
        lo = starts[bisect(starts, first) - 1]
        j = bisect(starts, min(first + size, self.n) - 1)
        return range(lo, starts[j] if j < len(starts) else self.n)

    def mass_outage(self, t: float, k: int) -> None:
        """DSLAMs fail: all their customers go down within the same minute and come back after the repair."""
        rng, r = self.rng, self.rng.random
        repair = t + rng.uniform(26 * HOUR, 50 * HOUR)
        for idx in self.failing[k]:
            cid = self.cids[idx]
            services = ["internet"]
            if r() < 0.9:
                services.append("telephony")
            if r() < 0.4:
                services.append("tv")
            back = repair + (rng.uniform(0, 900) if r() < 0.97 else rng.uniform(HOUR, 30 * HOUR))  # some reboot
            for service in services:
                self.push(t + rng.uniform(0, 52), SS, self._status(cid, service, "down", True))
                self.push(back + rng.uniform(0, 30), SS, self._status(cid, service, "up", True))

    def _date(self, t: float) -> str:
        """The calendar date (UTC) of simulated second ``t``."""
        return (self.start + timedelta(microseconds=round(round(t) * self.k))).date().isoformat()

    def _iso(self, t: float) -> str:
        return (self.start + timedelta(microseconds=round(round(t) * self.k))).isoformat()

    def appointment(self, t: float, day: float, cid: str, rebooked: bool = False) -> None:
        """Book a 4-hour slot on the day of simulated second ``day`` at ``t``; then what happens to it."""
        rng = self.rng2
        r = rng.random
        self.appt_ids += 1
        appt_id = f"AP{self.appt_ids:07d}"
        start = math.floor(day / DAY) * DAY + rng.choice((8, 12, 13)) * HOUR
        end = start + 4 * HOUR
        t = min(t, start - HOUR)

        def push(at: float, kind: str, **extra: Any) -> None:
            self.appt_ids += 1
            self.push(at, AP, {"event_id": f"a{self.appt_ids}", "occurred_at": None, "customer_id": cid,
                               "appointment_id": appt_id, "type": kind, **extra})

        push(t, "booked", slot_start=self._iso(start), slot_end=self._iso(end))
        if r() < 0.02:  # the booking system sends the booking again
            push(t + rng.uniform(60, HOUR), "booked", slot_start=self._iso(start), slot_end=self._iso(end))
        x = r()
        if x < 0.74:
            push(start + rng.uniform(0, 4 * HOUR), "attended")
        elif x < 0.76:
            push(end, "attended")  # arrives at the very end of the slot: kept
        elif x < 0.80:
            push(end + rng.uniform(60, 3 * HOUR), "attended")  # too late: missed at the slot's end
        elif x < 0.86:
            pass  # nobody came, nothing said: missed at the slot's end
        elif x < 0.93:  # cancelled in good time (at least 24 h before), often re-booked
            told = max(t + 60, start - DAY - rng.uniform(0, 3 * DAY))
            push(told, "cancelled")
            if not rebooked and r() < 0.7:
                self.appointment(told + rng.uniform(60, HOUR), day + DAY * rng.uniform(2, 6), cid, rebooked=True)
        elif x < 0.995:  # cancelled late: within 24 h of the slot or during it
            told = start - DAY + rng.uniform(1, DAY + 3 * HOUR)
            push(told, "cancelled")
            if r() < 0.2:
                push(told + rng.uniform(60, HOUR), "attended")  # someone came anyway: still missed
        else:
            push(start - DAY, "cancelled")  # exactly 24 h before: in time

    def call(self, t: float, idx: int) -> None:
        rng, r = self.rng, self.rng.random
        self.calls += 1
        call_id = f"call-{self.calls:08d}"
        queue = self.pick(_QUEUES)
        base: dict[str, Any] = {"call_id": call_id, "queue": queue}
        if r() < 0.75:
            base["customer_id"] = self.cids[idx]
        if r() < 0.005:  # an answer for a call the processor never saw queued
            self.push(t, CQ, {"event_id": self._id(CQ), "occurred_at": None, **base, "type": "answered"})
            return
        self.push(t, CQ, {"event_id": self._id(CQ), "occurred_at": None, **base, "type": "queued"})
        x = r()
        if x < 0.78:
            wait = math.exp(rng.gauss(math.log(_QUEUE_MEDIAN_WAIT[queue]), 0.75))
            kind = "answered"
        elif x < 0.80:
            wait, kind = 180.0, "answered"  # exactly on the promise: in time
        elif x < 0.97:
            wait, kind = math.exp(rng.gauss(math.log(90), 0.9)), "abandoned"
        else:
            return  # never settled (lost by the switch)
        self.push(t + max(wait, 1.0) * self.wait_factor, CQ,
                  {"event_id": self._id(CQ), "occurred_at": None, **base, "type": kind})

    # ------------------------------------------------------------------ the run

    def run(self) -> Iterator[dict[str, Any]]:
        limit = self.limit
        if limit == 0:
            return
        sources = heapq.merge(self._onboardings(), self._poisson(self.outage_rate, 1, False),
                              self._poisson(self.call_rate, 2, True), self._mass())
        handlers: tuple[Callable[[float, int], None], ...] = (self.onboarding, self.outage, self.call,
                                                             self.mass_outage)
        n = 0
        for t, kind, arg in sources:
            for rec in self.drain(round(round(t) * self.k)):
                yield rec
                n += 1
                if n == limit:
                    return
            handlers[kind](t, arg)
        for rec in self.drain(None):
            yield rec
            n += 1
            if n == limit:
                return


def generate(subscribers: int, events: int | None = None, seed: int = 0, start: datetime = DEFAULT_START,
             scale: float = 1.0, hotline_calls_per_hour: float | None = None, mass_outage: bool = True, *,
             days: float = 30.0, disorder: float = 0.002, duplicates: float = 0.002,
             hotline_scale: float | None = None, per_day: bool = True) -> Iterator[dict[str, Any]]:
    """Yield replay records ``{"topic": ..., "value": {...}}`` of simulated upstream traffic, deterministically.

    ``subscribers``: distinct customers (a share are new and go through activation, the rest are legacy).
    ``events``: stop after exactly this many records (None: at the end of ``days``, ~10 per subscriber).
    ``scale``: multiplies every simulated duration (1/86400 maps days to seconds).
    ``hotline_calls_per_hour``: simulated-hour call rate (None: about a third of the events are calls).
    ``mass_outage``: include a network element failure taking a block of customers down in the same minute.
    ``disorder`` / ``duplicates``: share of events arriving late / twice (0 turns them off).
    ``hotline_scale``: multiplies hotline waits instead of ``scale`` (``alice-2007-seconds``: 1/60).
    ``per_day``: promised start dates and engineer appointments (SPEC section 9).
    """
    return _Generator(subscribers, events, seed, start, scale, hotline_calls_per_hour, mass_outage, days,
                      disorder, duplicates, hotline_scale, per_day).run()


class Flapping:
    """One customer whose box flaps down/up for years (issue 12: state must stay bounded), as replay records.

    Every ``period`` seconds the ``service`` goes ``down`` and comes back ``down_for`` seconds later, for ``days``.
    ``long_outages`` are ``(day, length in seconds)``: the first cycle at or after that day stays down that long
    instead (the cycles it covers are skipped), so they cross the charter's tiers. Transport noise, which must
    change nothing:

    - ``copies_within``: a copy of the ``down`` of the cycle before each long outage, arriving just before the long
      outage begins (seconds after its original, within any retention of an hour or more). Were it applied again,
      the long outage would open at that earlier instant and every compensation would differ;
    - ``late_copies``: a copy of each long outage's ``down`` and ``up``, arriving ``late_by`` seconds after its
      ``up`` (beyond the retention: no longer recognised, applied as new). Paying it again would repeat the
      outage's compensation ids; a pair of a short cycle arrives the same way every ``late_every`` cycles.

    Late pairs arrive right after a short cycle's ``up`` (the customer is up then). ``scale`` multiplies every
    duration and offset from ``start`` (1/86400: days become seconds, for ``alice-2007-seconds``). Event ids are
    ``<customer>-<cycle>d`` and ``<customer>-<cycle>u``. ``records`` is in arrival order; ``outages`` lists the long
    outages actually generated as ``(start µs, down event id, length µs)``.

    Live, in seconds (``alice-2007-seconds``: a day is a second; give the charter ``dedup_retention`` scaled too,
    e.g. ``7s``, or ``42ms`` for an hour): ``Flapping("FLAP-L", days=30, long_outages=[(3, 25 * 3600),
    (10, 80 * 3600), (20, 200 * 3600)], late_every=1000, scale=1 / 86400).records`` is 30 s of traffic (about
    10,000 events) to produce in that order; ``tests.test_bounded_state.expected_outage_compensations`` gives what
    it must pay, from ``outages`` alone.
    """

    def __init__(self, customer_id: str = "FLAP-1", *, start: datetime = DEFAULT_START, days: float = 730.0,
                 period: float = 300.0, down_for: float = 60.0,
                 long_outages: Iterable[tuple[float, float]] = ((30, 25 * 3600), (200, 80 * 3600),
                                                               (400, 200 * 3600), (600, 23.5 * 3600)),
                 copies_within: bool = True, late_copies: bool = True, late_by: float = 8 * 86400.0,
                 late_every: int = 5000, service: str = "internet", scale: float = 1.0) -> None:
        start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))

        def us(t: float) -> int:
            return start_us + round(t * scale * 1_000_000)

        longs = sorted((d * 86400.0, length) for d, length in long_outages)
        arrivals: list[tuple[int, int, dict[str, Any]]] = []  # (arrival µs, order, record)
        self.outages: list[tuple[int, str, int]] = []
        cid, seq = customer_id, 0

        def status(k: int, st: str, t: float) -> dict[str, Any]:
            return {"topic": "service-status", "value": {
                "event_id": f"{cid}-{k}{st[0]}", "occurred_at": _iso_us(us(t)), "customer_id": cid,
                "service": service, "status": st}}

        def push(arrive: int, rec: dict[str, Any]) -> None:
            nonlocal seq
            arrivals.append((arrive, seq, rec))
            seq += 1

        k, t, end, li = 0, 0.0, days * 86400.0, 0
        late_short: list[tuple[dict[str, Any], dict[str, Any]]] = []
        pending_late: list[tuple[int, dict[str, Any], dict[str, Any]]] = []  # (due µs, down copy, up copy)
        previous_down: dict[str, Any] | None = None
        while t < end:
            is_long = li < len(longs) and t >= longs[li][0]
            length = longs[li][1] if is_long else down_for
            down, up = status(k, "down", t), status(k, "up", t + length)
            if is_long:
                li += 1
                if copies_within and previous_down is not None:
                    push(us(t) - 1, previous_down)  # a redelivery of the last flap, just before this outage
                self.outages.append((us(t), down["value"]["event_id"], us(t + length) - us(t)))
                if late_copies:
                    pending_late.append((us(t + length + late_by), down, up))
            elif late_copies and late_every and k % late_every == 0 and k:
                late_short.append((down, up))
            push(us(t), down)
            push(us(t + length), up)
            # late pairs arrive right after this cycle's up, when the customer is up
            if not is_long:
                while pending_late and pending_late[0][0] <= us(t + length):
                    _, d, u = pending_late.pop(0)
                    push(us(t + length), d)
                    push(us(t + length), u)
                if late_short and us(t + length) >= _at_us(late_short[0][0]) + round(late_by * scale * 1e6):
                    d, u = late_short.pop(0)
                    push(us(t + length), d)
                    push(us(t + length), u)
            previous_down = down
            k += 1
            t += period
            if is_long:
                while t <= longs[li - 1][0] + length:  # the cycles the long outage covers do not happen
                    t += period
        arrivals.sort(key=lambda a: (a[0], a[1]))
        self.records: list[dict[str, Any]] = [r for _, _, r in arrivals]


def _iso_us(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat()


def _at_us(rec: dict[str, Any]) -> int:
    dt = datetime.fromisoformat(rec["value"]["occurred_at"])
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def write_jsonl(path: str | Path | BinaryIO, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSON lines (orjson) to a path or a binary file; return how many were written."""
    if isinstance(path, str | Path):
        with open(path, "wb") as f:
            return write_jsonl(f, records)
    dumps, buf, n = orjson.dumps, [], 0
    for rec in records:
        buf.append(dumps(rec))
        n += 1
        if len(buf) == 4096:
            buf.append(b"")
            path.write(b"\n".join(buf))
            buf.clear()
    if buf:
        buf.append(b"")
        path.write(b"\n".join(buf))
    return n


def _parse_start(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 instant") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return dt


def _number(kind: type[int] | type[float], low: float, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` >= ``low`` (> ``low`` when ``above``)."""
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low}, got {text}")
        return value

    return convert


def main(argv: list[str] | None = None) -> int:
    positive = _number(float, 0, above=True)
    non_negative = _number(float, 0)
    p = OneLineArgumentParser(prog="python -m streams.gen", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=_number(int, 1), required=True)
    p.add_argument("--events", type=_number(int, 0), default=None,
                   help="exact number of records (default: ~10/subscriber)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=positive, default=1.0, help="duration multiplier, e.g. 1.1574074074074073e-05")
    p.add_argument("--start", type=_parse_start, default=DEFAULT_START, help="RFC 3339 (default 2007-05-01Z)")
    p.add_argument("--days", type=positive, default=30.0, help="simulated horizon (default 30)")
    p.add_argument("--hotline-scale", type=positive, default=None, help="scale of hotline waits (default: --scale)")
    p.add_argument("--calls-per-hour", type=non_negative, default=None, dest="calls")
    p.add_argument("--no-mass-outage", action="store_true")
    p.add_argument("--disorder", type=non_negative, default=0.002, help="share of late arrivals (0: none)")
    p.add_argument("--duplicates", type=non_negative, default=0.002, help="share of redeliveries (0: none)")
    p.add_argument("--no-per-day", action="store_true", help="no promised start dates, no appointments")
    p.add_argument("-o", "--output", default="-", help="file (default: standard output)")
    a = p.parse_args(argv)
    records = generate(a.subscribers, a.events, a.seed, a.start, a.scale, a.calls, not a.no_mass_outage,
                       days=a.days, disorder=a.disorder, duplicates=a.duplicates, hotline_scale=a.hotline_scale,
                       per_day=not a.no_per_day)
    try:
        n = write_jsonl(sys.stdout.buffer if a.output == "-" else a.output, records)
    except OSError as e:
        error = UserFacingError(f"cannot write {a.output}: {e.strerror or e}")
        error.show()
        return error.exit_code
    if a.output == "-":
        sys.stdout.buffer.flush()
    print(f"{n} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
