"""Training speed of the scripts, measured side by side in one run.

    python benchmarks/throughput.py [--env HalfCheetah-v4] [--threads 2] [--device cpu] [--scripts td3 td7 ...]
                                    [--compile] [--cudagraphs] [--end-to-end]

Off-policy scripts (td3, td7, sac, ddpg, td3_bc): gradient steps per second of Agent.train() on a
buffer of 100k random transitions of the environment's shape (sampling included, environment not).
--end-to-end: environment steps per second of the online loop instead (act with the policy and its
noise, step the environment on the CPU, store, one gradient step), after the same 100k transitions.
--compile and --cudagraphs (a CUDA device) add those variants beside the eager one (compilation not
timed); the last column is each variant's speed over its script's eager speed.
PPO: environment steps per second of whole iterations (collect 2048 steps + 10 epochs of updates).
Rounds are interleaved (script A, B, ..., then A, B, ... again) and the best round of each is kept,
so a noisy neighbour on a shared machine hurts every script alike.
"""

import argparse
import importlib
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OFF_POLICY = ["td3", "td7", "sac", "ddpg", "td3_bc"]
ONLINE = ["td3", "td7", "sac", "ddpg"]


def off_policy_bench(name, env_id, device, steps, end_to_end=False, **flags):
    module = importlib.import_module(name)
    args = module.Args(env=env_id, **flags)
    env = module.make_env(args, 0)  # actions normalized to [-1, 1], as the scripts train
    state_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = module.Agent(state_dim, action_dim, args, device)
    if flags:
        module.compile_agent(agent, flags.get("cudagraphs", False))
    n, rng = 100_000, np.random.default_rng(0)
    agent.replay_buffer.load({"observations": rng.normal(size=(n, state_dim)),
                              "actions": rng.uniform(-1, 1, (n, action_dim)),
                              "next_observations": rng.normal(size=(n, state_dim)),
                              "rewards": rng.normal(size=n), "terminals": rng.random(n) < 0.01})
    acting = {"use_checkpoint": False} if name == "td7" else {}
    state, _ = env.reset(seed=0)

    def run():
        nonlocal state
        for _ in range(steps):
            if end_to_end:
                action = agent.select_action(state, use_exploration=True, **acting)
                next_state, reward, terminated, truncated, _ = env.step(action)
                agent.replay_buffer.add(state, action, next_state, reward, terminated)
                state = env.reset()[0] if terminated or truncated else next_state
            agent.train()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up (and compilation)
    return lambda: steps / timed(run)


def ppo_bench(env_id, device, iterations):
    ppo = importlib.import_module("ppo")
    args = ppo.Args(env=env_id)
    envs = ppo.make_vector_env([ppo.make_env(args, i) for i in range(args.num_envs)])
    agent = ppo.Agent(envs.single_observation_space.shape[0], envs.single_action_space.shape[0], args, device)
    rollout, state = ppo.Rollout(args.num_envs), envs.reset(seed=0)[0]

    def run():
        nonlocal state
        for _ in range(iterations):
            state, _ = rollout.collect(agent, envs, state, args.num_steps)
            advantages, returns = rollout.advantages(args.gamma, args.gae_lambda)
            agent.update(rollout, advantages, returns)

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
    parser.add_argument("--cudagraphs", action="store_true", help="also time each with --cudagraphs (CUDA only)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="environment steps/s of the online loop (td3, td7, sac, ddpg) in place of updates/s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.cudagraphs and device.type != "cuda":
        parser.error("--cudagraphs needs --device cuda")
    variants = [""] + ["--compile"] * args.compile + ["--cudagraphs"] * args.cudagraphs
    torch.manual_seed(0)
    benches = {}
    for name in args.scripts:
        if name == "ppo" and not args.end_to_end:
            benches[name] = ppo_bench(args.env, device, iterations=1)
        elif name in (ONLINE if args.end_to_end else OFF_POLICY):
            steps = args.steps if name != "td7" else max(1, args.steps // 4)
            for variant in variants:
                flags = {variant[2:]: True} if variant else {}
                benches[f"{name} {variant}"] = off_policy_bench(name, args.env, device, steps, args.end_to_end, **flags)
        elif name not in OFF_POLICY + ["ppo"]:
            parser.error(f"unknown script {name}")
    best = {name: 0.0 for name in benches}
    for _ in range(args.rounds):
        for name, bench in benches.items():
            best[name] = max(best[name], bench())
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"{args.env}, device {device} ({hardware}), torch {torch.__version__}, best of {args.rounds} "
          f"interleaved rounds")
    print("| script | speed | unit | vs eager |")
    print("|---|---|---|---|")
    for name, value in best.items():
        if name == "ppo":
            unit = "env steps/s (collect + update)"
        else:
            unit = "env steps/s (act + step + store + update)" if args.end_to_end else "gradient steps/s"
        script, _, flag = name.partition(" ")
        ratio = f"{value / best[script + ' ']:.2f}x" if flag else ""
        print(f"| {script}.py {flag}".rstrip() + f" | {value:.1f} | {unit} | {ratio} |")


if __name__ == "__main__":
    main()
