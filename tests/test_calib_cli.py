"""`edgevid data synth` and `edgevid data check`: files written, bad-video table,
exit codes 0 / 1 (bad videos) / 2 (unusable dataset definition)."""
import json

from edge.cli import main


def test_synth_then_check_clean(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--clips", "6", "--seed", "2", "--frames", "8",
                 "--size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 6 and report["manifest"] == str(out / "manifest.csv")
    assert len(list((out / "videos").glob("*.mp4"))) == 6 and (out / "labels.json").is_file()
    assert main(["data", "check", str(out)]) == 0
    assert "6 of 6 videos good, 0 bad" in capsys.readouterr().out


def test_check_lists_bad_videos_and_exits_1(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", "--out", str(out), "--clips", "4", "--frames", "8", "--size", "64"]) == 0
    capsys.readouterr()
    videos = sorted((out / "videos").glob("*.mp4"))
    videos[0].unlink()
    videos[1].write_text("hello")
    data = videos[2].read_bytes()
    videos[2].write_bytes(data[: len(data) // 2])
    assert main(["data", "check", str(out / "manifest.csv")]) == 1
    text = capsys.readouterr().out
    assert f"{videos[0]}  video file not found" in text
    assert "not a video file" in text and "cannot be decoded" in text
    assert "1 of 4 videos good, 3 bad" in text
    assert main(["data", "check", str(out), "--json", "--frames", "9"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["bad"]) == 4
    assert report["bad"][-1]["reason"] == "8 frames, shorter than the 9 a clip of 9 x stride 1 needs"


def test_check_refuses_a_broken_manifest_with_exit_2(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("path,label\n../x.mp4,a\n")
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgevid: error: ") and "escapes the dataset root" in err and "\n" not in err
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--clips", "0"]) == 2
