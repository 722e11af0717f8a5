"""``charter``: the command line.

Every mistake a user can make here (a missing file, a bad option or argument, an invalid setting or charter, a
broker that cannot be reached) ends the command with one ``Error: ...`` line on stderr and exit code 2: commands
raise ``UserFacingError`` and the group class ``OneLineErrors`` turns click's usage errors into the same line
(streams/errors.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from schemas.inputs import INPUT_TOPICS
from schemas.outputs import OUTPUT_MODELS
from streams.charter import Charter, load_charter
from streams.core.timeutil import parse_instant
from streams.errors import OneLineErrors, UserFacingError

PACKAGE = "charter-streams"

# The command-line options that set a setting, so an error names what the user typed.
_OPTIONS = {"charter": "--charter", "partitions": "--partitions"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed (PYTHONPATH=.)
        return "unknown (not installed: pip install -e .)"


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"charter ({PACKAGE}) {_version()}")
        ctx.exit()


@click.group(cls=OneLineErrors)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version (of the installed package) and exit.")
def main() -> None:
    """charter-streams: a quality charter turned into compensations and alerts."""


# ------------------------------------------------------------------------------------------------ shared pieces

_FILE = click.Path(allow_dash=True, dir_okay=False, path_type=str)  # existence is checked when it is opened
_PROGRESS = click.option("--progress/--no-progress", default=None,
                         help="Progress bar on stderr (default: when stderr is a terminal).")


@contextlib.contextmanager
def input_lines(file: str, progress: bool | None = None, desc: str = "") -> Iterator[Iterable[bytes]]:
    """The lines of FILE ('-': standard input), counted in bytes on a tqdm bar on stderr when ``progress`` (None:
    when stderr is a terminal). A file that cannot be read is a ``UserFacingError``."""
    if file == "-":
        src, total = sys.stdin.buffer, None
    else:
        try:
            src = open(file, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise UserFacingError(f"no such file: {file}") from None
        except OSError as e:
            raise UserFacingError(f"cannot read {file}: {e.strerror or e}") from None
        total = os.fstat(src.fileno()).st_size
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc=desc)

    def counted(lines: Iterable[bytes]) -> Iterator[bytes]:
        assert bar is not None
        for line in lines:
            bar.update(len(line))
            yield line

    try:
        yield src if bar is None else counted(src)
    finally:
        if bar is not None:
            bar.close()
        if src is not sys.stdin.buffer:
            src.close()


def _source_name(file: str) -> str:
    return "standard input" if file == "-" else file


def _until(until: str | None) -> int | None:
    try:
        return None if until is None else parse_instant(until)
    except ValueError as e:
        raise UserFacingError(f"--until: {e}") from None


def _settings(**overrides: Any) -> Any:
    """The settings of a command: CHARTER_* variables, then its options. The only place a command loads them; an
    invalid or unknown one raises SettingsError (a UserFacingError)."""
    from streams.settings import load_settings

    return load_settings(_OPTIONS, **overrides)


def _check_broker(settings: Any) -> None:
    """Fail in one line now if no bootstrap server accepts a connection (before a worker starts logging)."""
    import asyncio

    from streams.connection import check_connection

    asyncio.run(check_connection(settings))


# ------------------------------------------------------------------------------------------------ offline commands


@main.command()
@click.argument("file", type=_FILE)
@click.option("--until", "until", default=None, help="RFC 3339 instant: fire deadlines up to it at the end.")
@click.option("--charter", "charter_ref", default=None, help="Charter name or YAML file (default alice-2007).")
@_PROGRESS
def replay(file: str, until: str | None, charter_ref: str | None, progress: bool | None) -> None:
    """Apply an event file (one {"topic", "value"} per line, '-' for stdin); print output records."""
    from streams.replay import format_record
    from streams.replay import replay as run

    charter = load_charter(charter_ref)
    until_us = _until(until)
    out = sys.stdout.buffer
    write = out.write
    with input_lines(file, progress, "replay") as lines:
        try:
            for rec in run(lines, charter, until_us):
                write(format_record(rec))
                write(b"\n")
        finally:
            out.flush()


@main.command()
@click.argument("file", type=_FILE)
@click.option("--charter", "charter_refs", multiple=True, required=True,
              help="A charter name or YAML file; repeat it (the first is the reference of the differences).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--until", "until", default=None, help="RFC 3339 instant: fire deadlines up to it at the end.")
@_PROGRESS
def whatif(file: str, charter_refs: tuple[str, ...], fmt: str, until: str | None, progress: bool | None) -> None:
    """What each charter would have cost on FILE's events ('-' for stdin): per rule and in total, the
    compensations, customers and amount, and each charter's difference from the first."""
    from streams.whatif import FORMATS, labels_for
    from streams.whatif import whatif as run

    charters = [load_charter(ref) for ref in charter_refs]
    until_us = _until(until)
    with input_lines(file, progress, "whatif") as lines:
        report = run(lines, charters, labels_for(list(charter_refs), charters), until_us)
    click.echo(FORMATS[fmt](report), nl=False)


