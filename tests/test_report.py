"""`edgevid report`: a self-contained HTML page (embedded PNG plots, no external
resources) with per-device tables, fingerprints, Pareto plots, speed-ups and a
side-by-side view, predictions marked; report.md beside it; rendered in headless
Chromium and screenshotted."""
import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bench_helpers import device, record
from benchmarks.report import speedups
from benchmarks.configs import configurations
from benchmarks.store import Store
from edge.cli import main
from edge.core.variant import Variant

V1, V2, V3 = (Variant("x3d_xs", w, r, 4).tag for w, r in ((1.0, 160), (0.5, 112), (0.75, 128)))
_n = iter(range(1000))


def add(s, variant, target, ms, dev):
    s.add_measurement(record([ms * 0.98, ms, ms * 1.03], variant=variant, target=target, dev=dev,
                             files={"model.onnx": f"{next(_n):064x}"}))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.sqlite"
    laptop, phone = device("laptop", 4), device("phone", 8)
    with Store(path) as s:
        for dev, scale in ((laptop, 1.0), (phone, 3.0)):
            add(s, V1, "onnxruntime", 100 * scale, dev)
            add(s, V1, "openvino", 50 * scale, dev)
            add(s, V2, "onnxruntime", 30 * scale, dev)
        add(s, V2, "openvino", 20, laptop)
        s.add_accuracy(V1, "top1", 0.70)
        s.add_accuracy(V2, "top1", 0.60)
        s.add_accuracy(V3, "top1", 0.65)
        s.add_prediction(s.find_device("phone"), "onnxruntime", V3, 2, {"p50": 70.0, "p90": 75.0, "mean": 71.0},
                         150.0, {"predictor": "test"})
    return path


def test_report_contents(db, tmp_path, capsys):
    out = tmp_path / "site" / "report.html"
    out.parent.mkdir()
    assert main(["report", "--db", str(db), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["predicted"] == 1 and [d["name"] for d in summary["devices"]] == ["laptop", "phone"]
    page = out.read_text()
    # self-contained: no external resource of any kind
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", page)
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    # per device: Pareto + latency plot; plus the cross-device plot
    assert len(imgs) == 5
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("laptop", "phone", "Device fingerprint", "AVX2".lower(), "Accuracy vs latency", "Side by side",
                 "Speed-up per target (vs onnxruntime", V1, V2, V3, "predicted configuration(s)"):
        assert text in page
    # the prediction is marked where it is shown
    row = re.search(rf"<tr class=\"pred\"><td class=\"l\">{re.escape(V3)}</td>.*?</tr>", page)
    assert row and "predicted" in row.group(0) and "≈70.00" in row.group(0)
    # speed-ups: openvino vs onnxruntime on the same variant and device
    assert "2.00x" in page and "1.50x" in page
    md = (out.parent / "report.md").read_text()
    assert md.startswith("# edgevid latency report") and "| variant | target |" in md
    assert "≈70.00" in md and "predicted" in md and "2.00x" in md
    # text output
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out


def test_speedups_never_use_a_prediction_as_baseline(db):
    with Store(db, create=False) as s:
        configs = configurations(s, s.find_device("phone"), include_predicted=True)
    ups = speedups(configs, "onnxruntime")
    assert [(u["variant"], u["target"]) for u in ups] == [(V1, "openvino")]
    assert ups[0]["speedup"] == pytest.approx(2.0)
    assert speedups(configs, "openvino")[0]["speedup"] == pytest.approx(0.5)


def test_report_without_accuracy_says_so(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    with Store(db) as s:
        add(s, V1, "onnxruntime", 10, device())
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    page = out.read_text()
    assert "no Pareto plot" in page and "No configuration is measured on more than one device" in page
    assert page.count("data:image/png;base64,") == 1


def test_report_bad_input(tmp_path, db, capsys):
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    assert main(["report", "--db", str(empty), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "no measurements in DB" in err and str(empty) in err and not (tmp_path / "r.html").exists()
    assert main(["report", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no such result store" in capsys.readouterr().err
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "nope" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "r.pdf")]) == 2
    assert ".html" in capsys.readouterr().err


def _png_pixels(path):
    """The screenshot's pixels, (H, W, 3 or 4) floats in [0, 1]."""
    import matplotlib.image as mpimg

    return np.asarray(mpimg.imread(str(path)), dtype=np.float64)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(db, tmp_path):
    exe = _chromium()
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                           "--window-size=1280,2000", out.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert shot.is_file(), proc.stderr[-2000:]
    raw = shot.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 20_000
    # IHDR: the window size
    assert int.from_bytes(raw[16:20], "big") == 1280 and int.from_bytes(raw[20:24], "big") == 2000
    pixels = _png_pixels(shot)
    gray = pixels[..., :3].mean(axis=-1)
    assert gray.std() > 0.05  # not a blank page: text, tables and plots
    assert (gray < 0.5).mean() > 0.005  # dark pixels (text) ...
    colored = np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2  # ... and the plots' colours
    assert colored.mean() > 0.001
