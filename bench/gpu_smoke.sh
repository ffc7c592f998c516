#!/usr/bin/env bash
# GPU smoke check: each job once on the GPU and once on the CPU, in the same run, then a 2-job Ray sweep with
# --gpus-per-job 1 (and the same sweep on the CPU). Prints, per job, the device the record says it ran on,
# its wall time and the CPU/GPU time ratio. Records go to a temporary folder (nothing in results/ changes).
#
#   bash bench/gpu_smoke.sh                 # on a machine with one CUDA GPU and mmbench installed in .venv
#   GPU_DEVICE=cpu bash bench/gpu_smoke.sh  # dry run of the script itself on a CPU-only machine
#
# Jobs (about 5 minutes on one GPU): tucker/nations (default config), mygo/synth-mmkg (5 epochs),
# lm-subgraph/synth-gen (1 epoch, SmolLM2-135M, bf16 on a GPU that supports it), and a sweep of
# tucker + distmult on nations.
set -euo pipefail
cd "$(dirname "$0")/.."
MMBENCH=${MMBENCH:-.venv/bin/mmbench}
PY=${PY:-.venv/bin/python}
GPU=${GPU_DEVICE:-cuda}
OUT=$(mktemp -d -t mmbench-gpu-smoke.XXXXXX)
export MMBENCH_LEADERBOARD="$OUT/leaderboard" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYSTOW_HOME=${PYSTOW_HOME:-$OUT/pystow}
ROWS="$OUT/rows.tsv"
: > "$ROWS"

# device_of DIR: the device and dtype of the newest record under DIR
device_of() {
  "$PY" - "$1" <<'EOF'
import json, pathlib, sys
recs = sorted(pathlib.Path(sys.argv[1]).rglob("*.json"), key=lambda p: p.stat().st_mtime)
recs = [p for p in recs if "_sweep" not in p.parts]
d = json.loads(recs[-1].read_text()).get("device", {}) if recs else {}
print(f"{d.get('device', '?')} {d.get('dtype', '?')} {d.get('name', '?')} peak={d.get('peak_gpu_memory_mb', '-')}MiB")
EOF
}

# timed LABEL DEVICE RESULTS_DIR -- command...: runs it, appends "LABEL DEVICE SECONDS WHERE" to ROWS
timed() {
  local label=$1 device=$2 dir=$3; shift 4
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$dir.log" 2>&1 || { echo "FAILED: $label on $device (log: $dir.log)"; tail -20 "$dir.log"; exit 1; }
  t1=$(date +%s.%N)
  printf "%s\t%s\t%s\t%s\n" "$label" "$device" "$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")" "$(device_of "$dir")" >> "$ROWS"
}

eval_job() {  # eval_job LABEL MODEL TASK [--set ...]
  local label=$1 model=$2 task=$3; shift 3
  for dev in "$GPU" cpu; do
    local dir="$OUT/$label-$dev"
    timed "$label" "$dev" "$dir" -- "$MMBENCH" eval --model "$model" --task "$task" --device "$dev" --force --quiet \
      --results-dir "$dir" "$@"
  done
}

echo "gpu smoke: records and logs under $OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count(), *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"
eval_job tucker/nations tucker nations
eval_job mygo/synth-mmkg mygo synth-mmkg --set epochs=5 --set eval_every=5
eval_job lm-subgraph/synth-gen lm-subgraph synth-gen --set epochs=1
if [ "$GPU" = cpu ]; then SWEEP_GPU=(--device cpu); else SWEEP_GPU=(--device cuda --gpus-per-job 1); fi
timed "sweep tucker,distmult/nations" "$GPU" "$OUT/sweep-$GPU" -- "$MMBENCH" sweep --models tucker,distmult \
  --tasks nations --seeds 0 --results-dir "$OUT/sweep-$GPU" --max-parallel 2 "${SWEEP_GPU[@]}"
timed "sweep tucker,distmult/nations" cpu "$OUT/sweep-cpu" -- "$MMBENCH" sweep --models tucker,distmult \
  --tasks nations --seeds 0 --results-dir "$OUT/sweep-cpu" --max-parallel 2 --device cpu

"$PY" - "$ROWS" "$GPU" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
gpu = sys.argv[2]
print(f"\n{'job':<32} {'asked':<6} {'seconds':>8}  {'cpu/gpu':>7}  record says")
by = {(r[0], r[1]): float(r[2]) for r in rows}
for label, dev, sec, where in rows:
    ratio = f"{by[(label, 'cpu')] / float(sec):.2f}x" if dev == gpu and (label, "cpu") in by else ""
    print(f"{label:<32} {dev:<6} {float(sec):>8.1f}  {ratio:>7}  {where}")
EOF
