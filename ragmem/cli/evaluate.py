"""``ragmem eval``: the evaluation harness from the command line (retrieval, qa, mc,
compare)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import click

from ragmem.cli.output import print_json
from ragmem.config import Config


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate on standard datasets; write report.json, summary.md and PNG plots.

    \b
    Examples:
      ragmem eval retrieval ../shared/datasets/scifact --split test --out eval/reports/scifact
      ragmem eval retrieval ../shared/datasets/scifact --system bm25 --out eval/reports/bm25
      ragmem eval qa ../shared/datasets/squad_v1.1_dev/dev-v1.1.json --limit 500 --out out/
      ragmem eval mc ../shared/datasets/quality_leval/quality.jsonl --out out/
      ragmem eval compare eval/reports/bm25/report.json eval/reports/scifact/report.json
    """


def _selection(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--out", "-o", required=True,
                     help="Folder for report.json, summary.md, PNGs."),
        click.option("--limit", type=int, help="The first N questions in file order."),
        click.option("--sample", type=int, help="A seeded random N questions (see --seed)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample."),
        click.option("--embedder", help="Embedding model (default all-MiniLM-L6-v2)."),
        click.option("--rebuild", is_flag=True, help="Re-index even if a matching index exists."),
        click.option("--plots/--no-plots", default=True, help="Write the PNG plots."),
        click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _command_line() -> str:
    """The invocation as typed, rebuilt from click's parse (sys.argv is not ours in tests)."""
    import shlex

    ctx = click.get_current_context()
    words = ["ragmem", *ctx.command_path.split()[1:]]  # the root is "cli" under CliRunner
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Argument):
            words += [str(v) for v in (value if isinstance(value, tuple) else (value,))]
        elif value is not None and value != param.default and param.opts:
            if param.is_flag:  # type: ignore[attr-defined]
                flag = param.opts[0] if value else (param.secondary_opts or [""])[0]
                words += [flag] if flag else []
            else:
                words += [param.opts[0], str(value)]
    return shlex.join(words)


def _eval_config(embedder: str | None, generator: str | None = None,
                 top_k: int | None = None, token_budget: int | None = None,
                 mode: str | None = None) -> Config:
    config = Config().with_env()
    if mode:
        config = config.with_overrides({"retrieval": {"mode": mode}})
    if embedder:
        config = replace(config, embedder=replace(config.embedder, model=embedder))
    if generator:
        config = replace(config, generator=replace(config.generator, model=generator))
    if top_k:
        config = replace(config, retrieval=replace(config.retrieval, top_k=top_k))
    if token_budget:
        config = replace(config, working_memory=replace(config.working_memory,
                                                        token_budget=token_budget))
    return config


@contextmanager
def _eval_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    if quiet or not sys.stderr.isatty():
        yield lambda stage, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield report


def _finish(report: dict[str, Any], out: str, plots: bool, as_json: bool) -> None:
    from ragmem.evaluation import summary, write_report

    paths = write_report(report, out, plots=plots)
    if as_json:
        print_json({"report": str(paths[0]), "metrics": report["metrics"]})
    else:
        click.echo(summary({k: v for k, v in report.items() if k != "config"}), nl=False)
        click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


@eval_group.command(name="retrieval")
@click.argument("beir_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--system", type=click.Choice(["ragmem", "bm25"]), default="ragmem",
              show_default=True, help="ragmem's retriever, or the bm25s baseline.")
@click.option("--mode", type=click.Choice(["dense", "lexical", "hybrid"]),
              help="ragmem's retrieval mode (default: the config's, hybrid).")
@click.option("--keep-identical-ids", is_flag=True,
              help="Rank a document whose id is the query's own id like any other (by "
              "default it is never ranked, as BEIR and MTEB score, e.g. ArguAna).")
