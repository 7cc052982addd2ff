"""calib_data.datasets: manifests, Kinetics CSV, class folders, plain folders,
labels.json, and the refusals (unknown label, paths escaping the root)."""
import json
from pathlib import Path

import pytest

from calib_data.datasets import (open_dataset, read_class_folders, read_kinetics, read_labels, read_manifest,
                                 read_plain_folder, write_labels)
from edge.core.errors import BadInput


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_manifest_paths_relative_to_manifest_and_labels_from_json(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_labels(root / "labels.json", ["walk", "run"])
    m = write(root / "manifest.csv", "path,label\nclips/a.mp4,run\nb.mp4,walk\nc.mp4,\n")
    ds = read_manifest(m)
    assert ds.kind == "manifest" and ds.classes == ("walk", "run")
    assert [(i.path, i.label) for i in ds.items] == [
        ((root / "clips/a.mp4").resolve(), 1), ((root / "b.mp4").resolve(), 0), ((root / "c.mp4").resolve(), None)]


def test_manifest_without_labels_json_uses_sorted_names(tmp_path):
    m = write(tmp_path / "m.csv", "label,path\nzebra,a.mp4\napple,b.mp4\nzebra,c.mp4\n")
    ds = read_manifest(m)
    assert ds.classes == ("apple", "zebra") and [i.label for i in ds.items] == [1, 0, 1]


def test_unknown_label_is_refused_with_row(tmp_path):
    write_labels(tmp_path / "labels.json", ["walk", "run"])
    m = write(tmp_path / "manifest.csv", "path,label\na.mp4,walk\nb.mp4,swim\n")
    with pytest.raises(BadInput, match=r"manifest\.csv:3: unknown label 'swim' \(labels\.json has 2 classes"):
        read_manifest(m)


@pytest.mark.parametrize("bad", ["../outside.mp4", "clips/../../outside.mp4", "/etc/passwd"])
def test_path_escaping_the_root_is_refused(tmp_path, bad):
    m = write(tmp_path / "data" / "manifest.csv", f"path,label\nok.mp4,a\n{bad},a\n")
    with pytest.raises(BadInput, match=r"manifest\.csv:3: path .* (escapes the dataset root|is absolute)"):
        read_manifest(m)


def test_symlink_out_of_the_root_is_refused(tmp_path):
    touch(tmp_path / "secret.mp4")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    m = write(tmp_path / "data" / "manifest.csv", "path,label\nlink.mp4,a\n")
    with pytest.raises(BadInput, match="escapes the dataset root"):
        read_manifest(m)


def test_manifest_needs_a_path_header(tmp_path):
    m = write(tmp_path / "m.csv", "a.mp4,walk\n")
    with pytest.raises(BadInput, match="needs a header with a 'path' column"):
        read_manifest(m)
    with pytest.raises(BadInput, match="manifest not found"):
        read_manifest(tmp_path / "missing.csv")


def test_kinetics_csv_maps_rows_onto_files(tmp_path):
    csv = write(tmp_path / "val.csv", "label,youtube_id,time_start,time_end,split\n"
                                      "abseiling,abc123,14,24,val\n"
                                      "air drumming,xyz_-9,0,10,val\n")
    ds = read_kinetics(csv)
    assert ds.kind == "kinetics" and ds.classes == ("abseiling", "air drumming")
    assert ds.items[0].path == (tmp_path / "abseiling" / "abc123_000014_000024.mp4").resolve()
    assert ds.items[1].label == 1 and ds.items[0].segment is None
    whole = read_kinetics(csv, pattern="videos/{youtube_id}.mp4", trimmed=False)
    assert whole.items[0].path == (tmp_path / "videos" / "abc123.mp4").resolve()
    assert whole.items[0].segment == (14.0, 24.0)
    assert open_dataset(csv).kind == "kinetics"


def test_kinetics_csv_errors(tmp_path):
    with pytest.raises(BadInput, match="lacks column.*time_end"):
        read_kinetics(write(tmp_path / "a.csv", "youtube_id,time_start,label\nx,1,a\n"))
    with pytest.raises(BadInput, match=r"b\.csv:2: segment \[5\.0, 5\.0\) is empty"):
        read_kinetics(write(tmp_path / "b.csv", "youtube_id,time_start,time_end\nx,5,5\n"))
    with pytest.raises(BadInput, match="escapes the dataset root"):
        read_kinetics(write(tmp_path / "c.csv", "youtube_id,time_start,time_end\n../../x,0,5\n"),
                      pattern="{youtube_id}.mp4")
    write_labels(tmp_path / "labels.json", ["a"])
    with pytest.raises(BadInput, match="unknown label 'b'"):
        read_kinetics(write(tmp_path / "d.csv", "youtube_id,time_start,time_end,label\nx,0,5,b\n"))


def test_class_folders_ucf_layout(tmp_path):
    for name in ("v_Punch_g01_c01.avi", "v_Punch_g01_c02.avi"):
        touch(tmp_path / "Punch" / name)
    touch(tmp_path / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    touch(tmp_path / "Empty" / "readme.txt")
    ds = read_class_folders(tmp_path)
    assert ds.classes == ("ApplyEyeMakeup", "Punch")
    assert [i.label for i in ds.items] == [0, 1, 1]
    assert open_dataset(tmp_path).kind == "folders"


def test_class_folders_follow_labels_json(tmp_path):
    touch(tmp_path / "b" / "x.mp4")
    touch(tmp_path / "a" / "y.mp4")
    write_labels(tmp_path / "labels.json", ["b", "a"])
    assert [(i.path.name, i.label) for i in read_class_folders(tmp_path).items] == [("y.mp4", 1), ("x.mp4", 0)]
    touch(tmp_path / "c" / "z.mp4")
    with pytest.raises(BadInput, match="unknown label 'c'"):
        read_class_folders(tmp_path)


def test_plain_folder_is_unlabelled_and_skips_other_files(tmp_path):
    touch(tmp_path / "b.MP4")
    touch(tmp_path / "a.avi")
    touch(tmp_path / "notes.txt")
    ds = read_plain_folder(tmp_path)
    assert [i.path.name for i in ds.items] == ["a.avi", "b.MP4"] and not ds.labelled
    assert open_dataset(tmp_path).kind == "plain"
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no video files"):
        read_plain_folder(tmp_path / "empty")


def test_open_dataset_kinds(tmp_path):
    write(tmp_path / "d" / "manifest.csv", "path,label\na.mp4,x\n")
    assert open_dataset(tmp_path / "d").kind == "manifest"
    assert open_dataset(touch(tmp_path / "one.mkv")).kind == "file"
    with pytest.raises(BadInput, match="not found"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(BadInput, match="not a dataset"):
        open_dataset(touch(tmp_path / "x.txt"))


def test_labels_json_round_trip_and_validation(tmp_path):
    write_labels(tmp_path / "labels.json", ["x", "y", "z"])
    assert json.loads((tmp_path / "labels.json").read_text()) == {"x": 0, "y": 1, "z": 2}
    assert read_labels(tmp_path / "labels.json") == ("x", "y", "z")
    write(tmp_path / "gap.json", '{"x": 0, "y": 2}')
    with pytest.raises(BadInput, match="ids must be 0..1"):
        read_labels(tmp_path / "gap.json")
    write(tmp_path / "list.json", '["x"]')
    with pytest.raises(BadInput, match="must be an object"):
        read_labels(tmp_path / "list.json")
    with pytest.raises(BadInput, match="duplicate"):
        write_labels(tmp_path / "dup.json", ["x", "x"])
