#!/usr/bin/env bash
# The GPU bench in one go: versions, then bench/gpu.py's stages, each under `timeout` and tee'd into
# $OUT/gpu_log.txt, results in $OUT/gpu_results.json, and a compact summary table printed last.
#
#     OUT=/tmp/gpuout bash bench/gpu.sh            # on the accelerator machine, from the repo root
#     OUT=/tmp/gpuout bash bench/gpu.sh --quick    # tiny sizes: checks the whole script on a CPU
#
# No network needed: the checkout is put on PYTHONPATH (the weights load from weights/). Wheels in
# .whl/ (e.g. pillow==13.0.0 for cp312, so that scores match the reference) are installed first
# into /tmp/site. GPU_BENCH_BUDGET (seconds, default 300; 900 with --quick) caps the whole run:
# every stage's timeout is cut to what is left of it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpuout}
mkdir -p "$OUT"
LOG="$OUT/gpu_log.txt"
: > "$LOG"
QUICK=()
BUDGET=${GPU_BENCH_BUDGET:-300}
if [[ "${1:-}" == "--quick" ]]; then
  QUICK=(--quick)
  BUDGET=${GPU_BENCH_BUDGET:-900}
fi
log() { echo "$@" | tee -a "$LOG"; }

log "### gpu.sh $(date -u +%FT%TZ) in $PWD, OUT=$OUT, budget ${BUDGET}s ${QUICK[*]:-}"
{ command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi -L; } 2>&1 | tee -a "$LOG" || log "(no nvidia-smi)"

if compgen -G ".whl/*.whl" >/dev/null; then
  log "### installing .whl/*.whl into /tmp/site (no network)"
  if timeout 120 python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"; then
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  elif timeout 60 python3 -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in glob.glob('.whl/*.whl')]" 2>&1 | tee -a "$LOG"; then
    log "(pip failed; the wheels were unzipped into /tmp/site instead)"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    log "(wheel install failed; going on with what is installed)"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The forward stage's compiled programs are reused by later stages and by the CLI runs (less device
# time spent compiling; the CLI's wall time then includes little compiling).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxnsfw_jax_cache}
export PYTHONUNBUFFERED=1
log "PYTHONPATH=$PYTHONPATH"

timeout 60 python3 -c "
import sys, jax, PIL, numpy
print('python', sys.version.split()[0], '| jax', jax.__version__, '| pillow', PIL.__version__, '| numpy', numpy.__version__)
print('devices', jax.devices())
print('backend', jax.default_backend())
" 2>&1 | tee -a "$LOG" "$OUT/.backend"
if [[ ${#QUICK[@]} -eq 0 ]] && ! grep -q "^backend gpu" "$OUT/.backend"; then
  log "### WARNING: JAX has no GPU backend here ($(grep '^backend' "$OUT/.backend")): running the --quick sizes"
  QUICK=(--quick)
fi
rm -f "$OUT/.backend"

# stage  cap (s): each runs with min(cap, what is left of the budget minus 20 s for the summary).
# Most wanted first: the end-to-end run (which names the bottleneck) before bf16 and preprocessing.
# GPU_STAGES picks others, e.g. GPU_STAGES="env:40 evolve-circles:90 inverse:300" (the generate
# stages run bench/evolve.py and bench/inverse_table.py; INVERSE_IMAGES is the folder of images).
STAGES=("env 40" "forward 75" "e2e 150" "bf16 75" "prep 50")
if [[ -n "${GPU_STAGES:-}" ]]; then
  STAGES=()
  for entry in $GPU_STAGES; do STAGES+=("${entry/:/ }"); done
fi
INVERSE_IMAGES=${INVERSE_IMAGES:-../shared/caffe_reference/images/real}
generate_command() {  # stage cap -> the command of a generate stage, --quick sizes on a CPU check
  local stage=$1 cap=$2
  local small=$(( ${#QUICK[@]} > 0 ))
  case $stage in
    evolve-circles|evolve-triangles)
      local shape=${stage#evolve-} count=50 population=50
      [[ $shape == triangles ]] && count=100 population=100
      (( small )) && count=4 population=4
      echo python3 bench/evolve.py --shape "$shape" --count $count --population $population \
        --generations $(( small ? 2 : 200 )) --deap-seconds $(( small ? 5 : cap / 3 )) --json "$OUT/$stage.json" ;;
    inverse)
      echo python3 bench/inverse_table.py --images "$INVERSE_IMAGES" --workers $(( small ? 1 : 8 )) \
        --steps $(( small ? 2 : 50 )) --steps-1 $(( small ? 2 : 100 )) $( (( small )) && echo --max-images 1) \
        --deadline $(( cap - 15 )) --json "$OUT/inverse.json" ;;
  esac
}
for entry in "${STAGES[@]}"; do
  read -r stage cap <<< "$entry"
  left=$(( BUDGET - SECONDS - 20 ))
  (( left < cap )) && cap=$left
  if (( cap < 10 )); then
    log "### stage $stage SKIPPED: budget spent (${SECONDS}s)"
    continue
  fi
  extra=()
  [[ $stage == e2e ]] && extra=(--budget $(( cap - 10 )))
  log "### stage $stage (timeout ${cap}s, at ${SECONDS}s)"
  command=$(generate_command "$stage" "$cap")
  if [[ -n "$command" ]]; then
    log "\$ $command"
    timeout -k 5 "$cap" $command 2>&1 | tee -a "$LOG"
  else
    timeout -k 5 "$cap" python3 bench/gpu.py "$stage" --out "$OUT" "${QUICK[@]}" "${extra[@]}" 2>&1 | tee -a "$LOG"
  fi
  rc=${PIPESTATUS[0]}
  (( rc != 0 )) && log "### stage $stage FAILED rc=$rc (124/137: timed out)"
done

cp -f /tmp/jaxnsfw_gpu_bench/*.stderr.txt "$OUT"/ 2>/dev/null
log "### done in ${SECONDS}s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
timeout 30 python3 bench/gpu.py summary --out "$OUT" "${QUICK[@]}" 2>&1 | tee -a "$LOG"
