"""Preemption: a stop request is honoured within one gradient step (inside TD7's checkpoint batches too), periodic
snapshots make a kill -9 cost at most the time since the last one (alone and under tools/sweep.py), a closed
stdout or stderr costs nothing, and a run, first or resumed, prints no library warnings and writes nothing outside its
folder."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import td3
import td7
from conftest import ROOT, evaluation_columns, full_and_interrupted, make_args, run_script, stop_at

SMALL = {"actor_hdim": 32, "critic_hdim": 32, "enc_hdim": 32, "zs_dim": 16, "batch_size": 32}
# Pendulum's 200-step episodes; training starts at the episode end at 200, so the first checkpoint batch of 200
# gradient steps is released at the episode end at 400 and trained at the start of step 400; the last one, released
# at the end (800), is trained after the loop.
TD7_RUN = dict(env="Pendulum-v1", total_timesteps=800, start_timesteps=100, eval_freq=100, eval_episodes=2,
               device="cpu", torch_threads=1, save_model=True, target_update_rate=50, **SMALL)


def test_a_stop_inside_a_td7_batch_comes_after_the_current_gradient_step_and_resumes_there(tmp_path, monkeypatch):
    full = td7.launch(make_args(td7, run_dir=str(tmp_path / "full"), **TD7_RUN))
    train, at = td7.Agent.train, 57  # a real SIGINT in the middle of the 57th gradient step of the batch

    def train_and_signal(agent):
        train(agent)
        if agent.training_steps == at:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(td7.Agent, "train", train_and_signal)
    try:
        td7.launch(make_args(td7, run_dir=str(tmp_path / "parts"), **TD7_RUN))
        raise AssertionError("the run did not stop")
    except SystemExit as exit_info:
        assert exit_info.code == 130
    monkeypatch.undo()
    [folder] = os.listdir(tmp_path / "parts")
    interrupted = str(tmp_path / "parts" / folder)
    saved = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)
    assert saved["agent"]["training_steps"] == at  # not one gradient step more
    assert saved["loop"]["t"] == 400 and saved["loop"]["substep"] == at and saved["loop"]["to_train"] == 200

    resumed = td7.launch(make_args(td7, resume=interrupted, device="cpu", torch_threads=1))
    assert evaluation_columns(resumed, "step", "returns") == evaluation_columns(full, "step", "returns")
    full_model, resumed_model = td7.load_model(full)["agent"], td7.load_model(resumed)["agent"]
    assert full_model["training_steps"] == resumed_model["training_steps"] == 600  # the last batch is trained too
    for key, value in full_model["actor"].items():
        assert torch.equal(value, resumed_model["actor"][key]), key


def test_a_stop_during_an_evaluation_cuts_it_short_and_the_resumed_run_redoes_it(tmp_path, monkeypatch):
    class StopInEvaluation(td7.StopRequests):
        """The stop request comes before the second episode of the evaluation at step 300 (its 8th episode)."""

        def __init__(self):
            self.requested, self.episodes, self.previous = False, 0, {}

        def during_evaluation(self):
            self.episodes += 1
            self.requested = self.requested or self.episodes == 8
            return self.requested

    full, interrupted = full_and_interrupted(td7, TD7_RUN, StopInEvaluation, tmp_path, monkeypatch)
    loop = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)["loop"]
    assert loop["t"] == 300 and loop["evaluation_due"] == 300
    assert [step for step, in evaluation_columns(interrupted, "step")] == ["0", "100", "200"]
    resumed = td7.launch(make_args(td7, resume=interrupted, device="cpu", torch_threads=1))
    assert evaluation_columns(resumed, "step", "returns") == evaluation_columns(full, "step", "returns")


def start(script, args, **popen):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1"), **popen)


def wait_for_snapshot(path, process, after=0.0, timeout=120):
    """Waits until a resume.pt newer than `after` exists under `path` (a run folder, or a folder of them)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for folder, _, files in os.walk(path):
            if "resume.pt" in files and os.path.getmtime(os.path.join(folder, "resume.pt")) > after:
                return folder
        assert process.poll() is None, "the run ended before its first snapshot"
        time.sleep(0.05)
    raise AssertionError("no snapshot was written")


TD3_RUN = ["--env", "Pendulum-v1", "--total-timesteps", "2000", "--start-timesteps", "300", "--eval-freq", "250",
           "--eval-episodes", "2", "--batch-size", "32", "--hdim", "32", "--torch-threads", "1", "--no-progress"]


