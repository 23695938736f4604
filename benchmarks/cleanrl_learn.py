"""CleanRL's ppo_continuous_action.py itself, learning on this machine, scored as CleanRL's benchmark scores it.

    python benchmarks/cleanrl_learn.py run --cleanrl PATH --gymnasium DIR --env Walker2d-v4 --seed 1 --out OUT \\
        [--torch-threads 1] [-- FLAGS OF ppo_continuous_action.py]
    python benchmarks/cleanrl_learn.py score OUT [OUT ...]

Where ppo.py's score falls outside CleanRL's published one, this separates the code from the rest: CleanRL's
benchmark (tag pr-424) ran on the gymnasium and MuJoCo of its day, ours run on gymnasium 1.x and MuJoCo 3. `run`
runs PATH/cleanrl/ppo_continuous_action.py (a checkout of github.com/vwxyzjn/cleanrl, checked at fe8d8a0),
unmodified, with its own command line (--env-id, --seed, --no-cuda, --total-timesteps 1000000 unless FLAGS say
otherwise; every hyperparameter at its default), under gymnasium 0.29.1, the version it pins (DIR: `pip install
--no-deps --target DIR gymnasium==0.29.1`; our gymnasium 1.x fails in its make_env), on this machine's MuJoCo, with
OMP_NUM_THREADS = --torch-threads. Its working directory is OUT/cleanrl (its TensorBoard log goes to runs/ there).
When it ends, OUT/episodes.csv (step,return,length of each training episode: charts/episodic_return and
charts/episodic_length at their global_step) and OUT/config.json (algo "ppo-cleanrl", env, seed, total_timesteps,
the checkout's commit, the versions, the command) are written. Its random streams are its own: compare the
distributions over seeds, not a seed with ours.

`score` (given run folders, or folders holding them) prints, for each environment, each run's mean return over its last 100 training episodes and their mean
and standard deviation (numpy's, ddof 0), as openrlbenchmark's rlops makes CleanRL's table, then ours the same
way from the results store (benchmarks/results/ppo-1m) when it holds that environment, and CleanRL's published
number (benchmarks/results/published.json).

A stop request (Ctrl-C, SIGTERM) stops the child too (exit status 130); the run cannot resume. Bad input: one line
on stderr, exit status 2.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORE = os.path.join(ROOT, "benchmarks", "results", "ppo-1m", "ppo")
PUBLISHED = os.path.join(ROOT, "benchmarks", "results", "published.json")
LAST = 100  # rlops' metric_last_n_average_window


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def read_log(folder: str):
    """(steps, returns, lengths) of the training episodes in a CleanRL TensorBoard log folder."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    log = EventAccumulator(folder, size_guidance={"scalars": 0})
    log.Reload()
    if "charts/episodic_return" not in log.Tags()["scalars"]:
        return [], [], []
    returns, lengths = log.Scalars("charts/episodic_return"), log.Scalars("charts/episodic_length")
    if [e.step for e in returns] != [e.step for e in lengths]:
        raise UsageError(f"{folder}: episode returns and lengths logged at different steps")
    return [e.step for e in returns], [e.value for e in returns], [int(e.value) for e in lengths]


def versions(gymnasium_dir: str) -> dict:
    """The versions the child ran with (gymnasium from DIR)."""
    code = ("import json, gymnasium, mujoco, torch, numpy; print(json.dumps({'gymnasium': gymnasium.__version__, "
            "'mujoco': mujoco.__version__, 'torch': torch.__version__, 'numpy': numpy.__version__}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=gymnasium_dir))
    return json.loads(out.stdout) if out.returncode == 0 else {}


def run(args, flags) -> int:
    script = os.path.join(args.cleanrl, "cleanrl", "ppo_continuous_action.py")
    if not os.path.isfile(script):
        raise UsageError(f"{args.cleanrl} is not a CleanRL checkout (no cleanrl/ppo_continuous_action.py)")
    if not os.path.isdir(os.path.join(args.gymnasium, "gymnasium")):
        raise UsageError(f"--gymnasium {args.gymnasium} holds no gymnasium package (pip install --no-deps --target "
                         f"{args.gymnasium} gymnasium==0.29.1)")
    if args.torch_threads < 1:
        raise UsageError(f"--torch-threads must be >= 1, not {args.torch_threads}")
    if os.path.exists(os.path.join(args.out, "config.json")):
        raise UsageError(f"{args.out} holds a finished run already")
    work = os.path.join(args.out, "cleanrl")
    try:
        os.makedirs(work, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}")
    flags = [part for flag in flags for part in flag.split("=", 1)]  # --total-timesteps=N as --total-timesteps N
    if "--total-timesteps" not in flags:
        flags = ["--total-timesteps", "1000000", *flags]
    try:
        total = int(flags[flags.index("--total-timesteps") + 1])
    except (IndexError, ValueError):
        raise UsageError("--total-timesteps after -- needs a whole number")
    command = [sys.executable, os.path.abspath(script), "--env-id", args.env, "--seed", str(args.seed), "--no-cuda",
               *flags]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.gymnasium), OMP_NUM_THREADS=str(args.torch_threads))
    print(f"cleanrl_learn: {' '.join(command[1:])} (in {work})", flush=True)
    with open(os.path.join(args.out, "log.txt"), "w") as log:
        child = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        status = child.wait()
    except KeyboardInterrupt:
        child.terminate()  # SIGTERM: a child started in the background ignores SIGINT
        child.wait()
        print("cleanrl_learn: interrupted (the run cannot resume)", file=sys.stderr)
        return 130
    if status != 0:
        raise UsageError(f"ppo_continuous_action.py ended with exit status {status}: see {args.out}/log.txt")
    logs = [os.path.join(work, "runs", name) for name in sorted(os.listdir(os.path.join(work, "runs")))]
    steps, returns, lengths = read_log(logs[-1])
    with open(os.path.join(args.out, "episodes.csv"), "w") as f:
        f.write("".join(["step,return,length\n"] + [f"{s},{r!r},{n}\n" for s, r, n in zip(steps, returns, lengths)]))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=args.cleanrl)
    config = {"algo": "ppo-cleanrl", "env": args.env, "seed": args.seed,
              "total_timesteps": total,
              "cleanrl_commit": commit.stdout.strip() or None, "torch_threads": args.torch_threads,
              "versions": versions(os.path.abspath(args.gymnasium)),
              "command": "python cleanrl/ppo_continuous_action.py " + " ".join(command[2:])}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"cleanrl_learn: {len(steps)} training episodes, the last {LAST}: mean "
          f"{np.mean(returns[-LAST:]) if returns else float('nan'):.1f}", flush=True)
    return 0


