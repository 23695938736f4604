"""Training speed of the scripts, measured side by side in one run.

    python benchmarks/throughput.py [--env HalfCheetah-v4] [--threads 2] [--device cpu] [--scripts td3 td7 ...]
                                    [--compile]

Off-policy scripts (td3, td7, sac, ddpg, td3_bc): gradient steps per second of Agent.train() on a
buffer of 100k random transitions of the environment's shape (sampling included, environment not);
with --compile, the eager update and the --compile one side by side (compilation not timed).
PPO: environment steps per second of whole iterations (collect 2048 steps + 10 epochs of updates).
Rounds are interleaved (script A, B, ..., then A, B, ... again) and the best round of each is kept,
so a noisy neighbour on a shared machine hurts every script alike.
"""

import argparse
import importlib
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OFF_POLICY = ["td3", "td7", "sac", "ddpg", "td3_bc"]


def off_policy_bench(name, env, device, steps, compile=False):
    module = importlib.import_module(name)
    state_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = module.Agent(state_dim, action_dim, module.Args(compile=compile), device)
    n, rng = 100_000, np.random.default_rng(0)
    agent.replay_buffer.load({"observations": rng.normal(size=(n, state_dim)),
                              "actions": rng.uniform(-1, 1, (n, action_dim)),
                              "next_observations": rng.normal(size=(n, state_dim)),
                              "rewards": rng.normal(size=n), "terminals": rng.random(n) < 0.01})

    def run():
        for _ in range(steps):
            agent.train()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    return lambda: steps / timed(run)


def ppo_bench(env_id, device, iterations):
    ppo = importlib.import_module("ppo")
    args = ppo.Args(env=env_id)
    envs = ppo.make_vector_env(env_id, args.num_envs, 0)
    agent = ppo.Agent(envs.single_observation_space.shape[0], envs.single_action_space.shape[0], args, device)
    rollout = ppo.Rollout(agent, envs, args.num_steps, 0)

    def run():
        for _ in range(iterations):
            next_value, _ = rollout.collect()
            advantages, returns = rollout.advantages(next_value)
            agent.update(torch.from_numpy(rollout.obs).to(device).flatten(0, 1), rollout.actions.flatten(0, 1),
                         rollout.log_probs.flatten(0, 1), advantages.flatten(), returns.flatten(),
                         rollout.values.flatten())

    run()
    return lambda: iterations * args.num_steps * args.num_envs / timed(run)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per round (off-policy)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scripts", nargs="+", default=OFF_POLICY + ["ppo"])
    parser.add_argument("--compile", action="store_true", help="also time each off-policy script with --compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    env = gym.make(args.env)
    benches = {}
    for name in args.scripts:
        if name == "ppo":
            benches[name] = ppo_bench(args.env, device, iterations=1)
        elif name in OFF_POLICY:
            steps = args.steps if name != "td7" else max(1, args.steps // 4)
            benches[name] = off_policy_bench(name, env, device, steps)
            if args.compile:
                benches[name + " --compile"] = off_policy_bench(name, env, device, steps, compile=True)
        else:
            parser.error(f"unknown script {name}")
    best = {name: 0.0 for name in benches}
    for _ in range(args.rounds):
        for name, bench in benches.items():
            best[name] = max(best[name], bench())
    print(f"{args.env}, device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"best of {args.rounds} interleaved rounds")
    print("| script | speed | unit | vs eager |")
    print("|---|---|---|---|")
    for name, value in best.items():
        unit = "env steps/s (collect + update)" if name == "ppo" else "gradient steps/s"
        script, _, flag = name.partition(" ")
        ratio = f"{value / best[script]:.2f}x" if flag else ""
        print(f"| {script}.py {flag} | {value:.1f} | {unit} | {ratio} |")


if __name__ == "__main__":
    main()
