"""TD7: TD3 + SALE embeddings, LAP, fixed encoders with value clipping, and policy checkpoints.

Fujimoto, Chang, Smith, Gu, Precup, Meger, "For SALE: State-Action Representation Learning for Deep
Reinforcement Learning", NeurIPS 2023, with the defaults of the official code (github.com/sfujim/TD7).
`--offline` is the paper's offline variant: the dataset is the (LAP) buffer, no checkpoints, no
exploration, no state normalization, and the actor loss adds lmbda * mean|Q| (detached) * MSE(pi(s), a).

    python td7.py --env Ant-v4 --seed 0
    python td7.py --offline --dataset hopper-medium-v2.hdf5 --seed 0
"""

import copy
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Optional

import gymnasium as gym
import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from lap_buffer import LAPBuffer

ALGO = "td7"


@dataclass
class Args:
    env: Optional[str] = None
    """gymnasium environment id, any Box action space (default: HalfCheetah-v4; offline: the dataset's environment)"""
    seed: int = 0
    """seed of python, numpy, torch, the environments and their action spaces"""
    total_timesteps: int = 1_000_000
    """environment steps (offline: gradient steps)"""
    start_timesteps: int = 25_000
    """uniform-random steps before learning starts (it starts at the first episode end after them)"""
    eval_freq: int = 5_000
    """evaluate every this many environment steps (offline: gradient steps), and once at step 0"""
    eval_episodes: int = 10
    """deterministic episodes per evaluation, on an environment seeded seed + 100"""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda or cuda:N"""
    torch_threads: int = 0
    """CPU threads for torch (0 = torch's default)"""
    run_dir: str = "runs"
    """where the run folder goes"""
    save_model: bool = False
    """write model.pt (networks and optimizers) at each evaluation and at the end"""
    eval_only: Optional[str] = None
    """evaluate a saved model.pt (or the run folder holding it) and exit"""
    resume: Optional[str] = None
    """continue the interrupted run in this run folder exactly (its saved arguments are used)"""
    capture_video: bool = False
    """record one evaluation episode to an mp4 in the run folder every video_every evaluations and at the end"""
    video_every: int = 10
    """evaluations between videos"""
    track: bool = False
    """mirror the TensorBoard scalars to Weights & Biases (needs wandb; WANDB_MODE=offline works offline)"""
    wandb_project: str = "continuous-control-rl"
    """Weights & Biases project of --track"""
    no_progress: bool = False
    """no live progress line (it is off anyway when the output is not a terminal)"""
    compile: bool = False
    """torch.compile the update and the acting policy: the same math, faster where launch-bound (see README)"""
    cudagraphs: bool = False
    """on a GPU, --compile with each compiled graph replayed as a CUDA graph (torch.compile's reduce-overhead)"""

    # TD7 (official code's defaults)
    batch_size: int = 256
    """transitions per gradient step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (offline: the dataset's size)"""
    discount: float = 0.99
    """discount factor gamma"""
    target_update_rate: int = 250
    """hard copy of every target and fixed network every this many gradient steps"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise, in normalized action units"""
    target_policy_noise: float = 0.2
    """std of the target policy smoothing noise, in normalized action units"""
    noise_clip: float = 0.5
    """target policy noise is clipped to +-noise_clip"""
    policy_freq: int = 2
    """actor updates every policy_freq critic updates"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    encoder_lr: float = 3e-4
    """Adam learning rate of the SALE encoders"""
    actor_hdim: int = 256
    """hidden width of the actor"""
    critic_hdim: int = 256
    """hidden width of the critics"""
    enc_hdim: int = 256
    """hidden width of the encoders"""
    zs_dim: int = 256
    """size of the embeddings zs and zsa"""

    # LAP
    lap: bool = True
    """sample with LAP and train with its Huber loss (--no-lap: uniform sampling and MSE)"""
    alpha: float = 0.4
    """LAP priority exponent"""
    min_priority: float = 1.0
    """LAP priorities are clamped below at this TD error; it is also the Huber threshold"""

    # Policy checkpoints
    checkpoints: bool = True
    """train in batches between assessment episodes and evaluate the checkpoint policy"""
    max_eps_when_checkpointing: int = 20
    """assessment episodes per checkpoint after steps_before_checkpointing (1 before)"""
    steps_before_checkpointing: int = 750_000
    """gradient steps before switching to max_eps_when_checkpointing assessment episodes"""
    reset_weight: float = 0.9
    """the best checkpoint score is weighted by this at the switch"""

    # Offline (the paper's offline variant)
    offline: bool = False
    """train on --dataset without interaction: no checkpoints, no exploration, a BC term in the actor loss"""
    dataset: Optional[str] = None
    """D4RL-layout HDF5 file or Minari dataset folder (with --offline)"""
    env_kwargs: str = ""
    """keyword arguments of gym.make as a JSON object (default: the dataset's, e.g. Ant's contact forces)"""
    env_version: str = "v4"
    """v4 or v5: the gymnasium version D4RL's halfcheetah/hopper/walker2d files map to (ant: always Ant-v4)"""
    ref_returns: Optional[str] = None
    """JSON file with ref_min_score and ref_max_score (tools/make_dataset.py writes one) for the normalized
    score (default: the dataset's own, else D4RL's for halfcheetah, hopper, walker2d and ant)"""
    lmbda: float = 0.1
    """offline: weight of the behaviour cloning term, times mean|Q| (the paper's lambda)"""


def AvgL1Norm(x, eps=1e-8):
    """x divided by the mean of its absolute values over the last dimension (TD7 paper, eq. 5)."""
    return x / x.abs().mean(-1, keepdim=True).clamp(min=eps)


class Actor(nn.Module):
    """s -> 256 -> AvgL1Norm; cat with zs -> 256 -> ReLU -> 256 -> ReLU -> tanh: an action in [-1, 1]."""

    def __init__(self, state_dim, action_dim, zs_dim=256, hdim=256):
        super().__init__()
        self.l0 = nn.Linear(state_dim, hdim)
        self.l1 = nn.Linear(zs_dim + hdim, hdim)
        self.l2 = nn.Linear(hdim, hdim)
        self.l3 = nn.Linear(hdim, action_dim)

    def forward(self, state, zs):
        a = AvgL1Norm(self.l0(state))
        a = torch.cat([a, zs], 1)
        a = F.relu(self.l1(a))
        a = F.relu(self.l2(a))
        return torch.tanh(self.l3(a))


class Encoder(nn.Module):
    """SALE: the state encoder f(s) = zs and the state-action encoder g(zs, a) = zsa."""

    def __init__(self, state_dim, action_dim, zs_dim=256, hdim=256):
        super().__init__()
        self.zs1 = nn.Linear(state_dim, hdim)
        self.zs2 = nn.Linear(hdim, hdim)
        self.zs3 = nn.Linear(hdim, zs_dim)
        self.zsa1 = nn.Linear(zs_dim + action_dim, hdim)
        self.zsa2 = nn.Linear(hdim, hdim)
        self.zsa3 = nn.Linear(hdim, zs_dim)

    def zs(self, state):
        zs = F.elu(self.zs1(state))
        zs = F.elu(self.zs2(zs))
        return AvgL1Norm(self.zs3(zs))

    def zsa(self, zs, action):
        zsa = F.elu(self.zsa1(torch.cat([zs, action], 1)))
        zsa = F.elu(self.zsa2(zsa))
        return self.zsa3(zsa)


class TwinLinear(nn.Module):
    """The same layer of the two twin critics, two independent nn.Linear, applied as one batched matrix
    product: (2, B, in) -> (2, B, out). Initialized as nn.Linear: uniform in +-1/sqrt(in)."""

    def __init__(self, in_features, out_features):
        super().__init__()
        bound = in_features ** -0.5
        self.weight = nn.Parameter(torch.empty(2, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(2, 1, out_features).uniform_(-bound, bound))

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class Critic(nn.Module):
    """Twin Q networks, evaluated together: cat(s, a) -> 256 -> AvgL1Norm; cat with zsa and zs -> 256 -> ELU
    -> 256 -> ELU -> 1 each."""

    def __init__(self, state_dim, action_dim, zs_dim=256, hdim=256):
        super().__init__()
        self.l0 = TwinLinear(state_dim + action_dim, hdim)
        self.l1 = TwinLinear(2 * zs_dim + hdim, hdim)
        self.l2 = TwinLinear(hdim, hdim)
        self.l3 = TwinLinear(hdim, 1)

    def forward(self, state, action, zsa, zs):
        sa = torch.cat([state, action], 1).expand(2, -1, -1)  # both twins see the same inputs
        embeddings = torch.cat([zsa, zs], 1).expand(2, -1, -1)
        q = torch.cat([AvgL1Norm(self.l0(sa)), embeddings], 2)
        q = F.elu(self.l1(q))
        q = F.elu(self.l2(q))
        return self.l3(q).squeeze(2).t()  # (B, 2): Q1, Q2


def LAP_huber(x, min_priority=1.0):
    """LAP's Huber loss on |TD errors| x of shape (B, 2): summed over the twins, averaged over the batch."""
    return torch.where(x < min_priority, 0.5 * x.pow(2), min_priority * x).sum(1).mean()


def frozen_copy(net: nn.Module) -> nn.Module:
    """A copy that is only ever overwritten by hard copies, never trained."""
    return copy.deepcopy(net).requires_grad_(False)


class Agent:
    def __init__(self, state_dim, action_dim, args: Args, device):
        self.args, self.device = args, device
        self.actor = Actor(state_dim, action_dim, args.zs_dim, args.actor_hdim).to(device)
        self.actor_target = frozen_copy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.actor_lr, fused=True)

        self.critic = Critic(state_dim, action_dim, args.zs_dim, args.critic_hdim).to(device)
        self.critic_target = frozen_copy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.critic_lr, fused=True)

        # The trained encoder; the fixed one feeds the current Q and pi (and acting); the fixed
        # target feeds the Bellman target. Both lag by target_update_rate steps (paper, eq. 6).
        self.encoder = Encoder(state_dim, action_dim, args.zs_dim, args.enc_hdim).to(device)
        self.encoder_optimizer = torch.optim.Adam(self.encoder.parameters(), lr=args.encoder_lr, fused=True)
        self.fixed_encoder = frozen_copy(self.encoder)
        self.fixed_encoder_target = frozen_copy(self.encoder)

        # The policy that is evaluated (Algorithm 4 of the paper).
        self.checkpoint_actor = frozen_copy(self.actor)
        self.checkpoint_encoder = frozen_copy(self.encoder)

        # Offline, the dataset is the buffer (LAPBuffer.load grows it to the dataset's size).
        self.replay_buffer = LAPBuffer(state_dim, action_dim, device, 1 if args.offline else args.buffer_size,
                                       prioritized=args.lap)
        self.training_steps = 0
        self.losses = {}  # device tensors, read only when logged

        # Value clipping: targets are clipped to the range of the targets seen up to the last
        # hard copy; [0, 0] until then, as in the official code. Kept on the device: no host sync; updated
        # in place: a CUDA graph (--cudagraphs) reads and writes them where they are.
        self.Q_min = torch.zeros((), device=device)
        self.Q_max = torch.zeros((), device=device)
        self.running_min = torch.full((), 1e8, device=device)
        self.running_max = torch.full((), -1e8, device=device)

        # Checkpoint tracking.
        self.eps_since_update = 0
        self.timesteps_since_update = 0
        self.max_eps_before_update = 1
        self.min_return = 1e8
        self.best_min_return = -1e8
        if args.compile or args.cudagraphs:  # the fast path: same math; an eager fallback if compilation fails
            for value_range in (self.Q_min, self.Q_max, self.running_min, self.running_max):
                torch._dynamo.mark_static_address(value_range)
            self.update = compiled(self.update, args.cudagraphs, keep=self.losses)
            self.policy = compiled(self.policy, args.cudagraphs)

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_checkpoint: bool, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one state, with Gaussian exploration noise if asked."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.policy(state, use_checkpoint).cpu().numpy().flatten()
        if use_exploration:
            action = action + np.random.normal(0, self.args.exploration_noise, size=action.shape)
        return action.clip(-1, 1)

    def policy(self, state, use_checkpoint: bool):
        """The deterministic action for a batch of states (a method of its own for --compile)."""
        if use_checkpoint:
            return self.checkpoint_actor(state, self.checkpoint_encoder.zs(state))
        return self.actor(state, self.fixed_encoder.zs(state))

    def train(self):
        self.training_steps += 1
        batch = self.replay_buffer.sample(self.args.batch_size)
        priority = self.update(*batch)
        if self.args.lap:
            self.replay_buffer.update_priority(priority)
        if self.training_steps % self.args.target_update_rate == 0:
            self.update_targets()

    def update(self, state, action, next_state, reward, not_done):
        """One TD7 gradient step on a batch, in the official order; returns the LAP priorities."""
        args = self.args
        # Encoder: g(f(s), a) predicts f(s'), the target without gradient (paper, eq. 3). Two passes:
        # one over [s; s'] would backpropagate through the s' half too (zeros, at full cost).
        with torch.no_grad():
            next_zs = self.encoder.zs(next_state)
        encoder_loss = F.mse_loss(self.encoder.zsa(self.encoder.zs(state), action), next_zs)
        self.encoder_optimizer.zero_grad(set_to_none=True)
        encoder_loss.backward()
        self.encoder_optimizer.step()
        self.losses["encoder_loss"] = encoder_loss.detach()

        # Target: clipped double Q with target policy smoothing, on the fixed target encoder's
        # embeddings, and clipped to the range of targets seen so far (paper, eq. 7).
        with torch.no_grad():
            fixed_target_zs = self.fixed_encoder_target.zs(next_state)
            noise = (torch.randn_like(action) * args.target_policy_noise).clamp(-args.noise_clip, args.noise_clip)
            next_action = (self.actor_target(next_state, fixed_target_zs) + noise).clamp(-1, 1)
            fixed_target_zsa = self.fixed_encoder_target.zsa(fixed_target_zs, next_action)
            Q_target = self.critic_target(next_state, next_action, fixed_target_zsa, fixed_target_zs)
            Q_target = Q_target.min(1, keepdim=True)[0]
            Q_target = reward + not_done * args.discount * Q_target.clamp(self.Q_min, self.Q_max)
            self.running_min.copy_(torch.minimum(self.running_min, Q_target.min()))  # in place: see __init__
            self.running_max.copy_(torch.maximum(self.running_max, Q_target.max()))

            fixed_zs = self.fixed_encoder.zs(state)
            fixed_zsa = self.fixed_encoder.zsa(fixed_zs, action)

        # Critic: both heads regress on the same target.
        Q = self.critic(state, action, fixed_zsa, fixed_zs)
        td_loss = (Q - Q_target).abs()
        if args.lap:
            critic_loss = LAP_huber(td_loss, args.min_priority)
        else:
            critic_loss = td_loss.pow(2).mean(0).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.losses["critic_loss"] = critic_loss.detach()

        # Delayed actor update; the gradient flows through the fixed g(zs, pi) into pi.
        if self.training_steps % args.policy_freq == 0:
            self.critic.requires_grad_(False)  # the actor's gradient needs no critic weight gradients
            actor = self.actor(state, fixed_zs)
            fixed_zsa = self.fixed_encoder.zsa(fixed_zs, actor)
            Q = self.critic(state, actor, fixed_zsa, fixed_zs)
            self.critic.requires_grad_(True)
            actor_loss = -Q.mean()  # both heads (TD3: Q1 only)
            if args.offline:  # behaviour cloning, weighted by lmbda times the (constant) mean |Q|
                actor_loss = actor_loss + args.lmbda * Q.abs().mean().detach() * F.mse_loss(actor, action)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            self.losses["actor_loss"] = actor_loss.detach()

        return td_loss.detach().max(1)[0].clamp(min=args.min_priority).pow(args.alpha)

    @torch.no_grad()
    def update_targets(self):
        """Every target_update_rate steps, in the official order: hard copies, LAP max, clip range."""
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.fixed_encoder_target.load_state_dict(self.fixed_encoder.state_dict())
        self.fixed_encoder.load_state_dict(self.encoder.state_dict())
        if self.args.lap:
            self.replay_buffer.reset_max_priority()
        self.Q_min.copy_(self.running_min)
        self.Q_max.copy_(self.running_max)

    def maybe_train_and_checkpoint(self, ep_timesteps: int, ep_return: float):
        """At each training episode end (Algorithm 4): the episode assesses the current policy."""
        self.eps_since_update += 1
        self.timesteps_since_update += ep_timesteps
        self.min_return = min(self.min_return, float(ep_return))
        if self.min_return < self.best_min_return:  # worse than the checkpoint: stop assessing early
            self.train_and_reset()
        elif self.eps_since_update == self.max_eps_before_update:  # assessed in full: new checkpoint
            self.best_min_return = self.min_return
            self.checkpoint_actor.load_state_dict(self.actor.state_dict())
            self.checkpoint_encoder.load_state_dict(self.fixed_encoder.state_dict())
            self.train_and_reset()

    def train_and_reset(self):
        """Trains as many gradient steps as environment steps were collected since the last training."""
        for _ in range(self.timesteps_since_update):
            if self.training_steps == self.args.steps_before_checkpointing:
                # The official code multiplies by reset_weight, which raises the bar when the
                # best score is negative (-100 * 0.9 = -90). We lower it by the same fraction of
                # its magnitude: identical for positive scores, the intended easing for negative ones.
                self.best_min_return -= (1 - self.args.reset_weight) * abs(self.best_min_return)
                self.max_eps_before_update = self.args.max_eps_when_checkpointing
            self.train()
        self.eps_since_update = 0
        self.timesteps_since_update = 0
        self.min_return = 1e8

    def state_dict(self):
        return {name: getattr(self, name).state_dict() for name in
                ("actor", "actor_target", "actor_optimizer", "critic", "critic_target", "critic_optimizer",
                 "encoder", "encoder_optimizer", "fixed_encoder", "fixed_encoder_target", "checkpoint_actor",
                 "checkpoint_encoder")} | {
                "training_steps": self.training_steps} | {name: getattr(self, name).clone() for name in (
                "Q_min", "Q_max", "running_min", "running_max")} | {name: getattr(self, name) for name in (
                "eps_since_update", "timesteps_since_update", "max_eps_before_update", "min_return",
                "best_min_return")}

    def load_state_dict(self, state):
        for name, value in state.items():
            if isinstance(getattr(self, name), (nn.Module, torch.optim.Optimizer)):
                getattr(self, name).load_state_dict(value)
            elif isinstance(value, torch.Tensor):
                getattr(self, name).copy_(value)  # in place: see __init__
            else:
                setattr(self, name, value)


