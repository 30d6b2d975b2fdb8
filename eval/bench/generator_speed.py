"""Generator speed, side by side in one run: prefill, candidate scoring with and without
the prompt's KV cache, greedy generation, thread settings, load time; fp32 vs int8
(torch dynamic quantisation) vs llama.cpp on the packaged SmolLM2 GGUF.

    python -m eval.bench.generator_speed                       # the committed report
    python -m eval.bench.generator_speed --repeats 3 --quick   # a smoke run

Variants are measured round-robin (every variant once per repeat), so a change in the
machine's load hits all of them alike; medians and ratios are what to quote. Agreement
with fp32 is measured on real prompts: SQuAD dev questions after the first 1,000 with
their paragraph as evidence, candidates = the gold answer and 29 other spans of 1-8 words
of the same paragraph.

Writes ``--out``.json and ``--out``.md (default eval/reports/generator-speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.config import GeneratorConfig
from ragmem.generation import Generator, from_config

ROOT = Path(__file__).resolve().parents[2]


# shared/ lies beside the checkout (as in every worktree and in CI).
SQUAD = ROOT.parent / "shared" / "datasets" / "squad_v1.1_dev" / "dev-v1.1.json"
DEMO = ROOT / "ragmem" / "demo" / "corpus"
INSTRUCTION = ("Answer the question with a short span copied from the context.")
LENGTHS = (200, 400, 800, 1900)


def variants(names: list[str], threads: list[int]) -> dict[str, GeneratorConfig]:
    out = {}
    for name in names:
        for n in threads:
            if name == "fp32":
                cfg = GeneratorConfig(device="cpu", threads=n)
            elif name == "int8":
                cfg = GeneratorConfig(device="cpu", quantization="int8", threads=n)
            elif name == "llamacpp":
                cfg = GeneratorConfig(backend="llamacpp", threads=n)
            else:
                raise SystemExit(f"unknown variant {name!r}; use fp32, int8, llamacpp")
            out[f"{name}/t{n}"] = cfg
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("transformers", "llama_cpp"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "load_average_start": os.getloadavg(), **versions}


def demo_prompt(generator: Generator, tokens: int) -> str:
    """A prompt of about ``tokens`` tokens: demo-corpus text as numbered evidence."""
    text = " ".join(p.read_text("utf-8") for p in sorted(DEMO.glob("*.txt")))
    words = text.split()
    low, high = 10, len(words)
    while low < high:  # the most words that fit
        mid = (low + high + 1) // 2
        user = f"Context: [1] {' '.join(words[:mid])}\nQuestion: Who is the narrator?"
        if generator.count_tokens(generator.render(INSTRUCTION, user)) <= tokens:
            low = mid
        else:
            high = mid - 1
    user = f"Context: [1] {' '.join(words[:low])}\nQuestion: Who is the narrator?"
    return generator.render(INSTRUCTION, user)


def squad_examples(n: int, path: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Questions after the first 1,000 of SQuAD dev, each with 30 candidate spans."""
    data = json.loads(path.read_text("utf-8"))["data"]
    questions = [(p["context"], qa) for article in data for p in article["paragraphs"]
                 for qa in p["qas"]][1000:]
    rng = random.Random(seed)
    out = []
    for context, qa in rng.sample(questions, n):
        gold = qa["answers"][0]["text"]
        words = re.findall(r"\S+", context)
        spans = {gold}
        while len(spans) < 30:
            size = rng.randint(1, 8)
            start = rng.randrange(0, max(1, len(words) - size))
            spans.add(" ".join(words[start:start + size]).strip(".,;:\"'()"))
        spans.discard("")
        out.append({"context": context, "question": qa["question"], "gold": gold,
                    "candidates": sorted(spans)})
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def score_without_reuse(generator: Any, prompt: str, options: list[str]) -> list[float]:
    """The pre-prefill score_options: the prompt repeated in every row of one batch."""
    import torch

    model = generator._loaded()
    tokenizer = generator._tokenizer
    prompt_ids = generator._encode(prompt)["input_ids"][0].tolist()
    option_ids = [list(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in options]
    width = max(len(ids) for ids in option_ids)
    pad = tokenizer.pad_token_id or 0
    rows = [prompt_ids + ids + [pad] * (width - len(ids)) for ids in option_ids]
    mask = [[1] * (len(prompt_ids) + len(ids)) + [0] * (width - len(ids)) for ids in option_ids]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask),
                       logits_to_keep=width + 1).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = torch.tensor([ids + [pad] * (width - len(ids)) for ids in option_ids])
        picked = logprobs.gather(-1, targets[..., None])[..., 0]
        keep = torch.tensor(mask)[:, len(prompt_ids):].bool()
        return [float(s) for s in (picked * keep).sum(dim=1)]


