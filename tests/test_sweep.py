"""tools/sweep.py: dry run, local runs (real and fake scripts), skipping, resume/restart, failures, SLURM paths."""

import csv
import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from conftest import ROOT, run_script

TINY = ["--total-timesteps", "300", "--start-timesteps", "100", "--eval-freq", "100", "--eval-episodes", "1",
        "--batch-size", "32"]

# A stand-in for an algorithm script: the same flags and run folder, no torch, instant. It evaluates at
# 0, eval_freq, ..., total; --stop-at K exits 130 (interrupted) after the evaluation at step K.
FAKE = r'''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--env"); p.add_argument("--seed", type=int); p.add_argument("--run-dir")
p.add_argument("--torch-threads", type=int, default=0); p.add_argument("--total-timesteps", type=int, default=300)
p.add_argument("--eval-freq", type=int, default=100); p.add_argument("--stop-at", type=int, default=None)
if RESUME:
    p.add_argument("--resume", default=None)
args = p.parse_args()
if args.env == "Bad-v0":
    print("fake.py: error: cannot make environment 'Bad-v0'", file=sys.stderr)
    sys.exit(2)
if RESUME and args.resume:
    path = args.resume
    with open(os.path.join(path, "evaluations.csv")) as f:
        lines = f.read().splitlines()
    print("resumed", path)
else:
    path = os.path.join(args.run_dir, f"{args.env}__fake__{args.seed}__{time.time_ns()}")
    os.makedirs(path)
    config = dict(vars(args), algo="fake", torch_threads=args.torch_threads)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    lines = ["step,wall_seconds,mean_return,std_return,returns"]
start = int(lines[-1].split(",")[0]) + args.eval_freq if len(lines) > 1 else 0
for step in range(start, args.total_timesteps + 1, args.eval_freq):
    lines.append(f"{step},0.0,{step + args.seed:.3f},0.000,{step + args.seed:.3f}")
    with open(os.path.join(path, "evaluations.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if args.stop_at is not None and step >= args.stop_at:
        if RESUME:
            open(os.path.join(path, "resume.pt"), "w").close()
        print(f"interrupted at step {step}", file=sys.stderr)
        sys.exit(130)
if os.path.exists(os.path.join(path, "resume.pt")):  # a finished run has nothing to resume
    os.remove(os.path.join(path, "resume.pt"))
print("done", path)
'''


def fake_script(tmp_path, name, resume):
    path = tmp_path / f"{name}.py"
    path.write_text(f"RESUME = {resume}\n" + FAKE)
    return str(path)


def sweep(*args, timeout=300):
    return run_script("tools/sweep.py", *args, timeout=timeout)


def run_folders(cell):
    return sorted(p for p in cell.iterdir() if (p / "config.json").is_file()) if cell.is_dir() else []


def last_step(folder):
    with open(folder / "evaluations.csv") as f:
        return int(list(csv.DictReader(f))[-1]["step"])


def test_dry_run_prints_the_full_grid_with_passthrough_arguments(tmp_path):
    root = tmp_path / "sweep"
    result = sweep("--algos", "td3", "sac", "--envs", "Pendulum-v1", "Hopper-v4", "--seeds", "0", "1", "2",
                   "--local", "2", "--root", str(root), "--dry-run", "--", *TINY)
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith("[new]")]
    assert len(lines) == 12
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for algo in ("td3", "sac"):
        for env in ("Pendulum-v1", "Hopper-v4"):
            for seed in range(3):
                [line] = [l for l in lines if l.startswith(f"[new] {algo} {env} seed{seed}: ")]
                command = shlex.split(line.split(": ", 1)[1])
                assert command[1] == os.path.join(ROOT, f"{algo}.py")
                assert command[2:8] == ["--env", env, "--seed", str(seed), "--run-dir",
                                        str(root / algo / env / f"seed{seed}")]
                assert command[8:10] == ["--torch-threads", str(threads)]
                assert command[10:] == TINY
    assert not root.exists()  # a dry run writes nothing


