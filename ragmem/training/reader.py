"""Train the extractive reader: ``python -m ragmem.training.reader``.

Fine-tunes the packaged all-MiniLM-L6-v2 with a start/end head on SQuAD v1.1 dev
questions after the first 1,000 (``ragmem.training.data``), with retrieved paragraphs
that do not hold the answer as no-answer examples. Deterministic under ``--seed`` on one
machine: the data order, the head's initialisation and dropout all come from it.

    python -m ragmem.training.reader train --squad ../shared/datasets/squad_v1.1_dev/dev-v1.1.json \
        --out ragmem/data/reader.safetensors
    python -m ragmem.training.reader compare --squad ... --questions 1000   # the options
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ragmem.config import ReaderConfig
from ragmem.evaluation.metrics import exact_match, token_f1
from ragmem.models import resolve
from ragmem.reader_model import (
    FORMAT,
    ReaderSchema,
    SpanNet,
    base_net,
    base_sha256,
    load_reader,
    save_reader,
)
from ragmem.reading import Reader, batch_arrays, encode, tokenizer_for
from ragmem.training import data
from ragmem.training.lora import add_lora, merge_lora
from ragmem.training.shared import Piece, group_batches, shared_loss


@dataclass(frozen=True)
class Settings:
    tuning: str = "full"  # "full" (embeddings frozen), "lora", or "topN" (the top N layers)
    max_length: int = 256
    stride: int = 96
    negatives: float = 1.0  # no-answer examples per question
    epochs: int = 2
    batch: int = 16
    lr: float = 1e-4
    lora_rank: int = 16
    warmup: float = 0.1
    seed: int = 0
    shared: bool = False  # add the loss normalised across a question's pieces


def featurize(tok, examples: Sequence[data.Example]) -> list[Piece]:  # noqa: ANN001
    """Every piece of every example, labelled with its answer's tokens or [CLS]."""
    out = []
    for e in examples:
        for _, enc in encode(tok, e.question, [e.context]):
            s = t = 0
            if e.answer_start is not None:
                a, b = e.answer_start, e.answer_start + len(e.answer)
                ctx = [i for i, sid in enumerate(enc.sequence_ids) if sid == 1]
                if ctx and enc.offsets[ctx[0]][0] <= a and enc.offsets[ctx[-1]][1] >= b:
                    s = next(i for i in ctx if enc.offsets[i][1] > a)
                    t = max(i for i in ctx if enc.offsets[i][0] < b)
            out.append(Piece(enc.ids, enc.type_ids, s, t))
    return out


def _trainable(net: SpanNet, settings: Settings) -> list[str]:
    """Freeze what the tuning leaves alone; the names of the tensors to ship."""
    for p in net.parameters():
        p.requires_grad = False
    layers = net.encoder.encoder.layer
    if settings.tuning == "lora":
        add_lora(net.encoder, settings.lora_rank)
    elif settings.tuning == "full":
        for p in layers.parameters():
            p.requires_grad = True
    elif settings.tuning.startswith("top"):
        for layer in layers[len(layers) - int(settings.tuning[3:]):]:
            for p in layer.parameters():
                p.requires_grad = True
    else:
        raise ValueError(f"tuning {settings.tuning!r}: use full, lora or topN (e.g. top2)")
    for p in net.qa.parameters():
        p.requires_grad = True
    return [n for n, p in net.named_parameters() if p.requires_grad]


