import json
import subprocess

import pytest
from refine_reference import refine_schedule_reference

from hf_lrschedule import GradNormRecorder
from hf_lrschedule.cli import main

NORMS = [5.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0, 1.1, 1.3] * 3


@pytest.fixture
def norms_file(tmp_path):
    recorder = GradNormRecorder(tmp_path / "norms.json")
    for step, value in enumerate(NORMS, start=1):
        recorder.record(step, value)
    return str(recorder.save())


def test_refine_writes_schedule_summary_and_plot(tmp_path, norms_file, capsys):
    out, png = tmp_path / "schedule.json", tmp_path / "schedule.png"
    assert main(["refine", norms_file, "--steps", "60", "-o", str(out), "--plot", str(png), "--smoothing", "0.05"]) == 0
    data = json.loads(out.read_text())
    assert data["num_training_steps"] == 60 and len(data["multipliers"]) == 61
    expected = refine_schedule_reference(NORMS, 60, smoothing=0.05)
    assert data["multipliers"][:60] == pytest.approx(expected, rel=1e-12)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.startswith(f"source: {norms_file} (recorder file): 30 gradient norms, steps 1-30\nsteps: 60\n")
    assert "peak: step" in printed and "at 95%" in printed
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "peak: step" in shown and "\nagainst linear: " in shown and "mean LR multiplier" in shown


def test_refine_authors_csv(shared_logs, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["refine", str(shared_logs / "rcnn_gnorm.csv"), "--steps", "1000", "-o", str(out), "--guard", "none"]) == 0
    assert "peak: step 0 (0.0% of training)" in capsys.readouterr().out


def test_list_includes_linear_refined(capsys):
    assert main(["list"]) == 0
    names = capsys.readouterr().out.split()
    assert "linear_refined" in names and "cosine" in names


@pytest.mark.parametrize(
    "argv,message",
    [
        (["refine", "/nonexistent.json", "--steps", "10", "-o", "x.json"], "does not exist"),
        (["refine", "NORMS", "--steps", "0", "-o", "x.json"], "--steps must be a positive number"),
        (["refine", "NORMS", "-o", "x.json"], "--steps is needed: "),
        (["refine", "NORMS", "--steps", "10", "-o", "x.json", "--smoothing", "-1"], "smoothing must be"),
        (["show", "NORMS"], "is not a schedule file"),
    ],
)
def test_errors_are_one_clear_line(argv, message, norms_file, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [norms_file if a == "NORMS" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_console_script_help():
    proc = subprocess.run(["hf-lrschedule", "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "refine" in proc.stdout and "show" in proc.stdout
