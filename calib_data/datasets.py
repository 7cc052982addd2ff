"""Datasets: which video files, with which labels.

Four layouts, told apart by ``open_dataset``:

- CSV manifest with header ``path,label`` - paths relative to the manifest's
  folder (the dataset root), labels by name; an empty label means unlabelled.
- Kinetics-style CSV with header ``youtube_id,time_start,time_end[,label,...]``
  (any column order) - each row mapped onto a file by a pattern such as
  ``{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` (trimmed clips,
  the default) or ``{youtube_id}.mp4`` with ``trimmed=False`` (whole videos: the
  segment [time_start, time_end) seconds is read from inside the file).
- Folder per class (UCF101 / HMDB51): ``ROOT/<class>/<video>``.
- Plain folder of videos: unlabelled, for calibration.

Label names <-> ids live beside the data in ``labels.json``: a JSON object
``{"name": id, ...}`` with ids 0..N-1.  Without one, ids follow the sorted names.

Refused with ``BadInput`` naming the file and row: a missing or unknown header,
an unknown label (when ``labels.json`` exists), and a path that leaves the
dataset root (``..``, absolute paths, links pointing outside).
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from calib_data.video import is_video_path
from edge.core.errors import BadInput
from edge.core.io import read_json

log = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.csv"
KINETICS_PATTERN = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
DatasetKind = Literal["manifest", "kinetics", "folders", "plain", "file"]


@dataclass(frozen=True)
class VideoItem:
    """One video of a dataset.  ``segment`` is (start, end) in seconds inside the
    file, or None for the whole file; ``label`` an id or None (unlabelled)."""

    path: Path
    label: int | None = None
    segment: tuple[float, float] | None = None


@dataclass(frozen=True)
class Dataset:
    """Videos plus the class names (index = label id; empty when unlabelled)."""

    root: Path
    kind: DatasetKind
    items: tuple[VideoItem, ...]
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labelled(self) -> bool:
        return any(item.label is not None for item in self.items)


# ----------------------------------------------------------------------------- labels.json

def read_labels(path: Path) -> tuple[str, ...]:
    """Class names by id from a ``labels.json`` (``{"name": id}``, ids 0..N-1)."""
    data = read_json(path, "labels file")
    if not isinstance(data, dict) or not all(isinstance(k, str) and type(v) is int for k, v in data.items()):
        raise BadInput(f"{path}: labels.json must be an object mapping class name to integer id")
    if sorted(data.values()) != list(range(len(data))):
        raise BadInput(f"{path}: label ids must be 0..{len(data) - 1}, each once")
    return tuple(sorted(data, key=data.__getitem__))


def write_labels(path: Path, classes: Sequence[str]) -> None:
    """Write ``labels.json`` mapping each name to its index."""
    if len(set(classes)) != len(classes):
        raise BadInput(f"{path}: duplicate class names")
    path.write_text(json.dumps({name: i for i, name in enumerate(classes)}, indent=1) + "\n", encoding="utf-8")


def _classes_beside(root: Path, names: Iterable[str]) -> tuple[tuple[str, ...], bool]:
    """(classes, from_file): ``root/labels.json`` when present, else the sorted names."""
    labels = root / LABELS_FILE
    if labels.is_file():
        return read_labels(labels), True
    return tuple(sorted(set(names))), False


def _label_id(name: str, classes: Sequence[str], where: str) -> int:
    try:
        return classes.index(name)
    except ValueError:
        shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise BadInput(f"{where}: unknown label {name!r} (labels.json has {len(classes)} classes: {shown})") from None


# ----------------------------------------------------------------------------- paths

def resolve_inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` (after links)."""
    if not relative.strip():
        raise BadInput(f"{where}: empty path")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise BadInput(f"{where}: path {relative!r} is absolute; manifest paths must be relative to {root}")
    full = (root / candidate).resolve()
    if not full.is_relative_to(root.resolve()):
        raise BadInput(f"{where}: path {relative!r} escapes the dataset root {root}; refused")
    return full


# ----------------------------------------------------------------------------- readers

def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise BadInput(f"{path}: manifest not found")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None})
                    for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"{path}: not a readable CSV manifest ({e})") from None
    return header, rows


