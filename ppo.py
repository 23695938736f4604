"""PPO: Proximal Policy Optimization with the clipped objective, for continuous control.

Schulman, Wolski, Dhariwal, Radford, Klimov, "Proximal Policy Optimization Algorithms", 2017, with the
implementation details of OpenAI baselines' ppo2 MuJoCo setting as listed in "The 37 Implementation Details of
PPO" (Huang et al., ICLR blog track 2022) and CleanRL's ppo_continuous_action.py, whose flag names this script uses:
2048 steps per rollout, GAE (lambda 0.95), 10 epochs of 32 minibatches, clip 0.2 with value clipping, Adam 3e-4
(eps 1e-5) annealed to 0, gradient norm 0.5, separate 64-64 tanh actor and critic, observation normalization and
reward scaling. Two things are done here the way the algorithm means them, where popular single-file versions
do not: a time-limit truncation bootstraps from the value of the true final observation (gymnasium's SAME_STEP
autoreset hands it over in `final_obs`), and the observation statistics are saved with the model and only read
(never updated) at evaluation.

    python ppo.py --env HalfCheetah-v4 --seed 0
"""

import json
import math
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
import numpy as np
import torch
import torch.nn as nn
import tyro

ALGO = "ppo"


@dataclass
class Args:
    env: str = "HalfCheetah-v4"
    """gymnasium environment id (any Box action space)"""
    seed: int = 0
    """seed of python, numpy, torch, the environments and their action spaces"""
    total_timesteps: int = 1_000_000
    """environment steps, rounded up to whole rollouts (num_envs * num_steps)"""
    eval_freq: int = 5_000
    """evaluate after the first rollout that crosses each multiple of this many environment steps (and once at
    step 0 and once at the end): PPO only changes its policy between rollouts"""
    eval_episodes: int = 10
    """deterministic episodes per evaluation, on an environment seeded seed + 100"""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda or cuda:N"""
    torch_threads: int = 0
    """CPU threads for torch (0 = torch's default)"""
    run_dir: str = "runs"
    """where the run folder goes"""
    save_model: bool = False
    """write model.pt (networks, optimizer and normalization statistics) at each evaluation and at the end"""
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

    # PPO (paper Table 3 for MuJoCo: T 2048, Adam 3e-4, 10 epochs, minibatch 64, gamma 0.99, lambda 0.95, clip 0.2;
    # the rest from baselines' ppo2 mujoco defaults and VecNormalize, as in CleanRL)
    num_envs: int = 1
    """parallel environments in the gymnasium SyncVectorEnv (1 in the paper's MuJoCo setting)"""
    num_steps: int = 2048
    """steps per environment in each rollout (the paper's horizon T)"""
    learning_rate: float = 3e-4
    """Adam learning rate (of actor and critic together)"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over training (baselines' lr = 3e-4 * f)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 32
    """minibatches per epoch (32 of 2048 = the paper's minibatch of 64)"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalize the advantages of each minibatch to mean 0, std 1"""
    clip_coef: float = 0.2
    """the surrogate clipping epsilon"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values with clip_coef (baselines' ppo2)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (0 for MuJoCo in baselines)"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient norm clip of actor and critic together"""
    hdim: int = 64
    """hidden width of the actor and the critic"""
    obs_clip: float = 10.0
    """normalized observations are clipped to +-obs_clip (baselines' VecNormalize)"""
    reward_clip: float = 10.0
    """scaled rewards are clipped to +-reward_clip (baselines' VecNormalize)"""


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain `std`, constant bias (baselines' ortho_init)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


class Actor(nn.Module):
    """s -> 64 -> tanh -> 64 -> tanh -> the mean of a Gaussian in normalized action units; a state-independent
    log std (initialized at 0)."""

    def __init__(self, state_dim, action_dim, hdim=64):
        super().__init__()
        self.net = nn.Sequential(layer_init(nn.Linear(state_dim, hdim)), nn.Tanh(),
                                 layer_init(nn.Linear(hdim, hdim)), nn.Tanh(),
                                 layer_init(nn.Linear(hdim, action_dim), std=0.01))
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def forward(self, state):
        return self.net(state)


class Critic(nn.Module):
    """s -> 64 -> tanh -> 64 -> tanh -> V(s)."""

    def __init__(self, state_dim, hdim=64):
        super().__init__()
        self.net = nn.Sequential(layer_init(nn.Linear(state_dim, hdim)), nn.Tanh(),
                                 layer_init(nn.Linear(hdim, hdim)), nn.Tanh(),
                                 layer_init(nn.Linear(hdim, 1), std=1.0))

    def forward(self, state):
        return self.net(state).squeeze(-1)


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(action, mean, log_std):
    """log N(action; mean, exp(log_std)^2), summed over action dimensions."""
    return (-0.5 * ((action - mean) / log_std.exp()).pow(2) - log_std - LOG_SQRT_2PI).sum(-1)


class RunningMeanStd:
    """Running mean and variance of a stream of batches (the parallel update of Chan et al.), float64 on the host:
    baselines' RunningMeanStd, written out here so the statistics are explicit, saved and loadable."""

    def __init__(self, shape=(), epsilon=1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray):
        """x: a batch of shape (B, *shape)."""
        batch_count = x.shape[0]
        batch_mean = x.sum(0) / batch_count
        batch_var = np.square(x - batch_mean).sum(0) / batch_count
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        self.var = (self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total
                    ) / total
        self.count = total

    def state_dict(self):
        return {"mean": torch.tensor(np.asarray(self.mean)), "var": torch.tensor(np.asarray(self.var)),
                "count": torch.tensor(self.count, dtype=torch.float64)}

    def load_state_dict(self, state):
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


def clipped_surrogate_loss(logratio, advantages, clip_coef):
    """The negated PPO-Clip objective -E[min(r A, clip(r, 1 - eps, 1 + eps) A)], r = exp(logratio)."""
    ratio = logratio.exp()
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()


def compute_gae(rewards, values, dones, final_values, next_value, gamma, gae_lambda):
    """Generalized advantage estimates and returns (their targets for the critic) of a rollout.

    rewards, values, dones, final_values: (T, N); next_value: (N,), V of the observation after the rollout.
    done_t marks a transition that ended its episode (termination or time limit): nothing after it is its future.
    final_values_t is V(s_final) of the true final observation where the episode was cut by a time limit (and not
    terminated), 0 elsewhere: a truncation bootstraps, a termination does not.
        delta_t = r_t + gamma * ((1 - done_t) V(s_t+1) + final_value_t) - V(s_t)
        A_t = delta_t + gamma * lambda * (1 - done_t) * A_t+1
    """
    not_done = 1.0 - dones
    next_values = torch.cat([values[1:], next_value.unsqueeze(0)])
    deltas = rewards + gamma * (not_done * next_values + final_values) - values
    discounts = gamma * gae_lambda * not_done
    # The recursion runs on the host (a few microseconds a step), whatever the device.
    deltas_np, discounts_np = deltas.cpu().numpy(), discounts.cpu().numpy()
    advantages = np.zeros_like(deltas_np)
    last = np.zeros_like(deltas_np[0])
    for t in reversed(range(deltas_np.shape[0])):
        last = deltas_np[t] + discounts_np[t] * last
        advantages[t] = last
    advantages = torch.from_numpy(advantages).to(values.device)
    return advantages, advantages + values


class Agent:
    def __init__(self, state_dim, action_dim, args: Args, device):
        self.args, self.device = args, device
        self.actor = Actor(state_dim, action_dim, args.hdim).to(device)
        self.critic = Critic(state_dim, args.hdim).to(device)
        self.optimizer = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()],
                                          lr=args.learning_rate, eps=1e-5, fused=True)
        self.obs_rms = RunningMeanStd((state_dim,))  # observation statistics, updated only while collecting
        self.return_rms = RunningMeanStd(())  # statistics of the discounted return, for reward scaling
        self.losses = {}  # device tensors, read only when logged

    def normalize_obs(self, state: np.ndarray) -> np.ndarray:
        """Observations normalized with the current statistics (which this does not update), as float32."""
        obs = (state - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return obs.clip(-self.args.obs_clip, self.args.obs_clip).astype(np.float32)

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one normalized state: the mean, or a Gaussian sample if asked."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.actor(state)
        if use_exploration:
            action = action + self.actor.log_std.exp() * torch.randn_like(action)
        return action.cpu().numpy().flatten().clip(-1, 1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor):
        """One forward for a batch of normalized observations: sampled actions (unclipped), their log-probs, V."""
        mean, log_std = self.actor(obs), self.actor.log_std
        noise = torch.randn_like(mean)
        action = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)
        return action, log_prob, self.critic(obs)

    def update(self, obs, actions, log_probs, advantages, returns, values):
        """update_epochs epochs of PPO-Clip over one flattened rollout, in num_minibatches random minibatches."""
        args = self.args
        params = [*self.actor.parameters(), *self.critic.parameters()]
        stats = torch.zeros(6, device=self.device)  # pg loss, v loss, entropy, approx kl, clip fraction, count
        for epoch in range(args.update_epochs):
            for mb in torch.randperm(obs.shape[0], device=self.device).tensor_split(args.num_minibatches):
                mean, log_std = self.actor(obs[mb]), self.actor.log_std
                logratio = gaussian_log_prob(actions[mb], mean, log_std) - log_probs[mb]
                entropy = (0.5 + LOG_SQRT_2PI + log_std).sum()  # the same for every state

                mb_advantages = advantages[mb]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss = clipped_surrogate_loss(logratio, mb_advantages, args.clip_coef)

                new_values = self.critic(obs[mb])
                v_loss = (new_values - returns[mb]).pow(2)
                if args.clip_vloss:
                    v_clipped = values[mb] + (new_values - values[mb]).clamp(-args.clip_coef, args.clip_coef)
                    v_loss = torch.max(v_loss, (v_clipped - returns[mb]).pow(2))
                v_loss = 0.5 * v_loss.mean()

                loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
                self.optimizer.step()

                with torch.no_grad():
                    ratio = logratio.exp()
                    stats += torch.stack([pg_loss, v_loss, entropy, ((ratio - 1) - logratio).mean(),
                                          ((ratio - 1).abs() > args.clip_coef).float().mean(), stats.new_ones(())])
        stats = stats[:5] / stats[5]
        self.losses = dict(zip(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), stats))

    def state_dict(self):
        return {name: getattr(self, name).state_dict() for name in
                ("actor", "critic", "optimizer", "obs_rms", "return_rms")}

    def load_state_dict(self, state):
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)


