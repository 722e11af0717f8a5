"""``charter``: the command line (replay now; worker, produce, simulate and tail are added by the live adapter)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from streams.charter import CharterError, load_charter
from streams.core.timeutil import parse_instant
from streams.errors import UserFacingError


class _OneLine(click.ClickException):
    """Printed by click as one ``Error: ...`` line; exit code 2, like a usage error."""

    exit_code = 2


def _kafka_line(error: Exception) -> str | None:
    """One line for a Kafka error that escaped a command after its clients connected (an ACL, a lost broker)."""
    if "aiokafka.errors" not in sys.modules:  # no Kafka client ran: not a Kafka error
        return None
    from aiokafka.errors import KafkaConnectionError, KafkaError

    # A connection lost mid-run is not the handshake failure explain() would call it: keep its traceback.
    if not isinstance(error, KafkaError) or isinstance(error, KafkaConnectionError):
        return None
    from streams.connection import explain

    return explain(error)


class _Main(click.Group):
    """The one place where a command's settings, credential or broker problem becomes one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserFacingError as e:
            raise _OneLine(str(e)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            line = _kafka_line(e)
            if line is None:
                raise
            raise _OneLine(line) from None


@click.group(cls=_Main)
def main() -> None:
    """charter-streams: a quality charter turned into compensations and alerts."""


def _charter(ref: str | None):
    try:
        return load_charter(ref)
    except CharterError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--until", "until", default=None, help="RFC 3339 instant: fire deadlines up to it at the end.")
@click.option("--charter", "charter_ref", default=None, help="Charter name or YAML file (default alice-2007).")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
def replay(file: str, until: str | None, charter_ref: str | None, progress: bool | None) -> None:
    """Apply an event file (one {"topic", "value"} per line, '-' for stdin); print output records."""
    from streams.replay import format_record
    from streams.replay import replay as run

    charter = _charter(charter_ref)
    try:
        until_us = None if until is None else parse_instant(until)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--until") from None
    src = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115 - closed below
    if progress is None:
        progress = sys.stderr.isatty()
    lines = _with_progress(src, None if file == "-" else Path(file).stat().st_size, "replay", progress)
    out = sys.stdout.buffer
    write = out.write
    try:
        for rec in run(lines, charter, until_us):
            write(format_record(rec))
            write(b"\n")
    finally:
        if src is not sys.stdin.buffer:
            src.close()
        out.flush()


# The command-line options that set a setting, so an error names what the user typed.
_OPTIONS = {"charter": "--charter", "partitions": "--partitions"}


class UserError(click.ClickException):
    """A user's mistake: one line on stderr, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"Error: {' '.join(self.format_message().split())}", err=True)


class OneLineErrors(click.Command):
    """Bad arguments are a ``UserError`` too (click would print usage lines around it)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise UserError(f"{e.format_message()} (see 'charter {self.name} --help')") from None


def _lines_with_progress(file: str, progress: bool | None, desc: str):
    """(source to close, its lines); a byte progress bar on stderr when asked, or by default on a terminal."""
    if file != "-" and not Path(file).is_file():
        raise UserError(f"no such file: {file}")
    try:
        src = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return src, src
    from tqdm import tqdm

    bar = tqdm(total=None if file == "-" else Path(file).stat().st_size, unit="B", unit_scale=True,
               file=sys.stderr, desc=desc)

    def counted(it):
        for line in it:
            bar.update(len(line))
            yield line
        bar.close()

    return src, counted(src)


@main.command(cls=OneLineErrors)
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--charter", "charter_refs", multiple=True, required=True,
              help="A charter name or YAML file; repeat it (the first is the reference of the differences).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--until", "until", default=None, help="RFC 3339 instant: fire deadlines up to it at the end.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
def whatif(file: str, charter_refs: tuple[str, ...], fmt: str, until: str | None, progress: bool | None) -> None:
    """What each charter would have cost on FILE's events ('-' for stdin): per rule and in total, the
    compensations, customers and amount, and each charter's difference from the first."""
    from streams.whatif import FORMATS, labels_for
    from streams.whatif import whatif as run

    charters = []
    for ref in charter_refs:
        try:
            charters.append(load_charter(ref))
        except CharterError as e:
            raise UserError(str(e)) from None
    try:
        until_us = None if until is None else parse_instant(until)
    except ValueError as e:
        raise UserError(f"--until: {e}") from None
    src, lines = _lines_with_progress(file, progress, "whatif")
    try:
        report = run(lines, charters, labels_for(list(charter_refs), charters), until_us)
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    click.echo(FORMATS[fmt](report), nl=False)


def _settings(**overrides):
    pass


def _settings(**overrides):
    """The settings of a command: CHARTER_* variables, then its options. The only place a command loads them; an
    invalid or unknown one raises SettingsError, which _Main prints as one line."""
    from streams.settings import load_settings

    return load_settings(_OPTIONS, **overrides)


@main.command()
@click.option("--charter", "charter_ref", default=None, help="Charter name or YAML file (env CHARTER_CHARTER).")
@click.option("--partitions", type=int, default=None, help="Partitions of the topics (env CHARTER_PARTITIONS).")
def worker(charter_ref: str | None, partitions: int | None) -> None:
    """Run one Faust worker of the consumer group (configuration: CHARTER_* environment variables)."""
    settings = _settings(charter=charter_ref, partitions=partitions)
    from streams.live import run_worker

    run_worker(settings, _charter(settings.charter))


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
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--realtime/--no-realtime", default=False,
              help="Publish each event when the wall clock reaches its occurred_at (shifted to start now).")
