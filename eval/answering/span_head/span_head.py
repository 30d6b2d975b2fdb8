"""Question + texts -> scored answer spans: a small trained head on a frozen encoder's tokens.

    >>> head = SpanHead()                                    # loads nothing yet
    >>> texts = ["The Time Machine is a novel by H. G. Wells, published in 1895."]
    >>> best = head.spans("Who wrote The Time Machine?", texts, top_n=1)[0]  # doctest: +SKIP
    >>> texts[best.text_index][best.start:best.end]                         # doctest: +SKIP
    'H. G. Wells'

The encoder (by default the embedder we already ship, all-MiniLM-L6-v2) reads each
``question [SEP] text`` pair and stays frozen; only the head was trained, on SQuAD v1.1 dev
questions after the first 1,000 (``eval/answering/train_span_head.py`` retrains it). The
head is a few thousand numbers, shipped as ``.npz`` (read with ``allow_pickle=False``) and
a JSON of its config beside it.

Per token it computes a start and an end logit from a learned mix of the encoder's layers,
plus a low-rank product with the question's mean state (the question's words decide
*which* tokens matter). A span's ``score`` is a log-probability normalised over every
candidate span of every text in the call ("shared normalisation", Clark & Gardner 2018),
so spans of different texts compare; ``no_answer`` is the log-probability, from that text
alone, that it holds no answer (the start and end fall on [CLS]) and serves abstention.

Spans start and end on word boundaries: never inside a run of letters or digits, but a
word's leading or trailing punctuation may be left out ("Wells," -> "Wells"). Chinese,
written without spaces, may break between any two characters.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.errors import ModelError
from ragmem.models import load_error, resolve

HEAD_DIR = Path(__file__).parent / "data" / "span_head"
DEFAULT_HEAD = HEAD_DIR / "minilm"  # minilm.json + minilm.npz
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScoredSpan:
    text_index: int  # which of the texts given
    start: int  # character offsets: texts[text_index][start:end] == text
    end: int
    text: str
    score: float  # log-probability among all spans of all texts of the call
    no_answer: float  # log-probability that texts[text_index] holds no answer


@dataclass(frozen=True)
class EncodedWindow:
    """One encoder input: the question and (a window of) one text, with its token states."""

    pair_index: int  # which (question, text) pair it came from
    states: np.ndarray  # float32 (tokens, layers, dim), the layers the head reads
    offsets: np.ndarray  # int64 (tokens, 2): character span in the text; -1 off the text
    question: np.ndarray  # bool (tokens,): the question's tokens
    null_index: int  # the token whose start and end logits mean "no answer here"


# -- word boundaries ---------------------------------------------------------------


_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(f"[^\\s{_CJK}]+")  # a run between spaces and CJK characters
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit


def word_boundaries(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a span may start and end: bool arrays of ``len(text) + 1`` positions.

    A position is a start when no letter or digit of the same whitespace-separated word
    lies before it (so ``"(AFC)"`` may start at ``A``, ``"1,000"`` not at the ``0``s);
    an end, likewise, when none lies after it. Around a CJK character both are allowed.

    ``word_boundaries("U.S. army")[1]`` -> ends allowed after ``U.S``, ``U.S.``, ``army``.
    """
    starts = np.zeros(len(text) + 1, dtype=bool)
    ends = np.zeros(len(text) + 1, dtype=bool)
    for m in _WORD.finditer(text):
        a, b = m.span()
        alnum = [x.start() for x in _ALNUM.finditer(text, a, b)]
        first, last = (alnum[0], alnum[-1] + 1) if alnum else (b - 1, a + 1)
        starts[a:first + 1] = True
        ends[last:b + 1] = True
    for m in _CJK_CHAR.finditer(text):
        starts[m.start()] = ends[m.end()] = True
    return starts, ends


