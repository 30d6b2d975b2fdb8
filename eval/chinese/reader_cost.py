"""What a Chinese reader (SmolLM2-135M with a start/end head, the reader issue's recipe)
would cost to train on this CPU: one measured forward+backward step on a CMRC trial
batch, and the training time it implies. Trains nothing.

    flock /tmp/ragmem-bench.lock python -m eval.chinese.reader_cost \
        ../shared/datasets/cmrc2018/cmrc2018_trial.json --out eval/reports/chinese/reader-cost

The packaged GGUF is dequantised to float32 safetensors once (``ragmem.generation.
gguf_cache.cached_folder``, what the torch backend loads): a trainable model. Each
question's paragraph is cut into pieces of ``--max-length`` tokens (question first, then
a window of the paragraph, ``--stride`` tokens of overlap) in SmolLM2's byte-level BPE,
which covers every Chinese character. A step is the whole model's forward, a linear
start/end head on its last hidden states, cross-entropy and backward, AdamW's update,
on ``--batch`` pieces; the estimate counts every piece of every trial question plus as
many no-answer pieces (``Settings.negatives`` = 1), for ``Settings.epochs`` epochs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ragmem.config import DEFAULT_GENERATOR
from ragmem.evaluation.datasets import load_squad
from ragmem.generation.gguf_cache import cached_folder
from ragmem.models import resolve
from ragmem.training.reader import Settings

from .tune import uptime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trial")
    parser.add_argument("--batch", type=int, default=Settings.batch)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--out")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cached_folder(resolve(DEFAULT_GENERATOR, "generator"))
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).model
    model.train()
    head = torch.nn.Linear(model.config.hidden_size, 2)
    data = load_squad(args.trial, long_document=False)
    text = {d.doc_id: d.text for d in data.documents}
    pieces: list[list[int]] = []
    chars = tokens = 0
    for ex in data.examples:
        assert ex.doc_id is not None
        q = tok(ex.question, add_special_tokens=False)["input_ids"]
        ctx = tok(text[ex.doc_id], add_special_tokens=False)["input_ids"]
        chars += len(text[ex.doc_id])
        tokens += len(ctx)
        room = args.max_length - len(q) - 2
        for at in range(0, max(1, len(ctx) - args.stride), room - args.stride):
            pieces.append(q + [tok.eos_token_id] + ctx[at:at + room])
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=Settings.lr)
    batch = pieces[:args.batch]
    width = max(len(p) for p in batch)
    ids = torch.tensor([p + [tok.eos_token_id] * (width - len(p)) for p in batch])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in batch])
    target = torch.randint(0, width, (len(batch), 2))
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = head(hidden)
        loss = (torch.nn.functional.cross_entropy(logits[..., 0], target[:, 0])
                + torch.nn.functional.cross_entropy(logits[..., 1], target[:, 1]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    per_epoch = 2 * len(pieces)  # every answer piece and as many no-answer pieces
    steps = Settings.epochs * per_epoch / args.batch
    report = {
        "command": " ".join(["python -m eval.chinese.reader_cost", *sys.argv[1:]]),
        "machine": f"{platform.platform()}; {uptime()}; torch threads "
                   f"{torch.get_num_threads()}",
        "model": DEFAULT_GENERATOR, "parameters": sum(p.numel() for p in params),
        "trial_questions": len(data.examples),
        "tokens_per_char": round(tokens / max(1, chars), 3),
        "pieces": len(pieces), "batch": args.batch, "piece_tokens": width,
        "step_s": [round(t, 2) for t in times], "median_step_s": round(per_step, 2),
        "epochs": Settings.epochs, "steps": round(steps),
        "estimated_training_hours": round(steps * per_step / 3600, 1),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
