"""``charter report``: the output records of a replay or of a deployment as one self-contained HTML page.

The page has figures (matplotlib, Agg, embedded as base64 PNG) and tables: compensations and amounts per rule per
day, alerts per day, the hotline per window against the promise, incidents on a timeline, the top customers and
network elements by amount, and the totals per rule and currency. Nothing on the page refers to another file.

Both sources end in :func:`render`, which takes the list of output records: :func:`replay_file` replays an event
file, :func:`read_topics` reads a deployment's output topics and :func:`records_from_messages` turns what was read
into records. Amounts are attributed to network elements through the ``element_id`` of the ``service-status``
``down`` event that opened the outage (SPEC section 10), so both sources also collect those from the inputs.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from schemas.outputs import OUTPUT_MODELS
from streams.charter import Charter
from streams.replay import replay

if TYPE_CHECKING:
    from streams.settings import Settings

Record = tuple[str, str | None, dict[str, Any]]
Message = tuple[str, bytes | None, bytes | None]

# Outputs of a deployment, read back by --from-topics; topics that do not exist on the broker are skipped.
OUTPUT_TOPICS: tuple[str, ...] = tuple(OUTPUT_MODELS)
ELEMENT_TOPIC = "service-status"
# Rules whose compensations pay for an outage: their evidence starts with the `down` that opened it.
OUTAGE_RULES = frozenset({"outage", "delayed_repair"})
TOP_N = 15
MAX_TIMELINE_ROWS = 40
# Bars are per day, unless the records span less than 3 days (a seconds-scaled charter, a short test): then per
# hour, minute or second, whichever is the largest that gives at least 3 bars.
BUCKETS = ((timedelta(days=1), "day"), (timedelta(hours=1), "hour"), (timedelta(minutes=1), "minute"),
           (timedelta(seconds=1), "second"))

FIGURES: dict[str, str] = {
    "compensations": "Compensations per rule per day",
    "alerts": "Alerts and hotline breaches per day",
    "hotline": "Hotline: calls answered within the promise, per window",
    "incidents": "Incidents: network elements with many customers out",
    "top-customers": "Top customers by amount",
    "top-elements": "Top network elements by amount",
}


class ReportSourceError(ValueError):
    """The input cannot be reported on (e.g. a file of output records given where an event file is expected)."""


# --------------------------------------------------------------------------------------------------------- sources


def element_of(topic: str, value: Any) -> tuple[str, str] | None:
    """(event_id, element_id) of a ``service-status`` ``down`` that names its network element, else None."""
    if topic != ELEMENT_TOPIC or not isinstance(value, dict) or value.get("status") != "down":
        return None
    event_id, element = value.get("event_id"), value.get("element_id")
    if isinstance(event_id, str) and isinstance(element, str) and element:
        return event_id, element
    return None


def replay_file(lines: Iterable[bytes], charter: Charter) -> tuple[list[Record], dict[str, str]]:
    """Replay event-file lines under ``charter``: (output records, event_id of each `down` -> its element_id)."""
    elements: dict[str, str] = {}
    first = True

    def watched(src: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal first
        for line in src:
            if first and line.strip():
                first = False
                _refuse_output_records(line)
            if b"element_id" in line:  # cheap test first: most lines are not element-tagged outages
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    rec = None
                if isinstance(rec, dict) and (hit := element_of(rec.get("topic", ""), rec.get("value"))):
                    elements[hit[0]] = hit[1]
            yield line

    return list(replay(watched(lines), charter)), elements


def _refuse_output_records(line: bytes) -> None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if isinstance(rec, dict) and rec.get("topic") in OUTPUT_TOPICS:
        raise ReportSourceError(f"the file holds output records (topic {rec['topic']!r}), not events: give the "
                                "event file that was replayed, or use --from-topics")


def records_from_messages(messages: Iterable[Message], unprefixed: Callable[[str], str] = str,
                          ) -> tuple[list[Record], dict[str, str] | None]:
    """Messages read from a deployment's topics -> (output records, element map or None when the
    ``service-status`` topic was not among them). Values that are not JSON objects are skipped."""
    records: list[Record] = []
    elements: dict[str, str] | None = None
    for raw_topic, key, value in messages:
        topic = unprefixed(raw_topic)
        if topic == ELEMENT_TOPIC:
            elements = {} if elements is None else elements
        try:
            decoded = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        if not isinstance(decoded, dict):
            continue
        if topic == ELEMENT_TOPIC:
            if hit := element_of(topic, decoded):
                elements[hit[0]] = hit[1]  # type: ignore[index]
            continue
        records.append((topic, None if key is None else key.decode("utf-8", "replace"), decoded))
    return records, elements


async def _partitions(settings: Settings, names: list[str]) -> dict[str, list[int]]:
    """Partition ids of those of ``names`` that exist. (The consumer's ``topics()`` fetches names without keeping
    their metadata, so its ``partitions_for_topic`` does not know a topic it was never subscribed to.)"""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.connection import client_options, start_client

    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15000)
    await start_client(admin, settings)  # a connection failure is one line (KafkaConnectionFailed)
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n in existing]
        described = await admin.describe_topics(wanted) if wanted else []
        return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    finally:
        await admin.close()


async def read_topics(settings: Settings, topics: Iterable[str] = (*OUTPUT_TOPICS, ELEMENT_TOPIC),
                      progress: bool = False, stall_seconds: float = 30.0) -> tuple[list[Message], list[str]]:
    """Read each of ``topics`` (prefixed by the settings) from its beginning to its end offset as it was when the
    read started, read_committed, then stop. Returns (messages, names of the topics that exist)."""
    import sys
    import time

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from tqdm import tqdm

    from streams.connection import client_options, start_client

    partitions = await _partitions(settings, [settings.topic(t) for t in topics])
    names = [t for t in topics if settings.topic(t) in partitions]
    parts = [TopicPartition(settings.topic(t), p) for t in names for p in partitions[settings.topic(t)]]
    if not parts:
        return [], names
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", request_timeout_ms=15000)
    await start_client(consumer, settings)  # stops the consumer when it cannot connect
    try:
        consumer.assign(parts)
        begin = await consumer.beginning_offsets(parts)
        end = await consumer.end_offsets(parts)  # read_committed: the last stable offset
        remaining = {tp for tp in parts if end[tp] > begin[tp]}
        for tp in parts:
            if tp in remaining:
                consumer.seek(tp, begin[tp])
            else:
                consumer.pause(tp)
        out: list[Message] = []
        bar = tqdm(total=sum(end[tp] - begin[tp] for tp in remaining), unit="msg", file=sys.stderr,
                   desc="read topics", disable=not progress)
        last_progress = time.monotonic()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                out.extend((m.topic, m.key, m.value) for m in msgs if m.offset < end[tp])
            for tp in list(remaining):
                # transaction markers and aborted records take offsets too: the position, not a count of
                # records, says when a partition has been read to its end
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)  # nothing past the end: the report is of the topics as they were
            bar.update(sum(len(v) for v in batch.values()))
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                stuck = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(remaining))
                raise TimeoutError(f"no progress for {stall_seconds:.0f} s reading {stuck}")
        bar.close()
        return out, names
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------------------------ summaries


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Incident:
    incident_id: str
    element_id: str
    opened: datetime | None = None
    closed: datetime | None = None
    customers_at_open: int | None = None
    peak: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """What the page shows, computed once from the records."""

    tz: tzinfo
    tz_name: str
    answer_within_s: float | None
    window_s: float | None
    currency: str | None
    topics: Counter[str] = field(default_factory=Counter)
    # (rule, currency) -> [count, cents, customers, days]: days credited (outage) or paid (per-day rules)
    totals: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    bucket: timedelta = BUCKETS[0][0]
    bucket_name: str = BUCKETS[0][1]
    # currency > rule > bucket (local start) > [count, cents]
    per_bucket: dict[str, dict[str, dict[datetime, list[int]]]] = field(default_factory=dict)
    alerts_per_bucket: dict[str, Counter[datetime]] = field(default_factory=dict)
    customers: dict[str, Counter[str]] = field(default_factory=dict)  # currency -> customer -> cents
    customer_count: dict[str, Counter[str]] = field(default_factory=dict)
    customer_rules: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # currency>customer>rule
    element_rules: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    elements: dict[str, Counter[str]] = field(default_factory=dict)  # currency -> element -> cents
    element_customers: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    outage_cents: Counter[str] = field(default_factory=Counter)  # currency -> cents of outage rules
    attributed_cents: Counter[str] = field(default_factory=Counter)
    kpis: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # queue -> windows
    incidents: dict[str, Incident] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None

    def seen(self, at: datetime) -> None:
        self.first = at if self.first is None or at < self.first else self.first
        self.last = at if self.last is None or at > self.last else self.last

    def local(self, at: datetime) -> datetime:
        """A naive local time (matplotlib dates and bucket keys)."""
        return at.astimezone(self.tz).replace(tzinfo=None)

    def bucket_of(self, at: datetime, size: timedelta | None = None) -> datetime:
        """The local start of the bar that holds ``at``: local midnight for days, so a day is the charter's."""
        size = size or self.bucket
        t = self.local(at)
        if size >= timedelta(days=1):
            return datetime.combine(t.date(), datetime.min.time())
        step = int(size.total_seconds())
        since_midnight = t.hour * 3600 + t.minute * 60 + t.second
        return datetime.combine(t.date(), datetime.min.time()) + timedelta(seconds=since_midnight // step * step)

    def bucket_range(self, keys: Iterable[datetime], size: timedelta | None = None) -> list[datetime]:
        """Every bucket from the first key to the last, the empty ones too (a day without a record is a zero)."""
        size = size or self.bucket
        keys = sorted(keys)
        if not keys:
            return []
        out, t = [], keys[0]
        while t <= keys[-1]:
            out.append(t)
            t = datetime.combine(t.date() + timedelta(days=1), datetime.min.time()) if size >= timedelta(days=1) \
                else t + size
        return out

    def bucket_x(self, start: datetime, size: timedelta | None = None) -> float:
        """The middle of a bucket, in matplotlib date units (days)."""
        from matplotlib.dates import date2num

        return float(date2num(start)) + (size or self.bucket) / timedelta(days=1) / 2


def _dated(topic: str, v: dict[str, Any]) -> datetime | None:
    """The instant a record is placed at: when the promise was broken, or when a hotline window ended."""
    if topic in ("compensation", "sla-alert", "hotline-breach", "incident"):
        return _instant(v["crossed_at"])
    if topic == "hotline-kpi":
        return _instant(v["window_end"])
    return None


def summarize(records: Iterable[Record], charter: Charter | None = None,
              elements: dict[str, str] | None = None) -> Summary:
    tz_name = getattr(charter, "timezone", None) or "UTC"
    hotline = getattr(charter, "hotline", None)
    s = Summary(tz=UTC if tz_name == "UTC" else ZoneInfo(tz_name), tz_name=tz_name,
                answer_within_s=hotline.answer_within / 1e6 if hotline else None,
                window_s=hotline.window / 1e6 if hotline else None, currency=getattr(charter, "currency", None))
    element_map = elements or {}
    records = list(records)
    for topic, _key, v in records:
        if (at := _dated(topic, v)) is not None:
            s.seen(at)
    if s.first is not None and s.last is not None:
        span = s.last - s.first
        s.bucket, s.bucket_name = next(((size, name) for size, name in BUCKETS if span >= 3 * size), BUCKETS[-1])
    for topic, _key, v in records:
        s.topics[topic] += 1
        if topic == "compensation":
            at = _instant(v["crossed_at"])
            rule, cur, cents, cust = v["rule"], v["currency"], int(v["amount_cents"]), v["customer_id"]
            tot = s.totals.setdefault((rule, cur), [0, 0, set(), 0])
            tot[0] += 1
            tot[1] += cents
            tot[2].add(cust)
            # an outage record credits `credit_days`; a per-day record (SPEC section 9) pays one day
            tot[3] += v.get("credit_days") or (1 if "day" in v else 0)
            cell = s.per_bucket.setdefault(cur, {}).setdefault(rule, {}).setdefault(s.bucket_of(at), [0, 0])
            cell[0] += 1
            cell[1] += cents
            s.customers.setdefault(cur, Counter())[cust] += cents
            s.customer_count.setdefault(cur, Counter())[cust] += 1
            s.customer_rules.setdefault(cur, defaultdict(Counter))[cust][rule] += cents
            if rule in OUTAGE_RULES:
                s.outage_cents[cur] += cents
                ev = v.get("evidence") or []
                element = element_map.get(ev[0]) if ev else None
                if element is not None:
                    s.attributed_cents[cur] += cents
                    s.elements.setdefault(cur, Counter())[element] += cents
                    s.element_customers.setdefault(cur, defaultdict(set))[element].add(cust)
                    s.element_rules.setdefault(cur, defaultdict(Counter))[element][rule] += cents
        elif topic in ("sla-alert", "hotline-breach"):
            at = _instant(v["crossed_at"])
            kind = v.get("alert", "hotline breach") if topic == "sla-alert" else "hotline breach"
            s.alerts_per_bucket.setdefault(kind, Counter())[s.bucket_of(at)] += 1
        elif topic == "hotline-kpi":
            s.kpis.setdefault(v["queue"], []).append(v)
        elif topic == "incident":
            at = _instant(v["crossed_at"])
            inc = s.incidents.setdefault(v["incident_id"], Incident(v["incident_id"], v["element_id"]))
            inc.extra.update({k: x for k, x in v.items()
                              if k not in ("incident_id", "element_id", "status", "crossed_at", "customers")})
            if v["status"] == "open":
                inc.opened, inc.customers_at_open = at, v["customers"]
            else:
                inc.closed = at
            inc.peak = max(inc.peak or 0, v["customers"])
    return s


# --------------------------------------------------------------------------------------------------------- figures


def _units(cents: int) -> float:
    return cents / 100


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float, rows: int = 1, sharex: bool = True) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend needed

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _date_axis(ax: Any, label: str) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    formatter = mdates.ConciseDateFormatter(locator)
    # every day tick names its month, and the offset under the axis names only the year (by default it names
    # the month of the last tick, which misleads when the ticks span two months)
    formatter.formats = ["%Y", "%b", "%d %b", "%H:%M", "%H:%M", "%S.%f"]
    formatter.zero_formats = ["", "%Y", "%b", "%d %b", "%H:%M", "%H:%M"]
    formatter.offset_formats = ["", "%Y", "%Y", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d %H:%M"]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel(label)


def _colors(names: Iterable[str]) -> dict[str, Any]:
    """Colours in the order given (sorted when given a set)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    unique = list(dict.fromkeys(names))
    return {n: cmap(i % 10) for i, n in enumerate(unique)}


def _stacked_bars(ax: Any, s: Summary, series: dict[str, dict[datetime, float]], colors: dict[str, Any],
                  order: list[str] | None = None) -> None:
    """Bars per bucket, stacked by series name (``order``: bottom first)."""
    buckets = s.bucket_range(b for per in series.values() for b in per)
    x = [s.bucket_x(b) for b in buckets]
    bottom = [0.0] * len(buckets)
    width = 0.85 * (s.bucket / timedelta(days=1))
    for name in order or sorted(series, key=lambda n: -sum(series[n].values())):
        if name not in series:
            continue
        ys = [series[name].get(b, 0) for b in buckets]
        ax.bar(x, ys, width=width, bottom=bottom, label=name, color=colors[name])
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    # (not ax.margins: a stacked bar's bottom is a sticky edge, which would hold the top limit on the tallest bar)
    ax.set_ylim(0, max(bottom, default=0) * 1.08 or 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", title=None)


def _rule_order(s: Summary) -> list[str]:
    """Rules by total amount, largest first: the same stacking order and colours in every figure."""
    cents: Counter[str] = Counter()
    for (rule, _cur), (_n, c, *_rest) in s.totals.items():
        cents[rule] += c
    return sorted(cents, key=lambda r: (-cents[r], r))


def _rule_colors(s: Summary) -> dict[str, Any]:
    return _colors(_rule_order(s))


def fig_compensations(s: Summary) -> str | None:
    if not s.per_bucket:
        return None
    currencies = sorted(s.per_bucket)
    colors = _rule_colors(s)
    fig, axes = _figure(11, 3.2 * (1 + len(currencies)), rows=1 + len(currencies))
    counts: dict[str, dict[datetime, float]] = defaultdict(lambda: defaultdict(float))
    for per in s.per_bucket.values():
        for rule, buckets in per.items():
            for b, (n, _c) in buckets.items():
                counts[rule][b] += n
    order = _rule_order(s)
    each = s.bucket_name
    _stacked_bars(axes[0], s, counts, colors, order)
    axes[0].set_title(f"Compensations per {each}, by rule (the {each} each promise was broken)")
    axes[0].set_ylabel("compensations")
    for ax, cur in zip(axes[1:], currencies, strict=True):
        amounts = {rule: {b: _units(c) for b, (_n, c) in buckets.items()}
                   for rule, buckets in s.per_bucket[cur].items()}
        _stacked_bars(ax, s, amounts, colors, order)
        ax.set_title(f"Amount owed per {each}, by rule ({cur})")
        ax.set_ylabel(f"amount ({cur})")
    _date_axis(axes[-1], f"{each} ({s.tz_name})")
    return _png(fig)


def fig_alerts(s: Summary) -> str | None:
    if not s.alerts_per_bucket:
        return None
    fig, (ax,) = _figure(11, 3.4)
    series = {k: {b: float(n) for b, n in per.items()} for k, per in s.alerts_per_bucket.items()}
    _stacked_bars(ax, s, series, _colors(sorted(series)))
    each = s.bucket_name
    ax.set_title(f"Early warnings (sla-alert) and hotline breaches per {each} (the {each} each was crossed)")
    ax.set_ylabel("records")
    _date_axis(ax, f"{each} ({s.tz_name})")
    return _png(fig)


def fig_hotline(s: Summary) -> str | None:
    if not s.kpis:
        return None
    from matplotlib.dates import date2num

    colors = _colors(sorted(s.kpis))
    fig, (ax_sl, ax_asa) = _figure(11, 7.5, rows=2)
    promise = s.answer_within_s
    # the lines aggregate several windows per point: the report's bucket, or a larger one when it is too small;
    # when that leaves fewer than 3 points (a short run), each window is its own point
    line: timedelta | None
    line, line_name = next(((size, name) for size, name in reversed(BUCKETS)
                            if size >= max(s.bucket, timedelta(seconds=4 * (s.window_s or 0)))), BUCKETS[0])
    if s.first is not None and s.last is not None and s.last - s.first < 3 * line:
        line, line_name = None, "window"
    waits: list[float] = []
    earliest = math.inf
    for queue, windows in sorted(s.kpis.items()):
        windows = sorted(windows, key=lambda v: v["window_start"])
        x = [date2num(s.local(_instant(v["window_start"]))) for v in windows]
        earliest = min(earliest, *x)
        c = colors[queue]
        ax_sl.scatter(x, [100 * v["service_level"] for v in windows], s=6, alpha=0.25, color=c, linewidths=0)
        answered = [(xi, v["asa_seconds"]) for xi, v in zip(x, windows, strict=True) if v["asa_seconds"] is not None]
        ax_asa.scatter([a for a, _ in answered], [b for _, b in answered], s=6, alpha=0.25, color=c, linewidths=0)
        waits += [b for _, b in answered]
        # the daily figure, weighted by calls, so the eye can follow a queue through the noise of small windows
        offered: Counter[datetime] = Counter()
        within: Counter[datetime] = Counter()
        n_answered: Counter[datetime] = Counter()
        wait: Counter[datetime] = Counter()
        for v in windows:
            d = s.bucket_of(_instant(v["window_start"]), line) if line else s.local(_instant(v["window_start"]))
            offered[d] += v["offered"]
            within[d] += v["answered_within"]
            if v["asa_seconds"] is not None:
                n_answered[d] += v["answered"]
                wait[d] += v["asa_seconds"] * v["answered"]
        days = sorted(offered)
        def at(d: datetime) -> float:
            return s.bucket_x(d, line) if line else float(date2num(d))

        ax_sl.plot([at(d) for d in days], [100 * within[d] / offered[d] for d in days], color=c, lw=2, marker="o",
                   ms=3, label=f"{queue}")
        timed = [d for d in days if n_answered[d]]
        ax_asa.plot([at(d) for d in timed], [wait[d] / n_answered[d] for d in timed], color=c, lw=2, marker="o",
                    ms=3, label=f"{queue}")
    window = ("KPI" if not s.window_s else f"{s.window_s / 60:g}-min" if s.window_s % 60 == 0
               else f"{s.window_s:g}-s")
    within_text = f"within {promise:g} s" if promise else "within the promise"
    ax_sl.set_title(f"Service level: calls answered {within_text} / calls offered; dots: each {window} window, "
                    f"lines: each {line_name}")
    ax_sl.set_ylabel("service level (%)")
    ax_sl.set_ylim(-3, 103)
    ax_asa.set_title(f"Average speed of answer (mean wait of answered calls); dots: each {window} window, lines: "
                     f"each {line_name}")
    ax_asa.set_ylabel("average wait (s)")
    if promise:
        ax_asa.axhline(promise, color="crimson", ls="--", lw=1.5, label=f"promise: {promise:g} s")
    # a few windows with one very long wait would flatten the daily lines: the scale stops near the slowest 1 %
    waits.sort()
    if waits:
        top = max(waits[int(0.99 * (len(waits) - 1))], 1.5 * (promise or 0)) * 1.1
        above = sum(1 for w in waits if w > top)
        ax_asa.set_ylim(0, top)
        if above:
            ax_asa.annotate(f"{above} window{'s' * (above != 1)} above {top:.0f} s not shown", (0.99, 0.97),
                            xycoords="axes fraction", ha="right", va="top", fontsize="small", color="#555")
    if s.first is not None and s.last is not None:  # the report's period, also when one window is all there is
        lo, hi = min(earliest, date2num(s.local(s.first))), date2num(s.local(s.last))
        pad = max((hi - lo) * 0.02, 1 / 86400)
        ax_asa.set_xlim(lo - pad, hi + pad)
    for ax in (ax_sl, ax_asa):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", title=f"queue (per {line_name})")
    _date_axis(ax_asa, f"window start ({s.tz_name})")
    return _png(fig)


def fig_incidents(s: Summary) -> str | None:
    if not s.incidents:
        return None
    from matplotlib.dates import date2num
    from matplotlib.patches import Patch

    assert s.first is not None and s.last is not None  # every incident record is dated
    incs = [i for i in s.incidents.values() if (i.opened or i.closed) is not None]
    # the largest incidents when there are too many rows to read, shown in the order they opened
    keep = set(sorted({i.element_id for i in incs},
                      key=lambda e: -max(i.peak or 0 for i in incs if i.element_id == e))[:MAX_TIMELINE_ROWS])
    incs = sorted((i for i in incs if i.element_id in keep), key=lambda i: i.opened or i.closed)  # type: ignore[arg-type,return-value]
    rows = list(dict.fromkeys(i.element_id for i in incs))
    fig, (ax,) = _figure(11, 1.8 + 0.42 * len(rows))
    start_x, end_x = date2num(s.local(s.first)), date2num(s.local(s.last))
    for i in incs:
        a = date2num(s.local(i.opened or i.closed))  # type: ignore[arg-type]
        b = date2num(s.local(i.closed)) if i.closed else end_x
        y = rows.index(i.element_id)
        width = max(b - a, (end_x - start_x) / 400)  # a very short incident still shows
        still_open = i.closed is None
        ax.barh(y, width, left=a, height=0.6, color="#f0a830" if still_open else "#c0392b",
                hatch="//" if still_open else None, edgecolor="#7a4a00" if still_open else "#7b241c")
        label = (f"{i.customers_at_open} customers at opening, still open" if still_open
                 else f"{i.peak} customers at most")
        if a + width < start_x + 0.75 * (end_x - start_x):
            ax.annotate(label, (a + width, y), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize="small")
        else:  # no room after the bar: inside its end
            ax.annotate(label, (a + width, y), xytext=(-4, 0), textcoords="offset points", va="center", ha="right",
                        fontsize="small", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none"})
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(start_x, end_x + (end_x - start_x) * 0.02)
    ax.set_ylabel("network element")
    ax.set_title("Incidents from opening to closing, with the most customers out at once")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=[Patch(color="#c0392b", label="closed"),
                       Patch(facecolor="#f0a830", hatch="//", edgecolor="#7a4a00", label="still open at the end")],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    _date_axis(ax, f"time ({s.tz_name})")
    return _png(fig)


def _top_bars(ax: Any, names: list[str], by_rule: dict[str, dict[str, int]], currency: str,
              note: Callable[[str], str], colors: dict[str, Any], order: list[str]) -> None:
    """Horizontal bars, one per name, stacked by rule, labelled with the total and ``note(name)``."""
    y = range(len(names))
    left = [0.0] * len(names)
    for rule in order:
        widths = [_units(by_rule[n].get(rule, 0)) for n in names]
        if any(widths):
            ax.barh(y, widths, left=left, color=colors[rule], label=rule)
            left = [a + w for a, w in zip(left, widths, strict=True)]
    for yi, n, total in zip(y, names, left, strict=True):
        ax.annotate(f"{total:,.2f} {currency} · {note(n)}", (total, yi), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize="small")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"amount ({currency})")
    ax.set_xlim(0, max(left, default=0) * 1.35 or 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", title="rule")


def fig_top_customers(s: Summary) -> str | None:
    if not s.customers:
        return None
    currencies = sorted(s.customers)
    colors, order = _rule_colors(s), _rule_order(s)
    fig, axes = _figure(11, 0.6 + 0.32 * TOP_N * len(currencies), rows=len(currencies), sharex=False)
    for ax, cur in zip(axes, currencies, strict=True):
        top = [c for c, _ in s.customers[cur].most_common(TOP_N)]
        count = s.customer_count[cur]
        _top_bars(ax, top, s.customer_rules[cur], cur,
                  lambda c, count=count: f"{count[c]} compensation{'s' * (count[c] != 1)}", colors, order)
        ax.set_title(f"The {len(top)} customers owed the most ({cur}, all rules)")
        ax.set_ylabel("customer")
    return _png(fig)


def fig_top_elements(s: Summary) -> str | None:
    if not s.elements:
        return None
    currencies = sorted(s.elements)
    colors, order = _rule_colors(s), _rule_order(s)
    fig, axes = _figure(11, 0.6 + 0.32 * TOP_N * len(currencies), rows=len(currencies), sharex=False)
    for ax, cur in zip(axes, currencies, strict=True):
        top = [e for e, _ in s.elements[cur].most_common(TOP_N)]
        custs = s.element_customers[cur]
        _top_bars(ax, top, s.element_rules[cur], cur, lambda e, custs=custs: f"{len(custs[e])} customers", colors,
                  order)
        ax.set_title(f"The {len(top)} network elements whose outages cost the most ({cur})")
        ax.set_ylabel("network element")
    return _png(fig)


# ------------------------------------------------------------------------------------------------------------ page

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .meta { color: #555; margin-top: 0; }
section { margin: 2.2rem 0; } figure { margin: 0; } figure img { max-width: 100%; height: auto; }
.empty { padding: 1.2rem; background: #f4f6f7; border: 1px dashed #aab; color: #444; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .8rem; text-align: left; }
td.num, th.num { text-align: right; } tfoot td { font-weight: bold; border-top: 2px solid #999; }
.note { color: #555; font-size: .92rem; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _when(at: datetime | None, tz: tzinfo) -> str:
    return "—" if at is None else at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _section(key: str, png: str | None, empty: str, after: str = "") -> str:
    title = FIGURES[key]
    body = (f'<figure><img src="data:image/png;base64,{png}" alt="{_e(title)}"></figure>' if png
            else f'<p class="empty">{_e(empty)}</p>')
    state = "figure" if png else "empty"
    return (f'<section id="fig-{key}" data-figure="{key}" data-state="{state}"><h2>{_e(title)}</h2>{body}{after}'
            "</section>")


def _totals_table(s: Summary) -> str:
    rows = []
    by_cur: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (rule, cur), (n, cents, custs, days) in sorted(s.totals.items(), key=lambda kv: (kv[0][1], -kv[1][1])):
        by_cur[cur][0] += n
        by_cur[cur][1] += cents
        rows.append(f'<tr class="total" data-rule="{_e(rule)}" data-currency="{_e(cur)}" data-count="{n}" '
                    f'data-cents="{cents}"><td>{_e(rule)}</td><td>{_e(cur)}</td><td class="num">{n:,}</td>'
                    f'<td class="num">{len(custs):,}</td><td class="num">{f"{days:,}" if days else ""}</td>'
                    f'<td class="num">{_e(_money(cents, cur))}</td></tr>')
    if not rows:
        return '<p class="empty">No compensation in these records.</p>'
    foot = "".join(f'<tr class="currency-total" data-currency="{_e(cur)}" data-count="{n}" data-cents="{c}">'
                   f'<td>all rules</td><td>{_e(cur)}</td><td class="num">{n:,}</td><td></td><td></td>'
                   f'<td class="num">{_e(_money(c, cur))}</td></tr>' for cur, (n, c) in sorted(by_cur.items()))
    return ('<table id="totals"><thead><tr><th>rule</th><th>currency</th><th class="num">compensations</th>'
            '<th class="num">customers</th><th class="num">days credited or paid</th><th class="num">amount</th>'
            "</tr></thead>"
            f'<tbody>{"".join(rows)}</tbody><tfoot>{foot}</tfoot></table>')


def _records_table(s: Summary) -> str:
    lines = "".join(f'<tr data-topic="{_e(t)}" data-count="{n}"><td>{_e(t)}</td><td class="num">{n:,}</td></tr>'
                    for t, n in sorted(s.topics.items()))
    alerts = "".join(f'<tr data-alert="{_e(k)}" data-count="{sum(c.values())}"><td>{_e(k)}</td>'
                     f'<td class="num">{sum(c.values()):,}</td></tr>' for k, c in sorted(s.alerts_per_bucket.items()))
    return ('<table id="records"><thead><tr><th>output topic</th><th class="num">records</th></tr></thead>'
            f"<tbody>{lines}</tbody></table>"
            + (f'<table id="alert-counts"><thead><tr><th>warning</th><th class="num">records</th></tr></thead>'
               f"<tbody>{alerts}</tbody></table>" if alerts else ""))


def _hotline_table(s: Summary) -> str:
    if not s.kpis:
        return ""
    rows = []
    for queue, windows in sorted(s.kpis.items()):
        offered = sum(v["offered"] for v in windows)
        within = sum(v["answered_within"] for v in windows)
        answered = sum(v["answered"] for v in windows if v["asa_seconds"] is not None)
        wait = sum(v["asa_seconds"] * v["answered"] for v in windows if v["asa_seconds"] is not None)
        slow = sum(1 for v in windows if s.answer_within_s and (v["asa_seconds"] or 0) > s.answer_within_s)
        rows.append(f'<tr data-queue="{_e(queue)}"><td>{_e(queue)}</td><td class="num">{len(windows):,}</td>'
                    f'<td class="num">{offered:,}</td><td class="num">{100 * within / offered:.1f} %</td>'
                    f'<td class="num">{(wait / answered if answered else math.nan):.0f} s</td>'
                    f'<td class="num">{slow:,}</td></tr>')
    promise = f"{s.answer_within_s:g} s" if s.answer_within_s else "the promise (unknown charter)"
    return ('<table id="hotline"><thead><tr><th>queue</th><th class="num">windows</th><th class="num">calls</th>'
            f'<th class="num">answered within {_e(promise)}</th><th class="num">average speed of answer</th>'
            f'<th class="num">windows with ASA over {_e(promise)}</th></tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>")


def _extra_value(key: str, value: Any, s: Summary) -> str:
    """A field the spec does not name, shown by the convention of its name: cents as money, instants local."""
    if value is None:
        return ""
    if key.endswith("_cents") and isinstance(value, int):
        return _money(value, s.currency or "cents")
    if key.endswith("_at") and isinstance(value, str):
        try:
            return _when(_instant(value), s.tz)
        except ValueError:
            return value
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _incidents_table(s: Summary) -> str:
    if not s.incidents:
        return ""
    extra_keys = sorted({k for i in s.incidents.values() for k in i.extra})
    head = "".join(f"<th>{_e(k)}</th>" for k in extra_keys)
    rows = []
    for i in sorted(s.incidents.values(), key=lambda i: (i.opened or i.closed)):  # type: ignore[arg-type,return-value]
        hours = f"{(i.closed - i.opened).total_seconds() / 3600:.1f} h" if i.opened and i.closed else "open"
        extra = "".join(f"<td>{_e(_extra_value(k, i.extra.get(k), s))}</td>" for k in extra_keys)
        rows.append(f'<tr class="incident" data-incident="{_e(i.incident_id)}" data-element="{_e(i.element_id)}" '
                    f'data-peak="{i.peak}"><td>{_e(i.element_id)}</td><td>{_when(i.opened, s.tz)}</td>'
                    f'<td>{_when(i.closed, s.tz)}</td><td class="num">{hours}</td>'
                    f'<td class="num">{i.customers_at_open if i.customers_at_open is not None else "—"}</td>'
                    f'<td class="num">{i.peak}</td>{extra}<td>{_e(i.incident_id)}</td></tr>')
    return (f'<table id="incidents"><thead><tr><th>element</th><th>opened ({_e(s.tz_name)})</th>'
            f'<th>closed ({_e(s.tz_name)})</th><th class="num">duration</th><th class="num">customers at opening</th>'
            f'<th class="num">most customers out</th>{head}<th>incident id</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _elements_note(s: Summary, elements: dict[str, str] | None) -> str:
    if elements is None:
        why = ("Network elements are unknown: the service-status input topic was not read, so outage amounts "
               "cannot be attributed to elements.")
    elif not elements:
        why = ("Network elements are unknown: no service-status down event carries an element_id "
               "(SPEC section 10), so outage amounts cannot be attributed to elements.")
    elif not s.elements:
        why = "No outage compensation was opened by a down event that names its network element."
    else:
        parts = [f"{_money(s.attributed_cents[c], c)} of {_money(s.outage_cents[c], c)} paid for outages"
                 for c in sorted(s.outage_cents)]
        return f"Attributed through the element_id of the down event that opened each outage: {'; '.join(parts)}."
    return why


def render(records: Iterable[Record], *, charter: Charter | None = None, elements: dict[str, str] | None = None,
           source: str = "", generated_at: datetime | None = None) -> str:
    """The HTML page for these output records. ``elements``: event_id of a ``down`` -> element_id (None: the
    inputs were not read); ``charter``: for the hotline promise and the time zone of days (UTC without one)."""
    s = summarize(records, charter, elements)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    period = (f"{_when(s.first, s.tz)} to {_when(s.last, s.tz)} ({s.tz_name})" if s.first else "no dated record")
    charter_name = charter.name if charter is not None else "unknown"
    element_note = _elements_note(s, elements)
    elements_empty = element_note if not s.elements else ""
    elements_after = element_note if s.elements else ""
    dead = s.topics.get("dead-letter", 0)
    warn = (f'<p class="note"><strong>{dead:,} input lines or messages were invalid</strong> (dead-letter): '
            "they are not in the figures.</p>" if dead else "")
    sections = [
        _section("compensations", fig_compensations(s), "No compensation in these records."),
        _section("alerts", fig_alerts(s), "No sla-alert and no hotline-breach in these records."),
        _section("hotline", fig_hotline(s), "No hotline-kpi record (no hotline window has closed).",
                 _hotline_table(s)),
        _section("incidents", fig_incidents(s),
                 "No incident: no network element had enough customers out at once (SPEC section 10).",
                 _incidents_table(s)),
        _section("top-customers", fig_top_customers(s), "No compensation in these records."),
        _section("top-elements", fig_top_elements(s), elements_empty,
                 f'<p class="note">{_e(elements_after)}</p>' if elements_after else ""),
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Charter report: {_e(charter_name)}</title>
<style>{_CSS}</style></head><body>
<h1>Charter report: {_e(charter_name)}</h1>
<p class="meta">Source: {_e(source or "records")} · period: {_e(period)} · generated {_e(generated)}.
Amounts in currency units; days and times in {_e(s.tz_name)}.</p>
{warn}
<section id="totals-section"><h2>Totals</h2>{_totals_table(s)}{_records_table(s)}</section>
{"".join(sections)}
</body></html>
"""
