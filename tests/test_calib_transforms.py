"""calib_data.transforms: X3D evaluation preprocessing, against PyTorch's bilinear
resize (what PyTorchVideo's ShortSideScale uses) and by hand."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calib_data.transforms import (MEAN, STD, crop_offsets, denormalize, normalize, preprocess,
                                   short_side_size)
from edge.core.errors import BadInput


def reference(frames: np.ndarray, size: int, crops: int = 1) -> np.ndarray:
    """PyTorchVideo-style: ShortSideScale (torch bilinear) -> crop -> /255 -> normalise."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # (3, T, H, W)
    h, w = x.shape[-2:]
    nh, nw = short_side_size(h, w, size)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    views = [x[..., y:y + size, xx:xx + size] for y, xx in crop_offsets(nh, nw, size, crops)]
    return ((torch.stack(views) / 255.0 - MEAN) / STD).numpy()


@pytest.mark.parametrize("shape, size", [((5, 72, 96, 3), 48), ((3, 100, 60, 3), 40), ((2, 64, 64, 3), 64),
                                         ((4, 30, 50, 3), 40)])
@pytest.mark.parametrize("crops", [1, 3])
def test_matches_torch_bilinear_reference(shape, size, crops):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    got = preprocess(frames, size, crops)
    want = reference(frames, size, crops)
    assert got.shape == want.shape == (crops, 3, shape[0], size, size)
    assert got.dtype == np.float32
    # OpenCV's fixed-point bilinear vs float: within about one grey level
    assert np.abs(got - want).max() * STD * 255 < 1.01


def test_normalisation_values_and_channel_order():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 0, 115, 255
    out = preprocess(frames, 8)
    np.testing.assert_allclose(out[0, :, 0, 0, 0], [(0 - MEAN) / STD, (115 / 255 - MEAN) / STD, (1 - MEAN) / STD],
                               atol=1e-6)
    assert out.flags.c_contiguous


def test_three_crop_runs_along_the_long_side():
    ramp = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (1, 30, 1))[..., None].repeat(3, -1)  # wide
    wide = preprocess(ramp, 30, crops=3)[:, 0].mean(axis=(1, 2, 3))
    assert wide[0] < wide[1] < wide[2]
    tall = preprocess(ramp.transpose(0, 2, 1, 3), 30, crops=3)[:, 0].mean(axis=(1, 2, 3))
    assert tall[0] < tall[1] < tall[2]
    np.testing.assert_allclose(preprocess(ramp, 30, crops=1)[0], preprocess(ramp, 30, crops=3)[1])


def test_short_side_resize_geometry():
    assert short_side_size(256, 340, 160) == (160, 212)
    assert short_side_size(340, 256, 224) == (298, 224)
    assert crop_offsets(160, 212, 160, 3) == [(0, 0), (0, 26), (0, 52)]


def test_denormalize_inverts_normalize():
    frames = np.random.default_rng(1).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(denormalize(normalize(frames)), frames)


def test_bad_frames_refused():
    with pytest.raises(BadInput, match=r"\(T, H, W, 3\) uint8"):
        preprocess(np.zeros((4, 8, 8), np.uint8), 8)
    with pytest.raises(BadInput, match="crops must be 1 or 3"):
        preprocess(np.zeros((1, 8, 8, 3), np.uint8), 8, crops=2)


def test_calib_data_imports_no_torch():
    code = ("import sys, calib_data, calib_data.synth, calib_data.stream, calib_data.check, "
            "calib_data.make_shipped; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
