"""Where the demo's questions are lost: retrieval, sentence ranking or the span stage.

    ragmem index ragmem/demo/corpus --index demo
    python eval/answering/demo_diagnosis.py --index demo \\
        --out eval/reports/answer-stage-models/demo-diagnosis.json

A diagnosis, not a benchmark: ragmem/demo/questions.jsonl has 11 questions, too few to
tune on, and nothing is. Each question's ``evidence`` is the sentence that answers it.
For each retrieval setting it reports:

- the rank of the first window holding the evidence sentence, among the best 60;
- whether the evidence sentence reaches the working memory, and its rank among the
  extractor's evidence sentences (spans come from the best 5);
- whether a gold answer is among the 24 spans the first stage keeps;
- whether the answer, as ``ask`` prints it, holds a gold answer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ragmem import Assistant
from ragmem.answering import ExtractAnswerer
from ragmem.config import Config
from ragmem.extraction import EvidenceSentence, rank_sentences

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, dict[str, Any]] = {
    "hybrid (shipped)": {},
    "dense": {"retrieval": {"mode": "dense"}},
    "lexical (BM25)": {"retrieval": {"mode": "lexical"}},
    "hybrid, lexical weight 2": {"retrieval": {"lexical_weight": 2.0}},
    "hybrid, 10 windows, 4,096-token budget": {"retrieval": {"top_k": 10},
                                               "working_memory": {"token_budget": 4096}},
}


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def demo_questions() -> list[dict[str, Any]]:
    """ragmem/demo/questions.jsonl: question, answers, doc_id, evidence."""
    lines = (ROOT / "ragmem/demo/questions.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def evidence_rank(ranked: list[EvidenceSentence], q: dict[str, Any]) -> int | None:
    """Where ``q``'s evidence sentence is in ``ranked`` (None: not there)."""
    evidence = flat(q["evidence"])[:30]
    return next((i for i, e in enumerate(ranked) if evidence in flat(e.sentence.text)), None)


def diagnose(assistant: Assistant, q: dict[str, Any]) -> dict[str, Any]:
    answerer = assistant.answerer
    assert isinstance(answerer, ExtractAnswerer)
    evidence = flat(q["evidence"])[:30]
    golds = [g.lower() for g in q["answers"]]
    hits = assistant.retrieve(q["question"], top_k=60)
    window = next((i for i, h in enumerate(hits) if evidence in flat(h.text)), None)
    buffer = assistant.working_memory.fill(q["question"],
                                           assistant.retriever.passages(q["question"]))
    ranked = rank_sentences(q["question"], buffer.passages, answerer._dense(q["question"]),
                            answerer.config.dense_sentences)
    sentence = evidence_rank(ranked, q)
    kept, _ = answerer.first_stage(q["question"], buffer.passages)
    answer = answerer.answer(buffer)
    return {"question": q["question"], "evidence_window_rank": window,
            "evidence_sentence_rank": sentence,
            "gold_among_kept": any(c.text.lower() in golds for c in kept),
            "answer": answer.text, "confidence": round(answer.confidence or 0.0, 3),
            "gold_in_answer": any(g in answer.text.lower() for g in golds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default="demo")
    ap.add_argument("--out")
    args = ap.parse_args()
    questions = demo_questions()
    report: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "settings": {}}
    for name, overrides in SETTINGS.items():
        with Assistant.open(args.index, Config().with_overrides(overrides)) as assistant:
            rows = [diagnose(assistant, q) for q in questions]
        top5 = sum(r["evidence_window_rank"] is not None and r["evidence_window_rank"] < 5
                   for r in rows)
        summary = {"evidence_window_in_best_5": top5,
                   "evidence_sentence_in_best_5": sum(
                       r["evidence_sentence_rank"] is not None
                       and r["evidence_sentence_rank"] < 5 for r in rows),
                   "gold_among_kept": sum(r["gold_among_kept"] for r in rows),
                   "gold_in_answer": sum(r["gold_in_answer"] for r in rows),
                   "window_ranks": [r["evidence_window_rank"] for r in rows]}
        print(f"{name:40s} {json.dumps(summary)}", flush=True)
        report["settings"][name] = {"overrides": overrides, "summary": summary, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                  "utf-8")


if __name__ == "__main__":
    main()
