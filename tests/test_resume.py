"""--resume: a run of N steps equals a run interrupted part-way plus a resume (identical evaluations)."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, stop_at

# The online off-policy scripts share these flags; ppo.py and td3_bc.py test theirs in their own files.
SCRIPTS = [name for name in ("td3", "td7", "sac", "ddpg") if "resume" in __import__(name).Args.__dataclass_fields__]


def returns(run_path):
    with open(os.path.join(run_path, "evaluations.csv")) as f:
        return [(row["step"], row["returns"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("env, steps, stop", [("Pendulum-v1", 600, 350), ("Hopper-v4", 600, 433)])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(script, env, steps, stop, tmp_path, monkeypatch):
    module = __import__(script)
    common = dict(env=env, total_timesteps=steps, start_timesteps=250, eval_freq=100, eval_episodes=2,
                  batch_size=32, device="cpu", torch_threads=1, save_model=True)
    full = module.main(module.Args(run_dir=str(tmp_path / "full"), **common))

    monkeypatch.setattr(module, "GracefulExit", stop_at(module, stop))
    with pytest.raises(SystemExit) as exit_info:
        module.main(module.Args(run_dir=str(tmp_path / "parts"), **common))
    assert exit_info.value.code == 130
    [folder] = os.listdir(tmp_path / "parts")
    interrupted = str(tmp_path / "parts" / folder)
    assert len(returns(interrupted)) == stop // 100 + 1
    assert os.path.exists(os.path.join(interrupted, "resume.pt"))

    monkeypatch.undo()
    resumed = module.main(module.Args(resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted
    assert returns(resumed) == returns(full)
    assert not os.path.exists(os.path.join(resumed, "resume.pt"))  # finished: nothing left to resume


@pytest.mark.parametrize("script", SCRIPTS)
def test_sigterm_writes_a_resumable_state_and_exits_130(script, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, f"{script}.py"), "--env", "Pendulum-v1",
                                "--total-timesteps", "100000", "--eval-freq", "100000", "--torch-threads", "1",
                                "--run-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=ROOT)
    for line in process.stdout:  # the step-0 evaluation is written: the loop is running
        if line.startswith("step"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    [folder] = os.listdir(tmp_path)
    assert f"--resume {tmp_path / folder}" in stderr
    assert os.path.exists(tmp_path / folder / "resume.pt") and os.path.exists(tmp_path / folder / "replay_buffer.npz")


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_of_a_folder_without_state_is_one_line(script, tmp_path):
    from conftest import run_script

    result = run_script(f"{script}.py", "--resume", str(tmp_path))
    assert result.returncode == 2 and "no resumable state" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
