"""benchmarks/cleanrl_learn.py: a learning run of CleanRL's ppo_continuous_action.py itself (when CLEANRL_PATH names
a checkout of github.com/vwxyzjn/cleanrl and CLEANRL_GYMNASIUM a folder holding gymnasium 0.29.1) keeps every
training episode at its step, and `score` computes rlops' table by hand; bad input is one line."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import one_error_line, run_script


def peers():
    path, gymnasium = os.environ.get("CLEANRL_PATH"), os.environ.get("CLEANRL_GYMNASIUM")
    if not (path and gymnasium):
        pytest.skip("CLEANRL_PATH and CLEANRL_GYMNASIUM name no CleanRL checkout and gymnasium 0.29.1")
    return path, gymnasium


LAST_FEW = 10  # Hopper's first episodes are short: 4096 steps of a barely trained policy end far more than ten


def test_a_short_run_keeps_its_training_episodes_and_is_scored_as_rlops(tmp_path):
    path, gymnasium = peers()
    out = tmp_path / "Hopper-v4" / "seed1"
    result = run_script("benchmarks/cleanrl_learn.py", "run", "--cleanrl", path, "--gymnasium", gymnasium, "--env",
                        "Hopper-v4", "--seed", "1", "--out", str(out), "--", "--total-timesteps", "4096",
                        timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "ppo-cleanrl" and config["total_timesteps"] == 4096
    assert config["versions"]["gymnasium"] == "0.29.1" and "--env-id Hopper-v4" in config["command"]
    with open(out / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps, lengths = np.array([int(r["step"]) for r in rows]), np.array([int(r["length"]) for r in rows])
    # One environment: each episode ends its length after the one before; all inside the 2 rollouts of 2048 steps.
    assert len(rows) > LAST_FEW and (steps == lengths.cumsum()).all() and steps[-1] <= 4096
    scored = run_script("benchmarks/cleanrl_learn.py", "score", str(out))
    mean = np.mean([float(r["return"]) for r in rows][-100:])
    assert f"| Hopper-v4 | CleanRL here | seed 1: {mean:.0f} | {mean:.0f} +- 0 |" in scored.stdout, scored.stdout
    # Run again into the same folder: refused, the finished run kept.
    again = run_script("benchmarks/cleanrl_learn.py", "run", "--cleanrl", path, "--gymnasium", gymnasium, "--env",
                       "Hopper-v4", "--seed", "1", "--out", str(out))
    assert one_error_line(again) and "holds a finished run" in again.stderr


def test_score_by_hand(tmp_path):
    for seed, returns in ((1, [1.0] * 50 + [10.0] * 100), (2, [4.0, 8.0])):
        out = tmp_path / f"seed{seed}"
        out.mkdir()
        (out / "config.json").write_text(json.dumps({"algo": "ppo-cleanrl", "env": "Swimmer-v4", "seed": seed}))
        (out / "episodes.csv").write_text("step,return,length\n" + "".join(
            f"{i + 1},{r},1\n" for i, r in enumerate(returns)))
    result = run_script("benchmarks/cleanrl_learn.py", "score", str(tmp_path / "seed1"), str(tmp_path / "seed2"))
    # Seed 1: its last 100 episodes, all 10.0 (the first 50 left out); seed 2: 6.0; mean 8, numpy std 2.
    assert "| Swimmer-v4 | CleanRL here | seed 1: 10, seed 2: 6 | 8 +- 2 |" in result.stdout, result.stdout


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "gym").mkdir()
    (tmp_path / "cr" / "cleanrl").mkdir(parents=True)  # a checkout and a gymnasium folder that pass the first checks
    (tmp_path / "cr" / "cleanrl" / "ppo_continuous_action.py").write_text("")
    (tmp_path / "g" / "gymnasium").mkdir(parents=True)
    for args, message in (
            (["run", "--cleanrl", str(tmp_path), "--gymnasium", str(tmp_path), "--env", "Hopper-v4", "--seed", "1",
              "--out", str(tmp_path / "o")], "not a CleanRL checkout"),
            (["run", "--cleanrl", str(tmp_path / "cr"), "--gymnasium", str(tmp_path / "g"), "--env", "Hopper-v4",
              "--seed", "1", "--out", str(tmp_path / "o"), "--", "--total-timesteps=x"], "needs a whole number"),
            (["score", str(tmp_path / "missing")], "not a finished run"),
            (["score", str(tmp_path)], "not a finished run")):
        result = run_script("benchmarks/cleanrl_learn.py", *args)
        assert one_error_line(result) and message in result.stderr, result.stderr


def test_a_stop_request_stops_the_child_too(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    path, gymnasium = peers()
    child = subprocess.Popen([sys.executable, "benchmarks/cleanrl_learn.py", "run", "--cleanrl", path, "--gymnasium",
                              gymnasium, "--env", "Hopper-v4", "--seed", "1", "--out", str(tmp_path / "o"), "--",
                              "--total-timesteps", "987654"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    child.stdout.readline()  # said once CleanRL's script is started
    time.sleep(3)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "interrupted" in err, out + err
    time.sleep(1)
    ps = subprocess.run(["pgrep", "-f", "total-timesteps 987654"], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "CleanRL's script outlived the stop request"


def test_the_committed_peer_runs_and_their_table():
    from conftest import ROOT

    folder = os.path.join(ROOT, "benchmarks", "peer_runs", "cleanrl-ppo-1m")
    if not os.path.isdir(folder):
        pytest.skip("no CleanRL run committed")
    for dirpath, _, files in os.walk(folder):
        if "config.json" in files:
            assert sorted(files) == ["config.json", "episodes.csv"], dirpath
            with open(os.path.join(dirpath, "config.json")) as f:
                config = json.load(f)
            assert config["algo"] == "ppo-cleanrl" and config["total_timesteps"] == 1000000
            assert dirpath.endswith(os.path.join(config["env"], f"seed{config['seed']}"))
            with open(os.path.join(dirpath, "episodes.csv"), newline="") as f:
                rows = list(csv.DictReader(f))
            steps, lengths = np.array([int(r["step"]) for r in rows]), np.array([int(r["length"]) for r in rows])
            # CleanRL runs 488 rollouts of 2048 steps (1M // 2048): every episode ends inside them, none is lost.
            assert (steps == lengths.cumsum()).all() and steps[-1] <= 488 * 2048
    made = run_script("benchmarks/cleanrl_learn.py", "score", folder)
    assert made.returncode == 0, made.stderr
    with open(os.path.join(folder, "table.md")) as f:
        assert f.read() == made.stdout, f"stale: python benchmarks/cleanrl_learn.py score {folder} > {folder}/table.md"
