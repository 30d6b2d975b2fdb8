"""Research bench for extractive answering (not shipped): candidates, scorers, metrics."""
from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragmem.evaluation.metrics import exact_match, normalize_answer, token_f1

CACHE = Path("/work/cache/answering")

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD = re.compile(rf"[{CJK}]|[^\W{CJK}]+(?:[-'’.,/:][^\W{CJK}]+)*|[^\w\s]", re.UNICODE)

STOP = set("""a an the of in on at to for from by with and or but as is are was were be been
being that this these those which who whom whose what when where why how it its their his her
they he she we you i than then there here into onto over under about after before during
while if so not no do does did has have had will would can could should may might must also
such other each some any all most more many much one both either neither very just only own
same too s t""".split())


def load(split: str, n: int | None = None) -> list[dict]:
    rows = [json.loads(l) for l in (CACHE / f"{split}.jsonl").open()]
    return rows[:n] if n else rows


def words(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]


def content(text: str) -> list[str]:
    return [w.lower() for _, _, w in words(text) if w.lower() not in STOP and w[0].isalnum()]


@dataclass
class Cand:
    p: int  # passage index
    s: int  # sentence index within passage
    start: int  # doc char offsets
    end: int
    text: str
    score: float = 0.0


def sentences(rec: dict):
    for pi, p in enumerate(rec["passages"]):
        for si, (idx, st, en, text) in enumerate(p["sentences"]):
            yield pi, si, st, text


def gold_sentence(rec: dict, pi: int, si: int) -> bool:
    p = rec["passages"][pi]
    if p["doc_id"] != rec["doc_id"]:
        return False
    _, st, en, _ = p["sentences"][si]
    return any(st <= a and b <= en for a, b in rec["spans"])


def score_answer(rec: dict, pred: Cand | None) -> dict:
    if pred is None:
        return {"em": 0.0, "f1": 0.0, "gold_in": False, "cite": False, "abstain": True}
    text = pred.text
    p = rec["passages"][pred.p]
    _, st, en, _ = p["sentences"][pred.s]
    cite = p["doc_id"] == rec["doc_id"] and any(st <= a and b <= en or (a < pred.end and pred.start < b)
                                                  for a, b in rec["spans"])
    norm = normalize_answer(text)
    gold_in = any(normalize_answer(g) in norm for g in rec["answers"] if normalize_answer(g))
    return {"em": exact_match(text, rec["answers"]), "f1": token_f1(text, rec["answers"]),
            "gold_in": gold_in, "cite": cite, "abstain": False}


def summarise(results: list[dict], secs: list[float] | None = None) -> dict:
    n = len(results)
    out = {k: round(sum(float(r[k]) for r in results) / n, 4) for k in ("em", "f1", "gold_in", "cite", "abstain")}
    if secs:
        out["p50_ms"] = round(1000 * float(np.median(secs)), 1)
    out["n"] = n
    return out


# -- LM scoring of copy spans with one prefill and per-start-position rows -------------

