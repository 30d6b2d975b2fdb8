"""Every way of choosing the answer span, measured side by side on the same evidence.

    python eval/answering/options.py --rows ROWS.jsonl --absent ABSENT.jsonl \\
        --generated eval/reports/squad-dev-first100-answers/report.json \\
        --out eval/reports/answer-options-squad-dev-first500

ROWS: the default pipeline's working memory per question, as ``train_ranker.py``
caches it (``cache_working_memories``), here for SQuAD v1.1 dev questions 0-499 (the
reported test part; nothing was tuned on them). ABSENT: the same for questions asked of
the index with their own article filtered out. Each question's candidates and the
generator's log-probabilities are computed once; every option is a different choice
over the same numbers, so the differences are the options', not the machine's:

- ``features``: the first stage alone (no generator);
- ``lm-sum``/``lm-mean``: the generator's log-likelihood of the span as the whole
  answer (span tokens plus the end of the answer), summed or length-normalised;
- ``lm-greedy``/``lm-beam4``: copy-constrained decoding over the candidates' token
  trie, greedy or with 4 beams (the trie is the copy constraint: only spans of the
  evidence can be written);
- ``shipped``: the trained rescoring of first-stage score and likelihoods (the default),
  and ``shipped+abstain`` with the confidence threshold;
- ``snap``: the generate mode's free answer (from an earlier report) snapped to the
  evidence span that shares most tokens with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import passages_of  # noqa: E402

from ragmem.answering import ExtractAnswerer, lm_features  # noqa: E402
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.evaluation.metrics import (  # noqa: E402
    contains_gold,
    exact_match,
    normalize_answer,
    token_f1,
)
from ragmem.extraction import Candidate, rank_sentences, sentence_candidates  # noqa: E402


def beam(logprobs: list[np.ndarray | None], ids: list[list[int]], width: int) -> int | None:
    """Beam search over the candidates' token trie (each sequence ends with the end of
    the answer); returns the candidate the search ends on. Log-probabilities of a shared
    prefix are the same in every candidate that has it."""
    paths = [(i, seq, lp) for i, (seq, lp) in enumerate(zip(ids, logprobs, strict=True))
             if lp is not None]
    beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    while beams:
        grown: dict[tuple[int, ...], float] = {}
        done: list[tuple[float, int]] = []
        for score, prefix in beams:
            for i, seq, lp in paths:
                if tuple(seq[:len(prefix)]) != prefix or len(seq) <= len(prefix):
                    continue
                nxt = prefix + (seq[len(prefix)],)
                s = score + float(lp[len(prefix)])
                if len(nxt) == len(seq):
                    done.append((s, i))
                else:
                    grown[nxt] = s
        if done:  # a finished hypothesis that beats every live one ends the search
            best = max(done)
            if not grown or best[0] >= max(grown.values()):
                return best[1]
        beams = sorted(((s, p) for p, s in grown.items()), reverse=True)[:width]
    return None


def gold_in(text: str, golds: list[str]) -> bool:
    norm = normalize_answer(text)
    return bool(norm) and any(normalize_answer(g) in norm for g in golds if normalize_answer(g))


def span_right(c: Candidate | None, row: dict[str, Any], passages: list[Any]) -> bool:
    """The span's document is the question's and the span overlaps a gold answer's
    character offsets there."""
    if c is None:
        return False
    doc = passages[c.evidence.passage].doc_id
    return doc == row["doc_id"] and any(c.start < e and s < c.end for s, e in row["spans"])


def passage_right(c: Candidate | None, row: dict[str, Any], passages: list[Any]) -> bool:
    """The harness's citation accuracy: the cited passage holds an annotated gold span."""
    if c is None:
        return False
    return contains_gold([passages[c.evidence.passage]], row["doc_id"], row["spans"])


def judged(judge: ExtractAnswerer, kept: list[Any], features: list[dict[str, float]],
           row: dict[str, Any], passages: list[Any]) -> dict[str, float]:
    """What ``judge`` answers from these scored candidates, measured against the gold:
    abstained, EM, F1, gold in answer, cited span overlapping the annotated answer."""
    best = judge.ranked(kept, features)[0] if kept else None
    said = best is not None and best.confidence >= judge.abstain_below
    text = best.candidate.text if said and best else ""
    return {"abstained": float(not said),
            "em": float(exact_match(text, row["answers"])) if said else 0.0,
            "f1": token_f1(text, row["answers"]) if said else 0.0,
            "gold_in": float(gold_in(text, row["answers"])) if said else 0.0,
            "cite_span": float(span_right(best.candidate if said and best else None,
                                          row, passages)),
            "cite_passage": float(passage_right(best.candidate if said and best else None,
                                                row, passages))}


