"""Replay buffer with uniform or LAP sampling, shared by the off-policy scripts.

LAP (Loss-Adjusted Prioritized experience replay; Fujimoto, Meger, Precup 2020, "An Equivalence
between Loss Functions and Non-Uniform Sampling in Experience Replay") samples transition i with
probability

    P(i) = p_i / sum_j p_j,    p_i = max(|delta_i|, min_priority) ** alpha     (LAP paper, eq. 8)

and pairs it with a Huber loss whose quadratic region is [0, min_priority]. The scripts compute
p_i from the TD errors of a batch and hand it back with `update_priority`; this file only stores
priorities and samples from them. Semantics follow the `LAP` buffer of the official TD7 code:
a new transition gets the current maximum priority, `reset_max_priority()` sets that maximum to the
largest stored priority, and `prioritized=False` samples uniformly.

The official code draws a batch with a cumulative sum over every stored priority followed by a
binary search: O(N) work per batch. Here the priorities live in the leaves of a sum tree whose
every node holds the sum of its `BRANCHING` children, so one draw walks from the top to a leaf:
O(B log N) per batch, vectorized over the batch. The tree stops growing upwards at `TOP` nodes or
fewer; the walk starts with one prefix sum over that top level (what the levels above it would
hold), so at N = 1e6 it is a prefix sum over 977 nodes and two steps down. The cost is the number
of small tensor operations, not the arithmetic, hence the wide nodes and the short walk.

`save` writes the buffer to a folder of files of CHUNK rows, only those that changed since the last save, so
that a run can snapshot its 1M-row buffer every few minutes; below the buffer is what fills it offline.
"""

import json
import os
from typing import Optional

import h5py
import numpy as np
import torch

BRANCHING = 32
TOP = 1024
CHUNK = 16384  # rows per file of a saved buffer


