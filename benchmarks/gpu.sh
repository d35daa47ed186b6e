#!/usr/bin/env bash
# Every speed measurement of issue 29 on one GPU machine with no network, within 8 minutes (benchmarks/speed.py):
# full-size random-weight SD 1.5, SDXL, FLUX.1-schnell and the 2026 DiTs (Z-Image, FLUX.2 klein, Qwen-Image) built
# from the real configs; each result written to benchmarks/results/ as soon as it is measured; a profile at the end.
#   bash benchmarks/gpu.sh                  configs from .real-configs/ (git-ignored; a copy of ../shared/real-configs)
#   DRY=1 bash benchmarks/gpu.sh            the same run on the offline hub's tiny models, on any machine (CPU too)
# Wheels the GPU machine lacks (diffusers, pydantic, ...: see benchmarks/README.md) are installed from .whl/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CONFIGS=${CONFIGS:-.real-configs}
if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install --no-index --no-deps --quiet .whl/*.whl
fi
if [[ "${DRY:-0}" == 1 ]]; then
  exec python3 benchmarks/speed.py --tiny --config-dir "$CONFIGS" --out "${OUT:-benchmarks/results}" \
    --budget "${BUDGET:-3600}" ${STAGES:+--stages "$STAGES"}
fi
[[ -d "$CONFIGS" ]] || { echo "No configs at $CONFIGS: copy ../shared/real-configs there (with its 2026/ folder)"; exit 2; }
exec python3 benchmarks/speed.py --config-dir "$CONFIGS" --hub-cache "${HUB:-.cache/bench-hub}" \
  --out "${OUT:-benchmarks/results}" --budget "${BUDGET:-470}" ${STAGES:+--stages "$STAGES"}
