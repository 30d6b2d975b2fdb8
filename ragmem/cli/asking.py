"""``ragmem ask`` and ``ragmem chat``: questions about an index's documents, answered
with citations; ``ask --no-generate`` prints the filled working memory only."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from ragmem.cli.failures import one_line
from ragmem.cli.output import (
    echo_stream,
    print_citations,
    print_json,
    print_passages,
    print_span,
    titled,
)
from ragmem.config import Config
from ragmem.errors import RagmemError

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.types import Answer, Filter


def _scalar(text: str) -> Any:
    """'3' -> 3, 'true' -> True, else the string: metadata values keep their JSON types."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.command()
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
@click.option("--server", envvar="RAGMEM_SERVER", metavar="URL", help="Ask a running "
              "ragmem serve (warm models) instead of loading them here; or set RAGMEM_SERVER.")
def ask(index_name: str, question: str, top_k: int | None, generator: str | None,
        max_new_tokens: int | None, reranker: str | None, answer_mode: str | None,
        show_context: bool, as_json: bool, stream: bool, generate: bool,
        doc_ids: tuple[str, ...], path_glob: str | None, where_: tuple[str, ...],
        server: str | None) -> None:
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
      ragmem ask demo "..." --server http://127.0.0.1:8765  # a running ragmem serve
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

    if server:
        if generator or max_new_tokens or reranker or not generate:
            raise click.UsageError("--generator, --max-new-tokens, --reranker and "
                                   "--no-generate are the server's own; leave them out with "
                                   "--server, or ask without it")
        served = _ask_server(server, {
            "index": index_name, "question": question, "top_k": top_k, "mode": answer_mode,
            "doc_ids": list(doc_ids) or None, "path": path_glob,
            "where": where.metadata or None if where else None}, as_json, stream, show_context)
        if served is None:
            return
        answer = served
    else:
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
            answer = echo_stream(assistant.stream(question, top_k=top_k, where=where))
    if as_json:
        print_json(answer.to_dict() if show_context else
                    {k: v for k, v in answer.to_dict().items() if k != "passages"})
        return
    click.echo()
    if answer.mode == "extract":
        print_span(answer)
    else:
        print_citations(answer)
    if show_context:
        click.echo("\n--- working memory ---")
        print_passages(answer)
        for d in answer.dropped:
            click.echo(f"dropped: {d}")
    t = answer.timings
    click.echo(f"(retrieve {t.retrieve_s * 1000:.0f} ms, fill {t.fill_s * 1000:.0f} ms, "
               f"{'answer' if answer.mode == 'extract' else 'generate'} {t.generate_s:.1f} s)",
               err=True)


def _ask_server(url: str, body: dict[str, Any], as_json: bool, stream: bool,
                show_context: bool) -> Answer | None:
    """The answer from a running ``ragmem serve`` (``ragmem.serve.client``); with
    ``as_json``, its JSON is printed as the server sent it, and None returned."""
    from ragmem.serve import client

    if stream and not as_json:
        return echo_stream(client.stream(url, body))
    answer, data = client.ask(url, body)
    if as_json:
        print_json(data if show_context else {k: v for k, v in data.items()
                                              if k != "passages"})
        return None
    click.echo(answer.text)
    return answer


def _working_memory_only(assistant: Assistant, question: str, top_k: int | None,
                         where: Filter | None, as_json: bool) -> None:
    """``ask --no-generate``: retrieve -> fill, and print the numbered passages."""
    filled = assistant.pipeline.fill(question, top_k, where)
    buffer, t = filled.buffer, filled.timings
    if as_json:
        print_json({
            "question": buffer.question,
            "passages": [{"number": i, "doc_id": p.doc_id, "path": p.path,
                          "section": p.section, "start": p.start,
                          "end": p.end, "score": p.score, "text": p.text}
                         for i, p in enumerate(buffer.passages, start=1)],
            "dropped": list(buffer.dropped), "tokens_used": buffer.tokens_used,
            "token_budget": buffer.token_budget,
            "timings": {"retrieve_s": t.retrieve_s, "fill_s": t.fill_s}})
        return
    for i, p in enumerate(buffer.passages, start=1):
        click.echo(f"[{i}] {titled(p.doc_id, p.section)} ({p.path}, chars {p.start}-{p.end})"
                   f" score {p.score:.3f}"
                   f"\n{p.text}\n")
    for d in buffer.dropped:
        click.echo(f"dropped: {d}")
    click.echo(f"({len(buffer.passages)} passages, {buffer.tokens_used} of "
               f"{buffer.token_budget} tokens; retrieve {t.retrieve_s * 1000:.0f} ms, "
               f"fill {t.fill_s * 1000:.0f} ms)", err=True)


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


CHAT_COMMANDS = {"/sources": "the passages behind the last answer",
                 "/reset": "forget the conversation", "/quit": "leave; Ctrl-D works too"}


@click.command()
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
    from ragmem.conversation import Chat

    assistant = Assistant.open(index_name, _answer_config(generator, max_new_tokens,
                                                          reranker, answer_mode))
    session = Chat(assistant, top_k=top_k, rewrite=rewrite)
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
                    print_passages(last)
            elif command.startswith("/"):
                known = ", ".join(f"{c} ({why})" for c, why in CHAT_COMMANDS.items())
                click.echo(f"unknown command {command}; use {known}", err=True)
            else:
                try:
                    last = echo_stream(session.stream(line))
                except RagmemError as exc:  # one bad question does not end the session
                    click.echo(f"error: {one_line(exc)[0]}", err=True)
                    continue
                print_span(last) if last.mode == "extract" else print_citations(last)
                click.echo()
    except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C: leave quietly
        click.echo()
    finally:
        assistant.close()
