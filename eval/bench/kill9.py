"""kill -9 during writes, then a normal ``ragmem index``: the index must equal a clean
build, rankings included.

    python -m eval.bench.kill9                                # 24 runs, ~25 min on 2 cores
    python -m eval.bench.kill9 --runs 2 --backends faiss      # a smoke test

The corpus is the demo corpus's two Doyle stories, each cut into 4 files at paragraphs,
in a temp folder (the Time Machine would triple every run's embedding time and add
nothing a kill can find). Milvus writes every 16 windows (RAGMEM_MILVUS_WRITE_BATCH;
2,000 by default would write this corpus only at the end of a run). Each
backend (``faiss``; ``milvus``: milvus-lite; ``ray``: ``--engine ray``, its index in
FAISS and milvus-lite in turn) gets ``--runs`` runs of two kinds, in turn:

- ``build``: ``ragmem index CORPUS --index NEW`` on a new index, killed;
- ``update``: the index first brought (unkilled) to a variant of the corpus (one story
  cut in half, a third file added), then ``ragmem index CORPUS --index I --sync``
  (the story grows back, the third file goes), killed.

A kill lands in the write phase: the process is SIGKILLed at a random point of the time
its index's write lock is held, drawn within that phase's length as measured by an
unkilled run of the same backend and kind (the lock is read from /proc/locks, never
taken: a probe could refuse the writer). Then ``ragmem index CORPUS --index I [--sync]``
resumes, with the local engine, and ``ragmem check`` runs. The index must then equal a
clean build of the corpus in the same store: the same documents (ids, content hashes,
window counts), the same windows (offsets and text), and the same top 10 for each demo
question in dense, keyword and hybrid retrieval (document, window offsets, and scores
within ``SCORE_TOLERANCE``: vectors embedded in other batches differ in float rounding).
A Ray run also counts the processes under the killed driver still alive 15 s later.

Writes ``OUT.json`` and ``OUT.md`` (default eval/reports/kill9-loop).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragmem.distributed import reaper
from ragmem.distributed.reaper import alive, command_line

ROOT = Path(__file__).resolve().parents[2]  # the ragmem processes run this checkout's
DEMO = ROOT / "ragmem" / "demo"
STORIES = ("doyle-a-scandal-in-bohemia.txt", "doyle-the-red-headed-league.txt")
EXTRA = "extra-irene-adler.txt"
PARTS = 4
# Milvus rows are written WRITE_BATCH windows at a time (2,000 by default: this whole
# corpus at the end of the run); small batches put Milvus writes all through the run.
WRITE_BATCH = "16"
SCORE_TOLERANCE = 1e-4
TOP_K = 10
MODES = ("dense", "lexical", "hybrid")
RAY_GONE_WITHIN_S = 15.0
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# -- the corpus, in two states ----------------------------------------------------------

def write_corpus(folder: Path, variant: bool) -> None:
    """The two stories, each in ``PARTS`` files cut at paragraphs (more documents: a
    kill can land between two of them being written); the variant has the first part
    cut in half and a third file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in STORIES:
        text = (DEMO / "corpus" / name).read_text(encoding="utf-8")
        cuts = [0, *(text.index("\n\n", len(text) * i // PARTS) + 2 for i in range(1, PARTS)),
                len(text)]
        for i in range(PARTS):
            part = text[cuts[i]:cuts[i + 1]]
            if variant and (name, i) == (STORIES[0], 0):
                part = part[: len(part) // 2]
            (folder / f"{name[:-4]}-{i + 1}.txt").write_text(part, encoding="utf-8")
    extra = folder / EXTRA
    if variant:
        extra.write_text("Irene Adler was the woman, of dubious and questionable memory. "
                         * 60, encoding="utf-8")
    else:
        extra.unlink(missing_ok=True)


# -- running ragmem, and killing it -----------------------------------------------------

def ragmem(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragmem.cli", *args]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH")) if p)
    out["RAGMEM_MILVUS_WRITE_BATCH"] = WRITE_BATCH
    # fp32: its vectors do not depend on the batch a text is embedded in, so a resumed
    # index can be held to a clean build's scores to 1e-4. int8 (OpenVINO, the CPU default)
    # gives a text vectors up to 3e-4 apart in cosine by batch (eval/reports/precision.md):
    # a clean update of this corpus then moves hybrid scores 2.7e-3 with nothing killed.
    out.setdefault("RAGMEM_EMBEDDER_PRECISION", "fp32")
    return out


def run(cmd: list[str]) -> tuple[int, str, float]:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - t


def lock_held(index: Path, pid: int) -> bool:
    """Whether ``pid`` holds the index's write lock (an flock), read from /proc/locks."""
    try:
        inode = (index / "write.lock").stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[4] == str(pid) \
                and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def watch(cmd: list[str], index: Path, kill_after: float | None) -> dict[str, Any]:
    """Run ``cmd``; with ``kill_after``, SIGKILL it once its write lock has been held
    for that long without a break. Without, measure the longest such hold."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    start, held_since, longest = time.perf_counter(), None, 0.0
    out: dict[str, Any] = {"killed": False}
    while proc.poll() is None:
        now = time.perf_counter()
        if lock_held(index, proc.pid):
            held_since = held_since or now
            longest = max(longest, now - held_since)
            if kill_after is not None and now - held_since >= kill_after:
                under = descendants(proc.pid)
                proc.send_signal(signal.SIGKILL)
                out.update(killed=True, at_s=round(now - start, 2),
                           into_write_s=round(now - held_since, 2), children=under)
                break
        else:
            held_since = None
        time.sleep(0.02)
    text, _ = proc.communicate()
    out.update(rc=proc.returncode, seconds=round(time.perf_counter() - start, 2),
               write_phase_s=round(longest, 2), output=text[-400:])
    return out


def descendants(pid: int) -> dict[str, str]:
    """Live processes under ``pid``: "pid:start" -> command line (the reaper's walk)."""
    return {f"{child}:{start}": command_line(child)[:80]
            for child, start in reaper.descendants(pid)}


def survivors(started: dict[str, str], within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        left = [cmd for key, cmd in started.items()
                if alive((int(key.split(":")[0]), int(key.split(":")[1])))]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# -- what an index holds ----------------------------------------------------------------

class Reader:
    """The embedder, loaded once, and the questions: an index's contents and rankings."""

    def __init__(self, precision: str) -> None:
        from ragmem.config import EmbedderConfig
        from ragmem.embedding import from_config

        self.embedder = from_config(EmbedderConfig(precision=precision))  # type: ignore[arg-type]
        self.questions = [json.loads(line)["question"] for line in
                          (DEMO / "questions.jsonl").read_text().splitlines()]

    def contents(self, index: Path) -> dict[str, Any]:
        from ragmem.config import RetrievalConfig
        from ragmem.memory import open_memory
        from ragmem.retrieval import Retriever

        memory = open_memory(index)
        try:
            docs = [(d.doc_id, d.content_hash, d.n_windows) for d in memory.documents()]
            windows = {d: [(w.index, w.start, w.end, _digest(w.text))
                           for w in memory.windows(d)] for d, _, _ in docs}
            rankings = {}
            for mode in MODES:
                retriever = Retriever(memory, self.embedder,
                                      RetrievalConfig(mode=mode, top_k=TOP_K))  # type: ignore[arg-type]
                found = retriever.retrieve_many(self.questions, TOP_K)
                rankings[mode] = [[(h.doc_id, h.start, h.end, float(h.score)) for h in hits]
                                  for hits in found]
        finally:
            memory.close()
        return {"documents": docs, "windows": windows, "rankings": rankings}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def compare(got: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    """Where ``got`` differs from the clean build's contents."""
    out: dict[str, Any] = {"documents": got["documents"] == clean["documents"],
                           "windows": got["windows"] == clean["windows"]}
    for mode in MODES:
        ids_same, worst = True, 0.0
        for a, b in zip(got["rankings"][mode], clean["rankings"][mode], strict=True):
            ids_same &= [h[:3] for h in a] == [h[:3] for h in b]
            worst = max([worst, *(abs(x[3] - y[3]) for x, y in zip(a, b, strict=False))])
        out[mode] = {"ids": ids_same, "max_score_diff": worst}
    out["equal"] = out["documents"] and out["windows"] and all(
        out[m]["ids"] and out[m]["max_score_diff"] <= SCORE_TOLERANCE for m in MODES)
    return out


# -- the loop ---------------------------------------------------------------------------

def store_of(backend: str, run_no: int) -> str:
    if backend == "ray":
        return "faiss" if (run_no // 2) % 2 == 0 else "milvus"
    return backend


def killed_command(backend: str, kind: str, corpus: Path, index: Path, store: str) -> list[str]:
    args = ["index", str(corpus), "--index", str(index), "--json"]
    if kind == "build":
        args += ["--store", store]
    else:
        args += ["--sync"]
    if backend == "ray":
        args += ["--engine", "ray"]
    return ragmem(*args)


def one_run(args: argparse.Namespace, backend: str, kind: str, run_no: int, work: Path,
            corpus: Path, reader: Reader, clean: dict[str, dict[str, Any]],
            phase: dict[tuple[str, str], float], rng: random.Random) -> dict[str, Any]:
    store = store_of(backend, run_no)
    index = work / f"{backend}-{store}"
    if kind == "build":
        shutil.rmtree(index, ignore_errors=True)
    else:
        if not (index / "manifest.json").exists():  # an update needs an index first
            write_corpus(corpus, variant=False)
            rc, text, _ = run(ragmem("index", str(corpus), "--index", str(index),
                                     "--store", store))
            assert rc == 0, text
        write_corpus(corpus, variant=True)
        rc, text, _ = run(ragmem("index", str(corpus), "--index", str(index), "--sync"))
        assert rc == 0, text
        write_corpus(corpus, variant=False)
    cmd = killed_command(backend, kind, corpus, index, store)
    length = phase.get((backend, kind))
    row: dict[str, Any] = {"run": run_no, "backend": backend, "store": store, "kind": kind}
    if length is None:  # the first of its kind measures the write phase, unkilled
        got = watch(cmd, index, None)
        phase[(backend, kind)] = got["write_phase_s"]
        row.update(calibration=True, write_phase_s=got["write_phase_s"], rc=got["rc"])
    else:
        delay = rng.uniform(0.0, length)
        got = watch(cmd, index, delay)
        row.update(calibration=False, planned_s=round(delay, 2), write_phase_s=length,
                   killed=got["killed"], at_s=got.get("at_s"), rc=got["rc"])
        if backend == "ray" and got["killed"]:
            left = survivors(got["children"], RAY_GONE_WITHIN_S)
            row["ray_processes"] = len(got["children"])
            row["ray_left_after_15s"] = len(left)
        resume = ragmem("index", str(corpus), "--index", str(index), "--json",
                        *(["--sync"] if kind == "update" else []))
        rc, text, secs = run(resume)
        row["resume_rc"] = rc
        row["resume_s"] = round(secs, 1)
        try:
            summary = json.loads(text[text.index("{"):text.rindex("}") + 1])
            row["resume"] = {k: summary[k] for k in ("added", "updated", "unchanged",
                                                     "removed")}
        except (ValueError, KeyError):
            row["resume_output"] = text[-600:]
    rc, text, _ = run(ragmem("check", str(index)))
    row["check_rc"], row["check"] = rc, text.strip().splitlines()[-1][:160] if text else ""
    from ragmem.errors import RagmemError

    try:
        row["compare"] = compare(reader.contents(index), clean[store])
    except RagmemError as error:  # what the index is left as is the finding: kept, and on
        row["compare"] = {"equal": False, "error": str(error)[:300],
                          "files": sorted(p.name for p in index.iterdir())}
        row["killed_output"] = got["output"]
        shutil.rmtree(index, ignore_errors=True)  # the next run starts from a clean slate
    say(f"run {run_no} {backend}/{store} {kind}: {summary_line(row)}")
    return row


def summary_line(row: dict[str, Any]) -> str:
    c = row["compare"]
    if "error" in c:
        return (f"FAILED after kill at {row.get('at_s')} s: resume rc {row.get('resume_rc')}, "
                f"{c['error']}; files {c['files']}; resume said {row.get('resume_output')}")
    scores = " ".join(f"{m} {c[m]['max_score_diff']:.1e}" for m in MODES)
    kill = ("calibration" if row["calibration"] else
            f"killed at {row.get('at_s')} s" if row.get("killed") else "finished first")
    return f"{kill}; equal={c['equal']} (max score diff {scores})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="killed runs per backend")
    parser.add_argument("--backends", default="faiss,milvus,ray")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "kill9-loop")
    parser.add_argument("--commit", default=None,
                        help="the commit this tree is (default: git rev-parse HEAD here)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    backends = args.backends.split(",")
    say(f"kill9: {shlex.join(sys.argv)}")
    work = Path(tempfile.mkdtemp(prefix="ragmem-kill9-"))
    corpus = work / "corpus"
    try:
        write_corpus(corpus, variant=False)
        clean: dict[str, dict[str, Any]] = {}
        phase: dict[tuple[str, str], float] = {}
        reader: Reader | None = None
        builds = {}
        for store in sorted({store_of(b, n) for b in backends for n in range(args.runs + 2)}):
            index = work / f"clean-{store}"
            got = watch(ragmem("index", str(corpus), "--index", str(index), "--store", store,
                               "--json"), index, None)
            assert got["rc"] == 0, got["output"]
            if reader is None:
                manifest = json.loads((index / "manifest.json").read_text())
                reader = Reader(manifest["embedder_precision"])
            clean[store] = reader.contents(index)
            builds[store] = {"seconds": got["seconds"], "write_phase_s": got["write_phase_s"],
                             "documents": len(clean[store]["documents"]),
                             "windows": sum(len(w) for w in clean[store]["windows"].values())}
            if store in backends:  # a clean build is also the calibration of "build"
                phase[(store, "build")] = got["write_phase_s"]
            say(f"clean {store}: {builds[store]}")
        assert reader is not None
        rows = []
        for backend in backends:
            for n in range(args.runs + 2):  # each kind's first run is its calibration
                kind = "build" if n % 2 == 0 else "update"
                rows.append(one_run(args, backend, kind, n, work, corpus, reader, clean,
                                    phase, rng))
                if sum(not r["calibration"] for r in rows if r["backend"] == backend) \
                        >= args.runs:
                    break
        report = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
                  "machine": machine(args.commit), "clean_builds": builds,
                  "write_phase_s": {f"{b}/{k}": v for (b, k), v in phase.items()},
                  "score_tolerance": SCORE_TOLERANCE, "questions": len(reader.questions),
                  "top_k": TOP_K, "runs": rows,
                  "seconds": round(time.perf_counter() - T0, 1)}
        write_report(args.out, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def machine(commit: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")
    versions: dict[str, str | None] = {}
    for package in ("ray", "pymilvus", "milvus-lite", "faiss-cpu", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit = commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_avg_at_end": os.getloadavg(),
            "commit": commit, **versions}


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    killed = [r for r in report["runs"] if not r["calibration"]]
    documents = next(iter(report["clean_builds"].values()))["documents"]
    lines = [
        "# kill -9 during writes, then a normal `ragmem index`", "",
        f"Command: `{report['command']}` ({report['seconds'] / 60:.1f} min). "
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['platform']}; commit {report['machine']['commit']}; "
        f"Ray {report['machine']['ray']}, milvus-lite {report['machine']['milvus-lite']}.",
        "",
        f"**{sum(r['compare']['equal'] for r in killed)} of {len(killed)} runs timed to be "
        f"killed** ({sum(bool(r.get('killed')) for r in killed)} SIGKILLed inside the "
        "write phase, the rest finished first) ended equal to a clean build after one "
        "normal "
        "`ragmem index`: same documents, same windows, same top 10 in dense, keyword and "
        f"hybrid retrieval for the {report['questions']} demo questions (scores within "
        f"{report['score_tolerance']:g}).", "",
        "Write phases (s, lock held, unkilled run): " + ", ".join(
            f"{k} {v}" for k, v in report["write_phase_s"].items()), "",
        "Kill at: seconds after the process started; planned: the random delay into the "
        "write phase. Resume redid: what the normal `ragmem index` after the kill added, "
        f"updated and removed (documents; the clean build has {documents}). "
        "Scores: the largest difference from the clean build's.", "",
        "| run | backend | store | kind | kill at (s) | planned (s) | resume redid "
        "(added/updated/removed) | check | docs | windows | dense | keyword | hybrid "
        "| Ray processes left | equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        c = r["compare"]
        if "error" in c:
            lines.append(f"| {r['run']} | {r['backend']} | {r['store']} | {r['kind']} | "
                         f"{r.get('at_s')} | {r.get('planned_s', '')} | resume rc "
                         f"{r.get('resume_rc')} | | | | {c['error']} | | | | False |")
            continue
        redo = r.get("resume", {})
        kill = ("calibration (unkilled)" if r["calibration"] else
                str(r.get("at_s")) if r.get("killed") else "finished first")
        left = (f"{r['ray_left_after_15s']} of {r['ray_processes']}"
                if "ray_processes" in r else "")
        lines.append(
            f"| {r['run']} | {r['backend']} | {r['store']} | {r['kind']} | {kill} | "
            f"{r.get('planned_s', '')} | "
            f"{'/'.join(str(redo[k]) for k in ('added', 'updated', 'removed')) if redo else ''} | "
            f"{'ok' if r['check_rc'] == 0 else 'rc ' + str(r['check_rc'])} | "
            f"{'same' if c['documents'] else 'DIFFERENT'} | "
            f"{'same' if c['windows'] else 'DIFFERENT'} | {_cell(c, 'dense')} | "
            f"{_cell(c, 'lexical')} | {_cell(c, 'hybrid')} | {left} | {c['equal']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")



def _cell(compared: dict[str, Any], mode: str) -> str:
    same = "same" if compared[mode]["ids"] else "DIFFERENT"
    return f"{same} ({compared[mode]['max_score_diff']:.0e})"


if __name__ == "__main__":
    main()
