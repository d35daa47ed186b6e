#!/usr/bin/env bash
# The issue-9 benchmark on a GPU machine with no network: full-size random-weight SD 1.5 and SDXL (FLUX.1-schnell
# too with FLUX=1) built from the real configs, every variant, the SDXL switching test. Results: benchmarks/results/.
#   CONFIGS=../shared/real-configs bash benchmarks/gpu.sh       (or a copy of them carried to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${CONFIGS:-../shared/real-configs}
MODELS=(sd15 sdxl-base)
[[ "${FLUX:-0}" == 1 ]] && MODELS+=(flux-schnell)
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
python3 -m helpers bench "${MODELS[@]}" --variants diffusers,eager,auto,max,graphs \
  --switch sdxl-base,animagine-xl-3.1 --random-weights --config-dir "$CONFIGS" --hub-cache "${HUB:-.cache/bench-hub}" \
  --out benchmarks/results
