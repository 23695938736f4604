"""Small offline datasets made on the spot for the tests, written in the D4RL and Minari layouts."""

import json
import os
import sys

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_dataset  # noqa: E402


def random_hopper(seed: int = 0) -> dict:
    """About 3000 random Hopper-v4 rows in the D4RL layout (+ next_observations): 2000 under the usual
    time limit (episodes end by termination) then 1000 under max_episode_steps=20 (many timeouts)."""
    parts = []
    for steps, limit in ((2000, None), (1000, 20)):
        env = gym.make("Hopper-v4", **({"max_episode_steps": limit} if limit else {}))
        env.action_space.seed(seed + len(parts))
        parts.append(make_dataset.collect(env, lambda obs: env.action_space.sample(), steps, seed + len(parts)))
    data = {key: np.concatenate([p[key] for p in parts]) for key in make_dataset.D4RL_KEYS}
    assert data["terminals"].sum() > 50 and data["timeouts"].sum() > 10
    return data


def write_d4rl(path: str, data: dict, keys=None, attrs=None, replace=None) -> str:
    """The arrays of `data` (only `keys` if given, some replaced by `replace`) as a D4RL-layout HDF5 file."""
    data = data | (replace or {})
    with h5py.File(path, "w") as f:
        for key in keys or data:
            if key != "episode_returns":
                f.create_dataset(key, data=data[key])
        f.attrs.update(attrs or {})
    return path


def episodes(data: dict) -> list:
    """The D4RL-layout rows cut into episodes at terminals and timeouts, Minari style: T + 1
    observations (the last from next_observations), T actions, rewards, terminations, truncations."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    result, start = [], 0
    for end in ends:
        sl = slice(start, end + 1)
        result.append({"observations": np.concatenate([data["observations"][sl], data["next_observations"][end:end + 1]]),
                       "actions": data["actions"][sl], "rewards": data["rewards"][sl],
                       "terminations": data["terminals"][sl], "truncations": data["timeouts"][sl]})
        start = end + 1
    return result


def write_minari(root: str, dataset_id: str, data: dict, env_spec: dict, metadata=None) -> str:
    """A Minari dataset folder <root>/<dataset_id>/data/{main_data.hdf5, metadata.json}, as Minari's
    HDF5 storage writes it (one group per episode; metadata.json holds env_spec as a JSON string)."""
    folder = os.path.join(root, dataset_id)
    os.makedirs(os.path.join(folder, "data"))
    eps = episodes(data)
    with h5py.File(os.path.join(folder, "data", "main_data.hdf5"), "w") as f:
        for i, ep in enumerate(eps):
            group = f.create_group(f"episode_{i}")
            group.attrs.update({"id": i, "total_steps": len(ep["actions"])})
            for key, value in ep.items():
                group.create_dataset(key, data=value)
    meta = {"dataset_id": dataset_id, "data_format": "hdf5", "total_episodes": len(eps),
            "total_steps": int(sum(len(ep["actions"]) for ep in eps)), "env_spec": json.dumps(env_spec),
            "minari_version": "0.5.1"} | (metadata or {})
    with open(os.path.join(folder, "data", "metadata.json"), "w") as f:
        json.dump(meta, f)
    return folder


def d4rl_qlearning_dataset(dataset: dict) -> dict:
    """d4rl.qlearning_dataset (D4RL v1.1, terminate_on_end=False, a file with timeouts), written out as
    D4RL's loop so the vectorized loader can be checked against it."""
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    N = dataset["rewards"].shape[0]
    for i in range(N - 1):
        obs = dataset["observations"][i].astype(np.float32)
        new_obs = dataset["observations"][i + 1].astype(np.float32)
        action = dataset["actions"][i].astype(np.float32)
        reward = dataset["rewards"][i].astype(np.float32)
        done_bool = bool(dataset["terminals"][i])
        final_timestep = dataset["timeouts"][i]
        if final_timestep:
            continue
        obs_.append(obs)
        next_obs_.append(new_obs)
        action_.append(action)
        reward_.append(reward)
        done_.append(done_bool)
    return {"observations": np.array(obs_), "actions": np.array(action_), "next_observations": np.array(next_obs_),
            "rewards": np.array(reward_), "terminals": np.array(done_)}


@pytest.fixture(scope="module")
def hopper():
    return random_hopper()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread: small networks gain nothing from more, and the test machines' cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