def train(groups: Sequence[Sequence[data.Example]], settings: Settings, base_dir: str,
          log=print, init: Path | None = None) -> tuple[SpanNet, list[str]]:  # noqa: ANN001
    """A reader trained on ``groups`` (a question's gold example and its negatives, or
    single examples), from ``init``'s weights when given (a second stage); returns it
    and the names of the tensors to ship."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    net = load_reader(base_dir, init)[0] if init is not None else base_net(base_dir)
    trained = _trainable(net, settings)
    tok = tokenizer_for(base_dir, settings.max_length, settings.stride)
    if settings.shared:
        piece_groups = [featurize(tok, g) for g in groups]
        pieces = [p for g in piece_groups for p in g]
        first = np.cumsum([0] + [len(g) for g in piece_groups])
        grouped = group_batches(piece_groups, settings.batch)
        batches = [[i for g in b for i in range(first[g], first[g + 1])] for b in grouped]
        sizes = [[len(piece_groups[g]) for g in b] for b in grouped]
    else:
        pieces = featurize(tok, [e for g in groups for e in g])
        # Sorted by length and cut into batches (little padding), the batches shuffled.
        order = sorted(range(len(pieces)), key=lambda i: (len(pieces[i].ids), i))
        batches = [order[i:i + settings.batch] for i in range(0, len(order), settings.batch)]
        sizes = []
    steps = len(batches) * settings.epochs
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    warm = max(1, int(steps * settings.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    net.train()
    step, t0, seen = 0, time.perf_counter(), 0.0
    for epoch in range(settings.epochs):
        for b in rng.permutation(len(batches)):
            part = [pieces[i] for i in batches[b]]
            arrays = {k: torch.from_numpy(v) for k, v in batch_arrays(part).items()}
            start, end = net(**arrays)
            pad = arrays["attention_mask"] == 0
            start = start.masked_fill(pad, -1e4)
            end = end.masked_fill(pad, -1e4)
            ys = torch.tensor([p.start for p in part])
            ye = torch.tensor([p.end for p in part])
            loss = (torch.nn.functional.cross_entropy(start, ys)
                    + torch.nn.functional.cross_entropy(end, ye)) / 2
            if settings.shared:
                loss = loss + shared_loss(start, end, part, sizes[b])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            value = float(loss.detach())
            seen = 0.98 * seen + 0.02 * value if step > 1 else value
            if step % 50 == 0 or step == steps:
                log(f"epoch {epoch + 1} step {step}/{steps} loss {seen:.3f} "
                    f"{time.perf_counter() - t0:.0f}s")
    net.eval()
    if settings.tuning == "lora":
        merge_lora(net.encoder)  # the merged weights are what changed
        trained = [n for n, p in net.named_parameters() if p.requires_grad]
    return net, trained


def groups(examples: Sequence[data.Example], negs: Sequence[Sequence[data.Example]],
           settings: Settings) -> list[list[data.Example]]:
    """What ``train`` reads: with shared normalisation each question with its first
    ``ceil(negatives)`` negatives; otherwise the examples and ``negatives`` negatives per
    question, each alone."""
    if settings.shared:
        k = math.ceil(settings.negatives)
        return [[e, *n[:k]] for e, n in zip(examples, negs, strict=True)]
    return [[e] for e in data.mix(examples, negs, settings.negatives, settings.seed)]


def reader_of(net: SpanNet, settings: Settings, base_dir: str,
              abstain_below: float = 0.0) -> Reader:
    """A ``Reader`` over an in-memory network (evaluation before anything is saved)."""
    schema = ReaderSchema(FORMAT, "", settings.tuning, settings.max_length, settings.stride,
                          abstain_below, "", _ranking(settings))
    return Reader(ReaderConfig(), loaded=(net, schema), base_dir=base_dir)


@dataclass(frozen=True)
class Scores:
    """Reader-alone scores of held-out questions: the gold paragraph alone (EM, F1), the
    gold paragraph among retrieved negatives (F1 of the best span over all, and its
    probability), and the best span's probability on the negatives alone."""

    em: list[float]
    f1: list[float]
    f1_with_negatives: list[float]
    p_with_gold: list[float]
    p_absent: list[float]

    def summary(self, threshold: float) -> dict[str, float]:
        """Means, the F1 standard error, and F1 with negatives when answers below
        ``threshold`` abstain (an abstention scores 0)."""
        kept = [f if p >= threshold else 0.0
                for f, p in zip(self.f1_with_negatives, self.p_with_gold, strict=True)]
        n = len(self.f1)
        return {"questions": n, "em": float(np.mean(self.em)), "f1": float(np.mean(self.f1)),
                "f1_se": float(np.std(self.f1) / math.sqrt(n)),
                "f1_with_negatives": float(np.mean(self.f1_with_negatives or [0.0])),
                "f1_with_negatives_abstaining": float(np.mean(kept or [0.0])),
                "absent_abstained": float(np.mean([float(p < threshold)
                                                   for p in self.p_absent] or [0.0])),
                "abstain_below": threshold}


