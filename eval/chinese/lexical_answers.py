"""Chinese answers long-document with BM25 retrieval alone, no embedder: a stand-in for
the whole pipeline where building the dense index is too slow for the machine.

    python -m eval.chinese.lexical_answers ../shared/datasets/cmrc2018/cmrc2018_dev.json \
        --limit 1000 --out eval/reports/chinese/lexical-answers-dev-first1000

All the file's articles are chunked into windows as ragmem indexes them; each question
takes the best ``--top-k`` windows by BM25 (``ragmem.memory.lexical``'s form, jieba
words and bigrams), each window's sentences are one passage (no small-to-big widening,
no token budget), and ``ChineseSpans`` (``AnsweringConfig.chinese``: cues; ``sentence`` was removed
in 3406334) answers. Scored as ``ragmem eval qa`` scores a Chinese question: CMRC's character EM/F1,
the right article at 1 and 5, answers that cut a jieba word, abstention.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from ragmem.chinese import cuts_word
from ragmem.chinese_answers import ChineseSpans
from ragmem.config import AnsweringConfig, Config
from ragmem.embedding import token_counter
from ragmem.evaluation.datasets import load_squad
from ragmem.evaluation.metrics import answer_scores, span_hit
from ragmem.ingest import chunk
from ragmem.memory.lexical import lexical_form
from ragmem.types import Passage, Sentence

from .retrieval import Bm25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--options", default="cues")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    t_start = time.perf_counter()
    data = load_squad(args.file)
    examples = data.examples[:args.limit]
    config = Config()
    count = token_counter(config.embedder)
    windows: list[tuple[str, tuple[Sentence, ...]]] = []
    for d in data.documents:
        sentences, found = chunk(d, count, config.chunking)
        for w in found:
            windows.append((d.doc_id, tuple(sentences[w.first:w.last + 1])))
    bm25 = Bm25([" ".join(s.text for s in ss) for _, ss in windows], lexical_form)
    rows = {}
    for option in args.options.split(","):
        finder = ChineseSpans(AnsweringConfig(chinese=option))  # type: ignore[arg-type]
        em = f1 = abstained = cut = art1 = art5 = evidence = 0.0
        t0 = time.perf_counter()
        for ex in examples:
            hits = bm25.search(ex.question, args.top_k)
            docs = list(dict.fromkeys(windows[i][0] for i, _ in hits))
            art1 += ex.doc_id in docs[:1]
            art5 += ex.doc_id in docs[:5]
            passages = [Passage(windows[i][0], windows[i][0], windows[i][1][0].start,
                                windows[i][1][-1].end, score, windows[i][1])
                        for i, score in hits]
            evidence += any(span_hit(p.doc_id, p.start, p.end, ex.doc_id, ex.spans)
                            for p in passages)
            spans = finder.read(ex.question, passages)
            if not spans or spans[0].probability < finder.abstain_below:
                abstained += 1
                prediction = ""
            else:
                best = spans[0]
                prediction = best.text
                s = best.sentence
                cut += cuts_word(s.text, best.start - s.start, best.end - s.start)
            e, f = answer_scores(ex.question, prediction, ex.references or ex.answers)
            em += e
            f1 += f
        n = len(examples)
        rows[option] = {"questions": n, "em": em / n, "f1": f1 / n, "abstained": abstained / n,
                        "answers_cutting_a_word": cut, "article@1": art1 / n,
                        "article@5": art5 / n, "evidence_in_passages": evidence / n,
                        "s_per_question": (time.perf_counter() - t0) / n}
        print(option, json.dumps(rows[option]), flush=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["python -m eval.chinese.lexical_answers", *sys.argv[1:]])
    report = {"command": command, "machine": f"{platform.platform()}; {uptime}",
              "dataset": {"name": data.name, "sha256": data.sha256,
                          "articles": len(data.documents), "windows": len(windows),
                          "notes": data.notes()},
              "top_k": args.top_k, "results": rows,
              "seconds": round(time.perf_counter() - t_start, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    lines = [f"# Chinese answers, {data.name} long-document, BM25 retrieval alone "
             f"({len(data.documents)} articles, {len(windows)} windows in one index)", "",
             f"- command: `{command}`", f"- machine: {report['machine']}",
             *[f"- note: {n}" for n in data.notes()], "",
             "| option | questions | EM (char) | F1 (char) | abstained | answers cutting a word "
             "| article@1 | article@5 | evidence in passages | s/question |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {o} | {r['questions']} | {r['em']:.3f} | {r['f1']:.3f} | {r['abstained']:.3f}"
              f" | {r['answers_cutting_a_word']:.0f} | {r['article@1']:.3f} | "
              f"{r['article@5']:.3f} | {r['evidence_in_passages']:.3f} | "
              f"{r['s_per_question']:.2f} |" for o, r in rows.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
