"""KLT baseline numbers: BADJA (vs the data README's reference) and a make-benchmark set.

Usage: python benchmarks/klt_baseline.py [--bench-dir DIR] [--seed 0]
Prints δ_avg / median error per BADJA sequence next to the README's KLT reference, and
AJ / δ_avg / OA of KLT on a freshly generated (or given) real-image benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cotracker3_plugin.evaluate.badja import evaluate_badja
from cotracker3_plugin.evaluate.klt import KLTTracker
from cotracker3_plugin.evaluate.make_benchmark import BenchmarkConfig, make_benchmark, write_benchmark
from cotracker3_plugin.evaluate.runner import evaluate_tapvid
from cotracker3_plugin.evaluate.tapvid import iter_tapvid

#: data/README.md: KLT (21×21, 4 levels) δ_avg and median error at 480p.
README_KLT = {"bear": (35.9, 17.9), "camel": (34.1, 16.6), "dog": (17.9, 37.5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-dir", type=Path, default=None, help="existing make-benchmark output")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    badja = evaluate_badja(KLTTracker())
    print("BADJA, KLT            δ_avg (ref)     median px (ref)")
    for name, row in badja["per_video"].items():
        ref = README_KLT[name]
        print(f"  {name:<8} {100 * row['average_pts_within_thresh']:10.1f} ({ref[0]:4.1f})"
              f" {row['median_error_px']:10.1f} ({ref[1]:4.1f})")
    print(f"  {'mean':<8} {100 * badja['mean']['average_pts_within_thresh']:10.1f}"
          f" ({sum(r[0] for r in README_KLT.values()) / 3:4.1f})   [{time.perf_counter() - t0:.1f} s]")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.bench_dir
        if path is None:
            cfg = BenchmarkConfig(seed=args.seed)
            path = write_benchmark(make_benchmark(cfg), Path(tmp) / "bench", cfg)
        for mode in ("first", "strided"):
            t0 = time.perf_counter()
            res = evaluate_tapvid(iter_tapvid(Path(path) / "benchmark.pkl", mode), KLTTracker(), mode)
            m = res["mean"]
            print(f"benchmark ({mode}, {res['num_videos']} videos), KLT: AJ {100 * m['average_jaccard']:.1f}"
                  f"  δ_avg {100 * m['average_pts_within_thresh']:.1f}  OA {100 * m['occlusion_accuracy']:.1f}"
                  f"   [{time.perf_counter() - t0:.1f} s]")


if __name__ == "__main__":
    main()
