"""``ragmem index``: files and folders into an index, with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import click

from ragmem.cli.output import print_json
from ragmem.config import Config

if TYPE_CHECKING:
    from ragmem.indexing import IndexProgress


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--index", "-i", "index_name", required=True,
              help="Index name (under ./indexes) or path.")
@click.option("--embedder", help="Embedding model: a known name, HF id or local dir "
              "(default all-MiniLM-L6-v2; fixed once the index exists).")
@click.option("--window-tokens", type=int, help="Embedder tokens per window (new index).")
@click.option("--store", type=click.Choice(["faiss", "milvus"]), help="Where a new index "
              "keeps its memory: faiss (FAISS + SQLite in the index folder; default) or "
              "milvus (pip install 'ragmem[scale]').")
@click.option("--uri", help="With --store milvus: a milvus-lite path ending in .db, or a "
              "server, http://HOST:19530 (default: milvus-lite inside the index folder).")
@click.option("--sync", is_flag=True, help="Also remove the documents under PATHS whose "
              "files are gone (documents indexed from other paths are kept).")
@click.option("--engine", type=click.Choice(["local", "ray"]),
              help="Who reads, chunks and embeds: this process (local, the default) or a "
              "Ray cluster (ray: $RAY_ADDRESS, else a local Ray; pip install 'ragmem[scale]').")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index(paths: tuple[str, ...], index_name: str, embedder: str | None,
          window_tokens: int | None, store: str | None, uri: str | None, sync: bool,
          engine: str | None, as_json: bool) -> None:
    """Index files or folders (.txt .md .html .pdf .jsonl) into an index.

    Only new or changed documents are embedded again (by content hash). The store and
    its URI are kept in the index's manifest: later commands find them there.

    \b
    Examples:
      ragmem index ragmem/demo/corpus --index demo
      ragmem index notes/ report.pdf --index work --sync
      ragmem index notes/ --index work --store milvus      # milvus-lite in indexes/work
      ragmem index notes/ --index team --store milvus --uri http://milvus:19530
      RAY_ADDRESS=head:6379 ragmem index /shared/papers --index papers --engine ray
    """
    from ragmem.assistant import Assistant, resolve_index_path
    from ragmem.memory import open_memory
    from ragmem.memory.folder import refuse_if_locked

    config = Config().with_env()  # then the flags: a flag beats the environment
    if embedder:
        config = replace(config, embedder=replace(config.embedder, model=embedder))
    if window_tokens:
        config = replace(config, chunking=replace(config.chunking, window_tokens=window_tokens))
    if uri and not store and config.index.store != "milvus":
        raise click.BadParameter("--uri is where a Milvus store lives; add --store milvus",
                                 param_hint="--uri")
    if store:
        config = config.with_overrides({"index": {"store": store}})
    if uri:
        config = config.with_overrides({"milvus": {"uri": uri}})
    folder = resolve_index_path(index_name)
    refuse_if_locked(folder)  # before loading a model or an index for nothing
    if embedder and (folder / "manifest.json").exists():
        # Refuses a mismatch, cheaply.
        open_memory(folder, embedder=embedder, config=config.index, milvus=config.milvus).close()
    assistant = Assistant.create(index_name, config)
    with _progress(quiet=as_json) as report:
        stats = assistant.index(list(paths), sync=sync, progress=report, engine=engine)
    for where, why in stats.failed:
        click.echo(f"skipped {where}: {why}", err=True)
    summary = {**asdict(stats), "windows_per_s": round(stats.windows_per_s, 1),
               "index": str(assistant.memory.directory)}
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"{assistant.memory.directory}: {stats.added} added, {stats.updated} updated, "
            f"{stats.unchanged} unchanged"
            + (f" ({stats.moved} moved)" if stats.moved else "")
            + f", {stats.removed} removed, {len(stats.failed)} failed; "
            f"{stats.sentences} sentences, {stats.windows} windows in {stats.seconds:.1f} s "
            f"({stats.windows_per_s:.1f} windows/s)")
    if stats.failed and not (stats.added or stats.updated or stats.unchanged):
        sys.exit(1)  # nothing could be read


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[IndexProgress], None]]:
    if quiet or not sys.stderr.isatty():
        yield lambda p: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("files {task.fields[stats]}"), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task("index", total=None, stats="")

        def report(p: IndexProgress) -> None:
            rate = p.windows / p.elapsed_s if p.elapsed_s else 0.0
            bar.update(task, completed=p.files_done, total=p.files_total,
                       stats=f"{p.sentences} sentences, {p.windows} windows, "
                             f"{rate:.1f} windows/s")

        yield report
