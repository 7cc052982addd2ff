"""Sweep: compile and measure a grid of configurations into the result store, resumably.

``edgevid sweep --config SWEEP.toml [--db DB] [--device NAME]``.  The TOML file
lists values per axis (a single value may be given bare); the grid is their
product::

    model = ["x3d_xs"]
    width = [0.5, 0.75, 1.0]
    resolution = [112, 160]     # absent: each model's default
    frames = [4]                # absent: each model's default
    precision = ["fp32", "int8"]
    prune = [0.0]
    target = ["onnxruntime", "openvino"]
    threads = [1, 2]            # absent: the CPUs this process may use

    runs = 20                   # timed calls per configuration (harness)
    warmup = 3                  # warm-up calls
    warmup_s = 0.0              # ... and at least this many seconds
    min_time = 0.0              # timed calls for at least this many seconds too
    out = "sweep-artifacts"     # artifact folder, relative to this file
    device = "my-box"           # device name (default: the hostname; --device wins)
    rotate = true               # measurement order: see below
    rounds = 1                  # measurements per configuration, one per round (see below)
    seed = 0                    # the benchmark clip's seed
    isolate = true              # measure each configuration in a fresh process (honest peak memory:
                                # the sweep process holds torch after compiling)

    calib_clips = 32            # int8: calibration clips (shipped calibration set) ...
    held_out = 16               # ... and held-out clips for the fidelity gate
    calib_mode = "stride"       # frame sampling of those clips: "stride" (X3D) or "uniform"
    max_drop = 0.02             # int8 gate: top-1 drop below fp32 on labelled held-out clips; above it: skipped
    min_sqnr = 20.0             # int8 gate without labelled clips: logit SQNR (dB) against fp32
    accuracy_data = "synth:300:2"  # labelled held-out clips for top-1 (default: the checkpoint's own)
    jobs = 1                    # compile in this many processes at once (measuring is always serial)
    onnx_cache = true           # export each checkpoint configuration to ONNX once, for every
                                # ONNX-fed target and precision (out/onnx-cache)
    hard_activations = false    # fpga: lower Swish/Sigmoid to ReLU6-based approximations

    [ckpt]                      # optional: checkpoint per model (default: untrained weights)
    x3d_xs = "ckpt/x3d_xs.pt"

An unknown key, or a value an axis cannot take, raises ``BadInput`` naming the
file, the axis and the value.

Phases: (1) every (variant, target) with a configuration still to measure is
compiled with ``edge.compile.compile_variant`` into ``out/TARGET/VARIANT_TAG``,
or an artifact already there is reused when it reads back and its sha256
hashes verify; (2) each configuration (variant x target x threads) with fewer
than ``rounds`` measurements on this device is measured with
``benchmarks.harness`` and stored, one transaction each.  Measurements go in
rounds: round r measures every configuration that has at most r measurements,
so with ``rounds`` > 1 each configuration is measured several times, minutes
apart, and readers pool them (``benchmarks.configs.configurations``): a burst of
other work on the machine then skews one round of every configuration, not all
of one.  ``rotate``: the order within a round interleaves the targets (variant
1 on every target, then variant 2, ...), rotates which target goes first from
one variant to the next, and starts each round at a different configuration,
so no target is always measured first or last and slow drift of the machine
spreads over every target alike; without it, the grid order (target-major).

Resumable: killed at any point (SIGKILL included), a rerun measures only what is
missing.  Stored measurements are committed whole or not at all
(``benchmarks.store``); artifacts appear only complete (compile_variant builds
in a temporary folder and renames it); a configuration counts as done when the
store holds ``rounds`` measurements of it on this device
(``Store.measurement_count``).

Skipped with the reason (printed, and written to ``out/sweep.json`` with every
configuration's status): targets whose runtime is absent here, and
configurations the compiler refuses (``BadInput``/``GateFailed``: e.g. a
precision a target does not support yet, operators a target cannot run).  An
unexpected error in one configuration is recorded as "failed" and the sweep
goes on.  Torch is imported only when something has to be compiled.
"""
from edge.sweep.config import AXES, SETTINGS, Cell, SweepConfig, load_config
from edge.sweep.job import (STATUS_FILE, Built, BuildOutcome, CellState, CellStatus, SweepResult, artifact_dir,
                            build, build_all, measure_order, refused_before, reusable, run_sweep)

__all__ = ["AXES", "SETTINGS", "STATUS_FILE", "Built", "BuildOutcome", "Cell", "CellState", "CellStatus", "SweepConfig",
           "SweepResult", "artifact_dir", "build", "build_all", "load_config", "measure_order", "refused_before",
           "reusable", "run_sweep"]
