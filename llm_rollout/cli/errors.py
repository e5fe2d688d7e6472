"""How the CLI reports a user's mistake: one `error: …` line on stderr and exit status 1,
never a traceback.

Exit status, for every command: 0 done; 1 the input, the files or the cluster were not as
needed (the message says what to change); 2 a usage error (click: a bad option or value).
`gate` adds 2 inconclusive and 3 measurement error for its verdicts.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from llm_rollout.spec.rules import FULL_COMMIT


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit with status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def full_commit(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: the value must be a full 40-hex commit (what weights are published as)."""
    if value is not None and not FULL_COMMIT.match(value):
        raise click.BadParameter(
            f"'{value}' is not a full commit; give the 40 lowercase hex characters "
            "(`llm-rollout weights fetch` prints it)"
        )
    return value


class CommandGroup(click.Group):
    """A click group whose commands report file-system mistakes (a folder that cannot be
    written, a path under /proc) as one `error:` line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            fail(f"cannot access{where}: {error.strerror or error}")
