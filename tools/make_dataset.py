"""Makes D4RL-style offline datasets from this project's own agents, and their reference returns.

Every dataset is an HDF5 file in D4RL's layout (observations, actions, rewards, terminals, timeouts)
plus next_observations, with root attributes saying where it came from (env_id, env_kwargs, the
gymnasium and mujoco versions, policy, model, checkpoint_step, seed, exploration_noise, episode
returns). td3_bc.py and td7.py read them with D4RL's qlearning_dataset semantics.

    random         uniform random actions                                    --env, --steps
    expert         a td3.py model (model.pt from --save-model) acting with
                   its exploration noise (the model's own, or --exploration-noise)   --model, --steps
    medium         the same from an earlier model (e.g. td3.py --total-timesteps 200000 --save-model)
    medium-replay  runs td3.py's training loop (same seed, same code, same random draws as td3.py) for
                   --steps environment steps and writes every transition it stored, as D4RL's replay
                   datasets; the policy it reached is written next to it (<out>.model.pt), ready for
                   --kind medium                                                 --env, --steps
    medium-expert  two datasets concatenated (D4RL: medium then expert)          --inputs A B
    reference      JSON with random and expert returns, --episodes each (default 100, as D4RL), for the
                   normalized score (td3_bc.py --ref-returns); the expert acts without noise, as in
                   the evaluations                                               --model (--env)

    python tools/make_dataset.py --kind medium-replay --env Hopper-v4 --steps 200000 --out hopper-mr.hdf5
    python tools/make_dataset.py --kind medium --model hopper-mr.model.pt --out hopper-medium.hdf5
"""

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Literal, Optional, Tuple

import gymnasium as gym
import h5py
import numpy as np
import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lap_buffer  # noqa: E402
import td3  # noqa: E402
from lap_buffer import DatasetError  # noqa: E402
from td3 import UsageError  # noqa: E402

D4RL_KEYS = lap_buffer.D4RL_KEYS + ("next_observations",)  # D4RL's keys, and the true next observations


@dataclass
class Args:
    kind: Literal["random", "expert", "medium", "medium-replay", "medium-expert", "reference"]
    """what to make (see the module docstring)"""
    out: str
    """output file: an HDF5 dataset, or a JSON file for --kind reference"""
    env: Optional[str] = None
    """gymnasium environment id (random, medium-replay; default for the others: the model's)"""
    env_kwargs: str = ""
    """keyword arguments of gym.make as a JSON object, e.g. '{"use_contact_forces": true}'"""
    model: Optional[str] = None
    """model.pt written by td3.py --save-model (or its run folder): expert, medium, reference"""
    inputs: Tuple[str, ...] = ()
    """medium-expert: the datasets to concatenate, in order"""
    steps: int = 1_000_000
    """transitions to collect (random, expert, medium); td3.py environment steps (medium-replay)"""
    exploration_noise: Optional[float] = None
    """std of the Gaussian noise on the model's normalized actions (default: the model's own setting)"""
    start_timesteps: int = 25_000
    """medium-replay: td3.py's uniform-random steps before learning"""
    episodes: int = 100
    """reference: episodes of the random and of the expert policy"""
    seed: int = 0
    """seed of numpy, torch and the environment"""
    device: str = "cpu"
    """torch device of the model"""
    torch_threads: int = 0
    """CPU threads for torch (0 = torch's default)"""
    overwrite: bool = False
    """replace --out if it exists"""


def collect(env: gym.Env, act, steps: int, seed: int) -> dict:
    """`steps` rows in D4RL's layout from act(observation) -> an action of env. Actions are recorded in the
    environment's own units: td3.make_env's environments take them in [-1, 1] and map them (NormalizedActions),
    a plain gym.make one takes them as they are. A row where the time limit hit (or the collection stopped inside
    an episode) has timeouts = 1; next_observations is the true next observation."""
    units = env.get_wrapper_attr("action") if env.has_wrapper_attr("action") else np.asarray
    data = {key: [] for key in D4RL_KEYS}
    returns, episode_return = [], 0.0
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        action = act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        timeout = (truncated and not terminated) or (t == steps - 1 and not terminated)
        for key, value in zip(D4RL_KEYS, (obs, units(action), reward, terminated, timeout, next_obs)):
            data[key].append(value)
        episode_return += reward
        obs = next_obs
        if terminated or truncated:
            returns.append(episode_return)
            obs, episode_return = env.reset()[0], 0.0
    return as_arrays(data) | {"episode_returns": np.array(returns)}


def as_arrays(data: dict) -> dict:
    return {key: np.asarray(data[key], np.float32 if key not in ("terminals", "timeouts") else bool)
            for key in D4RL_KEYS}