def valid_tokens(text: str, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which tokens may start / end a span: text tokens whose edge is a word boundary."""
    starts, ends = word_boundaries(text)
    on_text = offsets[:, 0] >= 0
    a = np.where(on_text, offsets[:, 0], 0)
    b = np.where(on_text, offsets[:, 1], 0)
    return on_text & starts[a] & (b > a), on_text & ends[b] & (b > a)


# -- encoders ----------------------------------------------------------------------


class PairEncoder:
    """A BERT-style encoder reading ``[CLS] question [SEP] text [SEP]``; [CLS] is the null.

    Texts longer than ``max_length`` tokens are read in overlapping windows (``stride``
    tokens shared), each with the whole question.
    """

    def __init__(self, model: str, layers: Sequence[int], max_length: int = 256,
                 stride: int = 64, device: str | None = None, batch_size: int = 32) -> None:
        self.model_id, self.layers = model, tuple(layers)
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size
        self._device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                import torch
                from transformers import AutoModel, AutoTokenizer

                resolved = resolve(self.model_id, "embedder")
                try:
                    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
                    model = AutoModel.from_pretrained(resolved.path)
                except (OSError, ValueError) as error:
                    raise load_error(resolved, error) from error
                device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
                self._model, self._tokenizer = model.to(device).eval(), tokenizer
            return self._model, self._tokenizer

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedWindow]:
        model, tokenizer = self._loaded()
        if not pairs:
            return []
        enc = tokenizer([q for q, _ in pairs], [t for _, t in pairs], truncation="only_second",
                        max_length=self.max_length, stride=self.stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
        items = []
        for w, ids in enumerate(enc["input_ids"]):
            seq = np.array([-1 if s is None else s for s in enc.sequence_ids(w)])
            offsets = np.array(enc["offset_mapping"][w], dtype=np.int64).reshape(-1, 2)
            offsets[seq != 1] = -1
            items.append((int(enc["overflow_to_sample_mapping"][w]), ids,
                          enc["token_type_ids"][w], offsets, seq == 0))
        states = _run_batched(model, [(ids, types) for _, ids, types, _, _ in items],
                              self.layers, self.batch_size, pad_id=tokenizer.pad_token_id)
        return [EncodedWindow(p, s, o, q, 0)
                for (p, _, _, o, q), s in zip(items, states, strict=True)]


class PrefixEncoder:
    """A decoder-only model reading ``Question: q\\nText: text``: the question comes first,
    so every text token has seen it. The last token before the text is the null."""

    def __init__(self, model: str, layers: Sequence[int], max_length: int = 384,
                 stride: int = 64, device: str | None = None, batch_size: int = 16) -> None:
        self.model_id, self.layers = model, tuple(layers)
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size
        self._device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from ragmem.generation import load_generator

                generator = load_generator(self.model_id, device=self._device)
                self._model = generator._loaded()
                self._tokenizer = generator._tokenizer
            return self._model, self._tokenizer

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedWindow]:
        model, tokenizer = self._loaded()
        items = []
        for p, (question, text) in enumerate(pairs):
            q_ids = tokenizer("Question: " + question, add_special_tokens=False)["input_ids"]
            tail = tokenizer("\nText:", add_special_tokens=False)["input_ids"]
            t = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            t_offsets = _trim_spaces(text, np.array(t["offset_mapping"], dtype=np.int64))
            room = max(self.max_length - len(q_ids) - len(tail), 16)
            for a in _window_starts(len(t["input_ids"]), room, self.stride):
                ids = q_ids + tail + t["input_ids"][a:a + room]
                offsets = np.full((len(ids), 2), -1, dtype=np.int64)
                offsets[len(q_ids) + len(tail):] = t_offsets[a:a + room]
                asked = np.zeros(len(ids), dtype=bool)
                asked[:len(q_ids)] = True
                items.append((p, ids, offsets, asked, len(q_ids) + len(tail) - 1))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        states = _run_batched(model, [(ids, None) for _, ids, _, _, _ in items], self.layers,
                              self.batch_size, pad_id=pad)
        return [EncodedWindow(p, s, o, q, n)
                for (p, _, o, q, n), s in zip(items, states, strict=True)]


def _window_starts(n: int, room: int, stride: int) -> list[int]:
    """Starts of windows of ``room`` tokens covering ``n``, overlapping by ``stride``."""
    if n <= room:
        return [0]
    step = max(room - stride, 1)
    starts = list(range(0, n - room, step))
    return [*starts, n - room]


def _trim_spaces(text: str, offsets: np.ndarray) -> np.ndarray:
    """Byte-level BPE tokens carry their leading space; a span must not start with it."""
    out = offsets.copy()
    for k, (a, b) in enumerate(offsets):
        while a < b and text[a].isspace():
            a += 1
        out[k] = (a, b)
    return out


def _run_batched(model: Any, inputs: Sequence[tuple[list[int], list[int] | None]],
                 layers: Sequence[int], batch_size: int, pad_id: int) -> list[np.ndarray]:
    """Hidden states of ``layers`` per input, float32 (tokens, layers, dim); batches are
    formed by length so that little padding is computed."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i][0]))
    out: list[np.ndarray] = [np.empty(0)] * len(inputs)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            width = max(len(inputs[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            types = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                seq, tt = inputs[i]
                ids[r, :len(seq)] = torch.tensor(seq)
                mask[r, :len(seq)] = 1
                if tt is not None:
                    types[r, :len(seq)] = torch.tensor(tt)
            kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            if inputs[chunk[0]][1] is not None:
                kwargs["token_type_ids"] = types.to(device)
            hidden = model(**kwargs, output_hidden_states=True).hidden_states
            picked = torch.stack([hidden[k] for k in layers], dim=2).float().cpu().numpy()
            for r, i in enumerate(chunk):
                out[i] = picked[r, :len(inputs[i][0])]
    return out


# -- the head --------------------------------------------------------------------------


def rms_normalise(states: np.ndarray) -> np.ndarray:
    """Each token's state at each layer scaled to unit RMS: layers (and models) differ in
    scale by orders of magnitude, and the mix weights should not have to learn that."""
    return states / np.sqrt(np.mean(states * states, axis=-1, keepdims=True) + 1e-6)


def head_logits(weights: dict[str, np.ndarray], window: EncodedWindow,
                overlap: np.ndarray | None = None) -> np.ndarray:
    """Start and end logits, float32 (2, tokens), of one window.

    h = sum_l softmax(mix)_l * rms(H_l);  q = mean of h over the question's tokens;
    z_k = (h U_k) * (q V_k)   (tokens, rank): how each token's state meets the question's;
    logit_k = h . w_k + b_k + sum_o z_k[t + o] . C_k[o] + o_k * overlap   (k: start, end)

    ``C`` (neighbours -1, 0, +1: a start may depend on the next token) defaults to all
    ones at offset 0, i.e. the plain bilinear form; ``o`` weighs ``overlap``, whether the
    token's word occurs in the question (answers seldom repeat the question).
    """
    mix = np.exp(weights["mix"] - weights["mix"].max())
    h = np.einsum("tld,l->td", rms_normalise(window.states), mix / mix.sum())
    logits = h @ weights["w"].T + weights["b"]  # (tokens, 2)
    if weights["U"].shape[-1] > 0 and window.question.any():
        q = h[window.question].mean(axis=0)
        for k in range(2):
            z = (h @ weights["U"][k]) * (q @ weights["V"][k])
            if "C" in weights:
                c = weights["C"][k]
                padded = np.pad(z, ((1, 1), (0, 0)))
                logits[:, k] += padded[:-2] @ c[0] + z @ c[1] + padded[2:] @ c[2]
            else:
                logits[:, k] += z.sum(axis=1)
    if "o" in weights and overlap is not None:
        logits += overlap[:, None] * weights["o"]
    return logits.T.astype(np.float32)


_TERM = re.compile(f"[{_CJK}]|(?:(?![{_CJK}])[^\\W_])+")  # a CJK character or a word


def question_overlap(question: str, text: str, offsets: np.ndarray) -> np.ndarray:
    """float32 (tokens,): 1 where the token lies in a word (case-folded) of the question.

    ``question_overlap("Who wrote it?", "Wells wrote", [[0, 5], [6, 11]]) -> [0, 1]``
    """
    asked = {m.group().casefold() for m in _TERM.finditer(question)}
    out = np.zeros(len(offsets), dtype=np.float32)
    spans = [(m.start(), m.end(), m.group().casefold() in asked) for m in _TERM.finditer(text)]
    if not spans:
        return out
    ends = np.array([b for _, b, _ in spans])
    for t, a in enumerate(offsets[:, 0]):
        if a < 0:
            continue
        w = int(np.searchsorted(ends, a, side="right"))
        if w < len(spans) and spans[w][0] <= a and spans[w][2]:
            out[t] = 1.0
    return out


def _logsumexp(x: np.ndarray) -> float:
    if x.size == 0:
        return float("-inf")
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))


def decode(texts: Sequence[str], windows: Sequence[EncodedWindow],
           logits: Sequence[np.ndarray], top_n: int, max_tokens: int) -> list[ScoredSpan]:
    """The ``top_n`` best spans of at most ``max_tokens`` tokens over all windows, scored
    as log-probabilities normalised over all of them (one span per character range)."""
    valid = [valid_tokens(texts[w.pair_index], w.offsets) for w in windows]
    starts_all = [lg[0][v[0]] for lg, v in zip(logits, valid, strict=True)]
    ends_all = [lg[1][v[1]] for lg, v in zip(logits, valid, strict=True)]
    z_start = _logsumexp(np.concatenate(starts_all)) if starts_all else 0.0
    z_end = _logsumexp(np.concatenate(ends_all)) if ends_all else 0.0
    null: dict[int, float] = {}
    for w, lg, (vs, ve) in zip(windows, logits, valid, strict=True):
        n = w.null_index
        p_null = (lg[0][n] - _logsumexp(np.append(lg[0][vs], lg[0][n]))
                  + lg[1][n] - _logsumexp(np.append(lg[1][ve], lg[1][n])))
        # A text read in several windows has an answer if any window finds one.
        null[w.pair_index] = min(null.get(w.pair_index, 0.0), float(p_null))
    best: dict[tuple[int, int, int], float] = {}
    for w, lg, (vs, ve) in zip(windows, logits, valid, strict=True):
        si, ei = np.flatnonzero(vs), np.flatnonzero(ve)
        if si.size == 0 or ei.size == 0:
            continue
        pair = lg[0][si][:, None] + lg[1][ei][None, :]
        gap = ei[None, :] - si[:, None]
        pair = np.where((gap >= 0) & (gap < max_tokens), pair, -np.inf)
        k = min(top_n, int(np.isfinite(pair).sum()))
        if k == 0:
            continue
        flat = np.argpartition(-pair.ravel(), k - 1)[:k]
        for f in flat:
            r, c = divmod(int(f), pair.shape[1])
            key = (w.pair_index, int(w.offsets[si[r], 0]), int(w.offsets[ei[c], 1]))
            score = float(pair[r, c]) - z_start - z_end
            best[key] = max(best.get(key, -np.inf), score)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    return [ScoredSpan(i, a, b, texts[i][a:b], s, null[i]) for (i, a, b), s in ranked]


def score_windows(weights: dict[str, np.ndarray], question: str, texts: Sequence[str],
                  windows: Sequence[EncodedWindow], top_n: int, max_tokens: int
                  ) -> list[ScoredSpan]:
    """The head on encoded windows of ``texts``: logits, then :func:`decode`."""
    logits = [head_logits(weights, w,
                          question_overlap(question, texts[w.pair_index], w.offsets))
              for w in windows]
    return decode(texts, windows, logits, top_n, max_tokens)


class SpanHead:
    """The trained head and its frozen encoder, both loaded on first use."""

    def __init__(self, head: str | Path = DEFAULT_HEAD, device: str | None = None) -> None:
        self.path = Path(head)
        self._device = device
        self._config: dict[str, Any] | None = None
        self._weights: dict[str, np.ndarray] | None = None
        self._encoder: PairEncoder | PrefixEncoder | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> dict[str, Any]:
        return self._load()[0]

    def spans(self, question: str, texts: Sequence[str], top_n: int = 5,
              max_tokens: int = 30) -> list[ScoredSpan]:
        """The ``top_n`` most likely answer spans in ``texts``, best first; each at most
        ``max_tokens`` encoder tokens long, ``texts[i][start:end] == span.text``."""
        if top_n < 1 or max_tokens < 1:
            raise ValueError(f"top_n ({top_n}) and max_tokens ({max_tokens}) must be >= 1")
        _, weights, encoder = self._load()
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if not question.strip() or not keep:
            return []
        kept = [texts[i] for i in keep]
        windows = encoder.encode([(question, t) for t in kept])
        found = score_windows(weights, question, kept, windows, top_n, max_tokens)
        return [ScoredSpan(keep[s.text_index], s.start, s.end, s.text, s.score, s.no_answer)
                for s in found]

    def _load(self) -> tuple[dict[str, Any], dict[str, np.ndarray], PairEncoder | PrefixEncoder]:
        with self._lock:
            if self._config is None or self._weights is None or self._encoder is None:
                self._config, self._weights = load_head(self.path)
                self._encoder = make_encoder(self._config["encoder"], self._device)
            return self._config, self._weights, self._encoder


def load_head(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The config (``PATH.json``) and weights (``PATH.npz``, no pickle) of a trained head."""
    path = Path(path)
    json_path, npz_path = path.with_suffix(".json"), path.with_suffix(".npz")
    if not json_path.is_file() or not npz_path.is_file():
        raise ModelError(f"no span head at {path} (expected {json_path.name} and "
                         f"{npz_path.name}); retrain it with eval/answering/train_span_head.py")
    config = json.loads(json_path.read_text("utf-8"))
    if config.get("format") != FORMAT_VERSION:
        raise ModelError(f"span head {json_path} has format {config.get('format')}, this "
                         f"ragmem reads {FORMAT_VERSION}; retrain it or upgrade ragmem")
    with np.load(npz_path, allow_pickle=False) as data:
        weights = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
    missing = {"mix", "w", "b", "U", "V"} - set(weights)
    if missing:
        raise ModelError(f"span head {npz_path} lacks {', '.join(sorted(missing))}; "
                         "retrain it with eval/answering/train_span_head.py")
    return config, weights


def make_encoder(cfg: dict[str, Any], device: str | None = None) -> PairEncoder | PrefixEncoder:
    if cfg["kind"] == "pair":
        return PairEncoder(cfg["model"], cfg["layers"], max_length=cfg["max_length"],
                           stride=cfg["stride"], device=device)
    if cfg["kind"] == "prefix":
        return PrefixEncoder(cfg["model"], cfg["layers"], max_length=cfg["max_length"],
                             stride=cfg["stride"], device=device)
    raise ModelError(f"unknown span-head encoder kind {cfg['kind']!r}; valid: pair, prefix")