def test_a_dry_run_into_a_reader_that_goes_away_ends_quietly(tmp_path):
    """python tools/sweep.py ... --dry-run | head: the grid's lines (over 100 KB, more than a pipe holds) go on after
    head has gone."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "sweep.py"), "--algos", "td3", "sac",
                                "--envs", "Pendulum-v1", "Hopper-v4", "--seeds", *map(str, range(200)), "--root",
                                str(tmp_path / "sweep"), "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    assert process.stdout.readline().startswith("sweep: 800 runs")
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and stderr == "", stderr


def test_local_runs_write_run_folders_and_a_second_sweep_skips_them(tmp_path):
    root = tmp_path / "sweep"
    args = ["--algos", "td3", "--envs", "Pendulum-v1", "--seeds", "0", "1", "--local", "2", "--root", str(root),
            "--", *TINY]
    result = sweep(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 2 finished now, 0 already finished, 0 failed" in result.stdout
    for seed in (0, 1):
        cell = root / "td3" / "Pendulum-v1" / f"seed{seed}"
        [folder] = run_folders(cell)
        config = json.loads((folder / "config.json").read_text())
        assert config["seed"] == seed and config["total_timesteps"] == 300 and config["batch_size"] == 32
        assert config["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        assert last_step(folder) == 300
        assert "eval return" in (cell / "sweep.log").read_text()
    again = sweep(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("[skip: finished]") == 2 and "nothing to run" in again.stdout
    assert all(len(run_folders(root / "td3" / "Pendulum-v1" / f"seed{s}")) == 1 for s in (0, 1))
    # The sweep's folders are what tools/plot.py reads.
    plotted = run_script("tools/plot.py", str(root), "--no-figure", "--reps", "200")
    assert plotted.returncode == 0, plotted.stderr
    assert "| Pendulum-v1 | td3 |" in plotted.stdout and "| 2 | 300 |" in plotted.stdout


def test_a_failing_run_is_in_the_summary_and_the_exit_status(tmp_path):
    root = tmp_path / "sweep"
    result = sweep("--algos", "td3", "--envs", "NoSuchEnv-v0", "--seeds", "0", "--local", "2", "--root",
                   str(root), "--", *TINY)
    assert result.returncode == 1
    summary = result.stdout[result.stdout.index("summary:"):]
    assert "0 finished now, 0 already finished, 1 failed" in summary
    log = root / "td3" / "NoSuchEnv-v0" / "seed0" / "sweep.log"
    assert f"FAILED td3 NoSuchEnv-v0 seed0: exit status 2; log {log}" in summary
    assert "NoSuchEnv" in log.read_text() and "last line: td3.py: error: cannot make environment" in summary


def test_interrupted_runs_are_resumed_when_the_script_can_and_restarted_when_not(tmp_path):
    root = tmp_path / "sweep"
    scripts = [fake_script(tmp_path, "fake_resume", resume=True), fake_script(tmp_path, "fake_plain", resume=False)]
    grid = ["--algos", *scripts, "--envs", "Toy-v0", "--seeds", "0", "1", "--local", "2", "--root", str(root)]
    first = sweep(*grid, "--", "--stop-at", "100")
    summary = first.stdout[first.stdout.index("summary:"):]
    assert first.returncode == 1 and summary.count("interrupted (exit status 130)") == 4, first.stdout
    for name in ("fake_resume", "fake_plain"):
        for seed in (0, 1):
            [folder] = run_folders(root / name / "Toy-v0" / f"seed{seed}")
            assert last_step(folder) == 100
    dry = sweep(*grid, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("[resume]") == 2 and dry.stdout.count("[restart]") == 2
    assert "fake_plain.py cannot resume" in dry.stdout and "restarting in a fresh run folder" in dry.stdout
    [resume_line] = [l for l in dry.stdout.splitlines() if l.startswith("[resume] fake_resume Toy-v0 seed0")]
    partial = run_folders(root / "fake_resume" / "Toy-v0" / "seed0")[0]
    assert shlex.split(resume_line.split(": ", 1)[1])[-2:] == ["--resume", str(partial)]

    second = sweep(*grid)
    assert second.returncode == 0, second.stdout
    for seed in (0, 1):
        [resumed] = run_folders(root / "fake_resume" / "Toy-v0" / f"seed{seed}")  # continued in place
        assert last_step(resumed) == 300
        with open(resumed / "evaluations.csv") as f:
            assert [int(r["step"]) for r in csv.DictReader(f)] == [0, 100, 200, 300]
        old, new = run_folders(root / "fake_plain" / "Toy-v0" / f"seed{seed}")  # a fresh folder next to the old
        assert {last_step(old), last_step(new)} == {100, 300}
    assert sweep(*grid).stdout.count("[skip: finished]") == 4


def test_slurm_path_with_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    root = tmp_path / "sweep"
    args = ["--algos", "td3", "--envs", "Pendulum-v1", "--seeds", "0", "1", "--slurm", "--slurm-executor", "local",
            "--cpus", "1", "--time", "10", "--root", str(root), "--", *TINY]
    result = sweep(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 2 run(s)" in result.stdout and "summary: 2 finished now" in result.stdout
    for seed in (0, 1):
        [folder] = run_folders(root / "td3" / "Pendulum-v1" / f"seed{seed}")
        assert last_step(folder) == 300
        assert json.loads((folder / "config.json").read_text())["torch_threads"] == 1  # --cpus
    again = sweep(*args)
    assert again.returncode == 0 and again.stdout.count("[skip: finished]") == 2


def test_slurm_path_with_submitit_debug_executor_reports_failures(tmp_path):
    pytest.importorskip("submitit")
    root = tmp_path / "sweep"
    fake = fake_script(tmp_path, "fake", resume=False)
    result = sweep("--algos", fake, "--envs", "Toy-v0", "Bad-v0", "--seeds", "0", "--slurm", "--slurm-executor",
                   "debug", "--root", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "summary: 1 finished now, 0 already finished, 1 failed" in result.stdout
    assert f"FAILED fake Bad-v0 seed0: exit status 2; log {root / 'fake' / 'Bad-v0' / 'seed0' / 'sweep.log'}" \
        in result.stdout
    [folder] = run_folders(root / "fake" / "Toy-v0" / "seed0")
    assert last_step(folder) == 300


@pytest.mark.skipif(sys.platform == "win32", reason="shell scripts stand in for sbatch")
def test_slurm_submission_is_one_job_array_with_the_asked_resources(tmp_path, monkeypatch):
    """A fake sbatch on PATH records what submitit would hand to a real cluster."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nfor last; do :; done\ncp "$last" {tmp_path}/job.sh\n'
                                    'echo "Submitted batch job 4242"\n')
    for name in ("srun", "sbatch"):
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = sweep("--algos", "td3", "--envs", "Pendulum-v1", "Hopper-v4", "--seeds", "0", "1", "2", "--slurm",
                   "--partition", "gpu", "--time", "1:30:00", "--cpus", "4", "--gpus", "1",
                   "--array-parallelism", "5", "--slurm-extra", "account=proj", "--no-wait",
                   "--root", str(tmp_path / "sweep"), "--", *TINY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 6 run(s) as job array 4242" in result.stdout
    job = (tmp_path / "job.sh").read_text()
    for line in ["#SBATCH --array=0-5%5", "#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --account=proj"]:
        assert line in job, job


@pytest.mark.parametrize("arguments, message", [
    (["--algos", "nosuchalgo", "--envs", "Pendulum-v1"], "unknown algorithm 'nosuchalgo'"),
    (["--algos", "td3", "--envs", "Pendulum-v1", "--", "--seed", "3"], "--seed is set by the sweep"),
    (["--algos", "td3", "--envs", "Pendulum-v1", "--local", "0"], "--local must be at least 1"),
    (["--algos", "td3", "--envs", "Pendulum-v1", "--slurm", "--time", "soon", "--slurm-executor", "debug"],
     "--time 'soon'"),
])
def test_bad_input_is_one_line_and_exit_status_2(arguments, message, tmp_path):
    result = sweep(*arguments, "--root", str(tmp_path / "sweep"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