def judged_table(records: dict[str, dict[str, list[dict[str, float]]]]
                 ) -> dict[str, dict[str, float]]:
    """Per judge: means over answerable questions, and abstention where absent."""
    table = {}
    for name, rec in records.items():
        a, b = rec["answerable"], rec["absent"]
        table[name] = {m: round(statistics.fmean(x[m] for x in a), 4)
                       for m in ("em", "f1", "gold_in", "cite_span", "cite_passage", "abstained")
                       if m in a[0]}
        if "answer_s" in a[0]:
            table[name]["answer_stage_p50_s"] = round(
                statistics.median(x["answer_s"] for x in a), 3)
        if b:
            table[name]["absent_abstained"] = round(statistics.fmean(x["abstained"] for x in b), 4)
        print(name, json.dumps(table[name]), flush=True)
    return table


def paired_gain(before: Sequence[dict[str, float]], after: Sequence[dict[str, float]],
                key: str = "f1") -> dict[str, float]:
    """Mean per-question gain of ``after`` over ``before`` in ``key``, with its SE."""
    diff = [y[key] - x[key] for x, y in zip(before, after, strict=True)]
    return {"mean": round(statistics.fmean(diff), 4),
            "se": round(statistics.stdev(diff) / len(diff) ** 0.5, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--absent")
    ap.add_argument("--generated", help="a generate-mode report.json to snap")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from ragmem.embedding import SentenceTransformerEmbedder
    from ragmem.generation import load_generator

    cfg = Config()
    embedder = SentenceTransformerEmbedder(cfg.embedder.model)
    generator = load_generator(cfg.generator.model)
    config = AnsweringConfig(mode="extract")
    answerer = ExtractAnswerer(generator, config, embedder)
    first_only = ExtractAnswerer(None, config, embedder)
    generated = {}
    if args.generated:
        generated = {r["qid"]: r["answer"]
                     for r in json.loads(Path(args.generated).read_text())["questions"]}
    kinds = {"answerable": args.rows, **({"absent": args.absent} if args.absent else {})}
    records: dict[str, list[dict[str, Any]]] = {}
    started = time.time()
    for kind, path in kinds.items():
        rows = [json.loads(line) for line in open(path)][:args.limit]
        records[kind] = []
        for i, row in enumerate(rows):
            passages = passages_of(row)
            t0 = time.perf_counter()
            kept, firsts = first_only.rescore_features(row["question"], passages)
            t1 = time.perf_counter()
            scored = answerer.span_logprobs([row["question"]], kept)[0] if kept else []
            t2 = time.perf_counter()
            choice: dict[str, Candidate | None] = {}
            conf = None
            if kept:
                lps = [lp for lp, _, _ in scored]
                ns = [n for _, n, _ in scored]
                seqs = [ids for _, _, ids in scored]
                choice["features"] = kept[0]
                sums = [lp.sum() if lp is not None else -np.inf for lp in lps]
                means = [lp.mean() if lp is not None else -np.inf for lp in lps]
                choice["lm-sum"] = kept[int(np.argmax(sums))]
                choice["lm-mean"] = kept[int(np.argmax(means))]
                feats = [{**f, **lm_features(lp, n)} for f, lp, n in zip(firsts, lps, ns,
                                                                           strict=True)]
                best = answerer.ranked(kept, feats)[0]
                choice["shipped"] = best.candidate
                conf = best.confidence
            record: dict[str, Any] = {"qid": row["qid"], "confidence": conf,
                                      "first_stage_s": t1 - t0, "generator_s": t2 - t1}
            if kept:
                for width, name in ((1, "lm-greedy"), (4, "lm-beam4")):
                    j = beam(lps, seqs, width)
                    choice[name] = kept[j] if j is not None else None
            if row["qid"] in generated and kept:
                free = generated[row["qid"]]
                pool = [c for e in rank_sentences(row["question"], passages)
                        for c in sentence_candidates(row["question"], e,
                                                     config.max_span_words)]
                choice["snap"] = max(pool, key=lambda c: token_f1(c.text, [free])) \
                    if pool else None
                record["generated"] = {"answer": free, "em": exact_match(free, row["answers"]),
                                       "f1": token_f1(free, row["answers"]),
                                       "gold_in": gold_in(free, row["answers"])}
            for name, c in choice.items():
                text = c.text if c is not None else ""
                record[name] = {
                    "answer": text, "em": exact_match(text, row["answers"]) if kind ==
                    "answerable" else 0.0,
                    "f1": token_f1(text, row["answers"]) if kind == "answerable" else 0.0,
                    "gold_in": gold_in(text, row["answers"]) if kind == "answerable" else False,
                    "cite_span": span_right(c, row, passages) if kind == "answerable" else False,
                    "cite_passage": bool(c) and kind == "answerable" and any(
                        normalize_answer(g) in normalize_answer(passages[c.evidence.passage].text)
                        for g in row["answers"])}
            records[kind].append(record)
            if i % 25 == 0:
                print(f"{kind} {i}/{len(rows)} {time.time() - started:.0f} s",
                      file=sys.stderr, flush=True)
    report = summarise(records, answerer.abstain_below, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**report, "questions": records}, indent=1))
    (out / "summary.md").write_text(markdown(report))
    print(markdown(report))


