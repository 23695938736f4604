"""One script's update speed before and after a change, side by side in one process.

    git show 92e3ab5:td3.py > /tmp/td3_before.py
    python benchmarks/before_after.py --script td3 --before /tmp/td3_before.py [--threads 1] [--rounds 10]

Both versions (this checkout's script and the file given, loaded under private module names) build an Agent with
default Args and HalfCheetah's shapes (17-d states, 6-d actions) on the same 100k random transitions, take 50
untimed steps, then --rounds rounds of --steps Agent.train() calls each, the order alternating from round to round;
the best round of each is kept, so a noisy neighbour hurts both alike. Prints gradient steps per second of each
and after / before. Off-policy scripts only (td3, td7, sac, ddpg, td3_bc)."""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def agent_of(module, n: int = 100_000):
    torch.manual_seed(0)
    agent = module.Agent(17, 6, module.Args(), torch.device("cpu"))
    rng = np.random.default_rng(0)
    agent.replay_buffer.load({"observations": rng.normal(size=(n, 17)), "actions": rng.uniform(-1, 1, (n, 6)),
                              "next_observations": rng.normal(size=(n, 17)), "rewards": rng.normal(size=n),
                              "terminals": rng.random(n) < 0.01})
    for _ in range(50):
        agent.train()
    return agent


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, choices=["td3", "td7", "sac", "ddpg", "td3_bc"])
    parser.add_argument("--before", required=True, help="the script's file before the change")
    parser.add_argument("--threads", type=positive, default=1)
    parser.add_argument("--rounds", type=positive, default=10)
    parser.add_argument("--steps", type=positive, default=200)
    args = parser.parse_args()
    if not os.path.isfile(args.before):
        parser.error(f"--before {args.before}: no such file")
    torch.set_num_threads(args.threads)
    try:
        before = load("_before", args.before)
        if not hasattr(before, "Agent") or not hasattr(before, "Args"):
            raise ValueError("it has no Agent and Args")
    except Exception as e:  # any file: say why it is not a version of the script, in one line
        parser.error(f"--before {args.before} is not a version of {args.script}.py ({type(e).__name__}: {e})")
    agents = {"before": agent_of(before), "after": agent_of(load("_after", os.path.join(ROOT, f"{args.script}.py")))}
    best = dict.fromkeys(agents, 0.0)
    for r in range(args.rounds):
        for label in list(agents)[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            for _ in range(args.steps):
                agents[label].train()
            best[label] = max(best[label], args.steps / (time.perf_counter() - start))
    print(f"{args.script}, {args.threads} thread(s), best of {args.rounds} rounds of {args.steps} steps: before "
          f"{best['before']:.1f}, after {best['after']:.1f} gradient steps/s, after / before "
          f"{best['after'] / best['before']:.3f}")


if __name__ == "__main__":
    main()
