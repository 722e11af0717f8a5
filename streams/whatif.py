"""What a charter would have cost: the same events replayed under several charters, compensations totalled.

``whatif(lines, charters)`` parses each line once and feeds it to one engine per charter under the event-time
clock of replay (SPEC sections 5 and 6), so every charter sees exactly the same stream. The report counts, per
compensating rule and in total, the compensations, the distinct customers and the amount, and the difference of
each charter from the first. Amounts in different currencies are never subtracted: that difference is absent.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.charter import Charter
from streams.core import Engine, to_us
from streams.replay import parse_line

# Rules that pay money, each named like the charter section that enables it.
PAYING_RULES = ("late_activation", "switch_fee_refund", "outage", "delayed_repair", "delayed_provision",
                "missed_appointment")


@dataclass
class Totals:
    compensations: int = 0
    amount_cents: int = 0
    customers: set[str] = field(default_factory=set)

    def add(self, customer: str, amount: int) -> None:
        self.compensations += 1
        self.amount_cents += amount
        self.customers.add(customer)

    def as_dict(self) -> dict[str, int]:
        return {"compensations": self.compensations, "customers": len(self.customers),
                "amount_cents": self.amount_cents}


@dataclass
class CharterCost:
    label: str
    charter: Charter
    rules: dict[str, Totals]
    total: Totals = field(default_factory=Totals)


@dataclass
class Report:
    events: int
    dead_letters: int
    costs: list[CharterCost]

    @property
    def rules(self) -> list[str]:
        """Every rule enforced by at least one of the charters, in the order of ``PAYING_RULES``."""
        return [r for r in PAYING_RULES if any(r in c.rules for c in self.costs)]

    def row(self, cost: CharterCost, rule: str | None) -> dict[str, int]:
        t = cost.total if rule is None else cost.rules.get(rule, Totals())
        return t.as_dict()

    def difference(self, cost: CharterCost, rule: str | None) -> dict[str, int | None]:
        """``cost`` minus the first charter's; ``amount_cents`` is None when their currencies differ."""
        a, b = self.row(self.costs[0], rule), self.row(cost, rule)
        d: dict[str, int | None] = {k: b[k] - a[k] for k in b}
        if cost.charter.currency != self.costs[0].charter.currency:
            d["amount_cents"] = None
        return d


def labels_for(refs: list[str], charters: list[Charter]) -> list[str]:
    """Charter names, or the reference given when two charters share a name."""
    names = [c.name for c in charters]
    return [n if names.count(n) == 1 else ref for n, ref in zip(names, refs, strict=True)]


def whatif(lines: Iterable[bytes | str], charters: list[Charter], labels: list[str] | None = None,
           until: int | None = None) -> Report:
    """Replay ``lines`` under every charter at once; total their compensations."""
    labels = labels or [c.name for c in charters]
    costs = [CharterCost(label, c, {r: Totals() for r in PAYING_RULES if getattr(c, r) is not None})
             for label, c in zip(labels, charters, strict=True)]
    engines = [Engine(c) for c in charters]
    pairs = list(zip(engines, costs, strict=True))
    events = dead = 0

    def count(cost: CharterCost, outs: list[Any]) -> None:
        for topic, key, value in outs:
            if topic == "compensation":
                cost.rules[value["rule"]].add(key, value["amount_cents"])
                cost.total.add(key, value["amount_cents"])

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        events += 1
        parsed = parse_line(line, lineno)
        if len(parsed) == 3:
            dead += 1
            continue
        topic, event = parsed
        at = to_us(event.occurred_at)
        for engine, cost in pairs:
            outs = engine.advance(at)
            outs += engine.apply(topic, event, at)
            if outs:
                count(cost, outs)
    for engine, cost in pairs:
        count(cost, engine.finish(until))
    return Report(events, dead, costs)


# ---------------------------------------------------------------------------------------------------- formats


def money(cents: int | None, currency: str, signed: bool = False) -> str:
    """``123456`` -> ``1,234.56 EUR`` (``+1,234.56 EUR`` when ``signed``); None -> ``n/a``."""
    if cents is None:
        return "n/a"
    sign = "-" if cents < 0 else ("+" if signed else "")
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d} {currency}"


