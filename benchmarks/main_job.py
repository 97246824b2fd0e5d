"""The main job, stage by stage, against COLMAP's own SIFT pipeline on the same frames.

Why: ``cotracker3 run VIDEO`` replaces COLMAP's feature matching with point tracks; whether that is
worth it depends on where the time goes. This script runs, each in its own process (so the peak
resident memory is its own, read with ``os.wait4``):

* **ours**: ``cotracker3 run VIDEO`` as a user runs it (``python -m cotracker3_plugin run``, extra
  flags after ``--``); the stage times come from the ``summary.json`` it writes (``runtime_s`` and
  ``reconstruct_runtime_s``);
* **colmap**: the same frames (decoded by the same ``load_input(video, num_frames_target,
  max_side)``) through pycolmap's SIFT extraction, sequential (or exhaustive) matching and
  incremental mapping with an unknown lens (one SIMPLE_RADIAL camera): ``run_colmap_sift`` of
  ``benchmarks/reconstruct_accuracy.py``, timed per stage.

It prints the stages side by side with the ratio of the totals, the CPU model and thread count,
and writes ``benchmarks/results/<--name>.json`` and ``.md``. Stages that ``summary.json`` does not
separate are listed under "not separated" in both files.

    python benchmarks/main_job.py                                   # examples/data/cat.mp4
    python benchmarks/main_job.py VIDEO --threads 2 --name main_job_fox
    python benchmarks/main_job.py --num-frames-target 12 --max-side 320 --name smoke -- --no-dense
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "cat.mp4"

#: What ``summary.json`` lumps together (stage -> what it holds); reported so it can be split later.
NOT_SEPARATED = {
    "track": "model loading + query grid + resizing to the model resolution + the network",
    "reconstruct.correspondences": "building the correspondences + the Lucas-Kanade refinement / KLT hand-over",
    "reconstruct.sift": "SIFT extraction + matching (+ joining the feature tracks)",
    "reconstruct.calibration": "focal self-calibration (and the camera solve, where the pipeline times no mapping stage)",
    "COLMAP mapping": "pycolmap's incremental_mapping: registration, triangulation and its bundle adjustments in one call",
    "export": "images/, downscales, masks, COLMAP model, transforms.json, PLY files",
}


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` in its own process: wall seconds, exit code, peak RSS and CPU seconds of that
    process and its descendants (``os.wait4`` gives the rusage of exactly this child)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    # ru_maxrss is in KiB on Linux
    return {"returncode": proc.returncode, "wall_s": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "stdout": stdout, "stderr": stderr}


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


# ----------------------------------------------------------------------------- ours
def run_ours(video: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``cotracker3 run`` in a child process; its summary.json's stage times."""
    cmd = [sys.executable, "-m", "cotracker3_plugin", "run", str(video), "--output", str(out_dir), "--overwrite",
           "--num-frames-target", str(args.num_frames_target), "--max-side", str(args.max_side), *args.run_args]
    res = run_measured(cmd, _env(args.threads))
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if res["returncode"] != 0:
        print(f"cotracker3 run failed (exit {res['returncode']}):\n{res['stderr'][-3000:]}", file=sys.stderr)
    return {"command": " ".join(cmd[2:]), "process": {k: v for k, v in res.items() if k not in ("stdout", "stderr")},
            "summary": summary}


def ours_stages(summary: dict[str, Any]) -> dict[str, float]:
    """Flat stage -> seconds from summary.json (reconstruct's sub-stages prefixed)."""
    stages = {k: float(v) for k, v in summary.get("runtime_s", {}).items() if k != "total"}
    sub = summary.get("reconstruct_runtime_s") or {}
    if sub:
        stages.pop("reconstruct", None)
        stages.update({f"reconstruct.{k}": float(v) for k, v in sub.items()})
    return stages


