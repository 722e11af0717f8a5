"""Replay throughput and memory benchmark (goal: 100,000 events/s on one core, < 1 KB peak per subscriber).

    python -m bench.replay_bench [--subscribers 100000] [--events 1000000] [--seed 0] [--repeat 1]
                                 [--charters alice-2007,ofcom-2026] [--cpu 0] [--profile] [--py-spy]
                                 [--profile-events 300000]

Every charter of ``--charters`` is measured on the same event file (the generator writes orders with promised
start dates and engineer appointments, so both shipped charters have work to do); the first is the reference of
the ratios (``events_per_s_ratio``: a charter's full-path events/s over the first's).

The event file is generated once by ``streams.gen`` and cached under ``bench/out/`` (its name carries the
arguments and a digest of the generator source). Every measurement runs in a fresh subprocess pinned to one
CPU, so the generator and the other measurements count neither in its time nor in its memory:

- ``full``: the whole replay path exactly as ``charter replay`` runs it: read lines from the file, orjson
  parse, pydantic validation, the core, ``emitted_at`` stamping, orjson serialization of every output record
  to a null sink (``os.devnull``). Events/s = input lines / wall time. Peak memory = ``ru_maxrss`` at the end
  minus the RSS just before the first line is read (imports and the charter are not counted).
- ``core``: the same events pre-parsed (256 at a time, untimed), then only ``Engine.advance(to_us(occurred_at))``
  and ``Engine.apply`` per event and ``finish()`` at the end (best of ``--repeat``); the other stages are timed
  on their own (read, orjson, orjson + validation, serialization), and the engine state is sized object by
  object (``sys.getsizeof`` over everything reachable from its dicts and heap).

It prints a table and, as its last line, one JSON object with every metric.
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GOAL_EVENTS_PER_S = 100_000
GOAL_BYTES_PER_SUBSCRIBER = 1024
CHUNK = 256  # events pre-parsed at a time for the core-only measurement (small: they stay in cache)


# ---------------------------------------------------------------------------------------------- helpers

def _rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024  # Linux reports KiB, macOS bytes


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def event_file(subscribers: int, events: int, seed: int) -> tuple[Path, float | None]:
    """The cached event file (generated when missing) and the generation time when it was generated now."""
    import streams.gen

    digest = hashlib.sha256(Path(streams.gen.__file__).read_bytes()).hexdigest()[:8]
    path = OUT / f"events-{subscribers}s-{events}e-seed{seed}-{digest}.jsonl"
    if path.exists():
        return path, None
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    n = streams.gen.write_jsonl(tmp, streams.gen.generate(subscribers, events, seed=seed))
    elapsed = time.perf_counter() - t0
    if n != events:
        raise RuntimeError(f"generator wrote {n} events, not {events}")
    tmp.replace(path)
    return path, elapsed


def deep_size(roots: list[Any], seen: set[int]) -> int:
    """Bytes of every object reachable from ``roots`` through dicts, lists, tuples and slots, not in ``seen``."""
    total, stack = 0, list(roots)
    getsizeof = sys.getsizeof
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen:
            continue
        seen.add(i)
        total += getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list | tuple | set):
            stack.extend(o)
        else:
            slots = getattr(type(o), "__slots__", None)
            if slots:
                stack.extend(getattr(o, s, None) for s in slots)
    return total


# ---------------------------------------------------------------------------------------------- children

def child_full(path: str, charter_ref: str) -> dict[str, Any]:
    """The whole replay path, one pass over the file; time and peak memory."""
    from streams.charter import load_charter
    from streams.replay import format_record, replay

    charter = load_charter(charter_ref)
    gc.collect()
    rss0 = _rss()
    n_out = 0
    with open(os.devnull, "wb") as sink, open(path, "rb") as src:
        write = sink.write
        t0, c0 = time.perf_counter(), time.process_time()
        for rec in replay(src, charter):
            write(format_record(rec))
            write(b"\n")
            n_out += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _maxrss()
    return {"wall_s": wall, "cpu_s": cpu, "outputs": n_out, "rss_before": rss0, "peak_rss": peak,
            "rss_after": _rss(), "peak_growth": peak - rss0}


def _best(fn: Any, repeat: int) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``repeat`` calls (on a shared machine the minimum is the least
    disturbed; the process CPU time does not count the time the process waited for a CPU)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


def child_core(path: str, repeat: int, charter_ref: str) -> dict[str, Any]:
    """Stage by stage, each the best of ``repeat``: read, orjson, validation, core, serialization; state size."""
    from streams.charter import load_charter
    from streams.core import Engine, to_us
    from streams.records import stamp
    from streams.replay import format_record, parse_line

    charter = load_charter(charter_ref)
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        lines = list(f)
    res["read_s"] = time.perf_counter() - t0
    loads = orjson.loads

    def orjson_only() -> None:
        for line in lines:
            loads(line)

    def parse() -> None:  # streamed, as replay does: nothing is kept
        for i, line in enumerate(lines, 1):
            parse_line(line, i)

    res["orjson_s"], res["orjson_cpu_s"] = _best(orjson_only, repeat)
    res["parse_s"], res["parse_cpu_s"] = _best(parse, repeat)  # orjson + checks + pydantic
    res["validate_s"] = res["parse_s"] - res["orjson_s"]
    res["validate_cpu_s"] = res["parse_cpu_s"] - res["orjson_cpu_s"]
    # Core: events are parsed (untimed) in chunks of CHUNK lines, then the chunk goes through the engine (timed).
    # Parsing all events up front would leave a million cold objects to fetch from RAM, which the real
    # (streaming) path never does; a chunk stays in the CPU caches, as the event just parsed does in replay.
    engine: Any = None
    outs: list[Any] = []
    times, growth, dead = [], 0, 0
    for _ in range(repeat):
        engine = outs = None
        gc.collect()
        rss0 = _rss()
        engine = Engine(charter)
        outs = []
        ext, adv, app = outs.extend, engine.advance, engine.apply
        wall = cpu = 0.0
        dead = 0
        for start in range(0, len(lines), CHUNK):
            items = [parse_line(line, i) for i, line in enumerate(lines[start:start + CHUNK], start + 1)]
            t0, c0 = time.perf_counter(), time.process_time()
            for item in items:
                if len(item) == 2:
                    ext(adv(to_us(item[1].occurred_at)))
                    ext(app(*item))
            wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
            dead += sum(1 for item in items if len(item) == 3)
        t0, c0 = time.perf_counter(), time.process_time()
        ext(engine.finish())
        times.append((wall + time.perf_counter() - t0, cpu + time.process_time() - c0))
        growth = max(growth, _rss() - rss0)
    res["dead_letters"] = dead
    res["core_s"], res["core_cpu_s"] = min(times)
    res["engine_rss_growth"] = growth

    def serialize() -> None:
        for o in outs:
            format_record(stamp(o))

    res["serialize_s"], res["serialize_cpu_s"] = _best(serialize, repeat)
    per: collections.Counter[str] = collections.Counter()
    for topic, _key, value in outs:
        per[topic] += 1
        if topic == "compensation":
            per[f"compensation.{value['rule']}"] += 1
    res["outputs"] = len(outs)
    res["outputs_by_topic"] = dict(sorted(per.items()))
    seen: set[int] = {id(None), id(True), id(False)}
    res["state"] = {
        "subscribers": len(engine.subscribers), "calls": len(engine.calls), "windows": len(engine.windows),
        "heap_entries": len(engine._heap),
        "subscribers_bytes": deep_size([engine.subscribers], seen),
        "calls_bytes": deep_size([engine.calls], seen),
        "windows_bytes": deep_size([engine.windows], seen),
        "heap_bytes": deep_size([engine._heap], seen),
    }
    # the changelog row of every subscriber at the end (issue 12: bytes per row, beside memory per subscriber)
    rows = sorted(len(orjson.dumps(sub.encode())) for sub in engine.subscribers.values())
    if rows:
        res["state"]["row_bytes_p50"] = rows[len(rows) // 2]
        res["state"]["row_bytes_max"] = rows[-1]
    return res


def child_profile(path: str, limit: int, top: int, charter_ref: str) -> dict[str, Any]:
    """cProfile of the full path over the first ``limit`` lines; the top functions by own time."""
    import cProfile
    import itertools
    import pstats

    from streams.charter import load_charter
    from streams.replay import format_record, replay

    charter = load_charter(charter_ref)
    with open(path, "rb") as f:
        lines = list(itertools.islice(f, limit))
    sink = open(os.devnull, "wb")  # noqa: SIM115 - closed below

    def run() -> None:
        write = sink.write
        for rec in replay(lines, charter):
            write(format_record(rec))
            write(b"\n")

    prof = cProfile.Profile()
    prof.runcall(run)
    sink.close()
    out = OUT / "replay.prof"
    prof.dump_stats(str(out))
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"function": f"{name} ({Path(file).name}:{line})", "calls": nc, "tottime_s": tt,
                     "tottime_pct": 100 * tt / total, "cumtime_pct": 100 * ct / total})
    rows.sort(key=lambda r: -r["tottime_s"])
    return {"profile_file": str(out), "events": len(lines), "total_s": total, "top": rows[:top]}


def pyspy_summary(raw: Path, top: int) -> dict[str, Any]:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks (the replay loop only).

    Time spent in C (orjson, pydantic-core, datetime) is counted as own time of the Python function calling it."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    harness = ("child_full (", "main (", "<module> (", "_run_code (", "_run_module_as_main (")
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "child_full" not in stack or "_find_and_load" in stack:  # start-up and imports
            continue
        n = int(count)
        total += n
        frames = [fr.rpartition(":")[0] + ")" if ":" in fr else fr for fr in stack.split(";")]  # per function
        own[frames[-1]] += n
        for f in set(frames):
            if not f.startswith(harness):
                incl[f] += n
    total = max(total, 1)
    return {"samples": total,
            "own": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
            "inclusive": [(f, round(100 * n / total, 1)) for f, n in incl.most_common(top)]}


# ---------------------------------------------------------------------------------------------- parent

def _run_child(args: list[str], cpu: int | None, wrap: list[str] | None = None) -> dict[str, Any]:
    cmd = [*(wrap or []), sys.executable, "-m", "bench.replay_bench", "--child", *args]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark child failed: {' '.join(cmd)}")
    return orjson.loads(next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")))


def _machine() -> dict[str, Any]:
    import pydantic
    import pydantic_core

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu_model": model or platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "pydantic": pydantic.VERSION,
            "pydantic_core": pydantic_core.__version__, "orjson": orjson.__version__,
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1,
                   help="full-path runs (fresh process each) and runs of each stage; the best is kept")
    p.add_argument("--cpu", type=int, default=0, help="CPU to pin every measurement to (-1: no pinning)")
    p.add_argument("--profile", action="store_true", help="also cProfile the full path (bench/out/replay.prof)")
    p.add_argument("--py-spy", action="store_true", dest="pyspy", help="also sample the full path with py-spy")
    p.add_argument("--charters", default="alice-2007,ofcom-2026",
                   help="comma-separated charters measured on the same file (the first is the reference)")
    p.add_argument("--profile-events", type=int, default=300_000)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cpu = None if a.cpu < 0 else a.cpu

    if a.child:
        _pin(cpu)
        kind, path, charter_ref, *rest = a.child
        if kind == "full":
            res = child_full(path, charter_ref)
        elif kind == "core":
            res = child_core(path, int(rest[0]), charter_ref)
        else:
            res = child_profile(path, int(rest[0]), int(rest[1]), charter_ref)
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
        return 0

    path, gen_s = event_file(a.subscribers, a.events, a.seed)
    print(f"events file: {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.0f} MB"
          + (f", generated in {gen_s:.1f} s)" if gen_s is not None else ", cached)"), file=sys.stderr)
    refs = [c.strip() for c in a.charters.split(",") if c.strip()]
    # full-path runs interleaved (A, B, A, B, ...) so that a busy spell of a shared machine hits both alike
    fulls: dict[str, list[dict[str, Any]]] = {ref: [] for ref in refs}
    for _ in range(max(1, a.repeat)):
        for ref in refs:
            fulls[ref].append(_run_child(["full", str(path), ref], cpu))
    by_charter = {ref: measure(path, ref, fulls[ref], a, cpu, gen_s) for ref in refs}
    m = dict(by_charter[refs[0]])
    first = m["replay_events_per_s"]
    m["by_charter"] = {ref: {k: v for k, v in r.items() if k != "machine"} for ref, r in by_charter.items()}
    for r in m["by_charter"].values():
        r["events_per_s_ratio"] = r["replay_events_per_s"] / first
        r["core_events_per_s_ratio"] = r["core_events_per_s"] / m["core_events_per_s"]
    m["machine"] = _machine()
    try:
        m["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True, check=False).stdout.strip() or None
    except OSError:
        m["commit"] = None

    if a.profile:
        m["cprofile"] = _run_child(["profile", str(path), refs[0], str(a.profile_events), str(a.top)], cpu)
    if a.pyspy:
        raw = OUT / "replay.pyspy.txt"
        _run_child(["full", str(path), refs[0]], cpu, wrap=["py-spy", "record", "-r", "250", "-f", "raw", "-o",
                                                           str(raw), "--"])
        m["py_spy"] = {"raw_file": str(raw), **pyspy_summary(raw, a.top)}

    for ref in refs:
        print(f"\n== charter {ref}")
        _print_table(by_charter[ref])
    if len(refs) > 1:
        print("\n== the same events under each charter (full replay path, best run)")
        for ref, r in m["by_charter"].items():
            print(f"  {ref:<24} {r['replay_events_per_s']:>10,.0f} ev/s  {100 * r['events_per_s_ratio']:6.1f} %"
                  f"   core {r['core_events_per_s']:>10,.0f} ev/s  {100 * r['core_events_per_s_ratio']:6.1f} %"
                  f"   {r['outputs']:,} outputs")
    _print_profiles(m)
    print(orjson.dumps(m).decode())
    return 0


def measure(path: Path, ref: str, fulls: list[dict[str, Any]], a: argparse.Namespace, cpu: int | None,
            gen_s: float | None) -> dict[str, Any]:
    """One charter's metrics: its full-path runs (the best is kept) and its stages, measured now."""
    n = a.events
    full = min(fulls, key=lambda r: r["wall_s"])
    core = _run_child(["core", str(path), ref, str(max(1, a.repeat))], cpu)
    peak_growth = max(r["peak_growth"] for r in fulls)
    m: dict[str, Any] = {
        "charter": ref, "subscribers": a.subscribers, "events": n, "seed": a.seed, "pinned_cpu": cpu,
        "generate_s": gen_s,
        "replay_events_per_s": n / full["wall_s"], "replay_wall_s": full["wall_s"], "replay_cpu_s": full["cpu_s"],
        "replay_events_per_cpu_s": n / full["cpu_s"],
        "replay_us_per_event": 1e6 * full["wall_s"] / n,
        "core_events_per_s": n / core["core_s"], "core_wall_s": core["core_s"], "core_cpu_s": core["core_cpu_s"],
        "core_events_per_cpu_s": n / core["core_cpu_s"],
        "core_us_per_event": 1e6 * core["core_s"] / n,
        "stage_us_per_event": {k: 1e6 * core[f"{k}_s"] / n for k in ("read", "orjson", "validate", "core",
                                                                       "serialize")},
        "stage_cpu_us_per_event": {k: 1e6 * core[f"{k}_cpu_s"] / n for k in ("orjson", "validate", "core",
                                                                               "serialize")},
        "outputs": full["outputs"], "outputs_by_topic": core["outputs_by_topic"],
        "dead_letters": core["dead_letters"],
        "peak_rss_growth_bytes": peak_growth, "peak_rss_bytes": max(r["peak_rss"] for r in fulls),
        "bytes_per_subscriber": peak_growth / a.subscribers,
        "engine_rss_growth_bytes": core["engine_rss_growth"], "state": core["state"],
        "row_bytes_p50": core["state"].get("row_bytes_p50"), "row_bytes_max": core["state"].get("row_bytes_max"),
        "state_bytes_per_subscriber": sum(v for k, v in core["state"].items()
                                          if k.endswith("_bytes") and not k.startswith("row_"))
        / a.subscribers,
        "goal_events_per_s": GOAL_EVENTS_PER_S, "goal_bytes_per_subscriber": GOAL_BYTES_PER_SUBSCRIBER,
    }
    m["meets_throughput"] = m["replay_events_per_s"] >= GOAL_EVENTS_PER_S
    m["meets_memory"] = m["bytes_per_subscriber"] < GOAL_BYTES_PER_SUBSCRIBER
    return m