def test_a_run_killed_after_a_snapshot_resumes_from_it_as_if_never_stopped(tmp_path):
    full = run_script("td3.py", *TD3_RUN, "--run-dir", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    process = start("td3.py", [*TD3_RUN, "--snapshot-every", "0.002", "--run-dir", str(tmp_path / "killed")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = wait_for_snapshot(tmp_path / "killed", process)
    wait_for_snapshot(first, process, after=os.path.getmtime(os.path.join(first, "resume.pt")))  # a later one
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(os.path.join(first, "resume.pt"), weights_only=False)
    assert 0 < saved["loop"]["t"] < 2000
    resumed = run_script("td3.py", "--resume", first, "--torch-threads", "1", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    [full_folder] = os.listdir(tmp_path / "full")
    assert evaluation_columns(first, "step", "returns") == \
        evaluation_columns(tmp_path / "full" / full_folder, "step", "returns")
    assert not os.path.exists(os.path.join(first, "resume.pt")) and not os.path.exists(os.path.join(first,
                                                                                                      "replay_buffer"))


def children(pid: int) -> list:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


def test_a_sweep_resumes_a_run_killed_after_a_snapshot(tmp_path):
    sweep = [os.path.join(ROOT, "tools", "sweep.py"), "--algos", "td3", "--envs", "Pendulum-v1", "--seeds", "0",
             "--local", "1", "--root", str(tmp_path / "sweep"), "--", *TD3_RUN[2:], "--snapshot-every", "0.002"]
    process = subprocess.Popen([sys.executable, *sweep], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    folder = wait_for_snapshot(tmp_path / "sweep", process)
    for pid in [process.pid] + children(process.pid):  # the sweep and its run (in a session of its own), as a
        os.kill(pid, signal.SIGKILL)                     # node failure would
    process.wait()
    second = subprocess.run([sys.executable, *sweep], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resume" in second.stdout and not os.path.exists(os.path.join(folder, "resume.pt"))
    alone = run_script("td3.py", *TD3_RUN, "--run-dir", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    [alone_folder] = os.listdir(tmp_path / "alone")
    assert evaluation_columns(folder, "step", "returns") == \
        evaluation_columns(tmp_path / "alone" / alone_folder, "step", "returns")


def test_a_closed_stdout_and_stderr_do_not_cost_the_resumable_state(tmp_path):
    """python td3.py | tee log, then Ctrl-C: tee is gone, and so is every reader of the script's output."""
    process = start("td3.py", [*TD3_RUN[:3], "100000", *TD3_RUN[4:], "--eval-freq", "100", "--run-dir",
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith("td3 on Pendulum-v1")
    process.stdout.readline()  # the evaluation at step 0
    process.stdout.close()
    process.stderr.close()
    time.sleep(1.0)  # more evaluation lines, into the closed pipe
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    [folder] = os.listdir(tmp_path)
    assert os.path.exists(tmp_path / folder / "resume.pt")


def test_the_first_signal_says_at_once_that_the_run_will_stop(tmp_path):
    process = start("td3.py", [*TD3_RUN[:3], "100000", *TD3_RUN[4:], "--run-dir", str(tmp_path)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.readline()  # training has started
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.index("SIGTERM: stopping after the current gradient step") < stderr.index("interrupted at step")
    assert f"to continue: python td3.py --resume {tmp_path}" in stderr  # a command to paste where it was started


def test_a_first_run_prints_no_warnings_and_writes_nothing_outside_its_folder(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "td3.py"), "--env", "HalfCheetah-v4",
                             "--total-timesteps", "300", "--start-timesteps", "256", "--eval-freq", "300",
                             "--eval-episodes", "1", "--torch-threads", "1"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert os.listdir(tmp_path) == ["runs"]  # no MUJOCO_LOG.TXT


def test_a_resumed_run_prints_no_warnings_and_writes_nothing_outside_its_folder(tmp_path, monkeypatch):
    """Reading resume.pt unpickles the environments, and MuJoCo compiles their models again: gymnasium's HalfCheetah
    model has the settotalmass that MuJoCo 3 warns about, into MUJOCO_LOG.TXT unless the run routes its warnings."""
    run = make_args(td3, env="HalfCheetah-v4", total_timesteps=300, start_timesteps=256, eval_freq=300, eval_episodes=1,
                    batch_size=32, hdim=32, device="cpu", torch_threads=1, run_dir=str(tmp_path / "runs"))
    monkeypatch.setattr(td3, "StopRequests", stop_at(td3, 280))
    with pytest.raises(SystemExit) as exit_info:
        td3.launch(run)
    monkeypatch.undo()
    assert exit_info.value.code == 130
    [folder] = os.listdir(tmp_path / "runs")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "td3.py"), "--resume", os.path.join("runs", folder),
                             "--torch-threads", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert os.listdir(tmp_path) == ["runs"]  # no MUJOCO_LOG.TXT
    assert "(resumed at step 280)" in result.stdout and "step      300" in result.stdout
