"""Gauss-Legendre nodes and weights for integrated gradients: attribfast's vs numpy's leggauss
(what Captum calls), by number of points.

    python benchmarks/bench_quadrature.py --repeats 5

attribfast solves each node by Newton iteration on the Legendre recurrence (O(n) a node, O(n^2) in
all, checking for cancellation between blocks of nodes); leggauss takes the eigenvalues of the
companion matrix (O(n^3)), so it is timed up to 5000 points only. Medians of --repeats runs.
"""

from __future__ import annotations

import argparse

import numpy as np
from attribfast import _core
from common import median_seconds

SIZES = (64, 512, 5000, 20000, 50000, 65536)
NUMPY_UP_TO = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| points | attribfast median (s) | min (s) | numpy leggauss median (s) |")
    print("| ---: | ---: | ---: | ---: |")
    for n in SIZES:
        median, times = median_seconds(lambda n=n: _core.quadrature("gausslegendre", n), args.repeats)
        numpy = "-"
        if n <= NUMPY_UP_TO:
            numpy = f"{median_seconds(lambda n=n: np.polynomial.legendre.leggauss(n), args.repeats)[0]:.4f}"
        print(f"| {n} | {median:.4f} | {min(times):.4f} | {numpy} |")


if __name__ == "__main__":
    main()