# ---------------------------------------------------------------------------------------------
# Offline datasets (D4RL HDF5 or Minari folder), the same in td3_bc.py and td7.py
# Read with h5py only; nothing is ever downloaded. A dataset is a dict of float32 arrays with D4RL's
# keys: observations, actions (the environment's units), next_observations, rewards, terminals.

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
    """read(h5py.File) with a UsageError for a file h5py cannot open."""
    try:
        with h5py.File(path, "r") as f:
            return read(f)
    except OSError as e:
        raise UsageError(f"cannot read {path} as HDF5: {e}")


def read_d4rl(path: str) -> tuple:
    """(arrays, root attributes) of a D4RL-layout HDF5 file, checked for D4RL's keys and lengths."""
    def read(f):
        for key in D4RL_KEYS:
            if not isinstance(f.get(key), h5py.Dataset):
                raise UsageError(f"{path} has no '{key}' dataset: a D4RL file needs {', '.join(D4RL_KEYS)}")
        return {key: f[key][()] for key in D4RL_KEYS}, dict(f.attrs)
    data, attrs = _read_hdf5(path, read)
    n = len(data["observations"])
    for key in D4RL_KEYS:
        if key not in ("observations", "actions") and data[key].shape == (n, 1):
            data[key] = data[key].reshape(n)
        if data[key].ndim != (2 if key in ("observations", "actions") else 1) or len(data[key]) != n:
            raise UsageError(f"{path}: '{key}' has shape {data[key].shape}, expected ({n}"
                             f"{', dim' if key in ('observations', 'actions') else ''}) like the observations")
    if n < 2:
        raise UsageError(f"{path} holds {n} rows: too few for a single transition")
    return data, attrs


