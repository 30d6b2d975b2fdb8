"""The shipped span head on the first 500 SQuAD v1.1 dev questions: oracle and realistic.

    python eval/answering/span_head_report.py            # writes eval/reports/span-head.{json,md}

Settings (the questions are never trained or tuned on, see train_span_head.py):
- oracle: the gold paragraph's sentences;
- realistic: the sentences of the working memory that ragmem's default pipeline fills for
  the question over the long-document index (all 48 articles, as ``ragmem eval qa``);
- realistic, passages: the same evidence as whole passages (fewer, longer encoder inputs).

The contexts are computed once and cached under ``--cache`` (retrieval needs the index,
``indexes/eval-dev-v1.1-...``, built by ``ragmem eval qa`` or on first use here).
Per question: EM and F1 (official SQuAD normalisation), gold-in-answer (a gold answer's
normalised text inside the span), located (the span's document offsets overlap a gold
span of the gold document), and the head's time (encode + decode, model loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from span_head import DEFAULT_HEAD, SpanHead  # noqa: E402

from ragmem.chunking import split_sentences  # noqa: E402
from ragmem.config import Config  # noqa: E402
from ragmem.evaluation.datasets import load_squad  # noqa: E402
from ragmem.evaluation.metrics import answer_in_text, exact_match, token_f1  # noqa: E402

SQUAD = Path("/work/shared/datasets/squad_v1.1_dev/dev-v1.1.json")


def contexts(limit: int, cache: Path) -> list[dict[str, Any]]:
    """Per question: the oracle sentences and the working memory's sentences and passages,
    each as ``{"doc_id", "start", "end", "text"}`` (document offsets)."""
    path = cache / f"squad-dev-first{limit}-contexts.json"
    if path.is_file():
        return list(json.loads(path.read_text("utf-8"))["questions"])
    from ragmem.evaluation.indexes import open_index

    dataset = load_squad(SQUAD)
    docs = {d.doc_id: d for d in dataset.documents}
    config = Config().with_env()
    assistant, info = open_index(dataset.name, dataset.documents, config)
    out = []
    with assistant:
        for ex in dataset.examples[:limit]:
            a, b = ex.paragraph_spans[0]
            paragraph = docs[ex.doc_id].text[a:b]
            oracle = [{"doc_id": ex.doc_id, "start": a + s.start, "end": a + s.end,
                       "text": s.text} for s in split_sentences(ex.doc_id, paragraph)]
            buffer, timings = assistant.prepare(ex.question)
            sentences = [{"doc_id": s.doc_id, "start": s.start, "end": s.end, "text": s.text}
                         for p in buffer.passages for s in p.sentences]
            passages = [{"doc_id": p.doc_id, "start": p.start, "end": p.end,
                         "text": docs[p.doc_id].text[p.start:p.end]} for p in buffer.passages]
            out.append({"qid": ex.qid, "question": ex.question, "answers": list(ex.answers),
                        "doc_id": ex.doc_id, "spans": [list(s) for s in ex.spans],
                        "oracle": oracle, "sentences": sentences, "passages": passages,
                        "retrieve_s": timings.retrieve_s, "fill_s": timings.fill_s})
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"index": info.to_dict(), "questions": out}), "utf-8")
    return out


def evaluate(head: SpanHead, records: list[dict[str, Any]], setting: str, top_n: int,
             max_tokens: int) -> dict[str, Any]:
    rows = []
    for r in records:
        units = r[setting]
        texts = [u["text"] for u in units]
        t0 = time.perf_counter()
        found = head.spans(r["question"], texts, top_n=top_n, max_tokens=max_tokens)
        seconds = time.perf_counter() - t0
        pred = found[0].text if found else ""
        located = False
        if found:
            u = units[found[0].text_index]
            assert texts[found[0].text_index][found[0].start:found[0].end] == pred
            s, e = u["start"] + found[0].start, u["start"] + found[0].end
            located = u["doc_id"] == r["doc_id"] and any(s < ge and gs < e
                                                         for gs, ge in r["spans"])
        rows.append({"qid": r["qid"], "prediction": pred,
                     "score": found[0].score if found else None,
                     "no_answer": found[0].no_answer if found else None,
                     "em": exact_match(pred, r["answers"]), "f1": token_f1(pred, r["answers"]),
                     "gold_in_answer": answer_in_text(pred, r["answers"]),
                     "gold_in_top_n": any(answer_in_text(f.text, r["answers"]) for f in found),
                     "located": located, "texts": len(texts),
                     "evidence_has_gold": any(answer_in_text(t, r["answers"]) for t in texts),
                     "head_s": seconds})
    n = len(rows)
    mean = {k: sum(float(x[k]) for x in rows) / n for k in
            ("em", "f1", "gold_in_answer", "gold_in_top_n", "located", "evidence_has_gold",
             "texts")}
    times = sorted(x["head_s"] for x in rows)
    return {"setting": setting, "questions": n, **{k: round(v, 4) for k, v in mean.items()},
            "head_ms_p50": round(1000 * statistics.median(times), 1),
            "head_ms_p95": round(1000 * times[int(0.95 * (n - 1))], 1),
            "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    cfg = report["head"]
    lines = [
        "# Span head on SQuAD v1.1 dev, first 500 questions",
        "",
        f"- head: `{cfg['variant']}` ({cfg['head']['parameters']:,} parameters) on frozen "
        f"`{cfg['encoder']['model']}` layers {cfg['encoder']['layers']}, "
        f"trained on {cfg['training']['train_questions']:,} questions after the first 1,000",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine']}",
        f"- decoding: top span of at most {report['max_tokens']} tokens; "
        f"gold-in-top-{report['top_n']} also shown",
        "",
        "| setting | EM | F1 | gold in answer | gold in top-5 | located | evidence has gold "
        "| texts/q | head ms p50 | p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['setting']} | {r['em']:.3f} | {r['f1']:.3f} | "
                     f"{r['gold_in_answer']:.3f} | {r['gold_in_top_n']:.3f} | "
                     f"{r['located']:.3f} | {r['evidence_has_gold']:.3f} | {r['texts']:.1f} | "
                     f"{r['head_ms_p50']:.0f} | {r['head_ms_p95']:.0f} |")
    lines += ["", "Validation and the variants that lost: `eval/reports/span-head-training.json` "
              "(summarised in `eval/reports/span-head.md` below).", ""]
    lines += report.get("training_table", [])
    return "\n".join(lines) + "\n"


def training_table(path: Path) -> list[str]:
    if not path.is_file():
        return []
    runs = json.loads(path.read_text("utf-8"))["runs"]
    lines = ["## Variants on the validation split (held-out articles)", "",
             "| variant | params | train q | val EM | val F1 | val oracle F1 | "
             "val-200 F1 | encode ms/q |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['variant']} | {r['parameters']:,} | {r['train_questions']} | "
                     f"{r['val']['em']:.3f} | {r['val']['f1']:.3f} | "
                     f"{r['val']['oracle_f1']:.3f} | {r['val_small']['f1']:.3f} | "
                     f"{r['encode_ms_per_question']:.0f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--head", type=Path, default=DEFAULT_HEAD)
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/spanhead"))
    ap.add_argument("--settings", default="oracle,sentences,passages")
    ap.add_argument("--top-n", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "eval/reports/span-head")
    args = ap.parse_args()

    import torch

    records = contexts(args.limit, args.cache)
    head = SpanHead(args.head)
    head.spans("warm up", ["The model loads here."])
    results = []
    for setting in args.settings.split(","):
        result = evaluate(head, records, setting, args.top_n, args.max_tokens)
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
        results.append(result)
    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                   f"{torch.get_num_threads()}, shared with other jobs; {platform.platform()}",
        "head": head.config, "top_n": args.top_n, "max_tokens": args.max_tokens,
        "results": results,
    }
    report["training_table"] = training_table(ROOT / "eval/reports/span-head-training.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
