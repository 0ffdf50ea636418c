"""How well the fitted latency model tells a 3g instance from a 4g one (both have 4 memory slots).

    python -m benchmarks.fit_3g4g [--catalog-commit REV]

Over every (batch, processes) pair measured on both 3g and 4g for ParvaGPU's models (A100-80GB), the
mean 3g/4g throughput ratio, measured and fitted, and at each model's best 3g segment (at most 3
processes) the median of measured / fitted throughput. The measured rows are the shipped catalog's;
with ``--catalog-commit REV`` the fitted models are those the catalog held at git revision REV (for
example one before the memory-slot term) instead of today's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from rlmig.catalog import LatencyModel, catalog

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog-commit", default=None, help="git revision whose fitted models to use")
    args = parser.parse_args()
    measured, fitted, best = [], [], []
    for name, profile in catalog("A100-80GB").items():
        if not str(profile.details.get("provenance", {}).get("dataset", "")).startswith("ParvaGPU"):
            continue
        model = profile.latency
        if args.catalog_commit:
            path = f"{args.catalog_commit}:rlmig/data/catalog/{name}@A100-80GB.json"
            text = subprocess.run(
                ["git", "-C", str(ROOT), "show", path], capture_output=True, text=True, check=True
            )
            model = LatencyModel.from_json(json.loads(text.stdout)["latency_model"])

        def fit(c: int, b: int, p: int, model: LatencyModel = model) -> float:
            return b * p / float(model.latency_s(c, b, p))

        rows = profile.measured.rows
        for (c, b, p), (_, throughput) in rows.items():
            if c == 3 and (4, b, p) in rows:
                measured.append(throughput / rows[4, b, p][1])
                fitted.append(fit(3, b, p) / fit(4, b, p))
        throughput, key = max((thr, k) for k, (_, thr) in rows.items() if k[0] == 3 and k[2] <= 3)
        best.append(throughput / fit(*key))
    print(
        f"3g/4g throughput over {len(measured)} measured (batch, processes) pairs: "
        f"measured {np.mean(measured):.3f}, fitted {np.mean(fitted):.3f}"
    )
    print(
        f"best 3g segment: measured / fitted median {np.median(best):.3f} "
        f"(range {min(best):.3f}-{max(best):.3f}) over {len(best)} models"
    )


if __name__ == "__main__":
    main()
