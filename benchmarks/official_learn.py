"""A learning run of the official TD3 (github.com/sfujim/TD3) itself: its main.py, unmodified, on gymnasium.

    python benchmarks/official_learn.py --td3 PATH --env HalfCheetah-v4 --seed 0 --out DIR [-- MAIN.PY FLAGS]
    python benchmarks/official_learn.py --td3 ~/peers/TD3 --env HalfCheetah-v4 --seed 0 \\
        --out ~/campaign/runs/official-td3-300k/HalfCheetah-v4/seed0 -- --max_timesteps 300000

What is the official code's own learning curve on the environments our runs use (gymnasium 1.x's v4 MuJoCo
tasks on MuJoCo 3)? Where td3.py falls outside a published number, this separates the code from the
environment: td3.py's update is proven equal to TD3.py's (benchmarks/official.py --check), but a published
number was made on other environments. main.py is written for gym's old API; it runs here as it is, with
`import gym` answered by a small adapter over gymnasium (written into DIR/shim): gym.make(id) makes the
gymnasium environment, env.seed(s) seeds its next reset (and so each evaluation environment, seeded seed + 100
before its first episode, as under gym), reset() returns the observation, step() returns (observation, reward,
terminated or truncated, info), and env._max_episode_steps is the time limit (main.py's done_bool: a time-limit
end is not a terminal). Its random streams are its own (np.random batches, ours torch.randint), so a seed gives
another run than td3.py's with the same seed: compare the distributions over seeds.

main.py runs with DIR as its working directory (it writes results/TD3_<env>_<seed>.npy: the mean return of each
10-episode evaluation, at step 0 and every eval_freq steps); this tool turns that into DIR/evaluations.csv (step,
mean_return) and DIR/config.json (algo "td3-official", env, seed, total_timesteps, eval_freq, the commit of the
checkout) as they go, which tools/plot.py reads beside our runs. The official loop cannot resume: a stopped run
starts again. Torch threads: --torch-threads (OMP_NUM_THREADS of main.py). Bad input: one line, exit status 2.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time

SHIM = '''"""gym's old API over gymnasium, for the official TD3 main.py (written by benchmarks/official_learn.py)."""
import gymnasium


class Env:
    def __init__(self, env):
        self.env, self._seed = env, None
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self._max_episode_steps = env.spec.max_episode_steps

    def seed(self, seed):
        self._seed = seed

    def reset(self):
        observation, _ = self.env.reset(seed=self._seed)
        self._seed = None
        return observation

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated or truncated, info


def make(env_id):
    return Env(gymnasium.make(env_id))
'''


class UsageError(Exception):
    pass


def parse(argv):
    parser = argparse.ArgumentParser(prog="official_learn.py", description=__doc__.splitlines()[0])
    parser.add_argument("--td3", required=True, help="checkout of github.com/sfujim/TD3 (its main.py)")
    parser.add_argument("--env", required=True, help="gymnasium environment id, e.g. HalfCheetah-v4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the run folder: config.json, evaluations.csv, main.py's files")
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of main.py")
    words = list(argv)
    rest = words[words.index("--") + 1:] if "--" in words else []
    args = parser.parse_args(words[:words.index("--")] if "--" in words else words)
    args.main_flags = rest
    if not os.path.isfile(os.path.join(args.td3, "main.py")) or not os.path.isfile(os.path.join(args.td3, "TD3.py")):
        raise UsageError(f"{args.td3} is not a checkout of github.com/sfujim/TD3 (no main.py and TD3.py)")
    if args.torch_threads < 1:
        raise UsageError(f"--torch-threads must be >= 1, not {args.torch_threads}")
    return args


def main_flag(flags, name, default):
    """The value main.py gets for --name (its argparse default when not passed)."""
    for i, word in enumerate(flags):
        if word == f"--{name}" and i + 1 < len(flags):
            return int(float(flags[i + 1]))
        if word.startswith(f"--{name}="):
            return int(float(word.split("=", 1)[1]))
    return default


def write_evaluations(out, npy, eval_freq):
    """DIR/evaluations.csv from main.py's results/*.npy (atomically); the number of evaluations."""
    import numpy as np

    try:
        means = np.load(npy)
    except (OSError, ValueError):
        return 0
    partial = os.path.join(out, "evaluations.csv.partial")
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "mean_return"])
        for i, mean in enumerate(means):
            writer.writerow([i * eval_freq, f"{float(mean):.3f}"])
    os.replace(partial, os.path.join(out, "evaluations.csv"))
    return len(means)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    signal.signal(signal.SIGTERM, interrupt)  # a stop request stops main.py too
    out = os.path.abspath(args.out)
    try:
        os.makedirs(os.path.join(out, "shim", "gym"), exist_ok=True)
        with open(os.path.join(out, "shim", "gym", "__init__.py"), "w") as f:
            f.write(SHIM)
    except OSError as e:
        raise UsageError(f"cannot write the run folder {out}: {e.strerror}")
    commit = subprocess.run(["git", "-C", args.td3, "rev-parse", "HEAD"], capture_output=True, text=True)
    flags = ["--env", args.env, "--seed", str(args.seed), *args.main_flags]
    eval_freq = main_flag(flags, "eval_freq", 5000)
    config = {"algo": "td3-official", "env": args.env, "seed": args.seed,
              "total_timesteps": main_flag(flags, "max_timesteps", 1_000_000), "eval_freq": eval_freq,
              "official_commit": commit.stdout.strip() or None, "main_py_flags": flags,
              "torch_threads": args.torch_threads}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    env = dict(os.environ, PYTHONPATH=os.path.join(out, "shim"), OMP_NUM_THREADS=str(args.torch_threads),
               MKL_NUM_THREADS=str(args.torch_threads), PYTHONUNBUFFERED="1")
    npy = os.path.join(out, "results", f"TD3_{args.env}_{args.seed}.npy")
    print(f"official_learn: main.py {' '.join(flags)} in {out}", flush=True)
    with open(os.path.join(out, "main.log"), "w") as log:
        child = subprocess.Popen([sys.executable, os.path.join(os.path.abspath(args.td3), "main.py"), *flags],
                                 cwd=out, stdout=log, stderr=subprocess.STDOUT, env=env)
    count = 0
    try:
        while child.poll() is None:
            time.sleep(5)
            new = write_evaluations(out, npy, eval_freq)
            if new > count:
                count = new
                print(f"step {(count - 1) * eval_freq}: {count} evaluations", flush=True)
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        print("official_learn: interrupted (the official loop cannot resume)", file=sys.stderr)
        return 130
    count = write_evaluations(out, npy, eval_freq)
    if child.returncode != 0:
        with open(os.path.join(out, "main.log")) as f:
            tail = f.read().strip().splitlines()[-1:] or ["no output"]
        print(f"official_learn: main.py failed (exit status {child.returncode}): {tail[0]}", file=sys.stderr)
        return 1
    print(f"official_learn: done, {count} evaluations in {os.path.join(out, 'evaluations.csv')}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(run(parse(sys.argv[1:])))
    except UsageError as e:
        print(f"official_learn.py: error: {e}", file=sys.stderr)
        sys.exit(2)