@main.command()
@click.argument("file", required=False, type=_FILE)
@click.option("--from-topics", is_flag=True,
              help="Read the output topics of a running deployment (CHARTER_* environment) instead of FILE.")
@click.option("--charter", "charter_ref", default=None,
              help="Charter name or YAML file (default alice-2007; with --from-topics, CHARTER_CHARTER).")
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
@_PROGRESS
def report(file: str | None, from_topics: bool, charter_ref: str | None, output: str, progress: bool | None) -> None:
    """Write one self-contained HTML page of figures and totals: from FILE (an event file, replayed under the
    charter) or, with --from-topics, from the output topics of a deployment."""
    from streams import report as rep

    if file is not None and from_topics:
        raise UserFacingError("give an event FILE or --from-topics, not both")
    if file is None and not from_topics:
        raise UserFacingError("give an event FILE, or --from-topics to read a deployment's output topics")
    if from_topics:
        settings = _settings()
        charter = load_charter(charter_ref or settings.charter)
        records, elements, source = _report_from_topics(settings, progress)
    else:
        assert file is not None
        charter = load_charter(charter_ref)
        with input_lines(file, progress, "replay") as lines:
            try:
                records, elements = rep.replay_file(lines, charter)
            except rep.ReportSourceError as e:
                raise UserFacingError(f"{file}: {e}") from None
        source = "standard input" if file == "-" else Path(file).name
    page = rep.render(records, charter=charter, elements=elements, source=source)
    try:
        Path(output).write_text(page, encoding="utf-8")
    except OSError as e:
        raise UserFacingError(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(f"wrote {output} ({len(records):,} output records)", err=True)


def _report_from_topics(settings: Any, progress: bool | None) -> tuple[list, dict[str, str] | None, str]:
    """(records, elements, source) of ``charter report --from-topics``."""
    import asyncio
    import logging

    from aiokafka.errors import KafkaError

    from streams import report as rep

    where = settings.bootstrap
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a failure is reported in one line
    try:
        messages, names = asyncio.run(rep.read_topics(settings, progress=sys.stderr.isatty()
                                                      if progress is None else progress))
    except UserFacingError as e:
        raise UserFacingError(f"cannot read the topics from {where}: {e}") from None
    except (KafkaError, OSError, TimeoutError) as e:
        raise UserFacingError(f"cannot read the topics from {where}: {type(e).__name__}: {e}") from None
    if not any(n != rep.ELEMENT_TOPIC for n in names):
        raise UserFacingError(f"no output topic (prefix {settings.topic_prefix!r}) on the broker at {where}")
    records, elements = rep.records_from_messages(messages, settings.unprefixed)
    if elements is None and rep.ELEMENT_TOPIC in names:
        elements = {}  # the input topic was read and is empty: elements named by no event, not unread
    source = f"topics of {where}"
    if settings.topic_prefix:
        source += f" (prefix {settings.topic_prefix})"
    return records, elements, source


# ------------------------------------------------------------------------------------------------ Kafka commands


@main.command()
@click.option("--charter", "charter_ref", default=None, help="Charter name or YAML file (env CHARTER_CHARTER).")
@click.option("--partitions", type=int, default=None, help="Partitions of the topics (env CHARTER_PARTITIONS).")
def worker(charter_ref: str | None, partitions: int | None) -> None:
    """Run one Faust worker of the consumer group (configuration: CHARTER_* environment variables)."""
    settings = _settings(charter=charter_ref, partitions=partitions)
    charter: Charter = load_charter(settings.charter)
    _check_broker(settings)
    from streams.live import run_worker

    run_worker(settings, charter)


@main.command()
@click.argument("path", default="/ready", type=click.Choice(["/ready", "/healthz"]))
def health(path: str) -> None:
    """Ask the worker on this host (CHARTER_WEB_PORT) for /ready or /healthz; exit 0 when it answers 200, 1 when it
    does not (a container HEALTHCHECK)."""
    from streams.child import health as ask

    settings = _settings()
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
    status, body = ask(settings.web_port, path, host=host)
    click.echo(f"{status or 'no answer'} {orjson.dumps(body).decode() if status else body}")
    sys.exit(0 if status == 200 else 1)


@main.command()
@click.argument("file", type=_FILE)
@click.option("--realtime/--no-realtime", default=False,
              help="Publish each event when the wall clock reaches its occurred_at (shifted to start now).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0,
              help="With --realtime: time runs this many times faster.")
@_PROGRESS
def produce(file: str, realtime: bool, speed: float, progress: bool | None) -> None:
    """Publish a replay file's events to the input topics, in file order ('-' for stdin).

    Values are published as they are (the worker sends an invalid one to dead-letter, as replay does); a line
    that is not a replay record stops the command there, naming its line number."""
    import asyncio

    settings = _settings()
    from streams.producer import produce_file

    with input_lines(file, progress, "produce") as lines:
        n = asyncio.run(produce_file(settings, lines, _source_name(file), realtime=realtime, speed=speed))
    click.echo(f"published {n} events", err=True)


@main.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--from-beginning/--from-end", default=True)
@click.option("--idle-exit", type=click.FloatRange(min=0), default=None,
              help="Exit after this many seconds without a record.")
def tail(topics: tuple[str, ...], from_beginning: bool, idle_exit: float | None) -> None:
    """Print the records of TOPICS (input or output topics) as {"topic", "key", "value"} JSON lines."""
    import asyncio

    known = (*INPUT_TOPICS, *OUTPUT_MODELS)
    for topic in topics:
        if topic not in known:
            raise UserFacingError(f"no such topic: {topic!r} (topics: {', '.join(known)})")

    settings = _settings()
    from streams.producer import tail_topics

    asyncio.run(tail_topics(settings, list(topics), from_beginning=from_beginning, idle_exit=idle_exit))


_POSITIVE = click.FloatRange(min=0, min_open=True)


@main.command()
@click.option("--subscribers", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--rate", type=_POSITIVE, default=None,
              help="Publish at this many events/s (default: each event when the wall clock reaches it).")
@click.option("--scale", type=_POSITIVE, default=1 / 86400, show_default=True,
              help="Simulated-time multiplier: 1/86400 makes a day last a second (alice-2007-seconds).")
@click.option("--hotline-scale", type=_POSITIVE, default=1 / 60, show_default=True,
              help="Multiplier of hotline waits: 1/60 makes 180 s last 3 s (alice-2007-seconds).")
@click.option("--days", type=_POSITIVE, default=30.0, show_default=True, help="Simulated days.")
@click.option("--seed", type=int, default=0)
@_PROGRESS
def simulate(subscribers: int, rate: float | None, scale: float, hotline_scale: float, days: float, seed: int,
             progress: bool | None) -> None:
    """Publish realistic upstream traffic (orders, deliveries, outages, a network element failure, calls)."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    settings = _settings()
    from streams.gen import generate
    from streams.producer import simulate_traffic

    start = datetime.now(UTC) + timedelta(seconds=1)
    records = generate(subscribers, seed=seed, start=start, scale=scale, days=days, hotline_scale=hotline_scale)
    if progress is None:
        progress = sys.stderr.isatty()
    n = asyncio.run(simulate_traffic(settings, records, rate=rate, progress=progress))
    click.echo(f"published {n} events", err=True)


@main.command()
@click.option("--subscribers", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True)
def demo(subscribers: int, partitions: int) -> None:
    """The main job on one machine: a broker (the local one when CHARTER_BOOTSTRAP_SERVERS is unset), a worker
    with the seconds-scaled charter, the simulator, and compensations printed as they are emitted."""
    settings = _settings()
    if settings.bootstrap_servers:
        _check_broker(settings)
    from streams.demo import run_demo

    run_demo(subscribers=subscribers, partitions=partitions, settings=settings)


if __name__ == "__main__":
    main()
