"""benchmarks/official_learn.py: the official TD3 main.py run on gymnasium through a gym-API adapter. The adapter's
semantics are checked everywhere (seeding, resets, the done flag, the time limit); a short learning run needs a
checkout named by TD3_PATH (skipped otherwise); bad input is one line."""

import importlib.util
import json
import os
import sys
import types

import gymnasium
import numpy as np
import pytest

from conftest import ROOT, one_error_line, run_script

SPEC = importlib.util.spec_from_file_location("official_learn", os.path.join(ROOT, "benchmarks", "official_learn.py"))
official_learn = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(official_learn)


def shim():
    gym = types.ModuleType("gym_shim")
    exec(official_learn.SHIM, gym.__dict__)
    return gym


def test_the_adapter_is_gyms_old_api_over_gymnasium():
    gym = shim()
    env, reference = gym.make("Pendulum-v1"), gymnasium.make("Pendulum-v1")
    assert env._max_episode_steps == 200
    env.seed(3)
    np.testing.assert_array_equal(env.reset(), reference.reset(seed=3)[0])  # seed(s): the next reset is seeded
    np.testing.assert_array_equal(env.reset(), reference.reset()[0])  # later resets go on from that seed
    env.action_space.seed(0)
    dones = []
    for _ in range(200):
        result = env.step(env.action_space.sample())
        assert len(result) == 4
        dones.append(result[2])
    assert dones == [False] * 199 + [True]  # the time limit ends the episode: done (main.py's done_bool masks it)


def test_a_short_official_run_writes_evaluations_plot_reads(tmp_path):
    path = os.environ.get("TD3_PATH")
    if not path:
        pytest.skip("TD3_PATH is not set (a checkout of github.com/sfujim/TD3)")
    out = tmp_path / "run"
    result = run_script("benchmarks/official_learn.py", "--td3", path, "--env", "Pendulum-v1", "--seed", "1",
                        "--out", str(out), "--", "--max_timesteps", "600", "--start_timesteps", "300",
                        "--eval_freq", "200", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "td3-official" and config["total_timesteps"] == 600 and config["eval_freq"] == 200
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import plot

    run = plot.read_run(str(out))
    assert run.steps.tolist() == [0, 200, 400, 600] and run.finished and np.isfinite(run.returns).all()
    assert run.returns[0] == run.returns[1] != run.returns[3]  # no training before step 300, then it learns


def test_bad_input_is_one_line(tmp_path):
    fake = tmp_path / "TD3"
    fake.mkdir()
    (fake / "main.py").write_text("")
    (fake / "TD3.py").write_text("")
    for args, message in ((["--td3", str(tmp_path)], "not a checkout"),
                          (["--td3", str(fake), "--torch-threads", "0"], "--torch-threads must be >= 1")):
        result = run_script("benchmarks/official_learn.py", *args, "--env", "Pendulum-v1", "--out", str(tmp_path / "o"))
        assert one_error_line(result) and message in result.stderr, result.stderr
