"""How a failed command ends: one line that names the problem and, where there is one,
the fix, and a non-zero exit; never a traceback (``RAGMEM_DEBUG=1`` shows it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ragmem.errors import Fix, RagmemError


class _Interrupted(click.ClickException):
    exit_code = 130  # the shell's code for Ctrl-C


def _command_for(fix: Fix) -> str:
    """The command that applies ``fix``."""
    index = fix.index
    if fix.action == "repair":
        return f"run: ragmem check {index} --repair"
    if fix.action == "repair_with":
        return f"repair it with the embedder that built it: ragmem check {index} --repair " \
               "--embedder NAME"
    if fix.action == "build":
        return f"build one with: ragmem index PATH --index {Path(index).name}"
    return f"use --embedder {fix.detail} (or leave it out), or index into a new --index name"


def one_line(exc: BaseException, index: str | None = None) -> tuple[str, int]:
    """What the user reads when a command fails, and the exit code: one line that names
    the problem and, where there is one, the fix. Never a traceback. ``index``: the
    index the command was given, for fixes that name it."""
    import sqlite3

    text = " ".join(str(exc).split())  # library messages may carry newlines
    if isinstance(exc, RagmemError):
        if exc.fix is not None:  # the library names the fix in Python; here, the command
            text = f"{' '.join(exc.problem.split())}; {_command_for(exc.fix)}"
        return text, 1
    if isinstance(exc, KeyboardInterrupt):
        # A FAISS+SQLite write rolls back whole; a Milvus one keeps the documents it
        # finished, and the one cut short looks absent until the next `ragmem index`.
        return ("interrupted; an index keeps every complete write (a FAISS index rolls "
                "back an unfinished one; a Milvus index keeps the documents it finished: "
                "run the same ragmem index again)", 130)
    if isinstance(exc, MemoryError):
        return ("out of memory; index fewer or smaller files at a time "
                "(RAGMEM_DOCUMENTS_MAX_FILE_BYTES bounds one file)", 1)
    if isinstance(exc, sqlite3.DatabaseError):
        return (f"an index's SQLite docstore failed ({text or type(exc).__name__}); "
                f"check it with: ragmem check {index or 'INDEX'}", 1)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        why = exc.strerror or text or type(exc).__name__
        return f"{where}{why}", 1
    return (f"unexpected {type(exc).__name__}: {text[:300]}; rerun with RAGMEM_DEBUG=1 "
            "for the traceback, and report it", 1)


class Cli(click.Group):
    """The one place a failure becomes one line and a non-zero exit (``one_line``),
    whatever a command lets out: ragmem's errors, SQLite's, FAISS's, the OS's, out of
    memory, Ctrl-C. ``RAGMEM_DEBUG=1`` lets the exception through, with its traceback."""

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["ragmem.command"] = (name, command, list(rest))  # for _index_of
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: already one line (usage errors, --help, aborts)
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("RAGMEM_DEBUG", "").lower() in {"1", "true", "yes", "on"}:
                raise
            message, code = one_line(exc, _index_of(ctx))
            failure = _Interrupted if code == _Interrupted.exit_code else click.ClickException
            raise failure(message) from exc


def _index_of(ctx: click.Context) -> str | None:
    """The index the failed command was given, as the user wrote it (parsed again from
    its arguments: its own context is gone by the time its error reaches ``Cli``)."""
    name, command, args = ctx.meta.get("ragmem.command", (None, None, []))
    if command is None:
        return None
    try:
        sub = command.make_context(name, list(args), parent=ctx, resilient_parsing=True)
    except click.ClickException:
        return None
    value = sub.params.get("index_name")
    return value if isinstance(value, str) else None