def _print_table(m: dict[str, Any]) -> None:
    s = m["state"]
    rows = [
        ("events / subscribers", f"{m['events']:,} / {m['subscribers']:,}", ""),
        ("replay, full path", f"{m['replay_events_per_s']:,.0f} ev/s", f"{m['replay_us_per_event']:.2f} us/event, "
         f"{m['replay_wall_s']:.1f} s wall, {m['replay_cpu_s']:.1f} s cpu = "
         f"{m['replay_events_per_cpu_s']:,.0f} ev/cpu-s"),
        ("core only (advance+apply)", f"{m['core_events_per_s']:,.0f} ev/s", f"{m['core_us_per_event']:.2f} us/event, "
         f"{m['core_events_per_cpu_s']:,.0f} ev/cpu-s"),
        *((f"  stage: {k}", f"{v:.2f} us/event", f"{m['stage_cpu_us_per_event'][k]:.2f} cpu-us/event"
           if k in m["stage_cpu_us_per_event"] else "") for k, v in m["stage_us_per_event"].items()),
        ("outputs", f"{m['outputs']:,}", f"{m['dead_letters']} dead letters"),
        ("peak RSS growth", f"{m['peak_rss_growth_bytes'] / 2**20:,.1f} MiB",
         f"{m['bytes_per_subscriber']:,.0f} B/subscriber"),
        ("engine state (sizeof)", f"{m['state_bytes_per_subscriber']:,.0f} B/subscriber",
         f"subs {s['subscribers_bytes'] / 2**20:.1f} MiB, calls {s['calls_bytes'] / 2**20:.1f} MiB "
         f"({s['calls']:,}), windows {s['windows_bytes'] / 2**20:.1f} MiB, heap {s['heap_bytes'] / 2**20:.1f} MiB"),
        ("state row (changelog)", f"{m['row_bytes_p50'] or 0:,} B median", f"{m['row_bytes_max'] or 0:,} B max"),
        ("goal", f"{m['goal_events_per_s']:,} ev/s, < {m['goal_bytes_per_subscriber']} B/sub",
         f"throughput {'met' if m['meets_throughput'] else 'NOT met'}, "
         f"memory {'met' if m['meets_memory'] else 'NOT met'}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")


def _print_profiles(m: dict[str, Any]) -> None:
    if "cprofile" in m:
        cp = m["cprofile"]
        print(f"\ncProfile, full path, first {cp['events']:,} events ({cp['total_s']:.1f} s profiled):")
        for r in cp["top"]:
            print(f"  {r['tottime_pct']:5.1f}% own {r['cumtime_pct']:5.1f}% cum  {r['calls']:>9,}  {r['function']}")
    if "py_spy" in m:
        ps = m["py_spy"]
        print(f"\npy-spy, full path ({ps['samples']:,} samples), own time:")
        for f, pct in ps["own"]:
            print(f"  {pct:5.1f}%  {f}")
        print("inclusive:")
        for f, pct in ps["inclusive"]:
            print(f"  {pct:5.1f}%  {f}")


if __name__ == "__main__":
    sys.exit(main())
