"""The synthetic motion dataset: labels that live in the motion, not in any frame.

Ten classes in five time-reversed pairs::

    move_left  <-> move_right     move_up   <-> move_down
    approach   <-> recede         rotate_cw <-> rotate_ccw
    appear     <-> disappear

A scene (textured random background, a random irregular polygon with random
colour, size, start position, speed and opacity, 0-2 drifting distractors,
blur, sensor noise) is rendered once along a phase u = 0 .. 1; the first class of
a pair shows the phases in order, the second in reverse.  So a clip of one class,
reversed, is exactly a clip of its partner class (``reverse_label``): the set of
frames is the same for both, and no single frame - nor any order-free summary of
the frames - can tell the two apart.  Only the temporal order carries the label.

Everything is drawn from ``numpy.random.default_rng([seed, index])``: the same
seed gives the same frames, clip by clip, however many clips are asked for.
Files are MPEG-4 Part 2 (fourcc ``mp4v``, the encoder the OpenCV wheels carry)
in .mp4, plus ``manifest.csv`` (``path,label``) and ``labels.json``.

Frames are RGB uint8 (T, H, W, 3).
"""
from __future__ import annotations

import logging
import time
from statistics import NormalDist
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calib_data.datasets import LABELS_FILE, MANIFEST_FILE, write_labels, write_manifest
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

PAIRS: tuple[tuple[str, str], ...] = (
    ("move_left", "move_right"),
    ("move_up", "move_down"),
    ("approach", "recede"),
    ("rotate_cw", "rotate_ccw"),
    ("appear", "disappear"),
)
CLASSES: tuple[str, ...] = tuple(name for pair in PAIRS for name in pair)
FOURCC = "mp4v"
_SUB = 4  # sub-pixel bits for cv2 drawing
_SUBF = float(1 << _SUB)
_GAUSS = NormalDist()


def reverse_label(label: int) -> int:
    """The class of the same clip played backwards (move_left <-> move_right, ...)."""
    if not 0 <= label < len(CLASSES):
        raise BadInput(f"label must be in 0..{len(CLASSES) - 1}, got {label}")
    return label ^ 1


@dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Shape:
    """A polygon whose pose is a function of the phase u in [0, 1]: centre
    ``xy0 + u * dxy`` (pixels), radius ``r0 * (r1 / r0) ** u``, angle ``a0 + u * da``
    (radians; positive turns clockwise on screen, y pointing down), opacity
    ``alpha`` ramped from 0 over [fade0, fade1] when ``fade``."""

    unit: np.ndarray          # (N, 2) vertices around the origin, radius <= 1
    color: tuple[int, int, int]
    xy0: tuple[float, float]
    dxy: tuple[float, float]
    r0: float
    r1: float
    a0: float
    da: float
    alpha: float = 1.0
    fade: tuple[float, float] | None = None

    def pose(self, u: float) -> tuple[np.ndarray, float]:
        """Vertices in pixels (N, 2) and opacity at phase ``u``."""
        r = self.r0 * (self.r1 / self.r0) ** u
        a = self.a0 + u * self.da
        c, s = np.cos(a), np.sin(a)
        pts = self.unit @ np.array([[c, s], [-s, c]]) * r
        pts += (self.xy0[0] + u * self.dxy[0], self.xy0[1] + u * self.dxy[1])
        alpha = self.alpha
        if self.fade is not None:
            t = np.clip((u - self.fade[0]) / (self.fade[1] - self.fade[0]), 0.0, 1.0)
            alpha *= t * t * (3 - 2 * t)
        return pts, float(alpha)


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything random about one clip except its direction in time."""

    background: np.ndarray    # (H, W, 3) uint8
    shapes: tuple[Shape, ...]  # drawn in order; the last is the actor
    blur: float               # Gaussian sigma in pixels, 0 = none
    noise: float              # sensor noise sigma in grey levels
    noise_seed: int


def sample_scene(rng: np.random.Generator, pair: int, size: int) -> Scene:
    """Draw a scene whose actor performs pair ``pair``'s motion (forward direction)."""
    s = float(size)
    background = _background(rng, size)
    mean_bg = background.reshape(-1, 3).mean(0)
    shapes = [_distractor(rng, s, mean_bg) for _ in range(int(rng.integers(0, 3)))]
    shapes.append(_actor(rng, pair, s, mean_bg))
    return Scene(background, tuple(shapes), blur=float(rng.choice([0.0, rng.uniform(0.4, 1.2)])),
                 noise=float(rng.uniform(0.0, 5.0)), noise_seed=int(rng.integers(2**31)))