def read_minari(folder: str) -> tuple:
    """(transitions, metadata) of a Minari dataset folder (<id>/data/main_data.hdf5 and metadata.json;
    the <id> or the data folder may be given). Episodes are the groups episode_0, episode_1, ..."""
    data_dir = folder if os.path.isfile(os.path.join(folder, "main_data.hdf5")) else os.path.join(folder, "data")
    path = os.path.join(data_dir, "main_data.hdf5")
    if not os.path.isfile(path):
        raise UsageError(f"{folder} is not a Minari dataset folder: no data/main_data.hdf5 in it")
    metadata = {}
    if os.path.isfile(os.path.join(data_dir, "metadata.json")):
        try:
            with open(os.path.join(data_dir, "metadata.json")) as f:
                metadata = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {os.path.join(data_dir, 'metadata.json')}: {e}")

    def read(f):
        names = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise UsageError(f"{path} has no episode_N groups: not a Minari dataset")
        episodes = []
        for name in names:
            group, ep = f[name], {}
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if not isinstance(group.get(key), h5py.Dataset):
                    raise UsageError(f"{path}: {name} has no '{key}' dataset (Dict or Tuple spaces are not supported)")
                ep[key] = group[key][()]
            steps = len(ep["actions"])
            if ep["observations"].ndim != 2 or ep["actions"].ndim != 2 or len(ep["observations"]) != steps + 1 or \
                    any(len(ep[k]) != steps for k in ("rewards", "terminations", "truncations")):
                raise UsageError(f"{path}: {name} does not hold T + 1 flat observations and T actions, rewards, "
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
        raise UsageError(f"no dataset at {path}: pass a D4RL-layout HDF5 file or a Minari dataset folder")
    if len(data["rewards"]) == 0:
        raise UsageError(f"{path} holds no transitions once timeouts are dropped")
    return data, {"env": env[0] if env else None, "env_kwargs": env[1] if env else {},
                  "ref_returns": tuple(map(float, ref)) if None not in ref else None, "format": fmt}


def check_dataset(data: dict, env: gym.Env, path: str) -> dict:
    """The transitions checked against the evaluation environment, actions mapped to [-1, 1]."""
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    for key, dim in (("observations", obs_dim), ("next_observations", obs_dim), ("actions", action_dim)):
        if data[key].shape[1:] != (dim,):
            raise UsageError(f"{path} has {data[key].shape[1:]} {key[:-1].replace('_', ' ')}s but "
                             f"{env.spec.id if env.spec else 'the environment'} has ({dim},): pass the matching --env")
    for key, value in data.items():
        if not np.all(np.isfinite(value)):
            raise UsageError(f"{path} has non-finite values in '{key}'")
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
            raise UsageError(f"cannot read ref_min_score and ref_max_score from --ref-returns {path}: {e!r}")
    if info.get("ref_returns"):
        return info["ref_returns"]
    return D4RL_REF_RETURNS.get(env_id.split("-")[0].lower())


def normalized_score(ret, ref: tuple):
    """D4RL's normalized score: 100 (R - random) / (expert - random)."""
    return 100.0 * (np.asarray(ret) - ref[0]) / (ref[1] - ref[0])


def parse_env_kwargs(text: str) -> dict:
    """--env-kwargs (a JSON object, or empty) as a dict."""
    try:
        kwargs = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise UsageError(f"--env-kwargs must be a JSON object such as '{{\"use_contact_forces\": true}}': {e}")
    if not isinstance(kwargs, dict):
        raise UsageError(f"--env-kwargs must be a JSON object, got {text!r}")
    return kwargs

# ---------------------------------------------------------------------------------------------
# Shared by every script, written the same way in each.


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


def check_args(args: Args):
    positive = ["total_timesteps", "eval_freq", "eval_episodes", "video_every", "batch_size", "buffer_size",
                "policy_freq", "actor_hdim", "critic_hdim", "enc_hdim", "zs_dim", "target_update_rate",
                "max_eps_when_checkpointing"]
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["start_timesteps", "torch_threads", "exploration_noise", "target_policy_noise", "noise_clip",
                 "actor_lr", "critic_lr", "encoder_lr", "alpha", "min_priority", "steps_before_checkpointing", "lmbda"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.start_timesteps < args.batch_size and not args.offline:
        raise UsageError(f"--start-timesteps ({args.start_timesteps}) must be at least --batch-size ({args.batch_size})")
    if not 0 <= args.discount <= 1:
        raise UsageError(f"--discount must be in [0, 1], got {args.discount}")
    if not 0 <= args.reset_weight <= 1:
        raise UsageError(f"--reset-weight must be in [0, 1], got {args.reset_weight}")
    if args.env_version not in ("v4", "v5"):
        raise UsageError(f"--env-version must be v4 or v5, got {args.env_version!r}")
    parse_env_kwargs(args.env_kwargs)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for, but torch sees no CUDA device: use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported --device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def make_env(env_id: str, seed: int, **kwargs) -> gym.Env:
    """A seeded environment with a bounded Box action space, or a UsageError; kwargs go to gym.make."""
    try:
        with warnings.catch_warnings():  # v4 is the papers' version on purpose: no "out of date" warning
            warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
            env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise UsageError(f"cannot make environment {env_id!r}: {e}")
    except ImportError as e:
        raise UsageError(f"environment {env_id!r} needs a missing package: {e}")
    except TypeError as e:
        raise UsageError(f"environment {env_id!r} does not take the keyword arguments {kwargs}: {e}")
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise UsageError(f"{env_id} has a {type(space).__name__} action space; {ALGO}.py needs continuous (Box) actions")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UsageError(f"{env_id} has an unbounded action space; {ALGO}.py needs finite action bounds")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        raise UsageError(f"{env_id} must have a flat Box observation space, got {env.observation_space}")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def action_scale_bias(space: gym.spaces.Box):
    """env action = normalized action * scale + bias, so [-1, 1] maps onto [low, high]."""
    return (space.high - space.low) / 2.0, (space.high + space.low) / 2.0


def evaluate(agent, env: gym.Env, episodes: int, frames: Optional[list] = None) -> np.ndarray:
    """Returns of `episodes` deterministic episodes (no exploration noise); the first episode's rendered
    frames are appended to `frames` when given (env made with render_mode="rgb_array")."""
    scale, bias = action_scale_bias(env.action_space)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        state, _ = env.reset()
        done = False
        while not done:
            if frames is not None and episode == 0:
                frames.append(env.render())
            action = agent.select_action(state, use_checkpoint=agent.args.checkpoints, use_exploration=False)
            state, reward, terminated, truncated, _ = env.step(action * scale + bias)
            returns[episode] += reward
            done = terminated or truncated
    return returns


class VideoRecorder:
    """--capture-video: one evaluation episode to <run>/videos/step_<step>.mp4 (imageio + imageio-ffmpeg).
    MuJoCo renders headless through EGL unless MUJOCO_GL says otherwise."""

    def __init__(self, args: Args, run_path: str, **env_kwargs):
        os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 (the mp4 writer imageio uses)
        except ImportError:
            raise UsageError("--capture-video needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg")
        self.imageio, self.path = imageio, os.path.join(run_path, "videos")
        self.env = make_env(args.env, args.seed + 200, render_mode="rgb_array", **env_kwargs)
        try:
            self.env.render()
        except Exception as e:
            raise UsageError(f"cannot render {args.env} for --capture-video ({type(e).__name__}: {e}); "
                             f"headless MuJoCo needs MUJOCO_GL=egl (libEGL) or MUJOCO_GL=osmesa (libOSMesa)")
        os.makedirs(self.path, exist_ok=True)

    def record(self, agent, step: int):
        frames = []
        evaluate(agent, self.env, 1, frames)
        fps = self.env.metadata.get("render_fps") or 30
        path = os.path.join(self.path, f"step_{step}.mp4")
        self.imageio.mimwrite(path + ".tmp.mp4", frames, fps=fps, macro_block_size=1)
        os.replace(path + ".tmp.mp4", path)

    def close(self):
        self.env.close()  # frees the GL context now, not in a destructor at interpreter exit


def atomic_write(path: str, text: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def versions() -> dict:
    import mujoco  # noqa: F401 (imported by gymnasium's MuJoCo environments anyway)

    try:
        git = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5)
        commit = git.stdout.strip() if git.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
            "mujoco": mujoco.__version__, "numpy": np.__version__, "git_commit": commit}


class RunLogger:
    """The run folder: config.json, evaluations.csv (rewritten atomically), TensorBoard scalars and, with
    --track, their Weights & Biases mirror. A resumed run continues in its folder and its evaluations.csv."""

    HEADER = ["step", "wall_seconds", "mean_return", "std_return", "returns"]

    def __init__(self, args: Args, device: torch.device, path: Optional[str] = None, ref_returns=None, extra=None):
        self.path = path or os.path.join(args.run_dir, f"{args.env}__{ALGO}__{args.seed}__{int(time.time())}")
        self.rows = []
        self.ref_returns = ref_returns  # offline: (random, expert) returns of the normalized score, or None
        if path is None:
            os.makedirs(self.path, exist_ok=True)
            config = asdict(args) | versions() | {"algo": ALGO, "device": str(device),
                                                   "torch_threads": torch.get_num_threads()} | (extra or {})
            atomic_write(os.path.join(self.path, "config.json"), json.dumps(config, indent=2) + "\n")
        elif os.path.exists(os.path.join(self.path, "evaluations.csv")):
            with open(os.path.join(self.path, "evaluations.csv")) as f:
                self.rows = [line.rstrip("\n").split(",") for line in f.readlines()[1:]]
        if args.track:
            try:
                import wandb
            except ImportError:
                raise UsageError("--track needs wandb: pip install wandb (WANDB_MODE=offline works without a network)")
            wandb.init(project=args.wandb_project, name=os.path.basename(self.path), config=asdict(args),
                       dir=self.path, sync_tensorboard=True, resume="allow", id=os.path.basename(self.path))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.path)

    def scalar(self, name: str, value, step: int):
        self.writer.add_scalar(name, float(value), step)

    def evaluation(self, step: int, wall_seconds: float, returns: np.ndarray):
        self.rows.append([step, f"{wall_seconds:.1f}", f"{returns.mean():.3f}", f"{returns.std():.3f}",
                          " ".join(f"{r:.3f}" for r in returns)])
        header = self.HEADER
        if self.ref_returns is not None:
            score = normalized_score(returns.mean(), self.ref_returns)
            self.rows[-1].append(f"{score:.3f}")
            header = header + ["normalized_score"]
            self.scalar("eval/normalized_score", score, step)
        lines = [",".join(header)] + [",".join(map(str, row)) for row in self.rows]
        atomic_write(os.path.join(self.path, "evaluations.csv"), "\n".join(lines) + "\n")
        self.scalar("eval/mean_return", returns.mean(), step)
        self.writer.flush()

    def close(self):
        self.writer.close()
        if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
            sys.modules["wandb"].finish()


