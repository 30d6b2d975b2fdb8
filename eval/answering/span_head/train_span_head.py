"""Train the span head of ``span_head.py`` (beside it) on frozen encoder states, and ship the best.

    python eval/answering/train_span_head.py                 # everything, cached steps skipped
    python eval/answering/train_span_head.py --encoders minilm --train-questions 2500

Data (SQuAD v1.1 dev, questions in file order): the first 1,000 questions are never used
(the first 500 are the reported test); training starts at the first article that begins
after question 1,000, so no test article is trained on. Of those articles every
``VAL_EVERY``-th is held out for validation. Each question becomes a *group*: the gold
paragraph's sentences plus ``--negatives`` sentences of other paragraphs of the same
article, each encoded as its own ``question [SEP] sentence`` pair, as at inference the
head sees several retrieved sentences, most without the answer.

Steps, each cached under ``--cache`` (default /work/cache/spanhead, never the repo):
1. extract: frozen token states of every group (fp16, chunks of 100 questions);
2. train: each variant (layers, question-interaction rank) with Adam on the cached states,
   loss = shared-normalised start/end over the group + per-sentence "no answer" ([CLS]);
3. validate: EM / F1 of the top span over each validation group, decoded by
   ``span_head.decode`` (the inference code), and encoder ms per question;
4. ship: the variant with the best validation F1 -> ragmem/data/span_head/minilm.{npz,json}
   (only when the winner reads the MiniLM encoder, unless --ship-any).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from span_head import (  # noqa: E402
    FORMAT_VERSION,
    HEAD_DIR,
    EncodedWindow,
    make_encoder,
    question_overlap,
    rms_normalise,
    score_windows,
    valid_tokens,
)

from ragmem.chunking import split_sentences  # noqa: E402
from ragmem.evaluation.metrics import answer_in_text, exact_match, token_f1  # noqa: E402

SQUAD = Path("/work/shared/datasets/squad_v1.1_dev/dev-v1.1.json")
NEVER_TRAIN = 1000  # the first 1,000 questions: the first 500 are the reported test
VAL_EVERY = 6  # every 6th training-pool article is held out for validation

ENCODERS: dict[str, dict[str, Any]] = {
    # layer 0 is the embedding output; hidden_states[k] for k in layers
    "minilm": {"kind": "pair", "model": "all-MiniLM-L6-v2", "layers": [0, 1, 2, 3, 4, 5, 6],
               "max_length": 256, "stride": 64, "chunk": 100},
    "smollm2": {"kind": "prefix", "model": "SmolLM2-135M-Instruct",
                "layers": [6, 12, 16, 20, 24, 27, 30], "max_length": 384, "stride": 64,
                "chunk": 50},
}


@dataclass(frozen=True)
class Variant:
    name: str
    encoder: str
    layers: tuple[int, ...]  # positions in ENCODERS[encoder]["layers"]
    rank: int  # of the question-token interaction; 0: none
    context: bool = False  # the interaction of the neighbouring tokens counts too
    overlap: bool = False  # a weight for "this token's word is in the question"


VARIANTS = [
    Variant("minilm-last-linear", "minilm", (6,), 0),
    Variant("minilm-mix-linear", "minilm", tuple(range(7)), 0),
    Variant("minilm-last-lowrank8", "minilm", (6,), 8),
    Variant("minilm-mix-lowrank8", "minilm", tuple(range(7)), 8),
    Variant("minilm-mix-lowrank8-ctx", "minilm", tuple(range(7)), 8, context=True),
    Variant("minilm-mix-lowrank8-ctx-overlap", "minilm", tuple(range(7)), 8, context=True,
            overlap=True),
    Variant("minilm-mix-lowrank12-ctx-overlap", "minilm", tuple(range(7)), 12, context=True,
            overlap=True),
    Variant("smollm2-last-linear", "smollm2", (6,), 0),
    Variant("smollm2-mix-linear", "smollm2", tuple(range(7)), 0),
    Variant("smollm2-mix-lowrank8", "smollm2", tuple(range(7)), 8),
]


# -- data ------------------------------------------------------------------------------


def load_questions(path: Path) -> tuple[list[dict[str, Any]], list[list[list[str]]]]:
    """Questions in file order, and each article's paragraphs as lists of sentences."""
    data = json.loads(path.read_text("utf-8"))["data"]
    questions, articles = [], []
    for a, article in enumerate(data):
        paragraphs = []
        for p, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            sentences = split_sentences("p", context)
            paragraphs.append([s.text for s in sentences])
            for qa in paragraph["qas"]:
                first = qa["answers"][0]
                a0 = int(first["answer_start"])
                a1 = a0 + len(first["text"])
                # The sentence holding the first answer, and the answer's offsets in it.
                where = [(k, s) for k, s in enumerate(sentences) if s.start <= a0 and a1 <= s.end]
                questions.append({
                    "index": len(questions), "qid": qa["id"], "article": a, "paragraph": p,
                    "question": qa["question"], "answers": [x["text"] for x in qa["answers"]],
                    "sentence": where[0][0] if where else -1,
                    "span": [a0 - where[0][1].start, a1 - where[0][1].start] if where else None,
                })
        articles.append(paragraphs)
    return questions, articles


