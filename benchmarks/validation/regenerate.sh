#!/usr/bin/env bash
# Rebuild every committed validation table and the two committed calibrations from the raw
# JSON beside this script (no GPU needed).  Run from the repository root:
#   bash benchmarks/validation/regenerate.sh
# Uses .venv/bin/python when it exists, else python.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
v=benchmarks/validation
cal=instances/calibration
report() { "$py" "$v/report.py" "$@"; }

# The default runner (fusion "megatron": Megatron-LM's fused elementwise kernels and gradient
# accumulation).  The primary table, fitted on its own lease's profile: the committed H200
# calibration.
report "$v/raw-h200x2-megatron2.json" --cluster h100x2-nvlink \
    --calibration-out "$cal/h200-sxm-141gb.yaml" --out-dir "$v"
# Another lease of the same runner, priced with the committed calibration (out of sample).
report "$v/raw-h200x2-megatron.json" --cluster h100x2-nvlink \
    --calibration "$cal/h200-sxm-141gb.yaml" --out-dir "$v/h200x2-megatron"
# Fusion "compile" (elementwise fusions, autograd's gradient accumulation): its own profile's
# calibration, which prices that accumulation (grad_accumulation_bytes_per_param).
report "$v/raw-h200x2-compile.json" --cluster h100x2-nvlink --out-dir "$v/h200x2-compile"
# One H100 (fusion "megatron"): the committed H100 calibration and its own table; the
# "compile" lease on one H100 with its own calibration.
report "$v/raw-h100x1-megatron.json" --cluster h100x2-nvlink \
    --calibration-out "$cal/h100-sxm5-80gb.yaml" --out-dir "$v/h100x1"
report "$v/raw-h100x1-compile.json" --cluster h100x2-nvlink --out-dir "$v/h100x1-compile"

# The eager runner (fusion "none", sessions 2-4): its own calibration, fitted on run4's
# profile, prices the other eager leases.
eager="$v/h200x2-eager/calibration.yaml"
mkdir -p "$v/h200x2-eager"
report "$v/raw-h200x2-run4.json" --cluster h100x2-nvlink \
    --calibration-out "$eager" --out-dir "$v/h200x2-eager"
for run in run3 run5; do
    report "$v/raw-h200x2-$run.json" --cluster h100x2-nvlink \
        --calibration "$eager" --out-dir "$v/h200x2-$run"
done
report "$v/raw-h200x4.json" --cluster seed-4x8-h100 --calibration "$eager" --out-dir "$v/h200x4"
report "$v/raw-h200x4-run2.json" --cluster seed-4x8-h100 --calibration "$eager" \
    --out-dir "$v/h200x4-run2"