class Progress:
    """A live status line on a terminal: tqdm when installed, else a carriage-return line. Off when stderr
    is not a terminal (CI, cluster logs) or with --no-progress."""

    def __init__(self, total: int, initial: int, disabled: bool):
        self.enabled = not disabled and sys.stderr.isatty()
        self.bar, self.last = None, 0.0
        if self.enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)
            except ImportError:
                pass
        self.total, self.step = total, initial
        self.last_return = float("nan")  # the mean return of the last evaluation, shown on the line

    def update(self, step: int):
        if not self.enabled or time.monotonic() - self.last < 0.5:
            return
        status = f"eval {self.last_return:.1f}"
        self.last = time.monotonic()
        if self.bar is not None:
            self.bar.update(step - self.step)
            self.bar.set_postfix_str(status, refresh=False)
        else:
            print(f"\rstep {step}/{self.total} | {status}\033[K", end="", file=sys.stderr, flush=True)
        self.step = step

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


class GracefulExit:
    """SIGINT and SIGTERM ask the training loop to stop after the current step, so that what it saves is
    consistent; a second Ctrl-C stops at once, without a resumable state (the evaluations are on disk)."""

    def __init__(self):
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            print("\nstopped at once: no resumable state written", file=sys.stderr)
            raise SystemExit(130)
        self.requested = True