def load_in_fresh_process(cfg: GeneratorConfig) -> float:
    code = (
        "import time, sys; t = time.perf_counter()\n"
        "from ragmem.config import GeneratorConfig\nfrom ragmem.generation import from_config\n"
        "g = from_config(GeneratorConfig(**__import__('json').loads(sys.argv[1])))\n"
        "g.count_tokens('warm'); print(time.perf_counter() - t)\n"
    )
    fields = {"device": cfg.device, "backend": cfg.backend, "quantization": cfg.quantization,
              "threads": cfg.threads}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(fields)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def set_threads(cfg: GeneratorConfig) -> None:
    """torch's thread count is process-wide: set it before each torch variant runs."""
    import torch

    if cfg.backend == "torch" and cfg.threads:
        torch.set_num_threads(cfg.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="fp32,int8,llamacpp")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--agreement", type=int, default=20, help="SQuAD prompts for agreement")
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 dev json")
    parser.add_argument("--quick", action="store_true", help="lengths 200/400 only")
    parser.add_argument("--out", default=str(ROOT / "eval" / "reports" / "generator-speed"))
    args = parser.parse_args()
    command = " ".join(["python -m eval.bench.generator_speed", *sys.argv[1:]])
    names = args.variants.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    configs = variants(names, threads)
    lengths = LENGTHS[:2] if args.quick else LENGTHS
    print(command, flush=True)
    info = machine()
    print(json.dumps(info), flush=True)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        configs = {k: v for k, v in configs.items() if v.backend != "llamacpp"}
        print("llama_cpp not installed: llama.cpp variants skipped", flush=True)

    generators = {}
    for key, cfg in configs.items():
        set_threads(cfg)
        generators[key] = from_config(cfg)
        generators[key].count_tokens("load")
    reference = generators[next(iter(generators))]
    prompts = {n: demo_prompt(reference, n) for n in lengths}
    lengths_seen = {n: reference.count_tokens(p) for n, p in prompts.items()}
    scoring_prompt = prompts[400]
    state = reference.prefill(scoring_prompt)
    rng = random.Random(0)
    words = scoring_prompt.split()
    candidates = []
    while len(candidates) < 30:
        size = rng.randint(1, 6)
        start = rng.randrange(0, len(words) - size)
        text = " ".join(words[start:start + size])
        if 1 <= len(reference.continuation_ids(state, text)) <= 8 and text not in candidates:
            candidates.append(text)

    samples: dict[str, dict[str, list[float]]] = {k: {} for k in generators}

    def add(key: str, name: str, seconds: float) -> None:
        samples[key].setdefault(name, []).append(seconds)

    for repeat in range(args.repeats):
        for key, generator in generators.items():
            cfg = configs[key]
            set_threads(cfg)
            for n, prompt in prompts.items():
                add(key, f"prefill_{n}", timed(lambda g=generator, p=prompt: g.prefill(p))[0])
            t_prefill, st = timed(lambda g=generator: g.prefill(scoring_prompt))
            t_cont, _ = timed(lambda g=generator, s=st: g.continuation_logprobs(s, candidates))
            add(key, "score30_reuse", t_prefill + t_cont)
            add(key, "score30_reuse_candidates_only", t_cont)
            if cfg.backend == "torch":
                add(key, "score30_no_reuse", timed(
                    lambda g=generator: score_without_reuse(g, scoring_prompt, candidates))[0])
            add(key, "generate32", timed(
                lambda g=generator: g.generate(scoring_prompt, 32))[0])
        print(f"repeat {repeat + 1}/{args.repeats} done; load {os.getloadavg()[0]:.1f}",
              flush=True)

    medians = {k: {name: statistics.median(v) for name, v in s.items()}
               for k, s in samples.items()}

    # Agreement with fp32 (same threads: the first thread count) on real prompts.
    examples = squad_examples(args.agreement, args.squad)
    base_key = next(k for k in generators if k.startswith("fp32/")) if any(
        k.startswith("fp32/") for k in generators) else next(iter(generators))
    per_variant_scores: dict[str, list[list[float]]] = {}
    texts: dict[str, list[str]] = {}
    for key, generator in generators.items():
        if not key.endswith(f"/t{threads[-1]}") and key != base_key:
            continue
        set_threads(configs[key])
        scores, outputs = [], []
        for ex in examples:
            prompt = generator.render(INSTRUCTION, f"Context: [1] {ex['context']}\n"
                                                   f"Question: {ex['question']}")
            scores.append(generator.score_options(prompt, ex["candidates"]))
            outputs.append(generator.generate(prompt, 32))
        per_variant_scores[key] = scores
        texts[key] = outputs
    agreement = {}
    base = per_variant_scores[base_key]
    for key, scores in per_variant_scores.items():
        if key == base_key:
            continue
        same_top = [int(np.argmax(a) == np.argmax(b)) for a, b in zip(base, scores, strict=True)]
        corr = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(base, scores, strict=True)]
        same_text = [int(a == b) for a, b in zip(texts[base_key], texts[key], strict=True)]
        agreement[key] = {"vs": base_key, "prompts": len(examples),
                          "same_top_candidate": float(np.mean(same_top)),
                          "score_correlation_median": float(np.median(corr)),
                          "score_correlation_min": float(np.min(corr)),
                          "same_greedy_32_text": float(np.mean(same_text))}

    def gold_top(key: str) -> float:
        return float(np.mean([ex["candidates"][int(np.argmax(s))] == ex["gold"]
                              for ex, s in zip(examples, per_variant_scores[key], strict=True)]))

    gold_at_1 = {key: gold_top(key) for key in per_variant_scores}

    loads: dict[str, list[float]] = {}
    for _ in range(3):
        for key, cfg in configs.items():
            if key.endswith(f"/t{threads[-1]}"):
                loads.setdefault(key, []).append(load_in_fresh_process(cfg))
    load_medians = {k: statistics.median(v) for k, v in loads.items()}

    info["load_average_end"] = os.getloadavg()
    report = {
        "command": command, "machine": info,
        "config": {"variants": configs and {k: vars(v) for k, v in configs.items()},
                   "repeats": args.repeats, "prompt_tokens": lengths_seen,
                   "candidates": {"count": len(candidates), "scoring_prompt_tokens":
                                  lengths_seen.get(400), "tokens": [
                                      len(reference.continuation_ids(state, c))
                                      for c in candidates]}},
        "medians_s": medians, "samples_s": samples, "agreement": agreement,
        "gold_top1_summed_logprob": gold_at_1, "load_fresh_process_s": load_medians,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report, lengths))
    print(markdown(report, lengths))


