"""``charter``: the command line (replay now; worker, produce, simulate and tail are added by the live adapter)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.charter import CharterError, load_charter
from streams.core.timeutil import parse_instant


@click.group()
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
    lines = src
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm import tqdm

        total = None if file == "-" else Path(file).stat().st_size
        bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc="replay")

        def counted(it):
            for line in it:
                bar.update(len(line))
                yield line
            bar.close()

        lines = counted(src)
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
    from streams.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@main.command()
@click.option("--charter", "charter_ref", default=None, help="Charter name or YAML file (env CHARTER_CHARTER).")
@click.option("--partitions", type=int, default=None, help="Partitions of the topics (env CHARTER_PARTITIONS).")
def worker(charter_ref: str | None, partitions: int | None) -> None:
    """Run one Faust worker of the consumer group (configuration: CHARTER_* environment variables)."""
    from streams.live import run_worker

    settings = _settings(charter=charter_ref, partitions=partitions)
    run_worker(settings, _charter(settings.charter))


@main.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--realtime/--no-realtime", default=False,
              help="Publish each event when the wall clock reaches its occurred_at (shifted to start now).")
@click.option("--speed", type=float, default=1.0, help="With --realtime: time runs this many times faster.")
def produce(file: str, realtime: bool, speed: float) -> None:
    """Publish a replay file's events to the input topics."""
    import asyncio

    from streams.producer import produce_file

    settings = _settings()
    n = asyncio.run(produce_file(settings, file, realtime=realtime, speed=speed))
    click.echo(f"published {n} events", err=True)


@main.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--from-beginning/--from-end", default=True)
@click.option("--idle-exit", type=float, default=None, help="Exit after this many seconds without a record.")
def tail(topics: tuple[str, ...], from_beginning: bool, idle_exit: float | None) -> None:
    """Print output records of TOPICS as {"topic", "key", "value"} JSON lines."""
    import asyncio

    from streams.producer import tail_topics

    asyncio.run(tail_topics(_settings(), list(topics), from_beginning=from_beginning, idle_exit=idle_exit))



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

    from streams.gen import generate
    from streams.producer import simulate_traffic

    start = datetime.now(UTC) + timedelta(seconds=1)
    records = generate(subscribers, seed=seed, start=start, scale=scale, days=days, hotline_scale=hotline_scale)
    if progress is None:
        progress = sys.stderr.isatty()
    n = asyncio.run(simulate_traffic(_settings(), records, rate=rate, progress=progress))
    click.echo(f"published {n} events", err=True)


@main.command()
@click.option("--subscribers", type=int, default=2000, show_default=True)
@click.option("--partitions", type=int, default=4, show_default=True)
def demo(subscribers: int, partitions: int) -> None:
    """The main job on one machine: a broker (the local one when CHARTER_BOOTSTRAP_SERVERS is unset), a worker
    with the seconds-scaled charter, the simulator, and compensations printed as they are emitted."""
    from streams.demo import run_demo

    run_demo(subscribers=subscribers, partitions=partitions)


if __name__ == "__main__":
    main()