def evaluate(reader: Reader, examples: Sequence[data.Example],
             negs: Sequence[Sequence[data.Example]]) -> Scores:
    """Read each held-out question's gold paragraph, with and without its negatives."""
    scores = Scores([], [], [], [], [])
    for e, n in zip(examples, negs, strict=True):
        gold = reader.read(e.question, [_passage(e.context)])
        text = gold[0].text if gold else ""
        scores.em.append(exact_match(text, e.answers))
        scores.f1.append(token_f1(text, e.answers))
        if n:
            mixed = reader.read(e.question, [_passage(e.context)] + [_passage(x.context)
                                                                    for x in n])
            scores.f1_with_negatives.append(token_f1(mixed[0].text if mixed else "", e.answers))
            scores.p_with_gold.append(mixed[0].probability if mixed else 0.0)
            absent = reader.read(e.question, [_passage(x.context) for x in n])
            scores.p_absent.append(absent[0].probability if absent else 0.0)
    return scores


def choose_threshold(p_absent: Sequence[float], target: float = 0.85) -> float:
    """The lowest probability threshold that abstains on ``target`` of absent questions."""
    return float(np.quantile(np.asarray(p_absent), target)) if p_absent else 0.0


def _passage(text: str):  # noqa: ANN202
    from ragmem.chunking import split_sentences
    from ragmem.types import Passage

    return Passage("p", "p", 0, len(text), 0.0, tuple(split_sentences("p", text)))


