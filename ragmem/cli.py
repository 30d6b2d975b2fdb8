"""The ragmem command line: a thin shell over ``ragmem.Assistant``.

Heavy imports (torch, faiss, transformers) happen inside commands, so ``--help`` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ragmem.cli_eval import eval_group, print_json
from ragmem.cli_manage import check, info, rm
from ragmem.config import Config
from ragmem.errors import Fix, RagmemError

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.indexing import IndexProgress
    from ragmem.types import Answer, Citation, Filter


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


class _Cli(click.Group):
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
    its arguments: its own context is gone by the time its error reaches ``_Cli``)."""
    name, command, args = ctx.meta.get("ragmem.command", (None, None, []))
    if command is None:
        return None
    try:
        sub = command.make_context(name, list(args), parent=ctx, resilient_parsing=True)
    except click.ClickException:
        return None
    value = sub.params.get("index_name")
    return value if isinstance(value, str) else None


def _scalar(text: str) -> Any:
    """'3' -> 3, 'true' -> True, else the string: metadata values keep their JSON types."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
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

    Indexes live under ./indexes (set RAGMEM_HOME to move them); a path works too.
    """


@cli.command()
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
            f"{stats.unchanged} unchanged, {stats.removed} removed, {len(stats.failed)} failed; "
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


@cli.command()
@click.argument("index_name")
@click.argument("question")
@click.option("--top-k", "-k", type=int, help="Windows to retrieve (default 5).")
@click.option("--generator", "-g", help="Generator: known name, HF id or local dir "
              "(default SmolLM2-135M-Instruct; T5 and GPT-style models both work).")
@click.option("--max-new-tokens", type=int, help="Longest answer, in generator tokens.")
@click.option("--reranker", metavar="ID_OR_PATH", help="Rerank the first-stage windows with "
              "this cross-encoder (a sentence-transformers CrossEncoder id or local dir).")
@click.option("--answer", "answer_mode", type=click.Choice(["extract", "generate"]),
              help="extract: a verbatim span of the documents, or 'not found' (default "
              "with the packaged generator); generate: the generator's own words with [n].")
@click.option("--show-context", is_flag=True, help="Also print the numbered passages.")
@click.option("--json", "as_json", is_flag=True, help="Print answer, citations, passages as JSON.")
@click.option("--stream/--no-stream", default=True, help="Print the answer as it is generated.")
@click.option("--generate/--no-generate", default=True, help="--no-generate: retrieval only; "
              "print the working memory's numbered passages (what the generator would read).")
@click.option("--doc", "doc_ids", multiple=True, help="Only search this document id (repeatable).")
@click.option("--path", "path_glob", help="Only search documents whose id or path matches "
              "this glob, e.g. 'reports/*.pdf'.")
@click.option("--where", "where_", multiple=True, metavar="KEY=VALUE",
              help="Only search documents whose metadata KEY equals VALUE (repeatable).")
def ask(index_name: str, question: str, top_k: int | None, generator: str | None,
        max_new_tokens: int | None, reranker: str | None, answer_mode: str | None,
        show_context: bool, as_json: bool, stream: bool, generate: bool,
        doc_ids: tuple[str, ...], path_glob: str | None, where_: tuple[str, ...]) -> None:
    """Answer QUESTION from the documents in INDEX_NAME, with citations.

    \b
    Examples:
      ragmem ask demo "What did the King of Bohemia give Holmes?"
      ragmem ask demo "..." --answer generate     # free text instead of a span
      ragmem ask demo "..." --json | jq .citations
      ragmem ask demo "..." --generator google/flan-t5-base --show-context
      ragmem ask demo "Who is Irene Adler?" --path 'doyle-*'
      ragmem ask demo "..." --reranker cross-encoder/ms-marco-MiniLM-L-6-v2
      ragmem ask demo "..." --no-generate --json  # retrieval only, for scripts
    """
    from ragmem.assistant import Assistant
    from ragmem.types import Filter

    where = None
    if doc_ids or path_glob or where_:
        pairs = [w.split("=", 1) for w in where_]
        if any(len(p) != 2 for p in pairs):
            raise click.BadParameter("use KEY=VALUE, e.g. --where lang=en", param_hint="--where")
        where = Filter(doc_ids=doc_ids or None, path_glob=path_glob,
                       metadata={k: _scalar(v) for k, v in pairs})

    config = _answer_config(generator, max_new_tokens, reranker, answer_mode)
    assistant = Assistant.open(index_name, config)
    if not generate:
        _working_memory_only(assistant, question, top_k, where, as_json)
        return
    if as_json or not stream:
        answer = assistant.ask(question, top_k=top_k, where=where)
        if not as_json:
            click.echo(answer.text)
    else:
        answer = _echo_stream(assistant.stream(question, top_k=top_k, where=where))
    if as_json:
        print_json(answer.to_dict() if show_context else
                    {k: v for k, v in answer.to_dict().items() if k != "passages"})
        return
    click.echo()
    if answer.mode == "extract":
        _print_span(answer)
    else:
        _print_citations(answer)
    if show_context:
        click.echo("\n--- working memory ---")
        _print_passages(answer)
        for d in answer.dropped:
            click.echo(f"dropped: {d}")
    t = answer.timings
    click.echo(f"(retrieve {t.retrieve_s * 1000:.0f} ms, fill {t.fill_s * 1000:.0f} ms, "
               f"{'answer' if answer.mode == 'extract' else 'generate'} {t.generate_s:.1f} s)",
               err=True)