def save_model(agent, args: Args, path: str, step: int):
    tmp = path + ".tmp"
    torch.save({"algo": ALGO, "args": asdict(args), "step": step, "agent": agent.state_dict()}, tmp)
    os.replace(tmp, path)


def load_model(path: str) -> dict:
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.isfile(path):
        raise UsageError(f"no model file at {path}: pass a model.pt written by --save-model or its run folder")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().split("\n")[0]
        raise UsageError(f"cannot read model file {path}: {type(e).__name__}: {reason}")
    if not isinstance(checkpoint, dict) or checkpoint.get("algo") != ALGO:
        raise UsageError(f"{path} is not a {ALGO}.py model")
    return checkpoint


def env_state(env: gym.Env) -> dict:
    """An environment mid-episode, as --resume needs it: the wrapped environment pickled (time limit counter
    included), its random generators, and MuJoCo's full integration state, which gymnasium's MuJoCo
    environments do not pickle (they are rebuilt from their constructor arguments)."""
    u = env.unwrapped
    state = {"env": env, "np_random": u.np_random.bit_generator.state,
             "action_space": env.action_space.np_random.bit_generator.state}
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        state["physics"] = np.empty(mujoco.mj_stateSize(u.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(u.model, u.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
    return state


def restore_env(state: dict) -> gym.Env:
    env, u = state["env"], state["env"].unwrapped
    u.np_random.bit_generator.state = state["np_random"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "physics" in state:
        import mujoco

        mujoco.mj_setState(u.model, u.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
    return env


def save_resume_state(path: str, agent, args: Args, loop: dict, envs: dict):
    """Everything --resume needs, in <run>/resume.pt (pickled: read it only from runs you trust) and the
    replay buffer in <run>/replay_buffer.npz: the agent, the loop's counters, every random generator and
    the environments mid-episode."""
    agent.replay_buffer.save(os.path.join(path, "replay_buffer.npz.tmp"))
    os.replace(os.path.join(path, "replay_buffer.npz.tmp"), os.path.join(path, "replay_buffer.npz"))
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    state = {"algo": ALGO, "args": asdict(args), "agent": agent.state_dict(), "loop": loop, "rng": rng,
             "envs": {name: env_state(env) for name, env in envs.items()}}
    torch.save(state, os.path.join(path, "resume.pt.tmp"))
    os.replace(os.path.join(path, "resume.pt.tmp"), os.path.join(path, "resume.pt"))


def load_resume_state(path: str) -> dict:
    file = os.path.join(path, "resume.pt")
    if not os.path.isfile(file):
        raise UsageError(f"no resumable state in {path}: --resume takes the folder of an interrupted {ALGO}.py run")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as e:
        reason = str(e).strip().split("\n")[0]
        raise UsageError(f"cannot read {file}: {type(e).__name__}: {reason}")
    if not isinstance(state, dict) or state.get("algo") != ALGO:
        raise UsageError(f"{file} is not a {ALGO}.py resumable state")
    return state


def restore_rng(rng: dict):
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def format_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def compiled(fn, cudagraphs=False, keep=None):
    """--compile: fn through torch.compile, its first-compile time printed. If compiling fails (no C++
    compiler, an unsupported op), one warning line and the eager fn from then on. A graph compiles when
    first reached, before it runs: a failure in fn's first graph has changed nothing; one in a later
    graph (reached on a later call, e.g. the first delayed actor step) may follow earlier graphs that
    ran, and the eager rerun repeats them once. --cudagraphs: each call is a new step of torch's CUDA
    graph trees, where a replay overwrites the outputs of the last one, so the tensors that fn leaves in
    the dict `keep` (losses read when logged) are copied out after each call."""
    torch._inductor.config.fallback_random = True  # eager's random numbers: a seed gives the same run
    fast, first = torch.compile(fn, mode="reduce-overhead" if cudagraphs else None), True

    def call(*inputs):
        nonlocal fast, first
        if fast is None:
            return fn(*inputs)
        start = time.perf_counter()
        try:
            if cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = fast(*inputs)
        except Exception as e:  # torch raises many kinds here; any of them means "run eager"
            reason = (str(e).splitlines() or [""])[0]
            print(f"warning: torch.compile failed, running eager ({type(e).__name__}: {reason})", file=sys.stderr)
            fast = None
            return fn(*inputs)
        if cudagraphs and keep is not None:
            keep.update({name: value.clone() for name, value in keep.items()})
        if first:
            print(f"torch.compile: {fn.__name__} compiled in {time.perf_counter() - start:.1f} s")
            first = False
        return out
    return call


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_agent(env: gym.Env, args: Args, device: torch.device) -> Agent:
    return Agent(env.observation_space.shape[0], env.action_space.shape[0], args, device)


def run_eval_only(args: Args, device: torch.device):
    checkpoint = load_model(args.eval_only)
    saved = Args(**checkpoint["args"])
    env = make_env(saved.env, args.seed + 100, **parse_env_kwargs(saved.env_kwargs))
    agent = make_agent(env, saved, device)
    try:
        agent.load_state_dict(checkpoint["agent"])
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"{args.eval_only} does not match {saved.env}: {e}")
    returns = evaluate(agent, env, args.eval_episodes)
    ref = reference_returns(saved.env, {}, args.ref_returns or saved.ref_returns)
    score = f", normalized score {normalized_score(returns.mean(), ref):.1f}" if ref else ""
    print(f"{saved.env} {ALGO} (step {checkpoint['step']}): mean return {returns.mean():.1f} +- {returns.std():.1f}"
          f" over {args.eval_episodes} episodes{score}")


def main(args: Args):
    check_args(args)
    resume = None
    if args.resume:
        resume = load_resume_state(args.resume)
        args = replace(Args(**resume["args"]), device=args.device, torch_threads=args.torch_threads,
                       no_progress=args.no_progress, resume=args.resume, compile=args.compile,
                       cudagraphs=args.cudagraphs)
    device = resolve_device(args.device)
    if args.cudagraphs and device.type != "cuda":
        raise UsageError(f"--cudagraphs needs a CUDA device, got --device {args.device} ({device})")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    if args.eval_only:
        return run_eval_only(args, device)
    if args.offline or args.dataset is not None:
        return train_offline(args, device, resume)

    args = replace(args, env=args.env or "HalfCheetah-v4")
    env = make_env(args.env, args.seed, **parse_env_kwargs(args.env_kwargs))
    eval_env = make_env(args.env, args.seed + 100, **parse_env_kwargs(args.env_kwargs))
    agent = make_agent(env, args, device)
    scale, bias = action_scale_bias(env.action_space)
    logger = RunLogger(args, device, args.resume)
    video = VideoRecorder(args, logger.path, **parse_env_kwargs(args.env_kwargs)) if args.capture_video else None
    model_path = os.path.join(logger.path, "model.pt")

    # The loop's state: everything besides the agent, the buffer and the environments that --resume restores;
    # allow_train turns on at the first episode end after start_timesteps.
    loop = {"t": 0, "episode_return": 0.0, "episode_steps": 0, "episode_num": 0, "wall_seconds": 0.0,
            "allow_train": False}
    if resume is None:
        state, _ = env.reset(seed=args.seed)
    else:
        agent.load_state_dict(resume["agent"])
        agent.replay_buffer.restore(os.path.join(args.resume, "replay_buffer.npz"))
        env, eval_env = restore_env(resume["envs"]["env"]), restore_env(resume["envs"]["eval_env"])
        if video is not None:
            video.env = restore_env(resume["envs"]["video_env"])
        loop = resume["loop"]
        state = loop.pop("state")
        # Evaluations written after the saved state (a run killed later without saving one) are redone.
        logger.rows = [row for row in logger.rows if int(row[0]) <= loop["t"]]
        restore_rng(resume["rng"])
    print(f"{ALGO} on {args.env}, seed {args.seed}, device {device}: {logger.path}"
          + (f" (resumed at step {loop['t']})" if resume else ""))

    start_time = time.time() - loop["wall_seconds"]
    train_start, train_start_updates = None, agent.training_steps
    progress = Progress(args.total_timesteps, loop["t"], args.no_progress)
    stop = GracefulExit()

    def evaluate_and_log(step: int):
        returns = evaluate(agent, eval_env, args.eval_episodes)
        logger.evaluation(step, time.time() - start_time, returns)
        sps = (agent.training_steps - train_start_updates) / (time.time() - train_start) if train_start else 0.0
        left = format_time((args.total_timesteps - step) / sps) if sps else "-"
        print(f"step {step:>8d} | eval return {returns.mean():9.1f} +- {returns.std():7.1f} | "
              f"{sps:6.1f} train steps/s | {left} left", flush=True)
        if args.save_model:
            save_model(agent, args, model_path, step)
        if video is not None and ((len(logger.rows) - 1) % args.video_every == 0 or step == args.total_timesteps):
            video.record(agent, step)
        return returns

    t = loop["t"]
    try:
        if resume is None:
            evaluate_and_log(0)
        for t in range(loop["t"], args.total_timesteps):
            # Act: uniform random until the first episode end after start_timesteps, then the policy.
            if not loop["allow_train"]:
                action = (env.action_space.sample() - bias) / scale
            else:
                action = agent.select_action(state, use_checkpoint=False, use_exploration=True)

            # Step and store; only a termination ends bootstrapping, a time limit does not.
            next_state, reward, terminated, truncated, _ = env.step(action * scale + bias)
            agent.replay_buffer.add(state, action, next_state, reward, terminated)
            state = next_state
            loop["episode_return"] += float(reward)
            loop["episode_steps"] += 1

            # Train: every step, or in batches at episode ends with checkpoints (below).
            if loop["allow_train"]:
                if train_start is None:
                    train_start = time.time()
                if not args.checkpoints:
                    agent.train()

            if terminated or truncated:
                logger.scalar("train/episode_return", loop["episode_return"], t + 1)
                logger.scalar("train/episode_length", loop["episode_steps"], t + 1)
                for name, value in agent.losses.items():
                    logger.scalar(f"losses/{name}", value, t + 1)
                if train_start is not None:
                    sps = (agent.training_steps - train_start_updates) / (time.time() - train_start)
                    logger.scalar("train/SPS", sps, t + 1)
                if loop["allow_train"] and args.checkpoints:
                    agent.maybe_train_and_checkpoint(loop["episode_steps"], loop["episode_return"])
                if t >= args.start_timesteps:
                    loop["allow_train"] = True
                state, _ = env.reset()
                loop.update(episode_return=0.0, episode_steps=0, episode_num=loop["episode_num"] + 1)

            if (t + 1) % args.eval_freq == 0:
                returns = evaluate_and_log(t + 1)
                progress.last_return = returns.mean()
            progress.update(t + 1)
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        progress.close()
        loop.update(t=t + 1, state=state, wall_seconds=time.time() - start_time)
        envs = {"env": env, "eval_env": eval_env} | ({"video_env": video.env} if video else {})
        save_resume_state(logger.path, agent, args, loop, envs)
        if args.save_model:
            save_model(agent, args, model_path, t + 1)
        logger.close()
        print(f"interrupted at step {t + 1}; to continue: python {ALGO}.py --resume {logger.path}", file=sys.stderr)
        sys.exit(130)
    finally:
        if video is not None:
            video.close()
    progress.close()
    if args.save_model:
        save_model(agent, args, model_path, args.total_timesteps)
    for name in ("resume.pt", "replay_buffer.npz"):  # a finished run has nothing to resume
        if os.path.exists(os.path.join(logger.path, name)):
            os.remove(os.path.join(logger.path, name))
    logger.close()
    return logger.path


def train_offline(args: Args, device: torch.device, resume: Optional[dict] = None):
    """The paper's offline variant (the official main.py's train_offline): the dataset replaces the
    environment for training and the buffer (priorities start at 1, LAP stays on); it names the evaluation
    environment. No exploration, no checkpoints (the current policy is evaluated), no state normalization.
    --resume restores the agent, the buffer with its priorities, the random generators, the evaluation
    environment and the gradient step; the dataset is read again (it must still be there)."""
    if not args.offline:
        raise UsageError(f"--dataset is for offline training: add --offline to train on {args.dataset}")
    if args.dataset is None:
        raise UsageError("--offline needs --dataset PATH: a D4RL-layout HDF5 file or a Minari dataset folder")
    dataset, info = load_dataset(args.dataset, args.env_version)
    if args.env is None:
        if info["env"] is None:
            raise UsageError(f"cannot tell which environment {args.dataset} comes from: pass --env")
        args = replace(args, env=info["env"], env_kwargs=args.env_kwargs or json.dumps(info["env_kwargs"]))
    args = replace(args, checkpoints=False)  # saved with the model: --eval-only evaluates the current policy too
    eval_env = make_env(args.env, args.seed + 100, **parse_env_kwargs(args.env_kwargs))
    dataset = check_dataset(dataset, eval_env, args.dataset)
    if len(dataset["rewards"]) < args.batch_size:
        raise UsageError(f"{args.dataset} holds {len(dataset['rewards'])} transitions, fewer than --batch-size "
                         f"{args.batch_size}")
    ref_returns = reference_returns(args.env, info, args.ref_returns)
    agent = make_agent(eval_env, args, device)
    agent.replay_buffer.load(dataset)
    logger = RunLogger(args, device, args.resume, ref_returns, {"dataset_format": info["format"],
                                                                "dataset_transitions": len(dataset["rewards"]),
                                                                "ref_returns": ref_returns})
    video = VideoRecorder(args, logger.path, **parse_env_kwargs(args.env_kwargs)) if args.capture_video else None
    model_path = os.path.join(logger.path, "model.pt")

    loop = {"t": 0, "wall_seconds": 0.0}  # the loop's state besides the agent, the buffer and the environments
    if resume is not None:
        agent.load_state_dict(resume["agent"])
        agent.replay_buffer.restore(os.path.join(args.resume, "replay_buffer.npz"))
        eval_env = restore_env(resume["envs"]["eval_env"])
        if video is not None:
            video.env = restore_env(resume["envs"]["video_env"])
        loop = resume["loop"]
        # Evaluations written after the saved state (a run killed later without saving one) are redone.
        logger.rows = [row for row in logger.rows if int(row[0]) <= loop["t"]]
        restore_rng(resume["rng"])
    print(f"{ALGO} on {args.env} from {args.dataset} ({len(dataset['rewards'])} transitions), seed {args.seed}, "
          f"device {device}: {logger.path}" + (f" (resumed at step {loop['t']})" if resume else ""))
    del dataset  # the buffer holds it

    start_time = time.time() - loop["wall_seconds"]
    train_start, train_start_updates = time.time(), agent.training_steps
    progress = Progress(args.total_timesteps, loop["t"], args.no_progress)
    stop = GracefulExit()

    def evaluate_and_log(step: int):
        returns = evaluate(agent, eval_env, args.eval_episodes)
        logger.evaluation(step, time.time() - start_time, returns)
        for name, value in agent.losses.items():
            logger.scalar(f"losses/{name}", value, step)
        sps = (agent.training_steps - train_start_updates) / (time.time() - train_start)
        logger.scalar("train/SPS", sps, step)
        left = format_time((args.total_timesteps - step) / sps) if sps else "-"
        score = f" | normalized {normalized_score(returns.mean(), ref_returns):6.1f}" if ref_returns else ""
        print(f"step {step:>8d} | eval return {returns.mean():9.1f} +- {returns.std():7.1f}{score} | "
              f"{sps:6.1f} train steps/s | {left} left", flush=True)
        if args.save_model:
            save_model(agent, args, model_path, step)
        if video is not None and ((len(logger.rows) - 1) % args.video_every == 0 or step == args.total_timesteps):
            video.record(agent, step)
        return returns

    t = loop["t"]
    try:
        if resume is None:
            evaluate_and_log(0)
        for t in range(loop["t"], args.total_timesteps):
            agent.train()  # one gradient step on a batch of the dataset (LAP, hard copies as online)
            if (t + 1) % args.eval_freq == 0:
                returns = evaluate_and_log(t + 1)
                progress.last_return = returns.mean()
            progress.update(t + 1)
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        progress.close()
        loop.update(t=t + 1, wall_seconds=time.time() - start_time)
        envs = {"eval_env": eval_env} | ({"video_env": video.env} if video else {})
        save_resume_state(logger.path, agent, args, loop, envs)
        if args.save_model:
            save_model(agent, args, model_path, t + 1)
        logger.close()
        print(f"interrupted at step {t + 1}; to continue: python {ALGO}.py --resume {logger.path}", file=sys.stderr)
        sys.exit(130)
    finally:
        if video is not None:
            video.close()
    progress.close()
    if args.save_model:
        save_model(agent, args, model_path, args.total_timesteps)
    for name in ("resume.pt", "replay_buffer.npz"):  # a finished run has nothing to resume
        if os.path.exists(os.path.join(logger.path, name)):
            os.remove(os.path.join(logger.path, name))
    logger.close()
    return logger.path


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as e:
        print(f"{ALGO}.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before the training loop's own handler is installed: nothing to save yet
        print(f"{ALGO}.py: interrupted before training started", file=sys.stderr)
        sys.exit(130)