def render_phases(scene: Scene, frames: int) -> np.ndarray:
    """The scene at phases 0, 1/(T-1), ..., 1: (T, H, W, 3) uint8 RGB."""
    h, w, _ = scene.background.shape
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    phases = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    for k, u in enumerate(phases):
        frame = out[k]
        frame[...] = scene.background
        for shape in scene.shapes:
            pts, alpha = shape.pose(float(u))
            poly = [np.round(pts * _SUBF).astype(np.int32)]
            if alpha >= 0.999:
                cv2.fillPoly(frame, poly, shape.color, cv2.LINE_AA, _SUB)
            elif alpha > 0.004:
                layer = frame.copy()
                cv2.fillPoly(layer, poly, shape.color, cv2.LINE_AA, _SUB)
                cv2.addWeighted(layer, alpha, frame, 1.0 - alpha, 0.0, dst=frame)
        if scene.blur > 0:
            cv2.GaussianBlur(frame, (0, 0), scene.blur, dst=frame)
    if scene.noise > 0:
        # Gaussian noise per phase (so a reversed clip carries the same noise per
        # frame), drawn as random bytes through the normal quantile table: a
        # saturating add of the positive part and subtract of the negative part
        # equals clip(frame + noise, 0, 255).
        codes = np.frombuffer(np.random.default_rng(scene.noise_seed).bytes(out.size), np.uint8)
        codes = codes.reshape(frames * h, w * 3)
        q = np.array([_GAUSS.inv_cdf((i + 0.5) / 256) for i in range(256)]) * scene.noise
        pos = np.clip(np.rint(q), 0, 255).astype(np.uint8)
        neg = np.clip(np.rint(-q), 0, 255).astype(np.uint8)
        flat = out.reshape(frames * h, w * 3)
        cv2.add(flat, cv2.LUT(codes, pos), dst=flat)
        cv2.subtract(flat, cv2.LUT(codes, neg), dst=flat)
    return out