# ----------------------------------------------------------------------------- COLMAP
def colmap_child(args: argparse.Namespace) -> int:
    """In the child: decode like ``cotracker3 run``, then COLMAP's SIFT pipeline; JSON on stdout."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cotracker3_nerfstudio.process_data import load_input
    from reconstruct_accuracy import run_colmap_sift

    t0 = time.perf_counter()
    clip = load_input(Path(args.video), args.num_frames_target, args.max_side)
    times = {"decode": round(time.perf_counter() - t0, 3)}
    wfc, info = run_colmap_sift(clip.frames, args.matching, times)
    registered = int((~(wfc != wfc).any(axis=(1, 2))).sum())  # NaN poses = not registered
    print(json.dumps({"times": times, "frames": len(clip.frames), "frame_size_hw": list(clip.frame_size),
                      "registered": registered, **{k: (float(v) if isinstance(v, float) else v)
                                                   for k, v in info.items()}}))
    return 0


def run_colmap(video: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--colmap-child", str(video), "--num-frames-target", str(args.num_frames_target),
           "--max-side", str(args.max_side), "--matching", args.matching]
    res = run_measured(cmd, _env(args.threads))
    if res["returncode"] != 0:
        print(f"COLMAP baseline failed (exit {res['returncode']}):\n{res['stderr'][-3000:]}", file=sys.stderr)
        return {"process": {k: v for k, v in res.items() if k not in ("stdout", "stderr")}}
    data = json.loads(res["stdout"].strip().splitlines()[-1])
    return {"process": {k: v for k, v in res.items() if k not in ("stdout", "stderr")}, **data}


# ----------------------------------------------------------------------------- the table
#: Rows of the side-by-side table: (label, stages of ours, stages of COLMAP). A stage name also
#: matches its variants with a suffix (``mapping`` matches ``mapping_fixed``).
ROWS = [
    ("decode (+ COLMAP: write images)", ["decode"], ["decode", "write_images"]),
    ("network tracking (incl. model load)", ["track"], []),
    ("correspondences + LK refinement / KLT hand-over", ["reconstruct.correspondences"], []),
    ("SIFT extraction", [], ["extract"]),
    ("SIFT matching", [], ["match"]),
    ("SIFT extraction + matching (ours)", ["reconstruct.sift"], []),
    ("motion (moving-object tests)", ["reconstruct.motion"], []),
    ("key frames", ["reconstruct.keyframes"], []),
    ("focal calibration", ["reconstruct.calibration"], []),
    ("mapping + triangulation + BA", ["reconstruct.mapping", "reconstruct.triangulation",
                                      "reconstruct.bundle_adjustment"], ["mapping"]),
    ("photometric re-measurement + BA", ["reconstruct.photometric_refinement"], []),
    ("clean-up", ["reconstruct.cleanup", "reconstruct.end"], []),
    ("densify", ["densify"], []),
    ("export", ["export"], []),
]


def _matches(key: str, names: list[str]) -> bool:
    return any(key == n or key.startswith(n + "_") for n in names)


def side_by_side(ours: dict[str, float], colmap: dict[str, float]) -> list[dict[str, Any]]:
    """One row per ROWS entry that either side has, then any stage of ours no row names."""
    rows, used = [], set()
    for label, a, b in ROWS:
        ka = [k for k in ours if _matches(k, a)]
        vb = [colmap[k] for k in b if k in colmap]
        used.update(ka)
        if ka or vb:
            rows.append({"stage": label, "ours_s": sum(ours[k] for k in ka) if ka else None,
                         "colmap_s": sum(vb) if vb else None, "ours_stages": ", ".join(ka)})
    for k in sorted(set(ours) - used):  # stages added to summary.json later
        rows.append({"stage": k, "ours_s": ours[k], "colmap_s": None, "ours_stages": k})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", type=Path, default=EXAMPLE)
    ap.add_argument("--num-frames-target", type=int, default=48, help="as `cotracker3 run` (its default)")
    ap.add_argument("--max-side", type=int, default=640, help="as `cotracker3 run` (its default)")
    ap.add_argument("--matching", choices=["sequential", "exhaustive"], default="sequential")
    ap.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of both runs (default: all)")
    ap.add_argument("--skip-colmap", action="store_true", help="time our run only")
    ap.add_argument("--name", default="main_job", help="results go to benchmarks/results/NAME.{json,md}")
    ap.add_argument("--colmap-child", help=argparse.SUPPRESS)  # internal
    argv = sys.argv[1:] if argv is None else argv
    run_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, run_args = argv[:i], argv[i + 1:]
    args = ap.parse_args(argv)
    args.run_args = run_args
    if args.colmap_child:
        args.video = args.colmap_child
        return colmap_child(args)

    machine = machine_info(args.threads)
    print(machine_markdown(machine), flush=True)
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        ours = run_ours(args.video, Path(tmp) / "ours", args)
        print(f"ours: {ours['process']['wall_s']:.1f} s, peak {ours['process']['peak_rss_mib']:.0f} MiB", flush=True)
    colmap = None if args.skip_colmap else run_colmap(args.video, args)
    if colmap is not None and "times" in colmap:
        print(f"COLMAP: {colmap['process']['wall_s']:.1f} s, peak {colmap['process']['peak_rss_mib']:.0f} MiB",
              flush=True)

    summary = ours["summary"]
    rows = side_by_side(ours_stages(summary), (colmap or {}).get("times", {}))
    o_wall, c_wall = ours["process"]["wall_s"], (colmap or {}).get("process", {}).get("wall_s")
    totals = {"ours_wall_s": o_wall, "colmap_wall_s": c_wall,
              "colmap_over_ours": (c_wall / o_wall) if c_wall and o_wall else None,
              "ours_peak_rss_mib": ours["process"]["peak_rss_mib"],
              "colmap_peak_rss_mib": (colmap or {}).get("process", {}).get("peak_rss_mib"),
              "ours_registered": summary.get("frames_registered"), "ours_points": summary.get("points"),
              "ours_dense_points": (summary.get("dense") or {}).get("points"),
              "colmap_registered": (colmap or {}).get("registered"), "colmap_points": (colmap or {}).get("points"),
              "frames": summary.get("frames", (colmap or {}).get("frames"))}
    rows.append({"stage": "total (wall, process)", "ours_s": o_wall, "colmap_s": c_wall})
    for r in rows:
        r["colmap_over_ours"] = (r["colmap_s"] / r["ours_s"]) if r.get("colmap_s") and r.get("ours_s") else None

    columns = [("stage", "stage", ""), ("ours s", "ours_s", ".2f"), ("COLMAP s", "colmap_s", ".2f"),
               ("COLMAP / ours", "colmap_over_ours", ".2f"), ("summary.json keys", "ours_stages", "")]
    table = markdown_table(rows, columns)
    ratio = totals["colmap_over_ours"]
    lines = [
        f"# Main job vs COLMAP ({args.name})", "", machine_markdown(machine),
        f"Video {args.video} ({totals['frames']} frames, --max-side {args.max_side}); ours: "
        f"`{ours['command']}`; COLMAP: SIFT + {args.matching} matching + incremental mapping, unknown lens.", "",
        table, "",
        f"- peak RSS: ours {totals['ours_peak_rss_mib']} MiB, COLMAP {totals['colmap_peak_rss_mib']} MiB",
        f"- registered frames: ours {totals['ours_registered']}, COLMAP {totals['colmap_registered']}; "
        f"points: ours {totals['ours_points']} (+ {totals['ours_dense_points']} in the dense cloud), "
        f"COLMAP {totals['colmap_points']}",
        f"- COLMAP / ours total time: {ratio:.2f}x" if ratio else "- COLMAP not run",
        "", "Not separated (each is one stage above):", "",
        *[f"- `{k}`: {v}" for k, v in NOT_SEPARATED.items()],
    ]
    md = "\n".join(lines)
    print("\n" + md)
    payload = {"benchmark": "main_job", "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
               "totals": totals, "rows": rows, "not_separated": NOT_SEPARATED,
               "ours": {"command": ours["command"], "process": ours["process"],
                        "runtime_s": summary.get("runtime_s"), "reconstruct_runtime_s": summary.get("reconstruct_runtime_s")},
               "colmap": colmap}
    jpath, mpath = write_results(args.name, payload, md)
    print(f"\nresults: {jpath} and {mpath}")
    return 0 if ours["process"]["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
