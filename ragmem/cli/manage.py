"""``ragmem info``, ``ragmem rm`` and ``ragmem check``: looking after an index's memory
(describe it, remove documents or drop it, verify and repair it).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from ragmem.cli.output import print_json
from ragmem.config import Config


@click.command()
@click.argument("index_name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--documents", is_flag=True, help="List the documents too.")
def info(index_name: str, as_json: bool, documents: bool) -> None:
    """Describe an index: embedder, counts, index type, size, last update.

    \b
    Example:
      ragmem info demo --documents
    """
    import datetime

    from ragmem.assistant import resolve_index_path
    from ragmem.memory import open_memory

    config = Config().with_env()
    memory = open_memory(resolve_index_path(index_name), config=config.index,
                         milvus=config.milvus)
    try:
        data = asdict(memory.info())
        docs = [asdict(d) for d in memory.documents()] if documents else None
    finally:
        memory.close()
    if as_json:
        print_json({**data, "documents_list": docs} if docs is not None else data)
        return
    when = datetime.datetime.fromtimestamp(data["updated_at"]).isoformat(timespec="seconds")
    click.echo(f"index      {data['path']}\nembedder   {data['embedder']} (dim {data['dim']})\n"
               f"documents  {data['documents']}\nsentences  {data['sentences']}\n"
               f"windows    {data['windows']} ({data['vectors_in_index']} vectors in the index)\n"
               f"index type {data['index_type']}\nsize       {data['size_bytes'] / 1e6:.1f} MB\n"
               f"chunking   {data['chunking']}\nupdated    {when}")
    for d in docs or []:
        click.echo(f"  {d['doc_id']}  {d['n_windows']} windows  {d['path']}")


@click.command()
@click.argument("index_name")
@click.argument("targets", nargs=-1)
@click.option("--drop", is_flag=True, help="Delete the whole index: its folder and, for a "
              "Milvus index, its collections (asks first; --yes to skip).")
@click.option("--yes", "-y", is_flag=True, help="Delete what a glob matches (or --drop) "
              "without asking (for scripts).")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def rm(index_name: str, targets: tuple[str, ...], drop: bool, yes: bool, dry_run: bool,
       as_json: bool) -> None:
    """Remove documents by id, or by glob on id or path; or, with --drop, the index.

    A glob lists what it matches and asks first (--yes to skip the question,
    --dry-run to only list); an exact id is removed at once.

    \b
    Examples:
      ragmem rm demo doyle-a-scandal-in-bohemia.txt
      ragmem rm work 'drafts/*' --dry-run
      ragmem rm work 'drafts/*' --yes
      ragmem rm work --drop --dry-run     # the folder, and Milvus collections if any
    """
    import fnmatch

    from ragmem.assistant import resolve_index_path
    from ragmem.memory import open_memory

    if drop == bool(targets):
        raise click.UsageError("give document ids or globs to remove, or --drop (the whole "
                               "index), not both")
    path = resolve_index_path(index_name)
    config = Config().with_env()
    if drop:
        _drop(index_name, path, config, yes, dry_run, as_json)
        return
    memory = open_memory(path, config=config.index, milvus=config.milvus)
    try:
        docs = memory.documents()
        ids = [d.doc_id for d in docs if any(
            d.doc_id == t or fnmatch.fnmatch(d.doc_id, t) or fnmatch.fnmatch(d.path, t)
            for t in targets)]
        if not ids:
            raise click.ClickException(
                f"nothing in {index_name} matches {' '.join(targets)}; "
                f"see the ids with: ragmem info {index_name} --documents")
        globbed = any(_is_glob(t) and t not in ids for t in targets)
        if dry_run:
            if as_json:
                print_json({"would_remove": ids})
            else:
                click.echo(f"would remove {len(ids)} documents: {', '.join(ids)}")
            return
        if globbed and not yes:
            shown = ", ".join(ids[:20]) + (f", ... and {len(ids) - 20} more"
                                           if len(ids) > 20 else "")
            click.echo(f"{' '.join(targets)} matches {len(ids)} of the {len(docs)} documents "
                       f"in {index_name}: {shown}", err=True)
            # Reads stdin: with no terminal and no answer (a script), this aborts.
            click.confirm(f"remove these {len(ids)} documents?", abort=True, err=True)
        with memory.writer() as writer:
            for doc_id in ids:
                writer.remove(doc_id)
    finally:
        memory.close()
    if as_json:
        print_json({"removed": ids})
    else:
        click.echo(f"removed {len(ids)} documents: {', '.join(ids)}")


def _drop(index_name: str, path: Path, config: Config, yes: bool, dry_run: bool,
          as_json: bool) -> None:
    """``rm --drop``: the whole index, its Milvus collections first."""
    from ragmem.memory.opening import describe_drop, drop_memory

    what = describe_drop(path)  # reads the manifest: no index there raises, with the fix
    if dry_run:
        if as_json:
            print_json({"would_drop": what})
        else:
            click.echo(f"would drop {index_name}: {'; '.join(what)}")
        return
    if not yes:
        click.echo(f"dropping {index_name} deletes {'; '.join(what)}", err=True)
        click.confirm(f"drop {index_name} and every document in it?", abort=True, err=True)
    gone = drop_memory(path, config.milvus)
    if as_json:
        print_json({"dropped": gone})
    else:
        click.echo(f"dropped {index_name}: {'; '.join(gone)}")


def _is_glob(target: str) -> bool:
    return any(c in target for c in "*?[")


@click.command()
@click.argument("index_name")
@click.option("--repair", is_flag=True, help="Rebuild what the docstore alone can give: "
              "the FAISS index, the manifest and the counts (no source files needed); for a "
              "Milvus index, delete what writes cut short left behind.")
@click.option("--embedder", help="With --repair, for an index whose manifest is lost and "
              "that predates the docstore's copy of it: the embedder that built it.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def check(index_name: str, repair: bool, embedder: str | None, as_json: bool) -> None:
    """Verify an index: SQLite integrity, checksums, FAISS ids == docstore ids, counts,
    and that its embedder loads here with the same dimension. A Milvus index: its
    collections, every window and piece under a stored document, spans and counts.

    Check writes nothing. A manifest whose counts lag the docstore (a write killed after
    its commit) is a note, brought up to date by the next write or --repair; anything
    else wrong is one line, with its fix.

    \b
    Examples:
      ragmem check demo
      ragmem check demo --repair
    """
    from ragmem.assistant import resolve_index_path
    from ragmem.memory import check as checking

    path = resolve_index_path(index_name)
    milvus = Config().with_env().milvus
    report = (checking.repair(path, embedder_name=embedder, milvus=milvus) if repair
              else checking.check(path, milvus=milvus))
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
    else:
        for note in report.notes:
            click.echo(f"{path}: note: {note}", err=True)
        if report.ok:
            click.echo(f"{path}: ok ({', '.join(report.checked)})")
    if not report.ok:
        fix = (f"; run: ragmem check {index_name} --repair"
               if report.repairable and not repair else "")
        if not as_json:
            click.echo(f"{path}: {'; '.join(report.problems)}{fix}", err=True)
        sys.exit(1)
