#!/usr/bin/env bash
# The bundled model's whole recipe (scripts/train_bundled_model.sh) on one CUDA GPU, in chunks that
# each fit a time-limited call (default: 8 minutes of training, for a 9-10 minute job):
#   1. pretrain:    supervised synthetic pre-training at 96x128;
#   2. pretrain192: more synthetic steps at 192x256 (the model resolution);
#   3. finetune:    pseudo-label fine-tuning on real videos (teachers: the model itself and KLT);
#   4. metrics:     the held-out evaluation of every finished stage as a table (metrics.md, metrics.csv).
#
#   bash scripts/train_device.sh [small|official] [--prepare]
#
# Device workflow (calls of at most 10 minutes, 64 MiB of carried files):
#   here:    TD_RUN=runs/device_small bash scripts/train_device.sh small --prepare   (copies the real videos in)
#   device:  TD_RUN=runs/device_small bash scripts/train_device.sh small             (carry runs/device_small)
#   here:    replace runs/device_small with the returned $OUT/run; repeat until "all stages done".
# The small model's carried folder peaks at about 56 MB (two stages' final weights, one checkpoint with
# the optimiser state, 4.3 MB of videos).
#
# Every call continues where the last one stopped: the run folder ($TD_RUN, default runs/device_<model>)
# holds each stage's newest resumable checkpoint (the trainer's exact resume; a stage is done when its
# final.safetensors exists, and then its checkpoints are deleted to keep the folder small enough to
# carry to the next call). Stages stop at a step boundary when the time budget is spent
# (--stop-after-seconds); the call then exits 0 with "rerun to continue". When $OUT is set (the device
# runner's output folder), the run folder is copied there at the end of every call: carry it back as
# $TD_RUN for the next call.
#
# Real videos: $TD_VIDEOS, else $TD_RUN/real_videos, which is filled on the first call from the shared
# data (../shared/data/videos without bear.mp4, kept out for BADJA; copies, not links, so they travel
# with the run folder; add the fox images with TD_WITH_FOX=1, +18 MB).
#
# `official` runs the same stages with the official architecture at 384x512 (60 frames, 512 tracks;
# fine-tuning 80 frames, 384 tracks). Its checkpoints (~300 MB with the optimiser state) are too large
# to carry between time-limited calls of 64 MiB; run it where the run folder persists.
#
# Settings (environment; defaults in brackets): TD_RUN, TD_BUDGET_S [480], TD_DEVICE [cuda],
# TD_PRECISION [auto], TD_PRETRAIN_STEPS / TD_HIRES_STEPS / TD_FINETUNE_STEPS [2400 / 1500 / 750 small;
# 50000 / 0 / 15000 official], TD_ARCH [small|official: the --model of stage 1; tiny for tests],
# TD_SIZE_LO / TD_SIZE_HI ["96 128" / "192 256"], TD_SEQ_LEN [16], TD_FT_SEQ_LEN [24], TD_TRACKS [48],
# TD_EVAL_SAMPLES [4], TD_CHUNK_STEPS (also stop each stage after this many steps: tests),
# TD_PYTHON [python], TD_DATA [synthetic] and TD_3D_RATIO [0] (synthetic data of stages 1-2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-small}"
case "$MODEL" in small|official) ;; *) echo "usage: $0 [small|official] [--prepare]" >&2; exit 2 ;; esac
RUN="${TD_RUN:-$ROOT/runs/device_$MODEL}"
PY="${TD_PYTHON:-python}"
BUDGET="${TD_BUDGET_S:-480}"
DEVICE="${TD_DEVICE:-cuda}"
PRECISION="${TD_PRECISION:-auto}"
SHARED="${COTRACKER3_SHARED:-$ROOT/../shared}"
START=$(date +%s)
if [ "$MODEL" = small ]; then
    ARCH="${TD_ARCH:-small}"; PRE="${TD_PRETRAIN_STEPS:-2400}"; HI="${TD_HIRES_STEPS:-1500}"
    FT="${TD_FINETUNE_STEPS:-750}"; LO_SIZE="${TD_SIZE_LO:-96 128}"; HI_SIZE="${TD_SIZE_HI:-192 256}"
    SEQ="${TD_SEQ_LEN:-16}"; FT_SEQ="${TD_FT_SEQ_LEN:-24}"; TRACKS="${TD_TRACKS:-48}"; FT_TRACKS="$TRACKS"
    FT_SIDE=384
else
    ARCH="${TD_ARCH:-official}"; PRE="${TD_PRETRAIN_STEPS:-50000}"; HI="${TD_HIRES_STEPS:-0}"
    FT="${TD_FINETUNE_STEPS:-15000}"; LO_SIZE="${TD_SIZE_LO:-384 512}"; HI_SIZE="${TD_SIZE_HI:-384 512}"
    SEQ="${TD_SEQ_LEN:-60}"; FT_SEQ="${TD_FT_SEQ_LEN:-80}"; TRACKS="${TD_TRACKS:-512}"; FT_TRACKS=384
    FT_SIDE=768
fi
EVAL_N="${TD_EVAL_SAMPLES:-4}"
CHUNK=()
[ -n "${TD_CHUNK_STEPS:-}" ] && CHUNK=(--stop-after "$TD_CHUNK_STEPS")
COMMON=(--device "$DEVICE" --precision "$PRECISION" --keep-checkpoints 1 --no-tensorboard)
mkdir -p "$RUN"