def load_td3(path: str, device: str, env_kwargs: dict, seed: int):
    """(agent, saved td3 Args, checkpoint step, env) of a td3.py model.pt; env as td3.py makes it (actions in
    [-1, 1]), with env_kwargs."""
    checkpoint = td3.load_model(path)
    saved = replace(td3.args_from_dict(checkpoint["args"]), buffer_size=1)  # no 1M-row buffer for acting
    env = td3.make_env(saved, seed, **env_kwargs)
    agent = td3.Agent(env.observation_space.shape[0], env.action_space.shape[0], saved, td3.resolve_device(device))
    try:
        td3.load_agent_state(agent, checkpoint["agent"])
    except (KeyError, AttributeError, RuntimeError) as e:
        raise UsageError(f"{path} does not match {saved.env} {env_kwargs or ''}: {e}")
    return agent, saved, checkpoint["step"], env


def policy(agent, noise: float):
    """act(observation) -> the model's action in [-1, 1], plus N(0, noise) (clipped to [-1, 1]) if noise > 0."""
    def act(obs):
        action = agent.select_action(obs, use_exploration=False)
        if noise > 0:
            action = (action + np.random.normal(0, noise, size=action.shape)).clip(-1, 1)
        return action
    return act


def train_td3(args: Args):
    """td3.py's training loop (td3.main, without the harness's evaluations, which draw no random numbers from the
    training's generators) from the same seed, recording every transition it stores with its action in the
    environment's units; returns (data, agent, td3 Args)."""
    targs = td3.Args(env=args.env, seed=args.seed, total_timesteps=args.steps, start_timesteps=args.start_timesteps,
                     buffer_size=max(args.steps, 1))
    td3.seed_everything(args.seed)
    env = td3.make_env(args, args.seed)  # as td3.py's: actions in [-1, 1]
    agent = td3.Agent(env.observation_space.shape[0], env.action_space.shape[0], targs, td3.resolve_device(args.device))
    units = env.get_wrapper_attr("action")  # NormalizedActions.action: [-1, 1] to the environment's units
    data = {key: [] for key in D4RL_KEYS}
    returns = []
    state, _ = env.reset(seed=args.seed)
    start = time.time()
    for t in range(args.steps):
        if t < targs.start_timesteps:
            action = env.action_space.sample()
        else:
            action = agent.select_action(state, use_exploration=True)
        next_state, reward, terminated, truncated, info = env.step(action)
        agent.replay_buffer.add(state, action, next_state, reward, terminated)
        timeout = (truncated and not terminated) or (t == args.steps - 1 and not terminated)
        for key, value in zip(D4RL_KEYS, (state, units(action), reward, terminated, timeout, next_state)):
            data[key].append(value)
        state = next_state
        if t >= targs.start_timesteps:
            agent.train()
        if terminated or truncated:
            returns.append(info["episode"]["r"])
            state, _ = env.reset()
        if (t + 1) % 10_000 == 0:
            recent = np.mean(returns[-10:]) if returns else float("nan")
            print(f"step {t + 1:>8d} | last 10 training episodes {recent:9.1f} | {time.time() - start:7.0f} s",
                  flush=True)
    return as_arrays(data) | {"episode_returns": np.array(returns)}, agent, targs


def write_dataset(path: str, data: dict, attrs: dict):
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for key in D4RL_KEYS:
            f.create_dataset(key, data=data[key])
        for key, value in attrs.items():
            if value is None:
                continue
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else \
                str(value) if isinstance(value, str) else value  # str(): torch's version is a str subclass
    os.replace(tmp, path)


def read_dataset(path: str) -> tuple:
    """(arrays, root attributes) of a dataset this tool wrote: D4RL's keys, checked by lap_buffer, and
    next_observations."""
    data, attrs = lap_buffer.read_d4rl(path)
    with h5py.File(path, "r") as f:
        if not isinstance(f.get("next_observations"), h5py.Dataset):
            raise DatasetError(f"{path} has no next_observations: not a dataset written by this tool")
        data["next_observations"] = f["next_observations"][()]
    return data, attrs


def provenance(env_id: str, env_kwargs: dict, args: Args) -> dict:
    v = td3.versions()
    return {"env_id": env_id, "env_kwargs": json.dumps(env_kwargs), "gymnasium_version": v["gymnasium"],
            "mujoco_version": v["mujoco"], "torch_version": v["torch"], "git_commit": v["git_commit"],
            "policy": args.kind, "seed": args.seed, "created_by": "tools/make_dataset.py",
            "command": " ".join(sys.argv)}


def summary(data: dict) -> dict:
    r = data["episode_returns"]
    return {"episode_returns": r, "num_episodes": len(r), "returns_mean": float(r.mean()) if len(r) else np.nan,
            "returns_std": float(r.std()) if len(r) else np.nan, "steps": len(data["rewards"])}


