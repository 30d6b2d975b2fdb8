"""Question + passages -> scored spans, by a trained extractive reader.

Each passage is read as ``[CLS] question [SEP] passage``, in overlapping pieces where it
is longer than the reader's length, all pieces of one question in one forward pass.
A piece's start and end logits are normalised over its own tokens and its [CLS]
position (the no-answer choice, trained on retrieved windows that do not hold the
answer), so a span's probability ``p_start * p_end`` means the same in every piece and
spans of different passages compare directly. Spans stay inside one sentence, and their
offsets are the document's: ``sentence.text`` is ``document.text[sentence.start:
sentence.end]``, so ``document.text[span.start:span.end] == span.text`` always holds.

    >>> reader = Reader(ReaderConfig())                          # doctest: +SKIP
    >>> reader.read("Who is Irene Adler?", passages)[0].text     # doctest: +SKIP
    'the woman'
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragmem.config import ReaderConfig
from ragmem.models import resolve
from ragmem.types import Passage, Sentence

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

    from ragmem.reader_model import SpanNet
    from ragmem.reader_schema import ReaderSchema

PACKAGED_WEIGHTS = Path(__file__).parent / "data" / "reader.safetensors"
QUESTION_TOKENS = 64  # a longer question is cut: the passage needs the room


@dataclass(frozen=True)
class ReadSpan:
    """A span the reader proposes: ``passage`` indexes the passages read; ``start`` and
    ``end`` are character offsets in that passage's document; ``probability`` is
    ``p_start * p_end`` in its piece, ``no_answer`` that piece's [CLS] probability."""

    passage: int
    sentence: Sentence
    start: int
    end: int
    text: str
    probability: float
    no_answer: float
    score: float = 0.0  # start + end logit: compares across pieces when trained shared


@dataclass(frozen=True)
class Context:
    """A passage as the reader sees it: its sentences joined by spaces, with where each
    sentence starts in the joined text."""

    text: str
    starts: tuple[int, ...]
    sentences: tuple[Sentence, ...]

    @classmethod
    def of(cls, sentences: Sequence[Sentence]) -> Context:
        starts, at = [], 0
        for s in sentences:
            starts.append(at)
            at += len(s.text) + 1
        return cls(" ".join(s.text for s in sentences), tuple(starts), tuple(sentences))

    def sentence_of(self, char: int) -> int:
        """Index of the sentence holding ``char`` of ``text`` (-1 on a joining space)."""
        i = bisect.bisect_right(self.starts, char) - 1
        return i if i >= 0 and char < self.starts[i] + len(self.sentences[i].text) else -1


def tokenizer_for(base_dir: str, max_length: int, stride: int) -> Tokenizer:
    """The base model's fast tokenizer, cutting only the passage, with overlap."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(base_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length, stride=stride, strategy="only_second")
    return tok


def encode(tok: Tokenizer, question: str, contexts: Sequence[str]) -> list[tuple[int, Encoding]]:
    """(context index, piece) for every piece of every context; the question is cut to
    ``QUESTION_TOKENS``."""
    q = tok.encode(question, add_special_tokens=False)
    if len(q.ids) > QUESTION_TOKENS:
        question = question[:q.offsets[QUESTION_TOKENS - 1][1]]
    out: list[tuple[int, Encoding]] = []
    for i, enc in enumerate(tok.encode_batch([(question, c) for c in contexts])):
        out.extend((i, piece) for piece in [enc, *enc.overflowing])
    return out


class Tokens(Protocol):
    """A tokenised piece: a tokenizers ``Encoding``, or a training example's."""

    @property
    def ids(self) -> list[int]: ...

    @property
    def type_ids(self) -> list[int]: ...


def batch_arrays(pieces: Sequence[Tokens]) -> dict[str, np.ndarray]:
    """Pad ``pieces`` to the longest: ids, attention mask and token types, int64."""
    width = max(len(p.ids) for p in pieces)
    arrays = {k: np.zeros((len(pieces), width), dtype=np.int64)
              for k in ("input_ids", "attention_mask", "token_type_ids")}
    for row, p in enumerate(pieces):
        n = len(p.ids)
        arrays["input_ids"][row, :n] = p.ids
        arrays["attention_mask"][row, :n] = 1
        arrays["token_type_ids"][row, :n] = p.type_ids
    return arrays


def context_mask(piece: Encoding, width: int) -> np.ndarray:
    """True where the token is the passage's (a span may start or end there)."""
    mask = np.zeros(width, dtype=bool)
    ids = piece.sequence_ids
    mask[:len(ids)] = [s == 1 for s in ids]
    return mask


