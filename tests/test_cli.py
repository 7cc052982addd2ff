"""The command-line contract: exit codes, --json, one-line errors, --debug tracebacks."""
import json
import subprocess
import sys

import pytest

from edge.cli import COMMANDS, main
from edge.models import MODELS


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: edgevid" in capsys.readouterr().out


def test_models_json_lists_every_registered_model(capsys):
    assert main(["models", "--json", "x3d_xs", "convnet2d_s"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["x3d_xs", "convnet2d_s"]
    for r in rows:
        assert set(r) >= {"name", "params", "gflops", "input_shape"}
        assert r["params"] > 0 and r["gflops"] > 0
        assert r["input_shape"] == [1, 3, MODELS[r["name"]].frames, MODELS[r["name"]].resolution,
                                    MODELS[r["name"]].resolution]


def test_models_text_table(capsys):
    assert main(["models", "x3d_xs"]) == 0
    out = capsys.readouterr().out
    assert "x3d_xs" in out and "GFLOPs" in out


def test_unknown_model_exit_2_one_line(capsys):
    assert main(["models", "x3d_q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgevid: error: unknown model 'x3d_q'; valid models: {', '.join(MODELS)}"


def test_usage_error_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2


def test_debug_shows_the_traceback():
    ok = subprocess.run([sys.executable, "-m", "edge.cli", "models", "x3d_q"], capture_output=True, text=True)
    dbg = subprocess.run([sys.executable, "-m", "edge.cli", "--debug", "models", "x3d_q"], capture_output=True,
                         text=True)
    assert ok.returncode == 2 and "Traceback" not in ok.stderr
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr and "BadInput" in dbg.stderr


def test_console_script_installed():
    import shutil

    exe = shutil.which("edgevid", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "console script edgevid not installed in the venv"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "models" in out.stdout
