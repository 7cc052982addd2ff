"""calib_data.video / sampling / stream: decoding, frame sampling, sliding windows,
and every bad-input case of the decoder."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from calib_data.sampling import ClipSpec, clip_span, stride_indices, uniform_indices
from calib_data.stream import FrameWindow, sliding_clips
from calib_data.synth import write_video
from calib_data.video import check_video, count_frames, open_capture, probe, read_frames
from edge.core.errors import BadInput

STEP, BASE = 9, 20  # frame i is flat grey STEP * i + BASE (< 235): decodable back to its index


def coded_video(path: Path, n: int, fps: float = 30.0, size: tuple[int, int] = (48, 64)) -> Path:
    """n flat frames whose grey level encodes the frame index."""
    frames = np.empty((n,) + size + (3,), np.uint8)
    for i in range(n):
        frames[i] = STEP * i + BASE
    write_video(path, frames, fps)
    return path


def decode_index(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - BASE) / STEP))


def mjpg_video(path: Path, n: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), (STEP * i + BASE) % 256, np.uint8))
    w.release()
    return path


# ----------------------------------------------------------------------------- decoding

def test_read_frames_returns_asked_indices_in_order_rgb(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 24)
    idx = np.array([[5, 0, 5], [23, 10, 11]])
    frames = read_frames(path, idx)
    assert frames.shape == (2, 3, 48, 64, 3) and frames.dtype == np.uint8
    got = np.vectorize(lambda k: decode_index(frames.reshape(-1, 48, 64, 3)[k]))(np.arange(6)).reshape(2, 3)
    np.testing.assert_array_equal(got, idx)


def test_frames_are_rgb(tmp_path):
    red = np.zeros((4, 32, 32, 3), np.uint8)
    red[..., 0] = 255  # RGB red
    write_video(tmp_path / "red.mp4", red)
    f = read_frames(tmp_path / "red.mp4", np.arange(4))
    assert f[..., 0].mean() > 200 and f[..., 2].mean() < 50


def test_probe_reports_header(tmp_path):
    info = probe(coded_video(tmp_path / "v.mp4", 12, fps=25.0))
    assert (info.frames, info.fps, info.width, info.height) == (12, 25.0, 64, 48)


def test_file_url_stream_is_read(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 6)
    cap = open_capture(f"file://{path}")
    try:
        assert cap.read()[0]
    finally:
        cap.release()


# ----------------------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match=r"nope\.mp4: video file not found"):
        open_capture(tmp_path / "nope.mp4")


def test_non_video_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 10)
    with pytest.raises(BadInput, match=r"notes\.mp4: not a video file"):
        read_frames(path, np.arange(2))


def test_empty_file(tmp_path):
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(BadInput, match="empty file"):
        open_capture(tmp_path / "e.mp4")


def test_zero_frame_videos(tmp_path):
    avi = mjpg_video(tmp_path / "zero.avi", 0)  # opens, declares 0 frames
    with pytest.raises(BadInput, match=r"zero\.avi: has no frames"):
        check_video(avi)
    with pytest.raises(BadInput, match="has no frames"):
        read_frames(avi, np.arange(1))
    write_video(tmp_path / "zero.mp4", np.zeros((0, 32, 32, 3), np.uint8))  # mp4 without samples
    with pytest.raises(BadInput, match="cannot be decoded"):
        open_capture(tmp_path / "zero.mp4")


def test_truncated_mp4_is_refused(tmp_path):
    data = coded_video(tmp_path / "v.mp4", 20).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match=r"cut\.mp4: video container cannot be decoded \(corrupt, truncated"):
        read_frames(tmp_path / "cut.mp4", np.arange(2))


def test_truncated_mid_stream_is_detected(tmp_path):
    data = mjpg_video(tmp_path / "v.avi", 40).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    n, info = count_frames(tmp_path / "cut.avi")
    assert info.frames == 40 and 0 < n < 40
    with pytest.raises(BadInput, match=rf"cut\.avi: decoding stopped at frame {n} of 40 \(truncated or corrupt\)"):
        check_video(tmp_path / "cut.avi")
    with pytest.raises(BadInput, match="truncated or corrupt"):
        read_frames(tmp_path / "cut.avi", np.array([0, 35]))
    assert read_frames(tmp_path / "cut.avi", np.array([0, 1])).shape[0] == 2  # early frames still readable


def test_corrupt_mid_stream_is_detected(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "v.mp4", frames)
    data = bytearray((tmp_path / "v.mp4").read_bytes())
    mid = len(data) // 3
    data[mid:mid + 4000] = bytes(4000)
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    with pytest.raises(BadInput, match=r"bad\.mp4: decoding stopped at frame \d+ of 40"):
        check_video(tmp_path / "bad.mp4")


def test_unreadable_camera():
    with pytest.raises(BadInput, match=r"^camera 97: cannot be opened"):
        open_capture(97)
    with pytest.raises(BadInput, match=r"^camera 97: cannot be opened"):
        next(sliding_clips("97", frames=4))


def test_unreachable_stream_url(tmp_path):
    with pytest.raises(BadInput, match="stream cannot be opened"):
        open_capture(f"file://{tmp_path}/missing.mp4")


# ----------------------------------------------------------------------------- sampling

def test_stride_sampling_centres_one_clip_and_spreads_several():
    np.testing.assert_array_equal(stride_indices(100, 4, 3), [[45, 48, 51, 54]])  # span 10, start (100-10)//2
    idx = stride_indices(100, 4, 3, clips=3)
    np.testing.assert_array_equal(idx[:, 0], [0, 45, 90])
    assert idx.max() == 99 and (np.diff(idx, axis=1) == 3).all()
    assert clip_span(13, 6) == 73


def test_uniform_sampling_covers_the_video():
    np.testing.assert_array_equal(uniform_indices(100, 5), [[0, 25, 50, 74, 99]])
    two = uniform_indices(100, 4, clips=2)
    assert two.shape == (2, 4) and (two[1] > two[0]).all() and two.max() <= 99


@pytest.mark.parametrize("policy, expected", [("pad", [0, 2, 4, 4, 4]), ("loop", [0, 2, 4, 1, 3])])
def test_short_video_policy(policy, expected):
    spec = ClipSpec(frames=5, resolution=32, stride=2, short=policy)
    assert spec.is_short(5)
    np.testing.assert_array_equal(spec.indices(5), [expected])


def test_short_video_error_policy_names_the_video():
    spec = ClipSpec(frames=5, resolution=32, stride=2, short="error")
    with pytest.raises(BadInput, match=r"a\.mp4: has 5 frames, fewer than the 9 one clip needs .*policy is 'error'"):
        spec.indices(5, name="a.mp4")
    np.testing.assert_array_equal(spec.indices(9), [[0, 2, 4, 6, 8]])


@pytest.mark.parametrize("kwargs", [{"frames": 0}, {"stride": -1}, {"crops": 2}, {"short": "wrap"},
                                    {"mode": "random"}, {"resolution": 1.5}])
def test_clip_spec_rejects_bad_values(kwargs):
    with pytest.raises(BadInput):
        ClipSpec(**{"frames": 4, "resolution": 32, **kwargs})


# ----------------------------------------------------------------------------- streaming

def test_frame_window_latest_clip():
    w = FrameWindow(capacity=7)
    for i in range(10):
        w.push(np.full((2, 2, 3), i, np.uint8))
    assert w.ready(4, 2) and not w.ready(5, 2)
    np.testing.assert_array_equal(w.latest(4, 2)[:, 0, 0, 0], [3, 5, 7, 9])
    np.testing.assert_array_equal(w.latest(3)[:, 0, 0, 0], [7, 8, 9])
    with pytest.raises(BadInput, match="window holds 7"):
        w.latest(5, 2)


def test_sliding_clips_yield_latest_frames(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 20)
    clips = list(sliding_clips(path, frames=4, stride=2, hop=3))
    # window full after 7 frames (index 6), then every 3rd frame: ends at 6, 9, 12, 15, 18
    assert [decode_index(c[-1]) for c in clips] == [6, 9, 12, 15, 18]
    assert [decode_index(f) for f in clips[0]] == [0, 2, 4, 6]
    model_in = next(sliding_clips(path, frames=4, resolution=32))
    assert model_in.shape == (1, 3, 4, 32, 32) and model_in.dtype == np.float32


def test_sliding_clips_short_stream_warns(tmp_path, caplog):
    path = coded_video(tmp_path / "v.mp4", 3)
    assert list(sliding_clips(path, frames=4)) == []
    assert "stream ended after 3 frames, before one clip" in caplog.text