def summarise(records: dict[str, list[dict[str, Any]]], threshold: float,
              args: argparse.Namespace) -> dict[str, Any]:
    rows = records["answerable"]
    names = [n for n in ("features", "lm-sum", "lm-mean", "lm-greedy", "lm-beam4", "shipped")
             if any(n in r for r in rows)]
    table = {}
    for name in names:
        table[name] = {m: statistics.fmean(float(r[name][m]) if name in r else 0.0
                                           for r in rows)
                       for m in ("em", "f1", "gold_in", "cite_span", "cite_passage")}
    first = [r["first_stage_s"] for r in rows]
    lm = [r["first_stage_s"] + r["generator_s"] for r in rows]
    for name in table:
        times = first if name == "features" else lm
        table[name]["latency_p50_s"] = statistics.median(times)
    # With abstention: an abstained answer scores 0 and cites nothing.
    keep = [r["confidence"] is not None and r["confidence"] >= threshold for r in rows]
    table["shipped+abstain"] = {
        m: statistics.fmean(float(r["shipped"][m]) if k and "shipped" in r else 0.0
                            for r, k in zip(rows, keep, strict=True))
        for m in ("em", "f1", "gold_in", "cite_span", "cite_passage")}
    table["shipped+abstain"]["latency_p50_s"] = statistics.median(lm)
    table["shipped+abstain"]["abstained_answerable"] = 1 - statistics.fmean(keep)
    # Citation accuracy among the answers given (abstentions cite nothing, claim nothing).
    given = [r for r, k in zip(rows, keep, strict=True) if k]
    table["shipped+abstain"]["cite_span_given"] = statistics.fmean(
        float(r["shipped"]["cite_span"]) for r in given) if given else 0.0
    out: dict[str, Any] = {"table": table, "threshold": threshold, "n": len(rows),
                           "command": " ".join(["python", *sys.argv]),
                           "machine": f"{platform.machine()} {platform.processor() or ''} "
                                      f"{__import__('os').cpu_count()} CPUs, no GPU",
                           "config": vars(AnsweringConfig(mode="extract"))}
    if "absent" in records:
        absent = records["absent"]
        out["absent"] = {"n": len(absent), "abstained": statistics.fmean(
            float(r["confidence"] is None or r["confidence"] < threshold) for r in absent)}
    snapped = [r for r in rows if "snap" in r]
    if snapped:
        out["snap"] = {"n": len(snapped), **{
            f"{name}_{m}": statistics.fmean(float(r[name][m]) for r in snapped)
            for name in ("snap", "shipped") for m in ("em", "f1", "gold_in", "cite_span")},
            **{f"generated_{m}": statistics.fmean(float(r["generated"][m]) for r in snapped)
               for m in ("em", "f1", "gold_in")}}
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Answer options, SQuAD v1.1 dev long-document, first {report['n']} questions",
             "", f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Abstention threshold (shipped, chosen on train questions): "
             f"{report['threshold']:.2f}", "",
             "| option | EM | F1 | gold in answer | citation (span) | citation (passage) "
             "| answer p50 s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["table"].items():
        lines.append(f"| {name} | {m['em']:.3f} | {m['f1']:.3f} | {m['gold_in']:.3f} | "
                     f"{m['cite_span']:.3f} | {m['cite_passage']:.3f} | "
                     f"{m['latency_p50_s']:.2f} |")
    if "absent" in report:
        a = report["absent"]
        s = report["table"]["shipped+abstain"]
        lines += ["", f"Questions whose article is not in the index ({a['n']}): abstained "
                  f"{a['abstained']:.3f}. Answerable questions abstained on: "
                  f"{s['abstained_answerable']:.3f}; F1 cost of abstaining: "
                  f"{report['table']['shipped']['f1'] - s['f1']:.3f}; citation (span) "
                  f"accuracy of the answers given: {s['cite_span_given']:.3f}."]
    if "snap" in report:
        s = report["snap"]
        lines += ["", f"The generate mode's free answers (same questions, from the report "
                  f"given): EM {s['generated_em']:.3f}, F1 {s['generated_f1']:.3f}, gold in "
                  f"answer {s['generated_gold_in']:.3f}."]
        lines += ["", f"Snapping the generate mode's free answer to the closest evidence span "
                  f"(first {s['n']} questions, answers from the generate report): EM "
                  f"{s['snap_em']:.3f}, F1 {s['snap_f1']:.3f}, gold in answer "
                  f"{s['snap_gold_in']:.3f}, citation (span) {s['snap_cite_span']:.3f}; the "
                  f"shipped extractor on the same questions: EM {s['shipped_em']:.3f}, F1 "
                  f"{s['shipped_f1']:.3f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
