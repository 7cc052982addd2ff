"""Video input throughput on one CPU core: decode + X3D preprocessing, and the
synthetic-set generator.

    .venv/bin/python benchmarks/studies/data_throughput.py [--repeats 3]

One core: the process is pinned to one CPU (``os.sched_setaffinity``), OpenCV
runs single-threaded (``cv2.setNumThreads(1)``) and the FFmpeg decoder gets one
thread (``CAP_PROP_N_THREADS=1``).  Each figure is the median of ``--repeats``
runs; the load average is printed because other work on the machine skews it.

1. streaming: every frame of a source decoded, clips of T x stride cut back to
   back and preprocessed (the run-time path, ``calib_data.stream``) - source
   frames/s, x real time (source fps), clips/s; goal >= 4x real time at 160 px.
   Sources: the shipped real clip (h264, 640x272, 25 fps) and a 10 s, 30 fps,
   340x256 mp4v video (Kinetics' usual size) made here.
2. dataset: ``calib_data.load_clips`` over the shipped calibration manifest (100
   synthetic 16 x 160 px clips; the real clip excluded) - clips/s, frames/s.
3. synth: ``calib_data.synth.write_dataset`` at 16 frames x 160 px (render +
   mp4v encode + manifest) - clips/s; goal >= 20.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from calib_data import shipped_dir
from calib_data.datasets import read_manifest
from calib_data.loader import load_clips
from calib_data.sampling import clip_span
from calib_data.stream import sliding_clips
from calib_data.synth import synth_clip, write_dataset, write_video


def one_core() -> str:
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}, cv2.setNumThreads(1), FFmpeg decoder threads 1"
    return "cv2.setNumThreads(1), FFmpeg decoder threads 1 (no CPU pinning on this OS)"


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process-CPU seconds of ``fn()``.  On a pinned core
    the two agree on an idle machine; CPU time is the one that survives neighbours."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def kinetics_like_source(path: Path) -> Path:
    """10 s of 30 fps 340x256 video from the synthetic renderer."""
    frames, _ = synth_clip(seed=7, index=0, frames=300, size=256)
    wide = np.stack([cv2.resize(f, (340, 256), interpolation=cv2.INTER_LINEAR) for f in frames])
    write_video(path, wide, fps=30.0)
    return path


def bench_stream(source: Path, frames: int, stride: int, size: int, repeats: int) -> dict[str, float]:
    cap = cv2.VideoCapture(str(source))
    fps, total = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    span = clip_span(frames, stride)
    counted: list[int] = []

    def run() -> None:
        counted.append(sum(1 for _ in sliding_clips(source, frames, stride, hop=span, resolution=size, threads=1)))

    wall, cpu = median_time(run, repeats)
    return {"fps_source": fps, "frames": total, "clips": counted[-1], "wall": wall, "cpu": cpu,
            "frames_per_s": total / wall, "frames_per_cpu_s": total / cpu, "realtime_x": total / wall / fps,
            "realtime_x_cpu": total / cpu / fps, "clips_per_s": counted[-1] / wall}


def bench_dataset(manifest: Path, frames: int, size: int, repeats: int) -> dict[str, float]:
    dataset = read_manifest(manifest)
    synthetic = replace(dataset, items=tuple(i for i in dataset.items if i.label is not None))
    n = len(synthetic)
    wall, cpu = median_time(lambda: sum(1 for _ in load_clips(synthetic, frames, size)), repeats)
    return {"clips": n, "clips_per_s": n / wall, "frames_per_s": n * frames / wall, "clips_per_cpu_s": n / cpu}


def bench_synth(clips: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = median_time(lambda: write_dataset(Path(tmp), clips, seed=1, frames=16, size=160), repeats)
    render_wall, render_cpu = median_time(lambda: [synth_clip(1, i, 16, 160) for i in range(clips)], repeats)
    return {"clips": clips, "clips_per_s": clips / wall, "clips_per_cpu_s": clips / cpu,
            "render_clips_per_s": clips / render_wall, "render_clips_per_cpu_s": clips / render_cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    p.add_argument("--synth-clips", type=int, default=100, help="clips per synth run")
    args = p.parse_args(argv)
    how = one_core()
    print(f"# calib_data throughput, one core ({how})")
    print(f"# OpenCV {cv2.__version__}, numpy {np.__version__}, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs, median of {args.repeats}; '/cpu-s' = per second of process CPU time")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"bikes.mp4 (real, h264 640x272)": shipped_dir() / "real" / "bikes.mp4",
                   "kinetics-like (mp4v 340x256)": kinetics_like_source(Path(tmp) / "k.mp4")}
        print("\n## streaming decode + preprocess (every source frame decoded)   [goal >= 4x real time at 160 px]")
        print(f"{'source':32} {'clip':>5} {'px':>4} {'src fps':>7} {'frames/s':>9} {'x real time':>11} "
              f"{'clips/s':>8} {'frames/cpu-s':>12} {'x rt (cpu)':>10}")
        for name, src in sources.items():
            for frames, stride, size in ((13, 6, 160), (16, 5, 224)):
                r = bench_stream(src, frames, stride, size, args.repeats)
                print(f"{name:32} {f'{frames}x{stride}':>5} {size:>4} {r['fps_source']:>7.1f} "
                      f"{r['frames_per_s']:>9.0f} {r['realtime_x']:>11.1f} {r['clips_per_s']:>8.1f} "
                      f"{r['frames_per_cpu_s']:>12.0f} {r['realtime_x_cpu']:>10.1f}")
    print("\n## dataset path: load_clips over the shipped synthetic clips (16 frames, 160x160 mp4v)")
    print(f"{'px':>4} {'clips':>6} {'clips/s':>8} {'frames/s':>9} {'clips/cpu-s':>11}")
    for size in (160, 224):
        r = bench_dataset(shipped_dir() / "manifest.csv", 16, size, args.repeats)
        print(f"{size:>4} {r['clips']:>6} {r['clips_per_s']:>8.1f} {r['frames_per_s']:>9.0f} "
              f"{r['clips_per_cpu_s']:>11.1f}")
    print("\n## synthetic set generation, 16 frames x 160 px   [goal >= 20 clips/s]")
    r = bench_synth(args.synth_clips, args.repeats)
    print(f"write_dataset (render + mp4v encode): {r['clips_per_s']:.1f} clips/s, "
          f"{r['clips_per_cpu_s']:.1f} clips/cpu-s")
    print(f"render only:                          {r['render_clips_per_s']:.1f} clips/s, "
          f"{r['render_clips_per_cpu_s']:.1f} clips/cpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