# The real videos of stage 3 live in the run folder, so that they travel with it to the next call.
VIDEOS="${TD_VIDEOS:-$RUN/real_videos}"
if [ -z "${TD_VIDEOS:-}" ] && [ ! -d "$VIDEOS" ] && [ -d "$SHARED/data/videos" ]; then
    rm -rf "$VIDEOS.tmp"
    mkdir -p "$VIDEOS.tmp"
    for v in "$SHARED"/data/videos/*.mp4; do
        [ "$(basename "$v")" = bear.mp4 ] || cp "$v" "$VIDEOS.tmp/"
    done
    if [ "${TD_WITH_FOX:-0}" = 1 ]; then cp -r "$SHARED/data/fox/images" "$VIDEOS.tmp/fox"; fi
    mv "$VIDEOS.tmp" "$VIDEOS"
fi
if [ ! -d "$VIDEOS" ] || [ -z "$(ls -A "$VIDEOS")" ]; then
    echo "no real videos for the fine-tuning stage in $VIDEOS: set TD_VIDEOS, or run this once where" \
         "../shared/data exists (with --prepare) so that $RUN/real_videos is filled, and carry $RUN." >&2
    exit 2
fi
if [ "${2:-}" = --prepare ]; then
    echo "prepared $RUN ($(du -sh "$RUN" | cut -f1)); carry it to the device and run without --prepare"
    exit 0
fi

finish() {  # the metrics table of the finished stages, and a copy of the run folder in $OUT
    "$PY" - "$RUN" <<'PY'
import csv, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = []
for stage in ("pretrain", "pretrain192", "finetune"):
    f = run / stage / "eval.csv"
    if f.is_file():
        with open(f, newline="") as fh:
            last = list(csv.DictReader(fh))[-1:]
        for r in last:
            done = (run / stage / "final.safetensors").is_file()
            rows.append({"stage": stage, "done": "yes" if done else "no", **r})
if rows:
    keys = ["stage", "done", "step", "mean_px_error", "average_jaccard", "average_pts_within_thresh",
            "occlusion_accuracy"]
    keys += [k for k in rows[0] if k not in keys]
    with open(run / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{float(r[k]):.4g}" if k not in ("stage", "done", "step") and r.get(k)
                                       else str(r.get(k, "")) for k in keys) + " |")
    (run / "metrics.md").write_text("Held-out synthetic evaluation (last evaluation of each stage)\n\n"
                                    + "\n".join(lines) + "\n")
    print((run / "metrics.md").read_text())
PY
    if [ -n "${OUT:-}" ] && [ "$(cd "$OUT" 2>/dev/null && pwd)" != "$(cd "$RUN" && pwd)" ]; then
        mkdir -p "$OUT/run"
        cp -a "$RUN/." "$OUT/run/"
        echo "run folder copied to $OUT/run (carry it back as TD_RUN to continue)"
    fi
}

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME COMMAND ARGS...: run (or resume) one stage inside the time left; exit 0 when it must continue later
stage() {
    local name="$1"; shift
    if [ -f "$RUN/$name/final.safetensors" ]; then
        echo "stage $name: done"
        return 0
    fi
    local t; t=$(left)
    if [ "$t" -le 20 ]; then
        echo "time budget spent before stage $name; rerun to continue"
        finish; exit 0
    fi
    echo "stage $name: training for at most $((t - 15)) s"
    "$PY" -m cotracker3_plugin "$@" --output-dir "$RUN/$name" --stop-after-seconds "$((t - 15))" \
        "${COMMON[@]}" ${CHUNK[@]+"${CHUNK[@]}"}
    if [ ! -f "$RUN/$name/final.safetensors" ]; then
        echo "stage $name stopped before its last step; rerun to continue"
        finish; exit 0
    fi
    rm -rf "$RUN/$name/checkpoints"  # finished: its final weights are all the next stages need
}

# shellcheck disable=SC2086  # the sizes are two numbers each
stage pretrain train --model "$ARCH" --crop-size $LO_SIZE --seq-len "$SEQ" --random-seq-len False \
    --traj-per-sample "$TRACKS" --num-steps "$PRE" --checkpoint-every 500 --eval-every "$PRE" \
    --eval-samples "$EVAL_N" --log-every 10 --data "${TD_DATA:-synthetic}" --synthetic3d-ratio "${TD_3D_RATIO:-0}"
INIT="$RUN/pretrain/final.safetensors"
if [ "$HI" -gt 0 ]; then
    # shellcheck disable=SC2086
    stage pretrain192 train --init-from "$INIT" --crop-size $HI_SIZE --seq-len "$SEQ" --random-seq-len False \
        --traj-per-sample "$TRACKS" --num-steps "$HI" --optim.lr 2e-4 --checkpoint-every 500 --eval-every "$HI" \
        --eval-samples "$EVAL_N" --log-every 10 --data "${TD_DATA:-synthetic}" --synthetic3d-ratio "${TD_3D_RATIO:-0}"
    INIT="$RUN/pretrain192/final.safetensors"
fi

# shellcheck disable=SC2086
stage finetune finetune --init-from "$INIT" --data.root "$VIDEOS" --data.max-side "$FT_SIDE" --teachers self klt \
    --crop-size $HI_SIZE --seq-len "$FT_SEQ" --traj-per-sample "$FT_TRACKS" --num-steps "$FT" --checkpoint-every 100 \
    --eval-every "$FT" --eval-samples "$EVAL_N" --log-every 5
echo "all stages done: $RUN/finetune/final.safetensors"
finish
