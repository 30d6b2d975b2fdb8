"""The ragmem command line: a thin shell over ``ragmem.Assistant``, one module per
command group (``indexing``, ``asking``, ``manage``, ``evaluate``), what they print in
``output``, and how a failure ends in ``failures``.

Heavy imports (torch, faiss, transformers) happen inside commands, so ``--help`` is instant.
"""

from __future__ import annotations

import os

import click

from ragmem.cli.asking import ask, chat
from ragmem.cli.evaluate import eval_group
from ragmem.cli.failures import Cli, one_line
from ragmem.cli.indexing import index
from ragmem.cli.manage import check, info, rm
from ragmem.cli.serve import serve

__all__ = ["cli", "main", "one_line"]


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ragmem")
def cli() -> None:
    """ragmem: ask questions about long documents, with cited answers.

    \b
    Examples:
      ragmem index ~/papers --index papers      # build or update an index
      ragmem ask papers "What did they measure?"
      ragmem ask papers "..." --json --show-context
      ragmem chat papers                        # follow-up questions, /quit to leave
      ragmem info papers
      ragmem serve                              # a web page and an HTTP API, models warm

    Indexes live under ./indexes (set RAGMEM_HOME to move them); a path works too.
    """


for command in (index, ask, chat, eval_group, info, rm, check, serve):
    cli.add_command(command)


def main() -> None:
    # transformers' per-load "Loading weights" bars are noise next to our own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Nothing is downloaded at run time: a model is packaged, a local dir or already in
    # the Hugging Face cache, and loading it must not wait on network retries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="ragmem")