def synth_clip(seed: int, index: int, frames: int = 16, size: int = 160,
               label: int | None = None) -> tuple[np.ndarray, int]:
    """Clip ``index`` of the dataset with ``seed``: ((T, H, W, 3) uint8 RGB, label).

    ``label`` defaults to ``index % 10`` (balanced classes).  Forcing the partner
    label (``reverse_label``) gives the same scene played backwards.
    """
    label = index % len(CLASSES) if label is None else label
    if not 0 <= label < len(CLASSES):
        raise BadInput(f"label must be in 0..{len(CLASSES) - 1}, got {label}")
    if frames < 2 or size < 32:
        raise BadInput(f"synthetic clips need at least 2 frames and 32 px, got {frames} x {size}")
    rng = np.random.default_rng([seed, index])
    phases = render_phases(sample_scene(rng, label // 2, size), frames)
    return (phases if label % 2 == 0 else phases[::-1].copy()), label


@dataclass(frozen=True)
class SynthResult:
    out: Path
    manifest: Path
    rows: tuple[tuple[str, str], ...]  # (path, label) as written to the manifest
    seconds: float


def write_video(path: Path, frames: np.ndarray, fps: float = 30.0) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an MPEG-4 (mp4v) .mp4."""
    t, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (w, h))
    if not writer.isOpened():
        raise BadInput(f"{path}: OpenCV cannot write {FOURCC} video here")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def write_dataset(out: str | Path, clips: int, seed: int = 0, frames: int = 16, size: int = 160,
                  fps: float = 30.0, start: int = 0) -> SynthResult:
    """Write clips ``start .. start + clips - 1`` as ``out/videos/clip_NNNNN.mp4`` plus
    ``out/manifest.csv`` and ``out/labels.json``."""
    if clips < 1:
        raise BadInput(f"--clips must be at least 1, got {clips}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for index in range(start, start + clips):
        clip, label = synth_clip(seed, index, frames, size)
        rel = f"videos/clip_{index:05d}.mp4"
        write_video(out / rel, clip, fps)
        rows.append((rel, CLASSES[label]))
    write_manifest(out / MANIFEST_FILE, rows)
    write_labels(out / LABELS_FILE, CLASSES)
    seconds = time.perf_counter() - t0
    log.info("wrote %d synthetic clips to %s in %.1f s", clips, out, seconds)
    return SynthResult(out, out / MANIFEST_FILE, tuple(rows), seconds)


# ----------------------------------------------------------------------------- scene parts

def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = int(rng.integers(3))
    if kind == 0:  # smooth colour field
        k = int(rng.integers(2, 9))
        bg = cv2.resize(rng.uniform(0, 255, (k, k, 3)).astype(np.float32), (size, size),
                        interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # stripes at a random angle and period
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, size / 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        wave = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period))
        bg = (c1 + (c2 - c1) * wave[..., None]).astype(np.float32)
    else:  # tiles
        k = int(rng.integers(3, 12))
        base = rng.uniform(0, 255, 3)
        tiles = np.clip(base + rng.normal(0, 40, (k, k, 3)), 0, 255).astype(np.float32)
        bg = cv2.resize(tiles, (size, size), interpolation=cv2.INTER_NEAREST)
    grain = rng.uniform(0, 12)
    bg = bg + rng.uniform(-grain, grain, bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _polygon(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(3, 8))
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
    radii = rng.uniform(0.45, 1.0, n)
    radii[int(rng.integers(n))] = 1.0
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)


def _color(rng: np.random.Generator, avoid: np.ndarray) -> tuple[int, int, int]:
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if np.abs(c - avoid).sum() > 120:
            break
    return tuple(int(v) for v in c)  # type: ignore[return-value]


def _distractor(rng: np.random.Generator, s: float, mean_bg: np.ndarray) -> Shape:
    r = rng.uniform(0.04, 0.08) * s
    heading, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.3) * s
    return Shape(_polygon(rng), _color(rng, mean_bg), tuple(rng.uniform(0.1, 0.9, 2) * s),
                 (dist * np.cos(heading), dist * np.sin(heading)), r, r,
                 rng.uniform(0, 2 * np.pi), rng.uniform(-np.pi, np.pi))


def _actor(rng: np.random.Generator, pair: int, s: float, mean_bg: np.ndarray) -> Shape:
    """The moving object; pair 0..4 = move x, move y, scale, rotate, fade (forward
    direction: left, up, grow, clockwise, appear)."""
    unit, color = _polygon(rng), _color(rng, mean_bg)
    r = rng.uniform(0.12, 0.22) * s
    # nuisance: slight drift, spin and size change shared by every class
    heading = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(0, 0.06) * s
    dxy = np.array([np.cos(heading), np.sin(heading)]) * drift
    a0, da = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)
    r0, r1 = r, r * rng.uniform(0.9, 1.1)
    alpha = rng.uniform(0.8, 1.0)
    fade = None
    xy0 = rng.uniform(r, s - r, 2)
    if pair in (0, 1):  # translate along x (left) or y (up)
        axis = pair
        d = rng.uniform(0.3, 0.6) * s
        lo, hi = 0.5 * r + d, s - 0.5 * r
        xy0[axis] = rng.uniform(lo, hi) if hi > lo else s / 2 + d / 2
        dxy[axis] = -d
    elif pair == 2:  # grow (approach)
        r0 = rng.uniform(0.07, 0.12) * s
        r1 = r0 * rng.uniform(1.8, 2.8)
        xy0 = rng.uniform(0.3, 0.7, 2) * s
    elif pair == 3:  # rotate clockwise (image y points down)
        da = rng.uniform(0.5, 1.3) * np.pi
    elif pair == 4:  # fade in
        f0 = rng.uniform(0.05, 0.45)
        fade = (f0, f0 + rng.uniform(0.1, 0.5))
    else:
        raise BadInput(f"motion pair must be 0..{len(PAIRS) - 1}, got {pair}")
    return Shape(unit, color, (float(xy0[0]), float(xy0[1])), (float(dxy[0]), float(dxy[1])),
                 float(r0), float(r1), float(a0), float(da), float(alpha), fade)
