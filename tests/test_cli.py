"""The command line every script shares: run folder, config, evaluations, saved models, bad input."""

import csv
import json
import os
import sys

import pytest

from conftest import ROOT, one_error_line, run_script

SCRIPTS = ["td3.py", "td7.py", "sac.py", "ddpg.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_short_run_writes_the_run_folder_and_eval_only_reads_it(script, tmp_path):
    # Pendulum's episodes end by truncation at 200 steps, so the truncation path runs.
    result = run_script(script, "--env", "Pendulum-v1", "--total-timesteps", "450", "--start-timesteps", "150",
                        "--eval-freq", "200", "--eval-episodes", "2", "--batch-size", "32", "--torch-threads", "1",
                        "--save-model", "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [folder] = os.listdir(tmp_path)
    algo = script[:-3]
    assert folder.startswith(f"Pendulum-v1__{algo}__0__")
    path = tmp_path / folder
    config = json.loads((path / "config.json").read_text())
    assert config["env"] == "Pendulum-v1" and config["algo"] == algo and config["batch_size"] == 32
    assert {"torch", "gymnasium", "mujoco", "numpy", "python", "git_commit", "git_dirty", "device"} <= set(config)
    with open(path / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 200, 400, 450]  # every eval_freq steps, and the final policy
    assert len(rows[-1]["returns"].split()) == 2
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(path))
    assert "step      400" in result.stdout and "step      450" in result.stdout

    evaluated = run_script(script, "--eval-only", str(path), "--eval-episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean return" in evaluated.stdout


# Checks of the harness (the same text in every script: tests/test_layout.py) run on td3.py; those of each
# script's own Args on all four.
HARNESS_CASES = [
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv"),
    (["--env", "CartPole-v1"], "Discrete"),
    (["--eval-only", "/nonexistent/model.pt"], "no model file"),
    (["--cudagraphs", "--device", "cpu"], "--cudagraphs needs a CUDA device"),
    (["--batch-size", "inf"], "Error parsing --batch-size"),  # tyro's errors are made one line too
    (["--batch-szie", "3"], "Unrecognized options: --batch-szie, 3 (did you mean --batch-size?)"),
    (["--snapshot-every", "-1"], "--snapshot-every must not be negative"),
    (["--seed", "-1"], "--seed must be in [0, "),
    (["--eval-only", ""], "--eval-only was given an empty path"),  # "$MODEL" with MODEL unset: not a new run
    # gymnasium would warn (twice) and make the newest version, which a later gymnasium may change under a resume
    (["--env", "HalfCheetah"], "--env HalfCheetah names no version: pass one of HalfCheetah-v2, HalfCheetah-v3, "),
]
SCRIPT_CASES = [
    (["--batch-size", "0"], "--batch-size"),
    (["--discount", "1.5"], "--discount"),
    (["--discount", "nan"], "--discount must be a finite number"),
    (["--buffer-size", "100"], "--buffer-size (100) must be at least --batch-size (256)"),
]


@pytest.mark.parametrize("script, arguments, message", [("td3.py", *case) for case in HARNESS_CASES]
                         + [(script, *case) for script in SCRIPTS for case in SCRIPT_CASES])
def test_bad_input_is_one_line_and_exit_status_2(script, arguments, message, tmp_path):
    result = run_script(script, *arguments, "--run-dir", str(tmp_path))
    assert one_error_line(result), (result.returncode, result.stderr)
    assert message in result.stderr
    assert not os.path.exists(tmp_path) or os.listdir(tmp_path) == []  # nothing written


@pytest.mark.parametrize("script, arguments, message", [
    ("ddpg.py", ["--noise", "pink"], "--noise"),
    ("ddpg.py", ["--tau", "2"], "--tau"),
    ("sac.py", ["--alpha", "-1"], "--alpha"),
    ("td3.py", ["--start-timesteps", "100"], "--start-timesteps"),
    ("td7.py", ["--env-kwargs", '{"reset_noise_scale": "x"}'], "fails with the keyword arguments"),  # in reset
])
def test_script_specific_bad_input(script, arguments, message, tmp_path):
    result = run_script(script, *arguments, "--run-dir", str(tmp_path))
    assert one_error_line(result) and message in result.stderr, (result.returncode, result.stderr)


@pytest.mark.parametrize("script", SCRIPTS)
def test_malformed_model_file_is_one_line(script, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a torch file")
    result = run_script(script, "--eval-only", str(bad))
    assert one_error_line(result) and "cannot read model file" in result.stderr


@pytest.mark.parametrize("run_dir", ["/proc/no-such-folder", "{file}"])
def test_a_run_folder_that_cannot_be_written_is_one_line(run_dir, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_script("td3.py", "--env", "Pendulum-v1", "--run-dir", run_dir.format(file=tmp_path / "file"))
    assert one_error_line(result) and "cannot write the run folder" in result.stderr, result.stderr


def test_a_folder_of_runs_or_a_run_without_the_file_is_said_so(tmp_path):
    """What a newcomer passes first: the runs/ folder itself, or a run trained without --save-model, or finished."""
    for name, files in (("stopped", ("config.json", "resume.pt")), ("finished", ("config.json",))):
        (tmp_path / "runs" / name).mkdir(parents=True)
        for file in files:
            (tmp_path / "runs" / name / file).write_text("{}")
    cases = [(["--resume", tmp_path / "runs"], f"holds run folders: pass one, e.g. {tmp_path / 'runs' / 'stopped'}"),
             (["--resume", tmp_path / "runs" / "finished"], "finished, or was killed before its first snapshot"),
             (["--eval-only", tmp_path / "runs" / "finished"], "was trained without --save-model, which writes it")]
    for arguments, message in cases:
        result = run_script("td3.py", *map(str, arguments))
        assert one_error_line(result) and message in result.stderr, result.stderr


@pytest.mark.parametrize("script", ["td3.py", "td7.py", "td3_bc.py"])
def test_help_names_what_the_path_flags_take(script):
    result = run_script(script, "--help", extra_env={"COLUMNS": "200"})
    assert result.returncode == 0 and "--resume RUN_DIR" in result.stdout and "--eval-only PATH" in result.stdout
    # An optional flag reads as its type, with its help saying what no value means: not {None}|STR (default: None).
    assert "None" not in result.stdout, result.stdout
    if script != "td3.py":
        assert "--dataset STR" in result.stdout and "--env STR" in result.stdout


def test_config_says_whether_the_work_tree_differed_from_its_commit(tmp_path):
    """git_commit alone does not say what ran when tracked files were edited: git_dirty does (untracked files, such
    as run folders, do not count)."""
    import importlib.util
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("no git")
    for name in ("td3.py", "lap_buffer.py"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path,  # noqa
                                    check=True, capture_output=True)
    git("init", "-q")
    git("add", "td3.py", "lap_buffer.py")
    git("commit", "-q", "-m", "x")
    spec = importlib.util.spec_from_file_location("td3_in_a_repo", tmp_path / "td3.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("untracked")
    clean = module.versions()
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    with open(tmp_path / "lap_buffer.py", "a") as f:
        f.write("# an edit\n")
    assert module.versions()["git_dirty"] is True