def read_manifest(path: Path) -> Dataset:
    """A ``path,label`` CSV manifest; paths relative to its folder."""
    path = Path(path)
    header, rows = _read_csv(path)
    if "path" not in header:
        raise BadInput(f"{path}: manifest needs a header with a 'path' column (and 'label'), got {header}")
    root = path.parent
    names = [r["label"] for _, r in rows if r.get("label")]
    classes, from_file = _classes_beside(root, names)
    items = []
    for line, row in rows:
        where = f"{path}:{line}"
        label = row.get("label") or None
        items.append(VideoItem(resolve_inside(root, row["path"], where),
                               None if label is None else _label_id(label, classes, where)))
    if not from_file and classes:
        log.info("%s: no %s beside it; class ids follow the sorted label names", path, LABELS_FILE)
    return Dataset(root, "manifest", tuple(items), classes)


def read_kinetics(path: Path, root: Path | None = None, pattern: str = KINETICS_PATTERN,
                  trimmed: bool = True) -> Dataset:
    """A Kinetics annotation CSV (``youtube_id,time_start,time_end[,label]``).

    Each row becomes ``root / pattern.format(youtube_id=, time_start=, time_end=, label=)``
    (times as integers when whole; ``root`` defaults to the CSV's folder).  With
    ``trimmed=False`` the file holds the whole video and the row's segment is read
    from inside it.
    """
    path = Path(path)
    root = path.parent if root is None else Path(root)
    header, rows = _read_csv(path)
    missing = {"youtube_id", "time_start", "time_end"} - set(header)
    if missing:
        raise BadInput(f"{path}: Kinetics CSV lacks column(s) {', '.join(sorted(missing))}")
    names = [r["label"] for _, r in rows if r.get("label")]
    classes, _ = _classes_beside(root, names)
    items = []
    for line, row in rows:
        where = f"{path}:{line}"
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except ValueError:
            raise BadInput(f"{where}: time_start/time_end must be numbers, got "
                           f"{row['time_start']!r}, {row['time_end']!r}") from None
        if not 0 <= start < end:
            raise BadInput(f"{where}: segment [{start}, {end}) is empty or negative")
        label = row.get("label") or None
        try:
            name = pattern.format(youtube_id=row["youtube_id"], label=label or "",
                                  time_start=_num(start), time_end=_num(end))
        except (KeyError, ValueError, IndexError) as e:
            raise BadInput(f"{path}: file pattern {pattern!r} cannot be filled ({e})") from None
        items.append(VideoItem(resolve_inside(root, name, where),
                               None if label is None else _label_id(label, classes, where),
                               None if trimmed else (start, end)))
    return Dataset(root, "kinetics", tuple(items), classes)


def read_class_folders(root: Path) -> Dataset:
    """UCF101 / HMDB51 layout: ``root/<class name>/<video file>``."""
    root = Path(root)
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = {d.name: sorted(f for f in d.iterdir() if f.is_file() and is_video_path(f)) for d in folders}
    found = {name: files for name, files in found.items() if files}
    if not found:
        raise BadInput(f"{root}: no class folders with videos")
    classes, _ = _classes_beside(root, found)
    items = tuple(VideoItem(f, _label_id(name, classes, str(root / name))) for name, files in found.items()
                  for f in files)
    return Dataset(root, "folders", items, classes)


def read_plain_folder(root: Path) -> Dataset:
    """Every video file directly in ``root``, unlabelled."""
    root = Path(root)
    files = sorted(f for f in root.iterdir() if f.is_file() and is_video_path(f))
    if not files:
        raise BadInput(f"{root}: no video files ({', '.join(sorted({'.mp4', '.avi', '.mkv', '.webm'}))} ...)")
    return Dataset(root, "plain", tuple(VideoItem(f) for f in files))


def open_dataset(path: str | Path, kinetics_pattern: str = KINETICS_PATTERN, trimmed: bool = True) -> Dataset:
    """Whatever ``path`` is: a manifest or Kinetics CSV, a folder (with a
    ``manifest.csv``, with class folders, or plain), or one video file."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: not found")
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return read_manifest(path / MANIFEST_FILE)
        if any(f.is_file() and is_video_path(f) for f in path.iterdir()):
            return read_plain_folder(path)
        return read_class_folders(path)
    if path.suffix.lower() == ".csv":
        header, _ = _read_csv(path)
        if "youtube_id" in header:
            return read_kinetics(path, pattern=kinetics_pattern, trimmed=trimmed)
        return read_manifest(path)
    if is_video_path(path):
        return Dataset(path.parent, "file", (VideoItem(path),))
    raise BadInput(f"{path}: not a dataset (expected a .csv manifest, a folder or a video file)")


def write_manifest(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    """Write a ``path,label`` manifest (paths relative to its folder)."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("path", "label"))
        w.writerows(rows)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x