class LMScorer:
    def __init__(self, name: str = "SmolLM2-135M-Instruct", threads: int | None = None) -> None:
        import torch
        from ragmem.generation import load_generator

        if threads:
            torch.set_num_threads(threads)
        self.g = load_generator(name)
        self.model = self.g._loaded()
        self.tok = self.g._tokenizer
        self.end_id = self.tok.convert_tokens_to_ids("<|im_end|>")

    def prompt(self, question: str, context: str, instruction: str) -> str:
        return self.g.render(instruction, f"{context}\n\nQuestion: {question}")

    def score_starts(self, prompt: str, rows: list[str]):
        """For each row (text continuing the assistant turn), per-token logprobs, the
        logprob of <|im_end|> after each token, and token char-end offsets."""
        import torch
        from transformers import DynamicCache

        enc = self.tok(prompt, return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"]
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True)
            cache = out.past_key_values
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            toks = [self.tok(r, add_special_tokens=False, return_offsets_mapping=True) for r in rows]
            width = max(len(t["input_ids"]) for t in toks)
            n = len(rows)
            T = ids.shape[1]
            inp = torch.full((n, width), self.tok.pad_token_id or 0)
            mask = torch.zeros((n, T + width), dtype=torch.long)
            mask[:, :T] = 1
            for i, t in enumerate(toks):
                L = len(t["input_ids"])
                inp[i, :L] = torch.tensor(t["input_ids"])
                mask[i, T:T + L] = 1
            cache.batch_repeat_interleave(n)
            pos = torch.arange(T, T + width)[None].expand(n, -1)
            logits = self.model(input_ids=inp, attention_mask=mask, past_key_values=cache,
                                position_ids=pos).logits
            lp = torch.log_softmax(logits.float(), -1)
        res = []
        for i, t in enumerate(toks):
            L = len(t["input_ids"])
            tid = t["input_ids"]
            tok_lp = [float(first[tid[0]])] + [float(lp[i, j - 1, tid[j]]) for j in range(1, L)]
            end_lp = [float(lp[i, j, self.end_id]) for j in range(L)]
            ends = [e for _, e in t["offset_mapping"]]
            res.append((tok_lp, end_lp, ends))
        return res


# -- candidates ----------------------------------------------------------------------

OPEN = set("([\"'“‘$£€")
CLOSE = set(")]\"'”’%")
BREAK = set(".;:!?。；：！？")


def spans_of(text: str, max_words: int = 8) -> list[tuple[int, int]]:
    """Word spans (char offsets into text) that could be an answer: no stopword or
    punctuation at either edge (except brackets/currency/percent), no sentence break
    inside, at most max_words words."""
    ws = words(text)
    out = []
    n = len(ws)
    for i in range(n):
        wi = ws[i][2]
        if wi.lower() in STOP or (not wi[0].isalnum() and wi not in OPEN):
            continue
        count = 0
        for j in range(i, n):
            wj = ws[j][2]
            if wj in BREAK:
                break
            if wj[0].isalnum():
                count += 1
            if count > max_words:
                break
            if wj.lower() in STOP or (not wj[0].isalnum() and wj not in CLOSE):
                continue
            out.append((ws[i][0], ws[j][1]))
    return out


# -- question type and span shape ------------------------------------------------------

MONTHS = set("january february march april may june july august september october november december".split())
NUMWORDS = set("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion trillion half dozen first second third fourth fifth".split())
QTYPES = ("who", "when", "where", "how many", "how much", "what year", "why", "how", "which", "what", "other")


def qtype(question: str) -> str:
    q = question.lower()
    for t in ("how many", "how much", "what year", "when", "who", "whom", "whose", "where", "why", "how", "which", "what"):
        if re.search(rf"\b{t}\b", q):
            return {"whom": "who", "whose": "who"}.get(t, t)
    return "other"


def shape(span: str) -> dict[str, float]:
    ws = [w for _, _, w in words(span) if w[0].isalnum()]
    low = [w.lower() for w in ws]
    caps = sum(w[0].isupper() for w in ws)
    return {
        "n_words": len(ws),
        "all_caps": float(bool(ws) and caps == len(ws)),
        "some_caps": caps / max(1, len(ws)),
        "digit": float(any(any(c.isdigit() for c in w) for w in ws)),
        "year": float(any(re.fullmatch(r"1[0-9]{3}|20[0-9]{2}", w) for w in ws)),
        "month": float(any(w in MONTHS for w in low)),
        "numword": float(any(w in NUMWORDS for w in low)),
    }


# -- feature ranker ------------------------------------------------------------------------

SHAPES = ("all_caps", "some_caps", "digit", "year", "month", "numword")