def to_json(report: Report) -> str:
    def block(cost: CharterCost, fn: Any) -> dict[str, Any]:
        return {"rules": {r: fn(cost, r) for r in report.rules}, "total": fn(cost, None)}

    data = {
        "events": report.events, "dead_letters": report.dead_letters,
        "charters": [{"charter": c.label, "currency": c.charter.currency, "rules_enforced": list(c.rules),
                      **block(c, report.row)} for c in report.costs],
        "differences": [{"charter": c.label, "against": report.costs[0].label,
                         "currency": c.charter.currency if c.charter.currency == report.costs[0].charter.currency
                         else None, **block(c, report.difference)} for c in report.costs[1:]],
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["charter", "rule", "compensations", "customers", "amount_cents", "currency"])
    first = report.costs[0]
    for c in report.costs:
        for rule in [*report.rules, None]:
            r = report.row(c, rule)
            w.writerow([c.label, rule or "total", r["compensations"], r["customers"], r["amount_cents"],
                        c.charter.currency])
    for c in report.costs[1:]:
        same = c.charter.currency == first.charter.currency
        for rule in [*report.rules, None]:
            d = report.difference(c, rule)
            w.writerow([f"{c.label} - {first.label}", rule or "total", d["compensations"], d["customers"],
                        "" if d["amount_cents"] is None else d["amount_cents"], first.charter.currency if same else ""])
    return buf.getvalue()


def to_table(report: Report) -> str:
    first = report.costs[0]
    groups: list[tuple[str, Any, str]] = [(f"{c.label} ({c.charter.currency})", c, "row") for c in report.costs]
    groups += [(f"{c.label} - {first.label}", c, "diff") for c in report.costs[1:]]
    header1, header2 = ["rule"], [""]
    rows: list[list[str]] = []
    for title, _, _ in groups:
        header1 += [title, "", ""]
        header2 += ["compensations", "customers", "amount"]
    for rule in [*report.rules, None]:
        cells = [rule or "total"]
        for _, c, kind in groups:
            if kind == "row" and rule is not None and rule not in c.rules:
                cells += ["-", "-", "-"]  # not a rule of this charter
            elif kind == "row":
                r = report.row(c, rule)
                cells += [f"{r['compensations']:,}", f"{r['customers']:,}",
                          money(r["amount_cents"], c.charter.currency)]
            else:
                d = report.difference(c, rule)
                cells += [f"{d['compensations']:+,}", f"{d['customers']:+,}",
                          money(d["amount_cents"], c.charter.currency, signed=True)]
        rows.append(cells)
    table = [header1, header2, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header1))]
    # a group title spans its three columns: widen the last of them if the title is longer
    for g in range(len(groups)):
        i = 1 + 3 * g
        span = widths[i] + widths[i + 1] + widths[i + 2] + 4
        if len(header1[i]) > span:
            widths[i + 2] += len(header1[i]) - span
    out = []
    for n, r in enumerate(table):
        if n == 0:
            cells = [r[0].ljust(widths[0])]
            for g in range(len(groups)):
                i = 1 + 3 * g
                cells.append(r[i].ljust(widths[i] + widths[i + 1] + widths[i + 2] + 4))
            out.append("   ".join(cells).rstrip())
            continue
        cells = [r[0].ljust(widths[0])]
        for g in range(len(groups)):
            i = 1 + 3 * g
            cells.append("  ".join(r[j].rjust(widths[j]) for j in (i, i + 1, i + 2)))
        out.append("   ".join(cells).rstrip())
    note = f"{report.events:,} events; '-': not a rule of that charter"
    if report.dead_letters:
        note += f", {report.dead_letters:,} invalid (dead letters, applied under no charter)"
    if any(c.charter.currency != first.charter.currency for c in report.costs):
        note += "; amounts in different currencies are not subtracted (n/a)"
    return "\n".join([*out, "", note]) + "\n"


FORMATS = {"table": to_table, "csv": to_csv, "json": to_json}
