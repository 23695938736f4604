"""--resume: a run of N steps equals a run interrupted part-way plus a resume (identical evaluations)."""

import os
import pickle
import signal
from dataclasses import asdict

import gymnasium as gym
import numpy as np
import pytest
import torch

import td3

from conftest import evaluation_columns, full_and_interrupted, make_args, run_script, signal_when_running

# The online off-policy scripts share these flags; ppo.py and td3_bc.py test theirs in their own files.
SCRIPTS = ["td3", "td7", "sac", "ddpg"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("env, steps, stop", [("Pendulum-v1", 600, 350), ("Hopper-v4", 600, 433)])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(script, env, steps, stop, tmp_path, monkeypatch):
    module = __import__(script)
    common = dict(env=env, total_timesteps=steps, start_timesteps=250, eval_freq=100, eval_episodes=2,
                  batch_size=32, device="cpu", torch_threads=1, save_model=True)
    full, interrupted = full_and_interrupted(module, common, stop, tmp_path, monkeypatch)
    t = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)["loop"]["t"]
    assert 250 < t <= stop  # td7: fewer, when its stop came inside a batch (one check per gradient step)
    assert len(evaluation_columns(interrupted, "step")) == t // 100 + 1

    resumed = module.launch(make_args(module, resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted
    assert evaluation_columns(resumed, "step", "returns") == evaluation_columns(full, "step", "returns")
    assert not os.path.exists(os.path.join(resumed, "resume.pt"))  # finished: nothing left to resume


@pytest.mark.parametrize("script", ["td3", "td7"])  # td7: a stop may come inside a batch
def test_sigterm_writes_a_resumable_state_and_exits_130(script, tmp_path):
    returncode, stderr = signal_when_running(f"{script}.py", [
        "--env", "Pendulum-v1", "--total-timesteps", "100000", "--eval-freq", "100000", "--torch-threads", "1",
        "--run-dir", str(tmp_path)], signal.SIGTERM)
    assert returncode == 130, stderr
    [folder] = os.listdir(tmp_path)
    assert f"--resume {tmp_path / folder}" in stderr
    assert os.path.exists(tmp_path / folder / "resume.pt") and os.listdir(tmp_path / folder / "replay_buffer")
    result = run_script(f"{script}.py", "--resume", str(tmp_path / folder), "--total-timesteps", "5")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "would change it: --total-timesteps 5 (the run's: 100000)" in result.stderr


def test_resume_takes_only_the_flags_that_would_not_change_the_run():
    saved = asdict(td3.Args(env="Pendulum-v1", total_timesteps=10, run=td3.RunFlags(device="cpu")))
    same = td3.Args(env="Pendulum-v1", total_timesteps=10, seed=0, run=td3.RunFlags(device="cuda", progress=False))
    assert td3.changed_flags(same, saved, keep=("device", "progress")) == ""  # the run's values, or defaults
    other = td3.Args(total_timesteps=5, tau=0.01, run=td3.RunFlags(device="cuda", snapshot_every=1.0))
    assert td3.changed_flags(other, saved, keep=("device",)) == ("--total-timesteps 5 (the run's: 10), --tau 0.01 "
                                                                  "(the run's: 0.005), --snapshot-every 1.0 (the "
                                                                  "run's: 10.0)")


@pytest.mark.parametrize("env_id", ["Ant-v4", "Humanoid-v4"])  # their reward reads body positions before a step
def test_a_restored_mujoco_environment_steps_exactly_as_the_original(env_id):
    env = td3.make_env(td3.Args(env=env_id), 0)
    for _ in range(20):
        env.step(env.action_space.sample())
    copy = td3.restore_env(pickle.loads(pickle.dumps(td3.env_state(env))))  # as resume.pt keeps it
    for _ in range(5):
        action = env.action_space.sample()
        a, b = env.step(action), copy.step(action)
        assert a[1] == b[1] and np.array_equal(a[0], b[0])  # reward and observation, bit for bit


@pytest.mark.parametrize("script", ["td3"])  # the harness is the same text in every script (test_layout)
def test_resume_of_a_folder_without_state_is_one_line(script, tmp_path):
    result = run_script(f"{script}.py", "--resume", str(tmp_path))
    assert result.returncode == 2 and "no resumable state" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
