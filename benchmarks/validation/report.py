"""Measured vs predicted: turn a device run's raw JSON into the validation table.

The GPU machine runs (only torch and numpy needed there)::

    python solver/profile/run.py all --out $OUT/raw.json --time-budget-s 400

and here, with the full package::

    python benchmarks/validation/report.py RAW.json            # table.md + table.json here
    python benchmarks/validation/report.py RAW.json --calibration-out \
        instances/calibration/h100-sxm5-80gb.yaml               # also keep the calibration

The calibrated column uses the raw JSON's own profile section (or ``--calibration FILE``).
See ``benchmarks/validation/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from solver.io import load_calibration  # noqa: E402
from solver.profile.calibrate import (  # noqa: E402
    calibration_from_raw,
    calibration_yaml,
    read_raw,
)
from solver.profile.compare import VALIDATION_CLUSTER, compare, render_markdown  # noqa: E402
from solver.report import dumps  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", type=Path, help="raw JSON written by solver/profile/run.py")
    p.add_argument("--cluster", default=VALIDATION_CLUSTER, help="cluster the plans are priced on")
    p.add_argument("--calibration", type=Path, help="calibration YAML for the calibrated column")
    p.add_argument("--calibration-out", type=Path, help="also write the fitted calibration here")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where table.md/json go")
    args = p.parse_args(argv)
    raw = read_raw(args.raw)
    cal = load_calibration(args.calibration) if args.calibration else None
    if args.calibration_out is not None:
        fitted = calibration_from_raw(raw, source=str(args.raw))
        args.calibration_out.write_text(calibration_yaml(fitted))
        print(f"wrote {args.calibration_out}")
    result = compare(raw, cluster=args.cluster, calibration=cal)
    text = render_markdown(result)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "table.md").write_text(text + "\n")
    (args.out_dir / "table.json").write_text(dumps(result) + "\n")
    print(text)
    print(f"\nwrote {args.out_dir / 'table.md'} and {args.out_dir / 'table.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