def log_softmax_with_cls(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Log-probabilities over the passage's tokens and [CLS] (position 0); elsewhere
    -inf."""
    allowed = mask.copy()
    allowed[0] = True
    x = np.where(allowed, logits.astype(np.float64), -np.inf)
    return x - (x.max() + np.log(np.exp(x - x.max()).sum()))


class Reader:
    """The trained reader over the packaged MiniLM (see ``ragmem.reader_model``).
    The network loads on first use."""

    def __init__(self, config: ReaderConfig | None = None, *,
                 loaded: tuple[SpanNet, ReaderSchema] | None = None,
                 base_dir: str | None = None) -> None:
        """``loaded``: a network and schema in memory (training evaluates with it)."""
        self.config = config or ReaderConfig()
        if loaded is not None:
            self._loaded = loaded
        if base_dir is not None:
            self.base_dir = base_dir

    @cached_property
    def base_dir(self) -> str:
        return resolve(self.config.base_model, "embedder").path

    @cached_property
    def weights_path(self) -> Path:
        if not self.config.weights:
            return PACKAGED_WEIGHTS
        return Path(self.config.weights).expanduser()

    @cached_property
    def _loaded(self) -> tuple[SpanNet, ReaderSchema]:
        from ragmem.reader_model import load_reader

        return load_reader(self.base_dir, self.weights_path)

    @cached_property
    def _onnx(self) -> tuple[Any, ReaderSchema]:
        """The ONNX Runtime session and schema (``ragmem.reader_onnx``: no torch once the
        export is cached)."""
        import json

        from ragmem.reader_onnx import CHECK, onnx_folder, open_session
        from ragmem.reader_schema import ReaderSchema

        def sample(schema: ReaderSchema) -> dict[str, np.ndarray]:
            tok = tokenizer_for(self.base_dir, schema.max_length, schema.stride)
            return batch_arrays([p for _, p in encode(tok, CHECK[0], [CHECK[1], CHECK[1][:80]])])

        folder = onnx_folder(self.base_dir, self.weights_path, sample)
        schema = ReaderSchema(**json.loads((folder / "schema.json").read_text("utf-8")))
        return open_session(folder), schema

    @property
    def _uses_onnx(self) -> bool:
        return self.config.runtime == "onnx" and "_loaded" not in self.__dict__

    @property
    def schema(self) -> ReaderSchema:
        return self._onnx[1] if self._uses_onnx else self._loaded[1]

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_for(self.base_dir, self.schema.max_length, self.schema.stride)

    @property
    def abstain_below(self) -> float:
        threshold = self.config.abstain_below
        return self.schema.abstain_below if threshold is None else threshold

    def read(self, question: str, passages: Sequence[Passage]) -> list[ReadSpan]:
        """The best spans of ``passages`` for ``question``, most probable first."""
        contexts = [Context.of(p.sentences) for p in passages if p.sentences]
        index = [i for i, p in enumerate(passages) if p.sentences]
        if not contexts:
            return []
        pieces = encode(self.tokenizer, question, [c.text for c in contexts])
        starts, ends = self.logits([p for _, p in pieces])
        spans: list[ReadSpan] = []
        for row, (c, piece) in enumerate(pieces):
            spans.extend(self._spans(index[c], contexts[c], piece, starts[row], ends[row]))
        shared = self.schema.ranking == "shared"
        spans.sort(key=lambda s: -s.score if shared else -s.probability)
        return _distinct(spans)[:self.config.top_spans]

    def logits(self, pieces: Sequence[Encoding]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits of every piece, in batches of ``config.batch`` pieces."""
        width = max(len(p.ids) for p in pieces)
        starts = np.zeros((len(pieces), width), dtype=np.float32)
        ends = np.zeros_like(starts)
        for at in range(0, len(pieces), self.config.batch):
            part = pieces[at:at + self.config.batch]
            s, e = self._forward(batch_arrays(part))
            starts[at:at + len(part), :s.shape[1]] = s
            ends[at:at + len(part), :e.shape[1]] = e
        return starts, ends

    def _forward(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self._uses_onnx:
            from ragmem.reader_onnx import run

            return run(self._onnx[0], arrays)
        import torch

        with torch.inference_mode():
            s, e = self._loaded[0](**{k: torch.from_numpy(v) for k, v in arrays.items()})
        return s.numpy(), e.numpy()

    def _spans(self, passage: int, context: Context, piece: Encoding,
               start_logits: np.ndarray, end_logits: np.ndarray) -> list[ReadSpan]:
        mask = context_mask(piece, len(start_logits))
        ls = log_softmax_with_cls(start_logits, mask)
        le = log_softmax_with_cls(end_logits, mask)
        no_answer = float(np.exp(ls[0] + le[0]))
        n = self.config.candidates
        best_starts = [int(i) for i in np.argsort(-ls)[:n] if mask[i]]
        best_ends = [int(i) for i in np.argsort(-le)[:n] if mask[i]]
        offsets = piece.offsets
        out = []
        for i in best_starts:
            sentence = context.sentence_of(offsets[i][0])
            if sentence < 0:
                continue
            for j in best_ends:
                if j < i or j - i >= self.config.max_answer_tokens \
                        or context.sentence_of(offsets[j][1] - 1) != sentence:
                    continue
                s = context.sentences[sentence]
                a = offsets[i][0] - context.starts[sentence]
                b = offsets[j][1] - context.starts[sentence]
                out.append(ReadSpan(passage, s, s.start + a, s.start + b, s.text[a:b],
                                    float(np.exp(ls[i] + le[j])), no_answer,
                                    float(start_logits[i] + end_logits[j])))
        return out


def _distinct(spans: list[ReadSpan]) -> list[ReadSpan]:
    """The first of each place (overlapping pieces read the same tokens twice)."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for s in spans:
        key = (s.start, s.end, s.sentence.doc_id)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out