def make_vector_env(env_id: str, num_envs: int, seed: int, envs: Optional[list] = None) -> gym.vector.SyncVectorEnv:
    """num_envs environments (make_env's checks) stepped together. SAME_STEP autoreset: when an episode ends the
    step returns the next episode's first observation and puts the true final one in infos["final_obs"]
    (gymnasium 1.x's default, NEXT_STEP, would instead spend the following step on a reset). A SAME_STEP
    SyncVectorEnv keeps no state of its own between steps, so `envs` (a resumed run's, mid-episode) can be
    wrapped again as they are."""
    if envs is None:
        envs = [make_env(env_id, seed + i) for i in range(num_envs)]
    return gym.vector.SyncVectorEnv([lambda env=env: env for env in envs],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class Rollout:
    """Collects rollouts of num_steps vector steps from a vector environment (reset with `seed`: env i gets
    seed + i). Observations are normalized with running statistics updated by every observation the policy acts
    on; rewards are scaled by the running std of the discounted return (baselines' VecNormalize)."""

    def __init__(self, agent: Agent, envs: gym.vector.VectorEnv, num_steps: int, seed: int):
        self.agent, self.envs, self.num_steps, self.device = agent, envs, num_steps, agent.device
        self.scale, self.bias = action_scale_bias(envs.single_action_space)
        n, state_dim, action_dim = envs.num_envs, envs.single_observation_space.shape[0], \
            envs.single_action_space.shape[0]
        self.obs = np.zeros((num_steps, n, state_dim), np.float32)  # normalized, host side (the env is there)
        self.actions = torch.zeros((num_steps, n, action_dim), device=self.device)
        self.log_probs = torch.zeros((num_steps, n), device=self.device)
        self.values = torch.zeros((num_steps, n), device=self.device)
        self.final_values = torch.zeros((num_steps, n), device=self.device)
        self.rewards = np.zeros((num_steps, n), np.float32)  # scaled
        self.dones = np.zeros((num_steps, n), np.float32)
        self.state, _ = envs.reset(seed=seed)
        self.discounted_return = np.zeros(n)
        self.episode_return, self.episode_length = np.zeros(n), np.zeros(n, np.int64)

    def collect(self):
        """Fills the buffers; returns V(s) of the observation after the rollout (N,) and the episodes that ended,
        as (vector step in the rollout, return, length)."""
        agent, envs, args = self.agent, self.envs, self.agent.args
        self.final_values.zero_()
        episodes = []
        for step in range(self.num_steps):
            agent.obs_rms.update(self.state)
            self.obs[step] = agent.normalize_obs(self.state)
            action, log_prob, value = agent.act(torch.from_numpy(self.obs[step]).to(self.device))
            self.actions[step], self.log_probs[step], self.values[step] = action, log_prob, value
            env_action = action.clamp(-1, 1).cpu().numpy()  # the one host sync of a step
            self.state, reward, terminated, truncated, infos = envs.step(env_action * self.scale + self.bias)
            done = terminated | truncated

            # Reward scaling: divide by the running std of the discounted return (not centred).
            self.discounted_return = self.discounted_return * args.gamma + reward
            agent.return_rms.update(self.discounted_return)
            self.rewards[step] = np.clip(reward / np.sqrt(agent.return_rms.var + 1e-8), -args.reward_clip,
                                         args.reward_clip)
            self.dones[step] = done
            self.discounted_return[done] = 0.0

            # A time limit is not a terminal: bootstrap from the true final observation, normalized like any other.
            bootstrap = truncated & ~terminated
            if bootstrap.any():
                final_obs = np.stack(infos["final_obs"][bootstrap])
                with torch.no_grad():
                    final_value = agent.critic(torch.from_numpy(agent.normalize_obs(final_obs)).to(self.device))
                self.final_values[step, torch.from_numpy(np.flatnonzero(bootstrap)).to(self.device)] = final_value

            self.episode_return += reward
            self.episode_length += 1
            for i in np.flatnonzero(done):
                episodes.append((step, self.episode_return[i], self.episode_length[i]))
            self.episode_return[done], self.episode_length[done] = 0.0, 0

        with torch.no_grad():
            next_value = agent.critic(torch.from_numpy(agent.normalize_obs(self.state)).to(self.device))
        return next_value, episodes

    def state_dict(self):
        """What carries over from one rollout to the next (the buffers are rewritten by every rollout): the current
        observations, the per-environment discounted returns of reward scaling and the episode statistics."""
        return {name: getattr(self, name).copy() for name in
                ("state", "discounted_return", "episode_return", "episode_length")}

    def load_state_dict(self, state):
        for name, value in state.items():
            setattr(self, name, value.copy())

    def advantages(self, next_value):
        """GAE advantages and returns of the last collected rollout, (T, N) each."""
        rewards = torch.from_numpy(self.rewards).to(self.device)
        dones = torch.from_numpy(self.dones).to(self.device)
        return compute_gae(rewards, self.values, dones, self.final_values, next_value, self.agent.args.gamma,
                           self.agent.args.gae_lambda)


# ---------------------------------------------------------------------------------------------
# Shared by every script, written the same way in each.


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


def check_args(args: Args):
    positive = ["total_timesteps", "eval_freq", "eval_episodes", "video_every", "num_envs", "num_steps",
                "num_minibatches", "update_epochs", "hdim", "obs_clip", "reward_clip"]
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["torch_threads", "learning_rate", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1:
        raise UsageError(f"--gamma must be in [0, 1], got {args.gamma}")
    if not 0 <= args.gae_lambda <= 1:
        raise UsageError(f"--gae-lambda must be in [0, 1], got {args.gae_lambda}")
    if args.num_minibatches > args.num_envs * args.num_steps:
        raise UsageError(f"--num-minibatches {args.num_minibatches} is more than the {args.num_envs * args.num_steps}"
                         f" transitions of a rollout (--num-envs * --num-steps)")


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
    """Returns of `episodes` deterministic episodes (the mean action), on observations normalized with the agent's
    statistics, which evaluation reads and never updates; the first episode's rendered frames are appended to
    `frames` when given (env made with render_mode="rgb_array")."""
    scale, bias = action_scale_bias(env.action_space)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        state, _ = env.reset()
        done = False
        while not done:
            if frames is not None and episode == 0:
                frames.append(env.render())
            action = agent.select_action(agent.normalize_obs(state), use_exploration=False)
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

    def __init__(self, args: Args, device: torch.device, path: Optional[str] = None):
        self.path = path or os.path.join(args.run_dir, f"{args.env}__{ALGO}__{args.seed}__{int(time.time())}")
        self.rows = []
        if path is None:
            os.makedirs(self.path, exist_ok=True)
            config = asdict(args) | versions() | {"algo": ALGO, "device": str(device),
                                                   "torch_threads": torch.get_num_threads()}
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
        lines = [",".join(self.HEADER)] + [",".join(map(str, row)) for row in self.rows]
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
    consistent; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
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
    """Everything --resume needs, in <run>/resume.pt (pickled: read it only from runs you trust): the agent with
    its normalization statistics, the loop's counters and the rollout's per-environment state, every random
    generator and the environments mid-episode. PPO keeps no replay buffer."""
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


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_agent(env: gym.Env, args: Args, device: torch.device) -> Agent:
    return Agent(env.observation_space.shape[0], env.action_space.shape[0], args, device)


def run_eval_only(args: Args, device: torch.device):
    checkpoint = load_model(args.eval_only)
    saved = Args(**checkpoint["args"])
    env = make_env(saved.env, args.seed + 100)
    agent = make_agent(env, saved, device)
    try:
        agent.load_state_dict(checkpoint["agent"])
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"{args.eval_only} does not match {saved.env}: {e}")
    returns = evaluate(agent, env, args.eval_episodes)
    print(f"{saved.env} {ALGO} (step {checkpoint['step']}): mean return {returns.mean():.1f} +- {returns.std():.1f}"
          f" over {args.eval_episodes} episodes")


def main(args: Args):
    check_args(args)
    resume = None
    if args.resume:
        resume = load_resume_state(args.resume)
        args = replace(Args(**resume["args"]), device=args.device, torch_threads=args.torch_threads,
                       no_progress=args.no_progress, resume=args.resume)
    device = resolve_device(args.device)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    if args.eval_only:
        return run_eval_only(args, device)

    eval_env = make_env(args.env, args.seed + 100)
    envs = make_vector_env(args.env, args.num_envs, args.seed)
    agent = make_agent(eval_env, args, device)
    rollout = Rollout(agent, envs, args.num_steps, args.seed)
    batch_size = args.num_envs * args.num_steps
    num_iterations = -(-args.total_timesteps // batch_size)
    logger = RunLogger(args, device, args.resume)
    video = VideoRecorder(args, logger.path) if args.capture_video else None
    model_path = os.path.join(logger.path, "model.pt")

    # The loop's state at an iteration boundary: everything besides the agent (networks, optimizer with its annealed
    # learning rate, normalization statistics) and the environments that --resume restores.
    loop = {"iteration": 0, "global_step": 0, "train_seconds": 0.0, "wall_seconds": 0.0}
    if resume is not None:
        agent.load_state_dict(resume["agent"])
        eval_env = restore_env(resume["envs"]["eval_env"])
        rollout.envs = make_vector_env(args.env, args.num_envs, args.seed,
                                       [restore_env(resume["envs"][f"env_{i}"]) for i in range(args.num_envs)])
        if video is not None:
            video.env = restore_env(resume["envs"]["video_env"])
        loop = resume["loop"]
        rollout.load_state_dict(loop.pop("rollout"))
        # Evaluations written after the saved state (a run killed later without saving one) are redone.
        logger.rows = [row for row in logger.rows if int(row[0]) <= loop["global_step"]]
        restore_rng(resume["rng"])
    print(f"{ALGO} on {args.env}, seed {args.seed}, device {device}: {logger.path}"
          + (f" (resumed at step {loop['global_step']})" if resume else ""))

    start_time = time.time() - loop["wall_seconds"]
    train_seconds = loop["train_seconds"]  # collecting and updating, without the evaluations
    progress = Progress(num_iterations * batch_size, loop["global_step"], args.no_progress)
    stop = GracefulExit()

    def evaluate_and_log(step: int):
        returns = evaluate(agent, eval_env, args.eval_episodes)
        logger.evaluation(step, time.time() - start_time, returns)
        sps = step / train_seconds if train_seconds else 0.0
        left = format_time((num_iterations * batch_size - step) / step * (time.time() - start_time)) if step else "-"
        print(f"step {step:>8d} | eval return {returns.mean():9.1f} +- {returns.std():7.1f} | "
              f"{sps:6.1f} env steps/s | {left} left", flush=True)
        if args.save_model:
            save_model(agent, args, model_path, step)
        if video is not None and ((len(logger.rows) - 1) % args.video_every == 0
                                  or step == num_iterations * batch_size):
            video.record(agent, step)
        return returns

    # SIGINT and SIGTERM stop at the next iteration boundary (after the rollout, the update and any evaluation):
    # the state saved there is exact. Only a second Ctrl-C stops mid-iteration, and then nothing new is saved.
    global_step, iteration = loop["global_step"], loop["iteration"]
    at_boundary = resume is not None
    try:
        if resume is None:
            evaluate_and_log(0)
            at_boundary = True
        for iteration in range(loop["iteration"] + 1, num_iterations + 1):
            at_boundary = False
            iteration_start = time.time()
            if args.anneal_lr:
                agent.optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1) / num_iterations) * args.learning_rate

            # Collect a rollout with the current policy, then estimate advantages (GAE) and the value targets.
            next_value, episodes = rollout.collect()
            advantages, returns = rollout.advantages(next_value)

            # Learn: epochs of minibatch PPO-Clip on the flattened rollout.
            agent.update(torch.from_numpy(rollout.obs).to(device).flatten(0, 1), rollout.actions.flatten(0, 1),
                         rollout.log_probs.flatten(0, 1), advantages.flatten(), returns.flatten(),
                         rollout.values.flatten())
            train_seconds += time.time() - iteration_start

            for step, episode_return, episode_length in episodes:
                logger.scalar("train/episode_return", episode_return, global_step + (step + 1) * args.num_envs)
                logger.scalar("train/episode_length", episode_length, global_step + (step + 1) * args.num_envs)
            global_step += batch_size
            for name, value in agent.losses.items():
                logger.scalar(f"losses/{name}", value, global_step)
            logger.scalar("train/learning_rate", agent.optimizer.param_groups[0]["lr"], global_step)
            logger.scalar("train/SPS", global_step / train_seconds, global_step)

            if global_step // args.eval_freq > (global_step - batch_size) // args.eval_freq \
                    or iteration == num_iterations:
                progress.last_return = evaluate_and_log(global_step).mean()
            loop.update(iteration=iteration, global_step=global_step, train_seconds=train_seconds)
            at_boundary = True
            progress.update(global_step)
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        progress.close()
        if not at_boundary:
            logger.close()
            print(f"interrupted inside iteration {iteration}, after step {loop['global_step']}: no resumable state "
                  f"written (one Ctrl-C stops at the end of the iteration and writes one); evaluations so far are in "
                  f"{logger.path}", file=sys.stderr)
            sys.exit(130)
        loop.update(wall_seconds=time.time() - start_time, rollout=rollout.state_dict())
        envs = {"eval_env": eval_env} | {f"env_{i}": env for i, env in enumerate(rollout.envs.envs)} | (
            {"video_env": video.env} if video else {})
        save_resume_state(logger.path, agent, args, loop, envs)
        if args.save_model:
            save_model(agent, args, model_path, global_step)
        logger.close()
        print(f"interrupted at step {global_step} (iteration {iteration} of {num_iterations}); to continue: "
              f"python {ALGO}.py --resume {logger.path}", file=sys.stderr)
        sys.exit(130)
    finally:
        if video is not None:
            video.close()
    progress.close()
    if args.save_model:
        save_model(agent, args, model_path, global_step)
    if os.path.exists(os.path.join(logger.path, "resume.pt")):  # a finished run has nothing to resume
        os.remove(os.path.join(logger.path, "resume.pt"))
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