class SumTree:
    """Priorities in the leaves of a BRANCHING-ary tree; levels[0] are the leaves, levels[-1] the top
    level (at most TOP nodes); each node of a level holds the sum of BRANCHING nodes of the level below."""

    def __init__(self, capacity: int, device: torch.device):
        depth = 0
        while BRANCHING ** depth * TOP < capacity:
            depth += 1
        top = -(-capacity // BRANCHING ** depth)  # ceil: the leaves are padded to top * BRANCHING ** depth
        # float64: sums over 1e6 priorities keep about 1e-10 relative precision.
        self.levels = [torch.zeros(top * BRANCHING ** (depth - d), dtype=torch.float64, device=device)
                       for d in range(depth + 1)]

    @property
    def leaves(self) -> torch.Tensor:
        return self.levels[0]

    @property
    def total(self) -> torch.Tensor:
        return self.levels[-1].sum()

    def sample(self, batch_size: int) -> torch.Tensor:
        """Draws leaf indices i with probability leaves[i] / total.

        u, uniform in [0, total), picks the top node whose slice of the top level's prefix sum holds
        it; then, at each level down, the child whose slice of its siblings' prefix sum holds what is
        left of u, which becomes the offset inside that child."""
        top = self.levels[-1]
        before = top.cumsum(0)
        u = torch.rand(batch_size, dtype=torch.float64, device=top.device).mul_(before[-1])
        before.sub_(top)  # what the nodes to the left hold
        node = torch.searchsorted(before, u, right=True).sub_(1)
        u = u.sub_(before[node]).unsqueeze_(1)
        for level in reversed(self.levels[:-1]):
            child_sums = level.view(-1, BRANCHING).index_select(0, node)  # (B, BRANCHING)
            before = child_sums.cumsum(1).sub_(child_sums)
            child = torch.searchsorted(before, u, right=True).sub_(1)
            if level is not self.leaves:  # the offset inside the child, for the next level down
                u.sub_(before.gather(1, child))
            node = child.view(-1).add_(node, alpha=BRANCHING)
        return node

    def update(self, index: torch.Tensor, priority: torch.Tensor):
        """Sets leaves[index] = priority and refreshes the sums above them.

        Duplicate indices in one call keep the largest of their priorities, whatever the order or
        the device (a max does not depend on the order of the writes)."""
        self.leaves.scatter_reduce_(0, index, priority.to(self.leaves.dtype), "amax", include_self=False)
        for lower, upper in zip(self.levels[:-1], self.levels[1:]):
            index = index.div(BRANCHING, rounding_mode="floor")
            upper.index_copy_(0, index, lower.view(-1, BRANCHING).index_select(0, index).sum(1))


class LAPBuffer:
    """Ring buffer of (state, action, next_state, reward, not_done), float32, preallocated on `device`.

    Actions are stored as given; the scripts pass them normalized to [-1, 1]."""

    def __init__(self, state_dim: int, action_dim: int, device, capacity: int = 1_000_000,
                 prioritized: bool = True):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.state_dim, self.action_dim = state_dim, action_dim
        self.device = torch.device(device)
        self.prioritized = prioritized
        self._allocate(capacity)

    def _allocate(self, capacity: int):
        self.capacity, self.ptr, self.size = capacity, 0, 0
        self.added = self.saved = 0  # rows added in all, and by the last save
        # One row per transition: [state | action | next_state | reward | not_done]; one copy per
        # add and one gather per sample, whatever the device.
        self.width = 2 * self.state_dim + self.action_dim + 2
        self.transitions = torch.zeros(capacity, self.width, dtype=torch.float32, device=self.device)
        self.split = [self.state_dim, self.action_dim, self.state_dim, 1, 1]
        self.ind = None  # indices of the last sample
        if self.prioritized:
            self.tree = SumTree(capacity, self.device)
            self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)

    def add(self, state, action, next_state, reward, done):
        row = np.concatenate([np.asarray(state, np.float32).ravel(), np.asarray(action, np.float32).ravel(),
                              np.asarray(next_state, np.float32).ravel(),
                              np.array([reward, 1.0 - float(done)], np.float32)])
        self.transitions[self.ptr].copy_(torch.from_numpy(row))
        if self.prioritized:
            self.tree.update(torch.full((1,), self.ptr, device=self.device), self.max_priority.view(1))
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int):
        """Returns float32 tensors (state, action, next_state, reward, not_done) of `batch_size` rows,
        drawn with replacement; reward and not_done have shape (batch_size, 1)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size > self.size:
            raise ValueError(f"batch size {batch_size} is larger than the {self.size} transitions stored")
        if self.prioritized:
            # The clamp only matters if rounding walked past the last stored leaf (odds ~1e-16).
            self.ind = self.tree.sample(batch_size).clamp_(max=self.size - 1)
        else:
            self.ind = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.transitions.index_select(0, self.ind).split(self.split, dim=1)

    def update_priority(self, priority: torch.Tensor):
        """Sets the priorities of the last sample; stays on the device (no host sync)."""
        priority = priority.detach().reshape(-1)
        self.tree.update(self.ind, priority)
        self.max_priority = torch.maximum(self.max_priority, priority.max())

    def reset_max_priority(self):
        self.max_priority = self.tree.leaves[:self.size].max()

    def state_dict(self) -> dict:
        """The counters and the priorities: with the rows (save, or the dataset that filled them), the whole buffer."""
        state = {"capacity": self.capacity, "ptr": self.ptr, "size": self.size, "added": self.added}
        if self.prioritized:
            state |= {"priorities": self.tree.leaves[:self.size].cpu(), "max_priority": self.max_priority.cpu()}
        return state

    def load_state_dict(self, state: dict):
        """Counters and priorities back, onto rows already in place."""
        if state["capacity"] != self.capacity:
            raise ValueError(f"a buffer of capacity {state['capacity']} cannot be loaded into one of {self.capacity}")
        self.ptr, self.size, self.added = state["ptr"], state["size"], state["added"]
        if self.prioritized:
            self.tree.update(torch.arange(self.size, device=self.device), state["priorities"].to(self.device))
            self.max_priority = state["max_priority"].to(self.device)

    def save(self, folder: str, version: int) -> dict:
        """Writes the rows added since the last save (all, the first time) to new files of CHUNK rows in `folder`,
        rows_<chunk>.<version>.npy; returns the state that restores the buffer: its state_dict and the files of its
        rows. Older files are left for prune(), so a kill during a save leaves the last save's state whole."""
        os.makedirs(folder, exist_ok=True)
        files = dict(getattr(self, "files", {}))
        changed = min(self.added - self.saved, self.capacity)  # the positions before ptr, around the ring
        start = (self.ptr - changed) % self.capacity
        segments = [(start, self.ptr)] if start < self.ptr else [(start, self.capacity), (0, self.ptr)] * (changed > 0)
        chunks = {chunk for first, stop in segments for chunk in range(first // CHUNK, (stop - 1) // CHUNK + 1)}
        for chunk in sorted(chunks):
            files[chunk] = f"rows_{chunk:05d}.{version}.npy"
            rows = self.transitions[chunk * CHUNK:min((chunk + 1) * CHUNK, self.size)].cpu().numpy()
            with open(os.path.join(folder, files[chunk]), "wb") as f:
                np.save(f, rows)
                f.flush()
                os.fsync(f.fileno())
        self.files, self.saved = files, self.added
        return self.state_dict() | {"files": files}

    def restore(self, folder: str, state: dict):
        """The buffer as save() returned `state`: it continues exactly where it was."""
        self._allocate(state["capacity"])
        for chunk, name in state["files"].items():
            rows = torch.from_numpy(np.load(os.path.join(folder, name)))
            self.transitions[chunk * CHUNK:chunk * CHUNK + len(rows)] = rows.to(self.device)
        self.load_state_dict(state)
        self.files, self.saved = dict(state["files"]), self.added

    @staticmethod
    def prune(folder: str, state: dict):
        """Removes the files of `folder` that a kept state does not name (older versions, or a killed save's)."""
        for name in set(os.listdir(folder)) - set(state["files"].values()):
            os.remove(os.path.join(folder, name))

    def load(self, dataset: dict):
        """Fills the buffer from arrays with D4RL's keys (observations, actions, next_observations,
        rewards, terminals); the buffer grows when the dataset is larger than its capacity. Every
        transition starts with priority 1, as in the official TD7 code."""
        n = len(dataset["observations"])
        if n > self.capacity:
            self._allocate(n)
        columns = [dataset["observations"], dataset["actions"], dataset["next_observations"],
                   np.asarray(dataset["rewards"]).reshape(-1, 1),
                   1.0 - np.asarray(dataset["terminals"], np.float32).reshape(-1, 1)]
        rows = np.concatenate([np.asarray(c, np.float32).reshape(n, -1) for c in columns], axis=1)
        self.transitions[:n] = torch.from_numpy(rows).to(self.device)
        self.ptr, self.size, self.added = n % self.capacity, n, n
        if self.prioritized:
            self.tree.update(torch.arange(n, device=self.device), torch.ones(n, device=self.device))
            self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)


# ---------------------------------------------------------------------------------------------
# Datasets: what fills the buffer offline (td3_bc.py, td7.py --offline, tools/make_dataset.py).
# D4RL HDF5 files and Minari dataset folders, read with h5py only; nothing is ever downloaded. A dataset is a
# dict of float32 arrays with D4RL's keys: observations, actions (the environment's units), next_observations,
# rewards, terminals.


class DatasetError(ValueError):
    """A dataset that is missing or cannot be used; the scripts report it as one line (exit status 2)."""


# D4RL's reference returns (d4rl/infos.py, v2 datasets): (random, expert).
D4RL_REF_RETURNS = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3),
                    "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}
