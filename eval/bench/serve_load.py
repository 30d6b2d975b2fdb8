"""A bounded load test of ``ragmem serve`` on localhost: 1, 4 and 16 clients asking the
demo's 11 questions for a fixed time each, with one upload (and its delete) during each
level; then the first byte of a streamed answer, and ``ragmem ask --server`` warm
against a cold ``ragmem ask``.

    python -m eval.bench.serve_load                            # 30 s a level
    python -m eval.bench.serve_load --seconds 60 --dir /tmp/serve-load

It builds the demo index once with the default config (in ``--dir``, kept, or a temp
folder), starts ``ragmem serve --index demo`` as its own process (the default config:
extract mode, ``max_asks`` 8) and waits until its models are warm. Each client is a
thread asking ``POST /api/ask`` in a loop, the demo's questions in turn; a 503 (the ask
limit) is counted apart and retried after its Retry-After, never as an error; anything
else that is not a 200 is an error. Latency is the request's wall time at the client.
Peak RSS: the server process's resident memory, sampled every 0.2 s. Writes OUT.json
and OUT.md (default eval/reports/serve-load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from eval.demo import demo_questions

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_TEXT = ("The Skerryvore light was kept by Alasdair Munro for thirty winters. "
               "He wrote a log of every ship that passed the rocks. ") * 200


def post(url: str, body: dict[str, Any], timeout: float = 600) -> tuple[int, dict[str, Any],
                                                                       dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.load(r), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def upload(base: str, name: str) -> dict[str, Any]:
    boundary = "ragmemloadtest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n{UPLOAD_TEXT}\r\n"
            f"--{boundary}--\r\n").encode()
    request = urllib.request.Request(
        f"{base}/api/indexes/demo/documents", data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                 "Origin": base})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            status, data = r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        status, data = exc.code, json.loads(exc.read() or b"{}")
    seconds = time.perf_counter() - t0
    delete = urllib.request.Request(f"{base}/api/indexes/demo/documents/{name}",
                                    method="DELETE")
    with urllib.request.urlopen(delete, timeout=600) as r:
        deleted = r.status
    return {"status": status, "seconds": round(seconds, 2), "added": data.get("added"),
            "windows": data.get("windows"), "deleted_status": deleted}


def level(base: str, clients: int, seconds: float, questions: list[str]) -> dict[str, Any]:
    """``clients`` threads asking for ``seconds``; one upload a third of the way in."""
    latencies: list[float] = []
    stages: list[dict[str, float]] = []  # the server's own timings of each answer
    refused = errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    examples: list[str] = []

    def client(number: int) -> None:
        nonlocal refused, errors
        i = number
        while time.monotonic() < stop:
            question = questions[i % len(questions)]
            t0 = time.perf_counter()
            try:
                status, data, headers = post(f"{base}/api/ask", {"question": question})
            except OSError as exc:
                status, data, headers = 0, {"error": str(exc)}, {}
            took = time.perf_counter() - t0
            with lock:
                if status == 200:
                    latencies.append(took)
                    stages.append(data["timings"])
                    i += 1
                elif status == 503:
                    refused += 1
                else:
                    errors += 1
                    examples.append(f"{status}: {data.get('error')}")
            if status == 503:
                time.sleep(float(headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    write = upload(base, f"load-{clients}.txt")
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)
    return {"clients": clients, "answers": len(latencies), "wall_s": round(wall, 1),
            "p50_s": round(statistics.median(ordered), 3) if ordered else None,
            "p95_s": round(ordered[max(0, int(0.95 * len(ordered)) - 1)], 3) if ordered else None,
            "throughput_per_s": round(len(latencies) / wall, 3), "errors": errors,
            "refused_503": refused, "error_examples": examples[:3], "upload": write,
            "server_p50_s": {k: round(statistics.median(t[k] for t in stages), 3)
                             for k in ("retrieve_s", "fill_s", "generate_s")} if stages else {}}


def first_bytes(base: str, questions: list[str]) -> list[dict[str, Any]]:
    """Per question, one streamed ask: seconds from the request to the passages event
    (retrieval and the working memory done) and to the answer's first text."""
    out = []
    for question in questions:
        request = urllib.request.Request(f"{base}/api/ask/stream",
                                         data=json.dumps({"question": question}).encode(),
                                         headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        marks: dict[str, float] = {}
        timings: dict[str, float] = {}
        with urllib.request.urlopen(request, timeout=600) as r:
            event = ""
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                    marks.setdefault(event, time.perf_counter() - t0)
                elif line.startswith("data: ") and event == "answer":
                    timings = json.loads(line[6:])["timings"]
        out.append({"question": question, "passages_s": round(marks["passages"], 3),
                    "first_text_s": round(marks["text"], 3),
                    "after_retrieval_s": round(marks["text"] - marks["passages"], 3),
                    "server_retrieve_fill_s": round(timings["retrieve_s"] + timings["fill_s"], 3)})
    return out


def cli_seconds(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ragmem.cli", *args], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.bench.serve_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="per level")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--dir", type=Path, help="where the demo index is built (kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "eval/reports/serve-load")
    args = parser.parse_args(argv)
    home = args.dir or Path(tempfile.mkdtemp(prefix="serve-load-"))
    env = {**os.environ, "RAGMEM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    run = {"command": "python -m eval.bench.serve_load " + shlex.join(argv or sys.argv[1:]),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    machine = {"platform": platform.platform(), "cores": os.cpu_count(),
               "uptime_at_start": subprocess.run(["uptime"], capture_output=True,
                                                 text=True).stdout.strip()}
    print(json.dumps({"run": run, "machine": machine, "home": str(home)}, indent=2), flush=True)
    if not (home / "demo/manifest.json").exists():
        subprocess.run([sys.executable, "-m", "ragmem.cli", "index",
                        str(ROOT / "ragmem/demo/corpus"), "--index", "demo"], check=True,
                       env=env)
    questions = [q["question"] for q in demo_questions()]
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "ragmem.cli", "serve", "--index", "demo",
                               "--port", str(args.port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        process = psutil.Process(server.pid)
        while not sampling.is_set():
            try:
                peak[0] = max(peak[0], process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)

    try:
        t0 = time.perf_counter()
        assert server.stdout is not None
        started = server.stdout.readline()
        if "ragmem serve:" not in started:
            raise SystemExit(f"the server did not start: {started!r}")
        startup_s = time.perf_counter() - t0
        while True:  # the line comes before uvicorn binds its port: wait for the port
            try:
                urllib.request.urlopen(f"{base}/api/indexes", timeout=5).close()
                break
            except OSError:
                time.sleep(0.2)
        threading.Thread(target=sample, daemon=True).start()
        levels = []
        for clients in (int(c) for c in args.clients.split(",")):
            levels.append(level(base, clients, args.seconds, questions))
            print(json.dumps(levels[-1]), flush=True)
        streamed = first_bytes(base, questions)
        print(json.dumps(streamed), flush=True)
        question = questions[0]
        warm = [cli_seconds(["ask", "demo", question, "--server", base], env)
                for _ in range(args.cli_runs)]
    finally:
        sampling.set()
        server.terminate()
        server.wait(60)
    cold = [cli_seconds(["ask", "demo", question], env) for _ in range(args.cli_runs)]
    machine["uptime_at_end"] = subprocess.run(["uptime"], capture_output=True,
                                              text=True).stdout.strip()
    report = {"run": run, "machine": machine, "startup_s": round(startup_s, 1),
              "peak_rss_mb": round(peak[0] / 2**20), "seconds_per_level": args.seconds,
              "levels": levels, "stream": streamed,
              "cli": {"question": question, "warm_server_s": [round(s, 2) for s in warm],
                      "cold_s": [round(s, 2) for s in cold]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    m, cli = r["machine"], r["cli"]
    rows = "\n".join(
        f"| {x['clients']} | {x['answers']} | {x['p50_s']} | {x['p95_s']} | "
        f"{x['throughput_per_s']} | {x['errors']} | {x['refused_503']} | "
        f"{x['upload']['status']} in {x['upload']['seconds']} s | "
        f"{' / '.join(str(v) for v in x['server_p50_s'].values())} |" for x in r["levels"])
    s = r["stream"]
    after = statistics.median(x["after_retrieval_s"] for x in s)
    passages = statistics.median(x["passages_s"] for x in s)
    first = statistics.median(x["first_text_s"] for x in s)
    warm, cold = statistics.median(cli["warm_server_s"]), statistics.median(cli["cold_s"])
    return f"""# ragmem serve under load (localhost, demo index)

`{r['run']['command']}` at {r['run']['commit']}, {r['run']['date']}; {m['platform']},
{m['cores']} cores. Load at start: `{m['uptime_at_start']}`; at end: `{m['uptime_at_end']}`.

The server (`ragmem serve --index demo`, default config: extract mode, at most 8 asks
running or waiting) took {r['startup_s']} s to start with warm models; its peak RSS
over the whole run was **{r['peak_rss_mb']} MB**. Each level ran {r['seconds_per_level']} s
of clients asking the demo's 11 questions in turn (`POST /api/ask`), with one upload of a
{len(UPLOAD_TEXT) // 1000} KB text file a third of the way in (then deleted). A 503 is the
ask limit speaking: counted apart, retried after its Retry-After, not an error.

| clients | answers | p50 s | p95 s | answers/s | errors | 503s | upload | server p50 s (*) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

(*) the server's own timings of the answers, medians: retrieve / fill / answer.

**Streamed answers** (one client, each of the 11 questions once, `POST /api/ask/stream`):
median {passages:.3f} s from the request to the `passages` event (retrieval and the
working memory done), {first:.3f} s to the answer's first text: **{after:.3f} s after
retrieval** (the extract mode makes its span whole, so its first text is the whole
answer).

**`ragmem ask` warm through the server against cold** ("{cli['question']}", a fresh
process each, launch to exit, median of {len(cli['cold_s'])}): `ragmem ask demo ...
--server URL` **{warm:.2f} s**, `ragmem ask demo ...` (loads its models) **{cold:.2f} s**
({cold / warm:.1f}x).
"""


if __name__ == "__main__":
    main()