@click.option("--speed", type=float, default=1.0, help="With --realtime: time runs this many times faster.")
def produce(file: str, realtime: bool, speed: float) -> None:
    """Publish a replay file's events to the input topics."""
    import asyncio

    settings = _settings()
    from streams.producer import produce_file

    n = asyncio.run(produce_file(settings, file, realtime=realtime, speed=speed))
    click.echo(f"published {n} events", err=True)


@main.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--from-beginning/--from-end", default=True)
@click.option("--idle-exit", type=float, default=None, help="Exit after this many seconds without a record.")
def tail(topics: tuple[str, ...], from_beginning: bool, idle_exit: float | None) -> None:
    """Print output records of TOPICS as {"topic", "key", "value"} JSON lines."""
    import asyncio

    settings = _settings()
    from streams.producer import tail_topics

    asyncio.run(tail_topics(settings, list(topics), from_beginning=from_beginning, idle_exit=idle_exit))


class _OneLineUsageErrors(click.Command):
    """A usage error (missing file, bad option) as one ``Error: ...`` line, without the usage banner."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            e.ctx = None
            raise


class _UserError(click.ClickException):
    """A user's mistake found while running: one ``Error: ...`` line, exit code 2 like a usage error."""

    exit_code = 2


@main.command(cls=_OneLineUsageErrors)
@click.argument("file", required=False, type=click.Path(exists=True, allow_dash=True, dir_okay=False, path_type=str))
@click.option("--from-topics", is_flag=True,
              help="Read the output topics of a running deployment (CHARTER_* environment) instead of FILE.")
@click.option("--charter", "charter_ref", default=None,
              help="Charter name or YAML file (default alice-2007; with --from-topics, CHARTER_CHARTER).")
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
def report(file: str | None, from_topics: bool, charter_ref: str | None, output: str, progress: bool | None) -> None:
    """Write one self-contained HTML page of figures and totals: from FILE (an event file, replayed under the
    charter) or, with --from-topics, from the output topics of a deployment."""
    import asyncio

    from aiokafka.errors import KafkaError

    from streams import report as rep

    if file is not None and from_topics:
        raise _UserError("give an event FILE or --from-topics, not both")
    if file is None and not from_topics:
        raise _UserError("give an event FILE, or --from-topics to read a deployment's output topics")
    if progress is None:
        progress = sys.stderr.isatty()
    if from_topics:
        import logging

        settings = _settings()
        charter = _report_charter(charter_ref or settings.charter)
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a connection failure is reported in one line
        try:
            messages, names = asyncio.run(rep.read_topics(settings, progress=progress))
        except (KafkaError, OSError, TimeoutError) as e:
            raise _UserError(f"cannot read the topics from {settings.bootstrap_servers or '127.0.0.1:9092'}: "
                               f"{e}") from None
        if not any(n != rep.ELEMENT_TOPIC for n in names):
            raise _UserError(f"no output topic (prefix {settings.topic_prefix!r}) on the broker")
        records, elements = rep.records_from_messages(messages, settings.unprefixed)
        if elements is None and rep.ELEMENT_TOPIC in names:
            elements = {}  # the input topic was read and is empty: elements named by no event, not unread
        source = f"topics of {settings.bootstrap_servers or '127.0.0.1:9092'}"
        if settings.topic_prefix:
            source += f" (prefix {settings.topic_prefix})"
    else:
        assert file is not None
        charter = _report_charter(charter_ref)
        src = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115 - closed below
        try:
            lines = _with_progress(src, None if file == "-" else Path(file).stat().st_size, "replay", progress)
            records, elements = rep.replay_file(lines, charter)
        except rep.ReportSourceError as e:
            raise _UserError(f"{file}: {e}") from None
        finally:
            if src is not sys.stdin.buffer:
                src.close()
        source = "standard input" if file == "-" else Path(file).name
    page = rep.render(records, charter=charter, elements=elements, source=source)
    try:
        Path(output).write_text(page, encoding="utf-8")
    except OSError as e:
        raise _UserError(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(f"wrote {output} ({len(records):,} output records)", err=True)


def _report_charter(ref: str | None):
    try:
        return load_charter(ref)
    except CharterError as e:
        raise _UserError(f"--charter: {e}") from None


def _with_progress(src, total: int | None, desc: str, progress: bool):
    """Lines of ``src``, counted in bytes on a tqdm bar on stderr when ``progress``."""
    if not progress:
        return src
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc=desc)

    def counted(it):
        for line in it:
            bar.update(len(line))
            yield line
        bar.close()

    return counted(src)


@main.command()
@click.option("--subscribers", type=int, default=1000, show_default=True)
@click.option("--rate", type=float, default=None,
              help="Publish at this many events/s (default: each event when the wall clock reaches it).")
@click.option("--scale", type=float, default=1 / 86400, show_default=True,
              help="Simulated-time multiplier: 1/86400 makes a day last a second (alice-2007-seconds).")
@click.option("--hotline-scale", type=float, default=1 / 60, show_default=True,
              help="Multiplier of hotline waits: 1/60 makes 180 s last 3 s (alice-2007-seconds).")
@click.option("--days", type=float, default=30.0, show_default=True, help="Simulated days.")
@click.option("--seed", type=int, default=0)
@click.option("--progress/--no-progress", default=None)
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
@click.option("--subscribers", type=int, default=2000, show_default=True)
@click.option("--partitions", type=int, default=4, show_default=True)
def demo(subscribers: int, partitions: int) -> None:
    """The main job on one machine: a broker (the local one when CHARTER_BOOTSTRAP_SERVERS is unset), a worker
    with the seconds-scaled charter, the simulator, and compensations printed as they are emitted."""
    settings = _settings()
    from streams.demo import run_demo

    run_demo(subscribers=subscribers, partitions=partitions, settings=settings)


if __name__ == "__main__":
    main()