D4RL_ENVS = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d", "ant": "Ant"}
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def d4rl_env(name: str, version: str = "v4") -> tuple:
    """(gymnasium id, gym.make kwargs) for a D4RL dataset name such as hopper-medium-v2.hdf5, or None.

    halfcheetah/hopper/walker2d map to the v4 or v5 environments (same observation sizes); ant maps to
    Ant-v4 with contact forces, the only gymnasium Ant with D4RL's 111-d observation."""
    family = os.path.basename(name).lower().replace("_", "-").split("-")[0]
    if family not in D4RL_ENVS:
        return None
    if family == "ant":
        return "Ant-v4", {"use_contact_forces": True}
    return f"{D4RL_ENVS[family]}-{version}", {}


def qlearning_dataset(data: dict) -> dict:
    """D4RL's d4rl.qlearning_dataset (v1.1, terminate_on_end=False) on arrays in the D4RL layout.

    Transition i is (observations[i], actions[i], rewards[i], observations[i + 1], terminals[i]) for
    i < N - 1 (the last row is dropped), and rows with timeouts[i] set are dropped (their next row is
    the next episode's start). A terminal row stays, with done = 1. Like D4RL's function, this ignores
    a next_observations key even when the file has one."""
    n = len(data["rewards"]) - 1
    keep = ~np.asarray(data["timeouts"][:n], bool)
    obs = np.asarray(data["observations"], np.float32)
    return {"observations": obs[:-1][keep], "actions": np.asarray(data["actions"][:n], np.float32)[keep],
            "next_observations": obs[1:][keep], "rewards": np.asarray(data["rewards"][:n], np.float32)[keep],
            "terminals": np.asarray(data["terminals"][:n], np.float32)[keep]}