def markdown(report: dict[str, Any], lengths: tuple[int, ...]) -> str:
    medians = report["medians_s"]
    keys = list(medians)
    base = keys[0]
    rows = [f"prefill_{n}" for n in lengths] + [
        "score30_no_reuse", "score30_reuse", "score30_reuse_candidates_only", "generate32"]
    m = report["machine"]
    lines = [
        "# Generator speed (SmolLM2-135M-Instruct)", "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average_start'][0]:.1f}"
        f" at start, {m['load_average_end'][0]:.1f} at end (shared machine: compare ratios); "
        f"torch {m['torch']}, transformers {m['transformers']}, llama_cpp {m['llama_cpp']}  ",
        f"Prompt tokens: {report['config']['prompt_tokens']}; 30 candidates of "
        f"{min(report['config']['candidates']['tokens'])}-"
        f"{max(report['config']['candidates']['tokens'])} tokens after the ~400-token prompt; "
        f"{report['config']['repeats']} repeats, round-robin; medians in seconds "
        f"(ratio to {base}).", "",
        "| step | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = []
        for key in keys:
            value = medians[key].get(row)
            ref = medians[base].get(row)
            if value is None:
                cells.append("-")
            else:
                ratio = f" ({value / ref:.2f}x)" if ref else ""
                cells.append(f"{value:.3f}{ratio}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    loads = report["load_fresh_process_s"]
    lines += ["", "| load in a fresh process (cached weights) | " + " | ".join(loads) + " |",
              "|---|" + "---|" * len(loads),
              "| median s | " + " | ".join(f"{v:.2f}" for v in loads.values()) + " |", ""]
    if report["agreement"]:
        lines += ["Agreement with fp32 on SQuAD dev prompts (questions after the first 1,000, "
                  "30 candidate spans each, summed log-prob):", "",
                  "| variant | vs | same top candidate | score corr. (median / min) | "
                  "same greedy 32-token text |", "|---|---|---|---|---|"]
        for key, a in report["agreement"].items():
            lines.append(f"| {key} | {a['vs']} | {a['same_top_candidate']:.2f} | "
                         f"{a['score_correlation_median']:.4f} / {a['score_correlation_min']:.4f}"
                         f" | {a['same_greedy_32_text']:.2f} |")
        gold = report["gold_top1_summed_logprob"]
        lines += ["", "Gold span ranked first (summed log-prob, no length normalisation): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in gold.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