def _working_memory_only(assistant: Assistant, question: str, top_k: int | None,
                         where: Filter | None, as_json: bool) -> None:
    """``ask --no-generate``: retrieve -> fill, and print the numbered passages."""
    import time

    from ragmem.retrieval import check_question

    question = check_question(question)
    t0 = time.perf_counter()
    passages = assistant.passages(question, top_k, where)
    t1 = time.perf_counter()
    buffer = assistant.working_memory.fill(question, passages)
    t2 = time.perf_counter()
    if as_json:
        print_json({
            "question": buffer.question,
            "passages": [{"number": i, "doc_id": p.doc_id, "path": p.path,
                          "section": p.section, "start": p.start,
                          "end": p.end, "score": p.score, "text": p.text}
                         for i, p in enumerate(buffer.passages, start=1)],
            "dropped": list(buffer.dropped), "tokens_used": buffer.tokens_used,
            "token_budget": buffer.token_budget,
            "timings": {"retrieve_s": t1 - t0, "fill_s": t2 - t1}})
        return
    for i, p in enumerate(buffer.passages, start=1):
        click.echo(f"[{i}] {_titled(p.doc_id, p.section)} ({p.path}, chars {p.start}-{p.end})"
                   f" score {p.score:.3f}"
                   f"\n{p.text}\n")
    for d in buffer.dropped:
        click.echo(f"dropped: {d}")
    click.echo(f"({len(buffer.passages)} passages, {buffer.tokens_used} of "
               f"{buffer.token_budget} tokens; retrieve {(t1 - t0) * 1000:.0f} ms, "
               f"fill {(t2 - t1) * 1000:.0f} ms)", err=True)


def _answer_config(generator: str | None, max_new_tokens: int | None,
                   reranker: str | None, answer_mode: str | None = None) -> Config:
    config = Config().with_env()  # then the flags: a flag beats the environment
    if answer_mode:
        config = config.with_overrides({"answering": {"mode": answer_mode}})
    if generator:
        config = replace(config, generator=replace(config.generator, model=generator))
    if max_new_tokens:
        config = replace(config, working_memory=replace(config.working_memory,
                                                        max_new_tokens=max_new_tokens))
    if reranker:
        config = replace(config, retrieval=replace(config.retrieval, reranker=reranker))
    return config


def _echo_stream(pieces: Iterable[str | Answer]) -> Answer:
    """Print the answer's text as it comes; return the finished Answer."""
    from ragmem.types import Answer

    answer = None
    for piece in pieces:
        if isinstance(piece, Answer):
            answer = piece
        else:
            click.echo(piece, nl=False)
    click.echo()
    if answer is None:
        raise RagmemError("the generator stopped before the answer was complete")
    return answer


def _print_citations(answer: Answer) -> None:
    for c in answer.citations:
        quote = c.quote if len(c.quote) <= 160 else c.quote[:157] + "..."
        click.echo(f"[{c.number}] {_titled(c.doc_id, c.section)} ({c.path}, chars "
                   f"{c.start}-{c.end}): \"{quote}\"")


def _print_span(answer: Answer) -> None:
    """Where an extracted answer stands: its sentence, the answer marked «like this»; an
    abstention names the closest evidence as a place to look, not as support."""
    for c in answer.citations:
        click.echo(f"[{c.number}] {_titled(c.doc_id, c.section)} ({c.path}, chars "
                   f"{c.start}-{c.end}):")
        click.echo(f"    {_in_context(answer, c)}")
    for c in answer.suggestions:
        click.echo(f"closest evidence (not an answer): [{c.number}] "
                   f"{_titled(c.doc_id, c.section)} ({c.path}, chars {c.start}-{c.end}):")
        click.echo(f"    \"{_shorten(' '.join(c.quote.split()), 240)}\"")
    if answer.confidence is not None:
        click.echo(f"confidence {answer.confidence:.2f}", err=True)