def _train_command(args: argparse.Namespace) -> None:
    base_dir = resolve(args.base, "embedder").path
    squad = data.load(args.squad, args.held_out)
    settings = _settings(args)
    train_articles = set(data.folds(squad))
    examples = data.train_examples(squad, train_articles, args.questions, settings.seed)
    negs = data.negatives(squad, examples, train_articles, max(1, math.ceil(settings.negatives)))
    t0 = time.perf_counter()
    init = Path(args.init) if args.init else None
    net, names = train(groups(examples, negs, settings), settings, base_dir, init=init)
    seconds = time.perf_counter() - t0
    # The threshold: abstain on 0.85 of train questions whose own paragraph is absent
    # (scored on the training questions themselves: no test question is ever read).
    n = args.threshold_questions
    held = examples[:: max(1, len(examples) // n)][:n]
    held_negs = data.negatives(squad, held, train_articles, 4)
    scores = evaluate(reader_of(net, settings, base_dir), held, held_negs)
    threshold = choose_threshold(scores.p_absent, args.abstain_target)
    command = " ".join(["python -m ragmem.training.reader", *args.argv])
    schema = ReaderSchema(FORMAT, base_sha256(base_dir), settings.tuning, settings.max_length,
                          settings.stride, threshold, f"{command}; squad sha256 "
                          f"{data_sha(args.squad)[:16]}; {len(examples)} questions"
                          + (f"; init sha256 {data_sha(args.init)[:16]}" if init else ""),
                          _ranking(settings))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_reader(net, names, schema, out)
    print(json.dumps({"out": str(out), "seconds": round(seconds), "settings": asdict(settings),
                      "questions": len(examples), "abstain_below": threshold,
                      "train_sample": scores.summary(threshold),
                      "bytes": out.stat().st_size}))


def _compare_command(args: argparse.Namespace) -> None:
    """Each option trained on the training folds but one, scored on the held-out fold."""
    base_dir = resolve(args.base, "embedder").path
    squad = data.load(args.squad, args.held_out)
    fold_of = data.folds(squad)
    fold_articles = {a for a, f in fold_of.items() if f == args.fold}
    train_articles = set(fold_of) - fold_articles
    examples = data.train_examples(squad, train_articles, args.questions, args.seed)
    negs = data.negatives(squad, examples, train_articles, 2)
    test = data.train_examples(squad, fold_articles, args.test_questions, args.seed)
    test_negs = data.negatives(squad, test, fold_articles, 3)
    base = _settings(args)
    options = [replace(base, **json.loads(o)) for o in args.option] or [base]
    rows = []
    for option in options:
        t0 = time.perf_counter()
        net, names = train(groups(examples, negs, option), option, base_dir)
        seconds = time.perf_counter() - t0
        scores = evaluate(reader_of(net, option, base_dir), test, test_negs)
        row = {"settings": asdict(option), "train_seconds": round(seconds),
               "shipped_numbers": sum(net.state_dict()[n].numel() for n in names),
               **scores.summary(choose_threshold(scores.p_absent))}
        rows.append(row)
        print(json.dumps(row), flush=True)
        report = {"command": " ".join(["python -m ragmem.training.reader", *args.argv]),
                  "machine": f"{platform.processor() or platform.machine()}, "
                             f"{torch.get_num_threads()} threads",
                  "train_questions": len(examples), "test_questions": len(test),
                  "held_out_fold": args.fold, "rows": rows}
        if args.report:  # after every option: a long comparison keeps what it measured
            Path(args.report).write_text(json.dumps(report, indent=1) + "\n",
                                         encoding="utf-8")


def _evaluate_command(args: argparse.Namespace) -> None:
    """The reader alone on the test questions (the first ``--held-out``), each given its
    gold paragraph; with retrieved negatives from the test articles as well."""
    squad = data.load(args.squad, args.held_out)
    test = list(squad.examples[:args.held_out])
    negs = data.negatives(squad, test, set(squad.test_articles), 3)
    reader = Reader(ReaderConfig(weights=args.weights))
    scores = evaluate(reader, test, negs)
    result = {"command": " ".join(["python -m ragmem.training.reader", *args.argv]),
              "weights": str(reader.weights_path), **scores.summary(reader.abstain_below)}
    print(json.dumps(result))
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _ranking(settings: Settings) -> str:
    return "shared" if settings.shared else "piece"


def data_sha(path: str) -> str:
    from ragmem.evaluation.datasets import sha256_of

    return sha256_of(Path(path))


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(tuning=args.tuning, max_length=args.max_length, stride=args.stride,
                    negatives=args.negatives, epochs=args.epochs, batch=args.batch,
                    lr=args.lr, seed=args.seed, shared=args.shared)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ragmem.training.reader",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--squad", required=True, help="SQuAD v1.1 dev JSON")
        p.add_argument("--base", default=ReaderConfig.base_model, help="base model")
        p.add_argument("--questions", type=int, default=None, help="training questions")
        p.add_argument("--held-out", type=int, default=data.TEST_QUESTIONS,
                       help="the first N questions' articles are the test set: never read")
        d = Settings()
        p.add_argument("--tuning", default=d.tuning)
        p.add_argument("--max-length", type=int, default=d.max_length)
        p.add_argument("--stride", type=int, default=d.stride)
        p.add_argument("--negatives", type=float, default=d.negatives)
        p.add_argument("--epochs", type=int, default=d.epochs)
        p.add_argument("--batch", type=int, default=d.batch)
        p.add_argument("--lr", type=float, default=d.lr)
        p.add_argument("--seed", type=int, default=d.seed)
        p.add_argument("--shared", action="store_true",
                       help="train on each question's pieces together (shared normalisation)")
    train_p, compare_p = sub.choices["train"], sub.choices["compare"]
    train_p.add_argument("--out", required=True, help="weights file to write")
    train_p.add_argument("--init", default=None,
                         help="start from these reader weights (a second stage)")
    train_p.add_argument("--abstain-target", type=float, default=0.85)
    train_p.add_argument("--threshold-questions", type=int, default=200,
                         help="training questions that choose the abstention threshold")
    compare_p.add_argument("--option", action="append", default=[],
                           help='JSON overrides of the settings, e.g. \'{"tuning": "lora"}\'')
    compare_p.add_argument("--fold", type=int, default=0)
    compare_p.add_argument("--test-questions", type=int, default=500)
    compare_p.add_argument("--report", default=None)
    ev = sub.add_parser("evaluate", help="the reader alone on the test questions")
    ev.add_argument("--squad", required=True)
    ev.add_argument("--weights", default=None, help="default: the shipped weights")
    ev.add_argument("--held-out", type=int, default=data.TEST_QUESTIONS)
    ev.add_argument("--report", default=None)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # provenance
    commands = {"train": _train_command, "compare": _compare_command,
                "evaluate": _evaluate_command}
    commands[args.command](args)


if __name__ == "__main__":
    main()
