"""Shared test fixtures: the project root on sys.path, and a runner for the scripts' command lines."""

import csv
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_script(script: str, *args: str, timeout: float = 300, extra_env=None) -> subprocess.CompletedProcess:
    """Runs `python <script> <args>` from the project root; returns the finished process."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(extra_env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def stop_at(module, k):
    """A GracefulExit for `module` whose stop request comes at the k-th check (the training loops check
    once per step: an environment step, a gradient step offline, an iteration for PPO)."""

    class StopAt(module.GracefulExit):
        def __init__(self):
            self.checks = 0

        @property
        def requested(self):
            self.checks += 1
            return self.checks == k

    return StopAt


def read_evaluations(run_dir):
    """(run folder, rows of its evaluations.csv) for a --run-dir holding one run."""
    (folder,) = [os.path.join(run_dir, d) for d in os.listdir(run_dir)]
    with open(os.path.join(folder, "evaluations.csv")) as f:
        return folder, list(csv.DictReader(f))


def assert_videos(run_folder, expected):
    """The run folder's videos/ holds exactly `expected` (file names), each a real MP4 container."""
    folder = os.path.join(run_folder, "videos")
    videos = sorted(os.listdir(folder), key=lambda name: int(name[5:-4]))  # step_<N>.mp4
    assert videos == expected
    for name in videos:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        assert len(data) > 1000 and data[4:8] == b"ftyp"


def skip_if_wandb_installed():
    try:
        import wandb  # noqa: F401
    except ImportError:
        return
    pytest.skip("wandb is installed")


@pytest.fixture
def script():
    return run_script