def _in_context(answer: Answer, c: Citation, width: int = 90) -> str:
    """The sentence around the span ``c``, whitespace folded, the answer «marked»."""
    passage = answer.passages[c.number - 1] if 0 < c.number <= len(answer.passages) else None
    sentence = next((s for s in passage.sentences if s.start <= c.start and c.end <= s.end),
                    None) if passage else None
    if sentence is None:
        return f"«{c.quote}»"
    head, tail = sentence.text[:c.start - sentence.start], sentence.text[c.end - sentence.start:]
    before = " ".join(head.split()) + (" " if head[-1:].isspace() else "")
    after = (" " if tail[:1].isspace() else "") + " ".join(tail.split())
    if len(before) > width:
        before = "…" + before[-width:]
    if len(after) > width:
        after = after[:width] + "…"
    return f"\"{before}«{' '.join(c.quote.split())}»{after}\""


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _print_passages(answer: Answer) -> None:
    for i, p in enumerate(answer.passages, start=1):
        click.echo(f"[{i}] {_titled(p.doc_id, p.section)} {p.start}-{p.end} score "
                   f"{p.score:.3f}\n{p.text}\n")


def _titled(doc_id: str, section: str) -> str:
    """``doyle.md › Chapter II › The Bank``: the document, then its heading path."""
    return f"{doc_id} › {section}" if section else doc_id


CHAT_COMMANDS = {"/sources": "the passages behind the last answer",
                 "/reset": "forget the conversation", "/quit": "leave; Ctrl-D works too"}


@cli.command()
@click.argument("index_name")
@click.option("--top-k", "-k", type=int, help="Windows to retrieve per question (default 5).")
@click.option("--generator", "-g", help="Generator: known name, HF id or local dir "
              "(default SmolLM2-135M-Instruct).")
@click.option("--max-new-tokens", type=int, help="Longest answer, in generator tokens.")
@click.option("--reranker", metavar="ID_OR_PATH",
              help="Rerank the first-stage windows with this cross-encoder.")
@click.option("--rewrite", type=click.Choice(["heuristic", "generator"]),
              help="How follow-ups become retrieval queries (default heuristic: the last "
              "turn's key terms are appended).")
@click.option("--answer", "answer_mode", type=click.Choice(["extract", "generate"]),
              help="extract: verbatim spans or 'not found'; generate: free text with [n].")
def chat(index_name: str, top_k: int | None, generator: str | None,
         max_new_tokens: int | None, reranker: str | None, rewrite: str | None,
         answer_mode: str | None) -> None:
    """Talk with the documents in INDEX_NAME: follow-up questions, cited answers.

    Earlier turns stay in the working memory (within a share of its budget), and a
    follow-up such as "and when did he die?" searches with the last turn's key terms.

    \b
    In the session:
      /sources   the passages behind the last answer
      /reset     forget the conversation
      /quit      leave (Ctrl-D works too)

    \b
    Examples:
      ragmem chat demo
      ragmem chat demo --reranker cross-encoder/ms-marco-MiniLM-L-6-v2
      printf 'Who is Irene Adler?\\nWhere did she live?\\n' | ragmem chat demo
    """
    from ragmem.assistant import Assistant

    assistant = Assistant.open(index_name, _answer_config(generator, max_new_tokens,
                                                          reranker, answer_mode))
    session = assistant.chat(top_k=top_k, rewrite=rewrite)
    click.echo(f"Chatting with {index_name}; {', '.join(CHAT_COMMANDS)}.")
    last: Answer | None = None
    try:
        while True:
            line = input("> ").strip()
            if not line:
                continue
            command = line.split()[0].lower()
            if command in ("/quit", "/exit"):
                break
            if command == "/reset":
                session.reset()
                last = None
                click.echo("(conversation forgotten)")
            elif command == "/sources":
                if last is None:
                    click.echo("no answer yet: ask a question first")
                else:
                    _print_passages(last)
            elif command.startswith("/"):
                known = ", ".join(f"{c} ({why})" for c, why in CHAT_COMMANDS.items())
                click.echo(f"unknown command {command}; use {known}", err=True)
            else:
                try:
                    last = _echo_stream(session.stream(line))
                except RagmemError as exc:  # one bad question does not end the session
                    click.echo(f"error: {one_line(exc)[0]}", err=True)
                    continue
                _print_span(last) if last.mode == "extract" else _print_citations(last)
                click.echo()
    except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C: leave quietly
        click.echo()
    finally:
        assistant.close()


for command in (eval_group, info, rm, check):
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


if __name__ == "__main__":
    main()