def splits(questions: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Article ids for training and validation: only articles wholly after question 1,000."""
    first = {}
    for q in questions:
        first.setdefault(q["article"], q["index"])
    pool = sorted(a for a, i in first.items() if i >= NEVER_TRAIN)
    val = [a for k, a in enumerate(pool) if k % VAL_EVERY == VAL_EVERY // 2]
    return [a for a in pool if a not in val], val


def pick(questions: list[dict[str, Any]], articles: list[int], n: int, seed: int
         ) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` questions answerable within one sentence, in sampled order
    (so that any prefix of it is a sample too: smaller runs take the first chunks)."""
    keep = set(articles)
    pool = [q for q in questions if q["article"] in keep and q["sentence"] >= 0]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def group(q: dict[str, Any], articles: list[list[list[str]]], negatives: int
          ) -> tuple[list[str], int, int]:
    """The texts the head sees for ``q`` and which one holds the answer: the gold
    paragraph's sentences, then ``negatives`` sentences of the article's other paragraphs."""
    paragraphs = articles[q["article"]]
    texts = list(paragraphs[q["paragraph"]])
    others = [s for p, sents in enumerate(paragraphs) if p != q["paragraph"] for s in sents]
    rng = random.Random(zlib.crc32(q["qid"].encode()))
    own = len(texts)
    texts += rng.sample(others, min(negatives, len(others)))
    return texts, q["sentence"], own


# -- feature cache -----------------------------------------------------------------------


def extract(name: str, split: str, chosen: list[dict[str, Any]],
            articles: list[list[list[str]]], negatives: int, cache: Path) -> Path:
    """Encode every group (skipping finished chunks); returns the folder of chunks."""
    # Samples are prefixes of one seeded shuffle, so a larger run extends a smaller one.
    folder = cache / f"{name}-{split}-neg{negatives}"
    folder.mkdir(parents=True, exist_ok=True)
    encoder = make_encoder(ENCODERS[name])
    size = ENCODERS[name]["chunk"]
    for c in range(0, len(chosen), size):
        out = folder / f"chunk-{c // size:04d}"
        if (out / "meta.json").is_file():
            continue
        batch = chosen[c:c + size]
        groups = [group(q, articles, negatives) for q in batch]
        pairs = [(q["question"], t) for q, (texts, _, _) in zip(batch, groups, strict=True)
                 for t in texts]
        t0 = time.perf_counter()
        windows = encoder.encode(pairs)
        seconds = time.perf_counter() - t0
        save_chunk(out, batch, groups, windows)
        meta = {"questions": len(batch), "pairs": len(pairs), "encode_s": seconds,
                "tokens": int(sum(len(w.offsets) for w in windows)),
                "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None}
        (out / "meta.json").write_text(json.dumps(meta))
        print(f"{name} {split} chunk {c // size}: {len(batch)} questions, "
              f"{seconds:.0f} s ({1000 * seconds / len(batch):.0f} ms/question)", flush=True)
    return folder


def save_chunk(out: Path, batch: list[dict[str, Any]],
               groups: list[tuple[list[str], int, int]],
               windows: list[EncodedWindow]) -> None:
    """Windows of one chunk, in pair order, as flat token arrays and per-window indices."""
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for texts, _, _ in groups for t in texts]
    pair_group = [g for g, (texts, _, _) in enumerate(groups) for _ in texts]
    pair_gold = [k == gold for texts, gold, _ in groups for k in range(len(texts))]
    spans = [batch[g]["span"] for g in pair_group]
    windows = sorted(windows, key=lambda w: w.pair_index)  # stable: windows stay in order
    win_pair, win_null, win_start, targets = [], [], [0], []
    vs_all, ve_all, q_all, off_all = [], [], [], []
    for w in windows:
        text = texts[w.pair_index]
        vs, ve = valid_tokens(text, w.offsets)
        target = (-1, -1)
        if pair_gold[w.pair_index]:
            a0, a1 = spans[w.pair_index]
            on = w.offsets[:, 0] >= 0
            s = np.flatnonzero(on & (w.offsets[:, 0] <= a0) & (w.offsets[:, 1] > a0))
            e = np.flatnonzero(on & (w.offsets[:, 0] < a1) & (w.offsets[:, 1] >= a1))
            if s.size and e.size and vs[s[0]] and ve[e[0]]:
                target = (int(s[0]), int(e[0]))
        win_pair.append(w.pair_index)
        win_null.append(w.null_index)
        win_start.append(win_start[-1] + len(w.offsets))
        targets.append(target)
        vs_all.append(vs)
        ve_all.append(ve)
        q_all.append(w.question)
        off_all.append(w.offsets)
    states = np.concatenate([w.states for w in windows]).astype(np.float16)
    np.save(out / "states.npy", states)
    np.savez(out / "index.npz", win_pair=np.array(win_pair), win_null=np.array(win_null),
             win_start=np.array(win_start), targets=np.array(targets),
             pair_group=np.array(pair_group), valid_start=np.concatenate(vs_all),
             valid_end=np.concatenate(ve_all), question=np.concatenate(q_all),
             offsets=np.concatenate(off_all))
    records = [{"qid": q["qid"], "question": q["question"], "answers": q["answers"],
                "texts": texts_, "gold": gold, "paragraph_sentences": own}
               for q, (texts_, gold, own) in zip(batch, groups, strict=True)]
    (out / "groups.json").write_text(json.dumps(records))


@dataclass
class Chunk:
    states: np.ndarray  # (tokens, layers, dim) fp16, memory-mapped
    idx: dict[str, np.ndarray]
    groups: list[dict[str, Any]]
    meta: dict[str, Any]
    overlap: np.ndarray  # (tokens,) float32: question_overlap of each token
    path: Path
    premixed: bool = False  # states are (tokens, 1, dim): rms-normalised and mixed already


def chunk_overlap(idx: dict[str, np.ndarray], groups: list[dict[str, Any]]) -> np.ndarray:
    texts = [(g["question"], t) for g in groups for t in g["texts"]]
    out = np.zeros(len(idx["offsets"]), dtype=np.float32)
    for w, pair in enumerate(idx["win_pair"]):
        t0, t1 = int(idx["win_start"][w]), int(idx["win_start"][w + 1])
        out[t0:t1] = question_overlap(*texts[pair], idx["offsets"][t0:t1])
    return out


def load_chunks(folder: Path, questions: int, size: int) -> list[Chunk]:
    chunks = []
    for out in sorted(folder.glob("chunk-*"))[:-(-questions // size)]:
        with np.load(out / "index.npz", allow_pickle=False) as z:
            idx = {k: z[k] for k in z.files}
        groups = json.loads((out / "groups.json").read_text())
        chunks.append(Chunk(np.load(out / "states.npy", mmap_mode="r"), idx, groups,
                            json.loads((out / "meta.json").read_text()),
                            chunk_overlap(idx, groups), out))
    return chunks


# -- training (torch) ------------------------------------------------------------------


def _segment_lse(values: Any, segments: Any, n: int) -> Any:
    import torch

    top = torch.full((n,), -1e30, dtype=values.dtype).scatter_reduce(
        0, segments, values, "amax", include_self=True)
    total = torch.zeros(n, dtype=values.dtype).index_add(0, segments,
                                                         torch.exp(values - top[segments]))
    return torch.log(total) + top


class Head:
    """The same maths as ``span_head.head_logits``, in torch, batched over windows."""

    def __init__(self, variant: Variant, dim: int, seed: int) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        rank = variant.rank
        self.params: dict[str, Any] = {
            "mix": torch.zeros(len(variant.layers)),
            "w": torch.zeros(2, dim),
            "b": torch.zeros(2),
            "U": torch.randn(2, dim, rank, generator=g) * dim ** -0.5,
            "V": torch.randn(2, dim, rank, generator=g) * dim ** -0.5,
        }
        if variant.context:  # starts at the plain bilinear form: offset 0 only
            self.params["C"] = torch.zeros(2, 3, rank)
            self.params["C"][:, 1] = 1.0
        if variant.overlap:
            self.params["o"] = torch.zeros(2)
        for p in self.params.values():
            p.requires_grad_()
        self.fixed_mix: Any = None  # set when the mix was learned earlier and is kept

    def parameters(self) -> list[Any]:
        return list(self.params.values())

    def size(self) -> int:
        fixed = 0 if self.fixed_mix is None else int(self.fixed_mix.numel())
        return fixed + sum(int(p.numel()) for p in self.parameters())

    def logits(self, b: dict[str, Any]) -> Any:
        import torch

        p = self.params
        states, question, token_win = b["states"], b["question"], b["token_win"]
        n_win = len(b["null"])
        if b.get("premixed"):
            h = states[:, 0]
        else:
            x = states * torch.rsqrt((states * states).mean(-1, keepdim=True) + 1e-6)
            h = torch.einsum("tld,l->td", x, torch.softmax(p["mix"], 0))
        out = h @ p["w"].T + p["b"]
        if p["U"].shape[-1] > 0:
            qsum = torch.zeros(n_win, h.shape[1]).index_add(0, token_win[question], h[question])
            count = torch.zeros(n_win).index_add(0, token_win[question],
                                                 torch.ones(int(question.sum())))
            q = (qsum / count.clamp(min=1)[:, None])[token_win]
            same = (token_win[1:] == token_win[:-1]).float()[:, None]
            zero = torch.zeros(1, p["U"].shape[-1])
            for k in range(2):
                z = (h @ p["U"][k]) * (q @ p["V"][k])
                if "C" in p:
                    prev = torch.cat([zero, z[:-1] * same])  # the token before, same window
                    nxt = torch.cat([z[1:] * same, zero])
                    term = prev @ p["C"][k, 0] + z @ p["C"][k, 1] + nxt @ p["C"][k, 2]
                else:
                    term = z.sum(-1)
                out[:, k] = out[:, k] + term
        if "o" in p:
            out = out + b["overlap"][:, None] * p["o"]
        return out  # (tokens, 2)

    def numpy(self) -> dict[str, np.ndarray]:
        out = {k: v.detach().numpy().astype(np.float32) for k, v in self.params.items()}
        if self.fixed_mix is not None:
            out["mix"] = self.fixed_mix.numpy().astype(np.float32)
        return out


def batch_tensors(chunk: Chunk, layers: tuple[int, ...], w0: int, w1: int) -> dict[str, Any]:
    """Windows ``w0 .. w1`` of a chunk as flat torch tensors."""
    import torch

    ix = chunk.idx
    t0, t1 = int(ix["win_start"][w0]), int(ix["win_start"][w1])
    lengths = np.diff(ix["win_start"][w0:w1 + 1])
    token_win = np.repeat(np.arange(w1 - w0), lengths)
    groups = ix["pair_group"][ix["win_pair"][w0:w1]]
    return {
        "states": torch.from_numpy(np.asarray(chunk.states[t0:t1][:, list(layers)],
                                              dtype=np.float32)),
        "question": torch.from_numpy(ix["question"][t0:t1]),
        "vs": torch.from_numpy(ix["valid_start"][t0:t1]),
        "ve": torch.from_numpy(ix["valid_end"][t0:t1]),
        "token_win": torch.from_numpy(token_win),
        "win_group": torch.from_numpy(groups - groups.min()),
        "null": torch.from_numpy(ix["win_start"][w0:w1] - t0 + ix["win_null"][w0:w1]),
        "targets": torch.from_numpy(ix["targets"][w0:w1]),
        "starts": torch.from_numpy(ix["win_start"][w0:w1] - t0),
        "overlap": torch.from_numpy(chunk.overlap[t0:t1]),
    }


def loss(head: Head, b: dict[str, Any], null_weight: float) -> Any:
    """Shared-normalised start/end NLL over each group, plus the per-window null NLL."""
    import torch

    n_win = len(b["null"])
    logits = head.logits(b)
    token_group = b["win_group"][b["token_win"]]
    n_group = int(b["win_group"].max()) + 1
    has = b["targets"][:, 0] >= 0
    gold_win = torch.nonzero(has).flatten()
    total = torch.zeros(())
    for k, valid in ((0, b["vs"]), (1, b["ve"])):
        lg = logits[:, k]
        # shared normalisation: every valid token of every window of the group
        lse = _segment_lse(lg[valid], token_group[valid], n_group)
        gold_tok = b["starts"][gold_win] + b["targets"][gold_win, k]
        groups = b["win_group"][gold_win]
        total = total + (lse[groups] - lg[gold_tok]).mean()
        # per window: its valid tokens and its null; the target is the null unless gold
        cand = valid.clone()
        cand[b["null"]] = True
        lse_w = _segment_lse(lg[cand], b["token_win"][cand], n_win)
        target = torch.where(has, b["starts"] + b["targets"][:, k].clamp(min=0), b["null"])
        total = total + null_weight * (lse_w - lg[target]).mean()
    return total


def premix(chunks: list[Chunk], layers: tuple[int, ...], mix: np.ndarray) -> list[Chunk]:
    """The chunks with their states mixed once by a fixed ``mix`` (cached beside them):
    training the rest of the head then reads one layer instead of seven."""
    weights = np.exp(mix - mix.max())
    weights /= weights.sum()
    key = zlib.crc32(np.asarray([*layers, *weights.round(6)], dtype=np.float64).tobytes())
    out = []
    for c in chunks:
        path = c.path / f"premix-{key:08x}.npy"
        if not path.is_file():
            mixed = np.zeros((len(c.states), 1, c.states.shape[-1]), dtype=np.float16)
            for a in range(0, len(c.states), 8192):
                x = rms_normalise(np.asarray(c.states[a:a + 8192][:, list(layers)],
                                             dtype=np.float32))
                mixed[a:a + 8192, 0] = np.einsum("tld,l->td", x, weights)
            np.save(path.with_suffix(".tmp.npy"), mixed)
            path.with_suffix(".tmp.npy").rename(path)
        out.append(Chunk(np.load(path, mmap_mode="r"), c.idx, c.groups, c.meta, c.overlap,
                         c.path, premixed=True))
    return out


def train(variant: Variant, chunks: list[Chunk], dim: int, epochs: int, lr: float,
          null_weight: float, seed: int, batch_groups: int = 16,
          mix: np.ndarray | None = None) -> tuple[Head, list[float]]:
    """Adam on the cached states; with ``mix``, the layer mix is fixed to it (the chunks
    are premixed) and the rest of the head is trained."""
    import torch

    torch.manual_seed(seed)
    head = Head(variant, dim, seed)
    if mix is not None:
        chunks = premix(chunks, variant.layers, mix)
        head.fixed_mix = torch.from_numpy(mix)
        del head.params["mix"]
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    steps_total = epochs * sum(int(np.ceil(len(c.groups) / batch_groups)) for c in chunks)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps_total,
                                                pct_start=0.1)
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        losses = []
        for c in rng.permutation(len(chunks)):
            chunk = chunks[c]
            win_group = chunk.idx["pair_group"][chunk.idx["win_pair"]]
            bounds = np.searchsorted(win_group, np.arange(len(chunk.groups) + 1))
            for g0 in rng.permutation(np.arange(0, len(chunk.groups), batch_groups)):
                g1 = min(g0 + batch_groups, len(chunk.groups))
                layers = (0,) if chunk.premixed else variant.layers
                b = batch_tensors(chunk, layers, int(bounds[g0]), int(bounds[g1]))
                b["premixed"] = chunk.premixed
                value = loss(head, b, null_weight)
                opt.zero_grad()
                value.backward()
                opt.step()
                sched.step()
                losses.append(float(value.detach()))
        history.append(float(np.mean(losses)))
    return head, history


# -- validation ------------------------------------------------------------------------


def windows_of(chunk: Chunk, layers: tuple[int, ...], g: int) -> list[EncodedWindow]:
    ix = chunk.idx
    out = []
    for w in np.flatnonzero(ix["pair_group"][ix["win_pair"]] == g):
        t0, t1 = int(ix["win_start"][w]), int(ix["win_start"][w + 1])
        first = int(np.flatnonzero(ix["pair_group"] == g)[0])
        out.append(EncodedWindow(int(ix["win_pair"][w]) - first,
                                 np.asarray(chunk.states[t0:t1][:, list(layers)],
                                            dtype=np.float32),
                                 ix["offsets"][t0:t1], ix["question"][t0:t1],
                                 int(ix["win_null"][w])))
    return out


def validate(weights: dict[str, np.ndarray], chunks: list[Chunk], layers: tuple[int, ...],
             max_tokens: int = 30) -> dict[str, float]:
    """EM / F1 / gold-in-answer of the top span over each group (the gold paragraph's
    sentences + negatives), and of the top span over the gold paragraph alone."""
    scores: dict[str, list[float]] = {k: [] for k in ("em", "f1", "gold_in", "oracle_em",
                                                      "oracle_f1", "right_sentence")}
    for chunk in chunks:
        for g, rec in enumerate(chunk.groups):
            windows = windows_of(chunk, layers, g)
            top = score_windows(weights, rec["question"], rec["texts"], windows, 1, max_tokens)
            pred = top[0].text if top else ""
            scores["em"].append(exact_match(pred, rec["answers"]))
            scores["f1"].append(token_f1(pred, rec["answers"]))
            scores["gold_in"].append(float(answer_in_text(pred, rec["answers"])))
            scores["right_sentence"].append(float(bool(top) and top[0].text_index == rec["gold"]))
            own = [w for w in windows if w.pair_index < rec["paragraph_sentences"]]
            top = score_windows(weights, rec["question"], rec["texts"], own, 1, max_tokens)
            pred = top[0].text if top else ""
            scores["oracle_em"].append(exact_match(pred, rec["answers"]))
            scores["oracle_f1"].append(token_f1(pred, rec["answers"]))
    return {k: float(np.mean(v)) for k, v in scores.items()}


# -- main ------------------------------------------------------------------------------


def ship(variant: Variant, weights: dict[str, np.ndarray], figures: dict[str, Any],
         out: Path) -> None:
    enc = ENCODERS[variant.encoder]
    config = {
        "format": FORMAT_VERSION,
        "variant": variant.name,
        "encoder": {**{k: v for k, v in enc.items() if k != "layers"},
                    "layers": [enc["layers"][k] for k in variant.layers]},
        "head": {"rank": variant.rank, "parameters": int(sum(w.size for w in weights.values()))},
        "training": figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out.with_suffix(".npz"), **weights)
    out.with_suffix(".json").write_text(json.dumps(config, indent=1) + "\n", "utf-8")
    print(f"shipped {variant.name} -> {out.with_suffix('.npz')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/spanhead"))
    ap.add_argument("--encoders", default="minilm,smollm2")
    ap.add_argument("--variants", default="", help="comma-separated names; default: all")
    ap.add_argument("--train-questions", type=int, default=2500)
    ap.add_argument("--val-questions", type=int, default=500)
    ap.add_argument("--small-train", type=int, default=200,
                    help="questions for the costly encoders (smollm2), and the MiniLM "
                         "comparison at the same size")
    ap.add_argument("--small-val", type=int, default=100)
    ap.add_argument("--full-variants",
                    default="minilm-mix-lowrank8,minilm-mix-lowrank8-ctx-overlap",
                    help="variants also trained on all --train-questions")
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--null-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--report", type=Path, default=ROOT / "eval/reports/span-head-training.json")
    ap.add_argument("--ship-to", type=Path, default=HEAD_DIR / "minilm")
    ap.add_argument("--no-ship", action="store_true")
    args = ap.parse_args(argv)

    import torch

    questions, articles = load_questions(args.squad)
    train_articles, val_articles = splits(questions)
    encoders = [e for e in args.encoders.split(",") if e]
    data: dict[str, dict[str, list[Chunk]]] = {}
    for name in encoders:
        small = name != "minilm"
        n_train = args.small_train if small else args.train_questions
        n_val = args.small_val if small else args.val_questions
        # Validation first: when time is short, fewer training questions still give a result.
        chosen = {"val": pick(questions, val_articles, n_val, args.seed + 1),
                  "train": pick(questions, train_articles, n_train, args.seed)}
        data[name] = {}
        for split, qs in chosen.items():
            folder = extract(name, split, qs, articles, args.negatives, args.cache)
            data[name][split] = load_chunks(folder, len(qs), ENCODERS[name]["chunk"])
    if args.extract_only:
        return 0

    wanted = set(filter(None, args.variants.split(",")))
    runs = []
    for variant in VARIANTS:
        if variant.encoder not in data or (wanted and variant.name not in wanted):
            continue
        train_chunks, val_chunks = data[variant.encoder]["train"], data[variant.encoder]["val"]
        size = ENCODERS[variant.encoder]["chunk"]
        small_val = val_chunks[:max(1, args.small_val // size)]
        dim = int(train_chunks[0].states.shape[-1])
        # Every variant at the small size, its layer mix learned too (a fair comparison
        # with the costly encoders); the promising ones then on all training questions,
        # with that mix kept (training reads one premixed layer instead of seven).
        plan: list[tuple[int, np.ndarray | None]] = [(max(1, args.small_train // size), None)]
        for n_chunks, mix in plan:
            t0 = time.perf_counter()
            head, history = train(variant, train_chunks[:n_chunks], dim, args.epochs, args.lr,
                                  args.null_weight, args.seed, mix=mix)
            train_s = time.perf_counter() - t0
            weights = head.numpy()
            run = {"variant": variant.name, "encoder": variant.encoder,
                   "layers": [ENCODERS[variant.encoder]["layers"][k] for k in variant.layers],
                   "rank": variant.rank, "context": variant.context,
                   "overlap": variant.overlap, "parameters": head.size(),
                   "train_questions": sum(len(c.groups) for c in train_chunks[:n_chunks]),
                   "mix": "learned" if mix is None else "kept from the small run",
                   "epochs": args.epochs, "loss_by_epoch": [round(x, 4) for x in history],
                   "train_s": round(train_s, 1),
                   "val_small": validate(weights, small_val, variant.layers),
                   "encode_ms_per_question": round(1000 * sum(c.meta["encode_s"] for c in
                                                              small_val)
                                                   / sum(c.meta["questions"] for c in
                                                         small_val), 1)}
            if mix is not None or variant.encoder == "minilm":
                run["val"] = validate(weights, val_chunks, variant.layers)
                run["val_questions"] = sum(len(c.groups) for c in val_chunks)
            print(json.dumps({k: run.get(k) for k in ("variant", "train_questions",
                                                      "parameters", "val", "val_small")}),
                  flush=True)
            runs.append((run, variant, weights))
            if (mix is None and variant.name in args.full_variants.split(",")
                    and len(train_chunks) > n_chunks):
                plan.append((len(train_chunks), weights["mix"]))

    most = max(r[0]["train_questions"] for r in runs)
    full = [r for r in runs if r[0]["train_questions"] == most and "val" in r[0]]
    best_run, best_variant, best_weights = max(full, key=lambda r: r[0]["val"]["f1"])
    report = {
        "command": "python " + " ".join([str(Path(sys.argv[0]))] + (argv or sys.argv[1:])),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                   f"{torch.get_num_threads()}, {platform.platform()}",
        "data": {"squad": str(args.squad), "never_trained": NEVER_TRAIN,
                 "train_articles": train_articles, "val_articles": val_articles,
                 "negatives_per_question": args.negatives, "seed": args.seed},
        "encoders": {k: ENCODERS[k] for k in encoders},
        "runs": [r for r, _, _ in runs],
        "winner": best_run["variant"],
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    print(f"winner {best_run['variant']}: val F1 {best_run['val']['f1']:.3f}")
    if not args.no_ship:
        figures = {k: best_run[k] for k in ("train_questions", "val_questions", "epochs",
                                             "val", "loss_by_epoch")}
        figures |= {"command": report["command"], "data": report["data"],
                    "lr": args.lr, "null_weight": args.null_weight}
        ship(best_variant, best_weights, figures, args.ship_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