def episodes_to_transitions(episodes: list) -> dict:
    """Minari episodes (observations T + 1, actions / rewards / terminations / truncations T) to
    transitions: s' = observations[t + 1] of the same episode and done = terminations[t]. A truncated
    last step keeps its real s' (Minari stores it) with done = 0, so no row is dropped."""
    columns = {key: [] for key in ("observations", "actions", "next_observations", "rewards", "terminals")}
    for ep in episodes:
        obs = np.asarray(ep["observations"], np.float32)
        columns["observations"].append(obs[:-1])
        columns["next_observations"].append(obs[1:])
        columns["actions"].append(np.asarray(ep["actions"], np.float32))
        columns["rewards"].append(np.asarray(ep["rewards"], np.float32).reshape(-1))
        columns["terminals"].append(np.asarray(ep["terminations"], np.float32).reshape(-1))
    return {key: np.concatenate(value) for key, value in columns.items()}


def _read_hdf5(path: str, read):
    """read(h5py.File), with a DatasetError for a file h5py cannot open."""
    try:
        with h5py.File(path, "r") as f:
            return read(f)
    except OSError as e:
        raise DatasetError(f"cannot read {path} as HDF5: {e}")


def read_d4rl(path: str) -> tuple:
    """(arrays, root attributes) of a D4RL-layout HDF5 file, checked for D4RL's keys and lengths."""
    def read(f):
        for key in D4RL_KEYS:
            if not isinstance(f.get(key), h5py.Dataset):
                raise DatasetError(f"{path} has no '{key}' dataset: a D4RL file needs {', '.join(D4RL_KEYS)}")
        return {key: f[key][()] for key in D4RL_KEYS}, dict(f.attrs)
    data, attrs = _read_hdf5(path, read)
    n = len(data["observations"])
    for key in D4RL_KEYS:
        if key not in ("observations", "actions") and data[key].shape == (n, 1):
            data[key] = data[key].reshape(n)
        if data[key].ndim != (2 if key in ("observations", "actions") else 1) or len(data[key]) != n:
            raise DatasetError(f"{path}: '{key}' has shape {data[key].shape}, expected ({n}"
                               f"{', dim' if key in ('observations', 'actions') else ''}) like the observations")
    if n < 2:
        raise DatasetError(f"{path} holds {n} rows: too few for a single transition")
    return data, attrs


def read_minari(folder: str) -> tuple:
    """(transitions, metadata) of a Minari dataset folder (<id>/data/main_data.hdf5 and metadata.json;
    the <id> or the data folder may be given). Episodes are the groups episode_0, episode_1, ..."""
    data_dir = folder if os.path.isfile(os.path.join(folder, "main_data.hdf5")) else os.path.join(folder, "data")
    path = os.path.join(data_dir, "main_data.hdf5")
    if not os.path.isfile(path):
        raise DatasetError(f"{folder} is not a Minari dataset folder: no data/main_data.hdf5 in it")
    metadata = {}
    if os.path.isfile(os.path.join(data_dir, "metadata.json")):
        try:
            with open(os.path.join(data_dir, "metadata.json")) as f:
                metadata = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot read {os.path.join(data_dir, 'metadata.json')}: {e}")

    def read(f):
        names = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise DatasetError(f"{path} has no episode_N groups: not a Minari dataset")
        episodes = []
        for name in names:
            group, ep = f[name], {}
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if not isinstance(group.get(key), h5py.Dataset):
                    raise DatasetError(f"{path}: {name} has no '{key}' dataset (Dict or Tuple spaces are not supported)")
                ep[key] = group[key][()]
            steps = len(ep["actions"])
            if ep["observations"].ndim != 2 or ep["actions"].ndim != 2 or len(ep["observations"]) != steps + 1 or \
                    any(len(ep[k]) != steps for k in ("rewards", "terminations", "truncations")):
                raise DatasetError(f"{path}: {name} does not hold T + 1 flat observations and T actions, rewards, "
                                   f"terminations, truncations (observations {ep['observations'].shape}, "
                                   f"actions {ep['actions'].shape})")
            episodes.append(ep)
        return episodes, dict(f.attrs)

    episodes, attrs = _read_hdf5(path, read)
    return episodes_to_transitions(episodes), {**attrs, **metadata, "total_episodes": len(episodes)}