def sentence_table(rec: dict):
    """Every working-memory sentence with lexical features (local IDF over the buffer)."""
    sents = list(sentences(rec))
    df: Counter = Counter()
    toks = []
    for pi, si, st, t in sents:
        c = set(content(t))
        toks.append(c)
        df.update(c)
    n = len(sents)
    q = set(content(rec["question"]))
    idf = {w: math.log(1 + n / df[w]) if df[w] else math.log(1 + n) for w in q}
    qmass = sum(idf.values()) or 1.0
    lex = []
    for i in range(n):
        lex.append(sum(idf[w] for w in q & toks[i]) / qmass)
    # neighbour-aware: the previous sentence of the same passage
    prev = [lex[i - 1] if i > 0 and sents[i - 1][0] == sents[i][0] else 0.0 for i in range(n)]
    order = sorted(range(n), key=lambda i: (-lex[i], i))
    rank = {i: r for r, i in enumerate(order)}
    return sents, lex, prev, rank, q, idf


def span_features(rec, sents, lex, prev, rank, q, idf, i, a, b, text, qt, ws=None, pos=None):
    pi, si, st, _ = sents[i]
    span = text[a:b]
    sh = shape(span)
    sw = content(span)
    overlap = sum(1 for w in sw if w in q) / max(1, len(sw))
    if ws is None:
        ws = words(text)
        pos = [k for k, (x, y, w) in enumerate(ws) if w.lower() in q]
    first = next(k for k, (x, y, w) in enumerate(ws) if x >= a)
    last = max(k for k, (x, y, w) in enumerate(ws) if y <= b)
    dist = min([min(abs(k - first), abs(k - last)) for k in pos if k < first or k > last], default=30)
    left = ws[first - 1][2].lower() if first > 0 else ""
    right = ws[last + 1][2].lower() if last + 1 < len(ws) else ""
    f = {
        "lex": lex[i], "prev": prev[i], "rank0": float(rank[i] == 0), "rank1": float(rank[i] == 1),
        "rank2": float(rank[i] == 2), "prank": 1.0 / (1 + pi),
        "pscore": rec["passages"][pi]["score"],
        "n_words": min(sh["n_words"], 10) / 10, "w1": float(sh["n_words"] == 1),
        "w2": float(sh["n_words"] == 2), "w3": float(sh["n_words"] == 3),
        "long": float(sh["n_words"] > 5),
        "overlap": overlap, "nonew": float(overlap == 1.0),
        "dist": min(dist, 30) / 30, "adj": float(dist <= 1), "near3": float(dist <= 3),
        "comma_in": float("," in span), "paren_l": float(left == "("), "left_q": float(left in q),
        "right_q": float(right in q), "left_of": float(left in {"of", "by", "in", "at", "on", "from", "to"}),
        "left_the": float(left in {"the", "a", "an"}),
        "right_punct": float(right in {",", ".", ";", ")", ""}),
    }
    for s in SHAPES:
        f[s] = sh[s]
        for t in QTYPES:
            f[f"{t}*{s}"] = sh[s] * (qt == t)
    for t in QTYPES:
        f[f"{t}*n_words"] = f["n_words"] * (qt == t)
        f[f"{t}*w1"] = f["w1"] * (qt == t)
    return f


def candidates(rec: dict, top_sentences: int = 5, max_words: int = 8):
    sents, lex, prev, rank, q, idf = sentence_table(rec)
    qt = qtype(rec["question"])
    chosen = sorted(range(len(sents)), key=lambda i: rank[i])[:top_sentences]
    out = []
    for i in chosen:
        pi, si, st, text = sents[i]
        ws = words(text)
        pos = [k for k, (x, y, w) in enumerate(ws) if w.lower() in q]
        for a, b in spans_of(text, max_words):
            f = span_features(rec, sents, lex, prev, rank, q, idf, i, a, b, text, qt, ws, pos)
            out.append((Cand(pi, si, st + a, st + b, text[a:b]), f))
    return out