def last_mean(path: str) -> float:
    with open(path, newline="") as f:
        returns = [float(row["return"]) for row in csv.DictReader(f)]
    if not returns:
        raise UsageError(f"{path} holds no episode")
    return float(np.mean(returns[-LAST:]))


def finished_runs(outs) -> list:
    """The run folders (holding config.json) among outs and below them, in order."""
    found = []
    for out in outs:
        if os.path.isfile(os.path.join(out, "config.json")) or not os.path.isdir(out):
            found.append(out)
            continue
        for dirpath, dirnames, filenames in sorted(os.walk(out)):
            dirnames.sort()
            if "config.json" in filenames:
                found.append(dirpath)
                dirnames[:] = []
    return found or list(outs)


def score(outs) -> int:
    runs = {}
    for out in finished_runs(outs):
        try:
            with open(os.path.join(out, "config.json")) as f:
                config = json.load(f)
            runs.setdefault(config["env"], []).append((config["seed"], last_mean(os.path.join(out, "episodes.csv"))))
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"{out} is not a finished run of this tool ({type(e).__name__}: {e})")
    print(f"mean return of each run's last {LAST} training episodes; mean +- std over runs (numpy, ddof 0), as rlops")
    with open(PUBLISHED) as f:
        published = {n["env"]: n for n in json.load(f)["numbers"] if n["algo"] == "ppo" and n["source"] == "CleanRL"}
    print("| env | code | runs | mean +- std |")
    print("|---|---|---|---|")
    for env, scores in sorted(runs.items()):
        if env in published:
            print(f"| {env} | CleanRL's table (pr-424, its machines) | 3 | {published[env]['mean']:.0f} +- "
                  f"{published[env]['interval']:.0f} |")
        rows = [("CleanRL here", sorted(scores))]
        stored = os.path.join(STORE, env)
        if os.path.isdir(stored):
            ours = [(int(name[4:]), last_mean(os.path.join(stored, name, "episodes.csv")))
                    for name in sorted(os.listdir(stored))]
            rows.append(("ppo.py (store)", ours))
        for code, pairs in rows:
            values = np.array([v for _, v in pairs])
            each = ", ".join(f"seed {s}: {v:.0f}" for s, v in pairs)
            print(f"| {env} | {code} | {each} | {values.mean():.0f} +- {values.std():.0f} |")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="cleanrl_learn.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="one learning run of CleanRL's ppo_continuous_action.py")
    r.add_argument("--cleanrl", required=True, metavar="PATH", help="a checkout of github.com/vwxyzjn/cleanrl")
    r.add_argument("--gymnasium", required=True, metavar="DIR", help="a folder where gymnasium 0.29.1 imports")
    r.add_argument("--env", required=True, help="e.g. Walker2d-v4")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", required=True, metavar="OUT", help="the run's folder (made; must not hold a run)")
    r.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the run (1)")
    s = sub.add_parser("score", help="each run's last 100 training episodes, beside ppo.py's in the store")
    s.add_argument("outs", nargs="+", metavar="OUT", help="folders of finished runs, or folders holding them")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args, flags)
    return score(args.outs)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"cleanrl_learn.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("cleanrl_learn.py: interrupted", file=sys.stderr)
        sys.exit(130)