@_selection
def eval_retrieval(beir_dir: str, split: str, system: str, mode: str | None,
                   keep_identical_ids: bool, out: str, limit: int | None, sample: int | None,
                   seed: int, embedder: str | None, rebuild: bool, plots: bool,
                   as_json: bool) -> None:
    """Document-level recall@k, MRR@10, nDCG@10, MAP@100 on a BEIR dataset."""
    from ragmem.evaluation import load_beir
    from ragmem.evaluation.baselines import evaluate_bm25
    from ragmem.evaluation.harness import evaluate_retrieval

    data = load_beir(beir_dir, split)
    with _eval_progress(as_json) as progress:
        if system == "bm25":
            report = evaluate_bm25(data, limit=limit, sample=sample, seed=seed,
                                   ignore_identical_ids=not keep_identical_ids,
                                   progress=progress, command=_command_line())
        else:
            report = evaluate_retrieval(data, _eval_config(embedder, mode=mode), limit=limit,
                                        ignore_identical_ids=not keep_identical_ids,
                                        sample=sample, seed=seed, rebuild=rebuild,
                                        progress=progress, command=_command_line())
    _finish(report, out, plots, as_json)


@eval_group.command(name="qa")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--index", "-i", "index_name", help="Existing index to ask (needed for QA JSONL, "
              "whose documents are indexed separately).")
@click.option("--generate/--no-generate", default=True, show_default=True,
              help="Generate answers (EM/F1, citations); off: retrieval and context only.")
@click.option("--budgets", default="512,1024,2048", show_default=True,
              help="Token budgets of the answer-in-context curve.")
@click.option("--generator", "-g", help="Generator (default SmolLM2-135M-Instruct).")
@click.option("--top-k", "-k", type=int, help="Windows retrieved per question (default 5).")
@click.option("--answer", "answer_mode", type=click.Choice(["extract", "generate"]),
              help="Answer mode (default: extract with the packaged generator).")
@click.option("--absent", is_flag=True, help="Ask each question with its own document "
              "filtered out: measures abstention (nothing retrieved can answer).")
@_selection
def eval_qa(file: str, index_name: str | None, generate: bool, budgets: str,
            generator: str | None, top_k: int | None, answer_mode: str | None, absent: bool,
            out: str, limit: int | None, sample: int | None, seed: int, embedder: str | None,
            rebuild: bool, plots: bool, as_json: bool) -> None:
    """Long-document QA on SQuAD JSON (one document per article) or QA JSONL.

    \b
    Examples:
      ragmem eval qa dev-v1.1.json --limit 500 --answer extract --out eval/reports/x
      ragmem eval qa dev-v1.1.json --limit 300 --absent   # abstention without the article
    """
    from ragmem.assistant import Assistant
    from ragmem.evaluation import load_qa_jsonl, load_squad
    from ragmem.evaluation.harness import evaluate_qa

    config = _eval_config(embedder, generator, top_k)
    if answer_mode:
        config = config.with_overrides({"answering": {"mode": answer_mode}})
    data = load_qa_jsonl(file) if file.endswith(".jsonl") else load_squad(file)
    assistant = Assistant.open(index_name, config) if index_name else None
    try:
        sizes = tuple(int(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        raise click.BadParameter("give integers, e.g. 512,1024,2048",
                                 param_hint="--budgets") from None
    with _eval_progress(as_json) as progress:
        report = evaluate_qa(data, config, limit=limit, sample=sample, seed=seed,
                             generate=generate, budgets=sizes, assistant=assistant,
                             rebuild=rebuild, progress=progress, command=_command_line(),
                             absent=absent)
    _finish(report, out, plots, as_json)


@eval_group.command(name="mc")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--generator", "-g", help="Generator that scores the options.")
@_selection
def eval_mc(file: str, generator: str | None, out: str, limit: int | None,
            sample: int | None, seed: int, embedder: str | None, rebuild: bool, plots: bool,
            as_json: bool) -> None:
    """Long-document multiple choice (L-Eval JSONL): accuracy of the likeliest option."""
    from ragmem.evaluation import load_leval_mc
    from ragmem.evaluation.harness import evaluate_mc

    with _eval_progress(as_json) as progress:
        report = evaluate_mc(load_leval_mc(file), _eval_config(embedder, generator),
                             limit=limit, sample=sample, seed=seed, rebuild=rebuild,
                             progress=progress, command=_command_line())
    _finish(report, out, plots, as_json)


@eval_group.command(name="compare")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
def eval_compare(a: str, b: str) -> None:
    """Side-by-side table of two report.json files: A, B and B - A."""
    from ragmem.evaluation import compare, load_report

    click.echo(compare(load_report(a), load_report(b)), nl=False)
