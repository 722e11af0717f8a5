"""How every command reports a user's mistake: one ``Error: ...`` line on stderr, exit code 2, no traceback.

- ``UserFacingError`` is the one exception type for it. Settings, connections, topics, charters and the commands
  raise it with a message that says what to fix (never a secret).
- ``OneLineErrors`` is the click group class of ``charter``: click's own usage errors (a missing file argument, an
  unknown option, a bad option value) and Kafka errors that escape a command become a ``UserFacingError`` too,
  so they print the same one line, without click's usage banner.
- ``OneLineArgumentParser`` gives the argparse entry points (``python -m schemas``, ``python -m streams.gen``)
  the same line.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any, NoReturn

import click


def one_line(message: str) -> str:
    """``message`` on one line: its lines joined with "; " (a space after a colon or a comma), blanks dropped."""
    out = ""
    for part in (p.strip() for p in message.splitlines()):
        if part:
            out = part if not out else f"{out}{' ' if out.endswith((':', ',')) else '; '}{part}"
    return out


class UserFacingError(click.ClickException):
    """A mistake the user can fix; ``str()`` says what to fix. Shown as one ``Error: ...`` line, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {one_line(self.format_message())}", file=file, err=file is None)


def _usage_line(error: click.UsageError) -> str:
    command = error.ctx.command_path if error.ctx is not None else None
    return f"{error.format_message()} (see '{command} --help')" if command else error.format_message()


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


# click 8.2+ shows the help for a bare group through this usage error; it is not a mistake
_HELP_NOT_ERROR: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None)


class OneLineErrors(click.Group):
    """The group class of ``charter``: usage errors of the group and of every subcommand, and Kafka errors a
    command lets escape, become a ``UserFacingError`` (one line, exit code 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _HELP_NOT_ERROR:
            raise
        except click.UsageError as e:
            raise UserFacingError(_usage_line(e)) from None

    def invoke(self, ctx: click.Context) -> Any:
        # A subcommand's arguments are parsed in here too (click's Group.invoke makes its context).
        try:
            return super().invoke(ctx)
        except (UserFacingError, *_HELP_NOT_ERROR):
            raise
        except click.UsageError as e:
            raise UserFacingError(_usage_line(e)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            line = _kafka_line(e)
            if line is None:
                raise
            raise UserFacingError(line) from None


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with the line of ``UserFacingError`` for a bad argument instead of the usage lines."""

    def error(self, message: str) -> NoReturn:
        UserFacingError(f"{message} (see '{self.prog} --help')").show()
        sys.exit(UserFacingError.exit_code)