def load_dataset(path: str, env_version: str = "v4") -> tuple:
    """(transitions, info) from a D4RL HDF5 file or a Minari dataset folder.

    info holds the environment the data comes from, when the dataset tells (env: a gymnasium id or None,
    env_kwargs: gym.make kwargs), its own reference returns if it has any (ref_returns: (min, max) or
    None) and format ("d4rl" or "minari"). D4RL files tell their environment by an env_id attribute
    (tools/make_dataset.py writes one) or by their name; Minari folders by their (eval) env spec."""
    if os.path.isdir(path):
        data, metadata = read_minari(path)
        spec = metadata.get("eval_env_spec") or metadata.get("env_spec")
        try:
            spec = json.loads(spec) if isinstance(spec, (str, bytes)) else spec
        except ValueError:
            spec = None
        env = (spec["id"], spec.get("kwargs") or {}) if isinstance(spec, dict) and "id" in spec else None
        ref = metadata.get("ref_min_score"), metadata.get("ref_max_score")
        fmt = "minari"
    elif os.path.isfile(path):
        raw, attrs = read_d4rl(path)
        data = qlearning_dataset(raw)
        if "env_id" in attrs:
            env = str(attrs["env_id"]), json.loads(attrs.get("env_kwargs", "{}") or "{}")
        else:
            env = d4rl_env(path, env_version)
        ref = attrs.get("ref_min_score"), attrs.get("ref_max_score")
        fmt = "d4rl"
    else:
        raise DatasetError(f"no dataset at {path}: pass a D4RL-layout HDF5 file or a Minari dataset folder")
    if len(data["rewards"]) == 0:
        raise DatasetError(f"{path} holds no transitions once timeouts are dropped")
    return data, {"env": env[0] if env else None, "env_kwargs": env[1] if env else {},
                  "ref_returns": tuple(map(float, ref)) if None not in ref else None, "format": fmt}


def check_dataset(data: dict, env, path: str) -> dict:
    """The transitions checked against an environment (its unwrapped self: the original action bounds), actions
    mapped to [-1, 1] as the scripts act."""
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    for key, dim in (("observations", obs_dim), ("next_observations", obs_dim), ("actions", action_dim)):
        if data[key].shape[1:] != (dim,):
            raise DatasetError(f"{path} has {data[key].shape[1:]} {key[:-1].replace('_', ' ')}s but "
                               f"{env.spec.id if env.spec else 'the environment'} has ({dim},): pass the matching --env")
    for key, value in data.items():
        if not np.all(np.isfinite(value)):
            raise DatasetError(f"{path} has non-finite values in '{key}'")
    low, high = env.action_space.low, env.action_space.high
    action = (data["actions"] - (high + low) / 2.0) / ((high - low) / 2.0)
    return data | {"actions": action.clip(-1, 1).astype(np.float32)}


def reference_returns(env_id: str, info: dict, path: Optional[str] = None):
    """(random, expert) returns that define the normalized score, or None: a JSON file with ref_min_score
    and ref_max_score (tools/make_dataset.py writes one) if given, else the dataset's own, else D4RL's
    for the environment's family (halfcheetah, hopper, walker2d, ant)."""
    if path is not None:
        try:
            with open(path) as f:
                ref = json.load(f)
            return float(ref["ref_min_score"]), float(ref["ref_max_score"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"cannot read ref_min_score and ref_max_score from --ref-returns {path}: {e!r}")
    if info.get("ref_returns"):
        return info["ref_returns"]
    return D4RL_REF_RETURNS.get(env_id.split("-")[0].lower())


def normalized_score(ret, ref: tuple):
    """D4RL's normalized score: 100 (R - random) / (expert - random)."""
    return 100.0 * (np.asarray(ret) - ref[0]) / (ref[1] - ref[0])