def make(args: Args):
    env_kwargs = td3.parse_env_kwargs(args.env_kwargs)
    if args.kind in ("random", "medium-replay"):
        if args.env is None:
            raise UsageError(f"--kind {args.kind} needs --env")
        if args.kind == "random":
            env = td3.make_env(args, args.seed)
            data = collect(env, lambda obs: env.action_space.sample(), args.steps, args.seed)
            attrs = provenance(args.env, env_kwargs, args) | summary(data)
        else:
            data, agent, targs = train_td3(args)
            model_path = os.path.splitext(args.out)[0] + ".model.pt"
            td3.save_model(agent, targs, model_path, args.steps)
            print(f"the policy at step {args.steps} is in {model_path} (use it with --kind medium)")
            attrs = provenance(args.env, env_kwargs, args) | summary(data) | {
                "checkpoint_step": args.steps, "start_timesteps": args.start_timesteps,
                "exploration_noise": targs.exploration_noise, "model": model_path}
        write_dataset(args.out, data, attrs)
    elif args.kind in ("expert", "medium"):
        if args.model is None:
            raise UsageError(f"--kind {args.kind} needs --model: a model.pt written by td3.py --save-model")
        td3.seed_everything(args.seed)
        agent, saved, step, env = load_td3(args.model, args.device, env_kwargs, args.seed)
        noise = saved.exploration_noise if args.exploration_noise is None else args.exploration_noise
        data = collect(env, policy(agent, noise), args.steps, args.seed)
        write_dataset(args.out, data, provenance(saved.env, env_kwargs, args) | summary(data) | {
            "model": os.path.abspath(args.model), "checkpoint_step": step, "exploration_noise": noise})
    elif args.kind == "medium-expert":
        if len(args.inputs) < 2:
            raise UsageError("--kind medium-expert needs --inputs MEDIUM.hdf5 EXPERT.hdf5")
        parts = [read_dataset(path) for path in args.inputs]
        envs = {str(attrs.get("env_id")) for _, attrs in parts}
        if len(envs) > 1:
            raise UsageError(f"--inputs come from different environments: {', '.join(sorted(envs))}")
        for key in ("observations", "actions"):  # files without env_id (plain D4RL) are told apart by their shapes
            if len({d[key].shape[1:] for d, _ in parts}) > 1:
                raise UsageError(f"--inputs differ in the shape of their {key}: not the same environment")
        for data, _ in parts:  # an episode never runs on from one file into the next
            data["timeouts"][-1] |= ~data["terminals"][-1]
        data = {key: np.concatenate([d[key] for d, _ in parts]) for key in D4RL_KEYS}
        returns = np.concatenate([np.asarray(a.get("episode_returns", [])).reshape(-1) for _, a in parts])
        first = parts[0][1]
        write_dataset(args.out, data, provenance(str(first.get("env_id")), json.loads(first.get("env_kwargs", "{}")),
                                                 args) | summary(data | {"episode_returns": returns}) | {
            "inputs": [os.path.abspath(p) for p in args.inputs],
            "input_policies": [str(a.get("policy")) for _, a in parts]})
    else:  # reference
        if args.model is None:
            raise UsageError("--kind reference needs --model: the expert model.pt written by td3.py --save-model")
        td3.seed_everything(args.seed)
        agent, saved, step, env = load_td3(args.model, args.device, env_kwargs, args.seed)
        random_returns = episode_returns(env, lambda obs: env.action_space.sample(), args.episodes, args.seed)
        expert_returns = episode_returns(env, policy(agent, 0.0), args.episodes, args.seed)
        result = provenance(saved.env, env_kwargs, args) | {
            "env_kwargs": env_kwargs, "episodes": args.episodes,
            "ref_min_score": float(random_returns.mean()), "ref_max_score": float(expert_returns.mean()),
            "random": {"mean": float(random_returns.mean()), "std": float(random_returns.std()),
                       "returns": random_returns.tolist()},
            "expert": {"model": os.path.abspath(args.model), "checkpoint_step": step,
                       "mean": float(expert_returns.mean()), "std": float(expert_returns.std()),
                       "returns": expert_returns.tolist()}}
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out)
        print(f"{saved.env}: random {random_returns.mean():.1f}, expert {expert_returns.mean():.1f} "
              f"over {args.episodes} episodes each: {args.out}")
        return
    print(f"{args.kind}: {len(data['rewards'])} transitions, {int(data['terminals'].sum())} terminals, "
          f"{int(data['timeouts'].sum())} timeouts: {args.out}")


def episode_returns(env: gym.Env, act, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` episodes of act(observation) -> an action of env, from env.reset(seed=seed), run as
    td3.py's evaluations run."""
    env.reset(seed=seed)
    return td3.evaluate(SimpleNamespace(eval_action=act), env, episodes)


def main(args: Args):
    for name in ("steps", "episodes"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.start_timesteps < 0 or (args.exploration_noise is not None and args.exploration_noise < 0):
        raise UsageError("--start-timesteps and --exploration-noise must not be negative")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists: pass --overwrite to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise UsageError(f"no folder for --out {args.out}")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    make(args)


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except (UsageError, DatasetError) as e:
        print(f"make_dataset.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("make_dataset.py: interrupted; nothing written", file=sys.stderr)
        sys.exit(130)
