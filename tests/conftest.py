"""Shared test fixtures: the project root on sys.path, and a runner for the scripts' command lines."""

import csv
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Under pytest-xdist (python -m pytest -n 2) each worker, and every script it starts, computes on one thread: two
# workers with two threads each on two cores spin against each other (OpenMP busy-waits) and slow to a crawl, as a
# CI run once did (a Pendulum run at 14 steps/s instead of 200). Set before torch is imported; subprocesses inherit it.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"


def run_script(script: str, *args: str, timeout: float = 300, extra_env=None) -> subprocess.CompletedProcess:
    """Runs `python <script> <args>` from the project root; returns the finished process."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(extra_env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def one_error_line(result) -> bool:
    """A finished script failed as bad input should: exit status 2 and one line on stderr that names an error."""
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr and "error" in lines[0]


def make_args(module, **flags):
    """module.Args from keyword arguments; those of the harness (RunFlags: device, run_dir, ...) go to its run field."""
    harness = module.RunFlags.__dataclass_fields__
    return module.Args(**{name: value for name, value in flags.items() if name not in harness},
                       run=module.RunFlags(**{name: value for name, value in flags.items() if name in harness}))


def stop_at(module, k):
    """StopRequests for `module` whose stop request comes at the k-th check (the harness checks once per step: an
    environment step, a gradient step offline, an iteration for PPO; and between the gradient steps of a long one)."""

    class StopAt(module.StopRequests):
        def __init__(self):
            self.checks, self.previous = 0, {}

        @property
        def requested(self):
            self.checks += 1
            return self.checks == k

        def during_evaluation(self):  # safe points only: evaluations are never cut short here
            return False

    return StopAt


def read_evaluations(run_dir):
    """(run folder, rows of its evaluations.csv) for a --run-dir holding one run."""
    (folder,) = [os.path.join(run_dir, d) for d in os.listdir(run_dir)]
    with open(os.path.join(folder, "evaluations.csv")) as f:
        return folder, list(csv.DictReader(f))


def evaluation_columns(run_path, *columns):
    """The given columns of a run folder's evaluations.csv, one tuple per evaluation."""
    with open(os.path.join(run_path, "evaluations.csv")) as f:
        return [tuple(row[column] for column in columns) for row in csv.DictReader(f)]


def full_and_interrupted(module, common: dict, stop, tmp_path, monkeypatch):
    """Runs module.launch(make_args(module, **common)) to the end in tmp_path/full, then again in tmp_path/parts
    stopped at the stop-th check (see stop_at; or by `stop`, a StopRequests class), which must exit with status 130.
    Returns both run folders."""
    full = module.launch(make_args(module, run_dir=str(tmp_path / "full"), **common))
    monkeypatch.setattr(module, "StopRequests", stop if isinstance(stop, type) else stop_at(module, stop))
    with pytest.raises(SystemExit) as exit_info:
        module.launch(make_args(module, run_dir=str(tmp_path / "parts"), **common))
    monkeypatch.undo()
    assert exit_info.value.code == 130
    [folder] = os.listdir(tmp_path / "parts")
    return full, str(tmp_path / "parts" / folder)


def signal_when_running(script: str, args: list, sig) -> tuple:
    """Starts `python <script> <args>`, sends it `sig` a second after its first evaluation line (training
    has started), and waits; returns (exit status, stderr)."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1"))
    try:
        for line in process.stdout:
            if line.startswith("step"):
                break
        time.sleep(1.0)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def pendulum_rows(script: str, run_dir, *flags: str) -> list:
    """Trains `script` on Pendulum-v1 from seed 0 with `flags`; returns its evaluations.csv rows."""
    result = run_script(script, "--env", "Pendulum-v1", "--seed", "0", *flags, "--run-dir", str(run_dir),
                        timeout=900)  # about a minute on idle cores
    assert result.returncode == 0, result.stderr
    return read_evaluations(run_dir)[1]


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
