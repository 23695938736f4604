"""DDPG: Deep Deterministic Policy Gradient, as the TD3 paper's baseline ("Our DDPG").

Lillicrap et al., "Continuous control with deep reinforcement learning", ICLR 2016, with the changes
of Fujimoto, van Hoof, Meger, ICML 2018 (OurDDPG.py of github.com/sfujim/TD3): td3.py without its three
tricks (one critic instead of clipped double Q, no target policy smoothing, actor and targets updated
every step), 256-256 networks, Adam 3e-4, batch 256, 25k random steps, Gaussian exploration noise 0.1.
`--noise ou` explores with the paper's Ornstein-Uhlenbeck process instead (theta 0.15, sigma 0.2).

    python ddpg.py --env HalfCheetah-v4 --seed 0
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from lap_buffer import LAPBuffer

ALGO = "ddpg"


@dataclass
class Args:
    env: str = "HalfCheetah-v4"
    """gymnasium environment id (any Box action space)"""
    seed: int = 0
    """seed of python, numpy, torch, the environments and their action spaces"""
    total_timesteps: int = 1_000_000
    """environment steps"""
    start_timesteps: int = 25_000
    """uniform-random steps before learning starts"""
    eval_freq: int = 5_000
    """evaluate every this many environment steps (and once at step 0)"""
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

    # DDPG (the TD3 paper's "Our DDPG")
    batch_size: int = 256
    """transitions per gradient step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target networks, applied every step"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise, in normalized action units"""
    noise: str = "gaussian"
    """exploration noise: gaussian (TD3 paper) or ou (Ornstein-Uhlenbeck, Lillicrap et al. 2016)"""
    ou_theta: float = 0.15
    """mean-reversion rate of the OU noise (Lillicrap et al. 2016)"""
    ou_sigma: float = 0.2
    """scale of the OU noise, in normalized action units (Lillicrap et al. 2016)"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic"""
    hdim: int = 256
    """hidden width of the actor and the critic"""


class Actor(nn.Module):
    """s -> 256 -> ReLU -> 256 -> ReLU -> tanh: an action normalized to [-1, 1]."""

    def __init__(self, state_dim, action_dim, hdim=256):
        super().__init__()
        self.l1 = nn.Linear(state_dim, hdim)
        self.l2 = nn.Linear(hdim, hdim)
        self.l3 = nn.Linear(hdim, action_dim)

    def forward(self, state):
        a = F.relu(self.l1(state))
        a = F.relu(self.l2(a))
        return torch.tanh(self.l3(a))


class Critic(nn.Module):
    """One Q network: cat(s, a) -> 256 -> ReLU -> 256 -> ReLU -> 1."""

    def __init__(self, state_dim, action_dim, hdim=256):
        super().__init__()
        self.l1 = nn.Linear(state_dim + action_dim, hdim)
        self.l2 = nn.Linear(hdim, hdim)
        self.l3 = nn.Linear(hdim, 1)

    def forward(self, state, action):
        q = F.relu(self.l1(torch.cat([state, action], 1)))
        q = F.relu(self.l2(q))
        return self.l3(q)


class OUNoise:
    """Ornstein-Uhlenbeck exploration (Lillicrap et al. 2016, section 7: theta 0.15, sigma 0.2), mean 0:
    x <- x + theta * (0 - x) * dt + sigma * sqrt(dt) * N(0, I), from x = 0 at each episode start.

    With dt = 1 this is an AR(1) process with coefficient 1 - theta, whose stationary variance per
    dimension is sigma^2 / (1 - (1 - theta)^2) (the continuous-time process has sigma^2 / (2 theta))."""

    def __init__(self, action_dim, theta=0.15, sigma=0.2, dt=1.0):
        self.action_dim, self.theta, self.sigma, self.dt = action_dim, theta, sigma, dt
        self.reset()

    def reset(self):
        self.x = np.zeros(self.action_dim)

    def sample(self) -> np.ndarray:
        self.x = self.x - self.theta * self.x * self.dt + self.sigma * np.sqrt(self.dt) * np.random.normal(
            size=self.action_dim)
        return self.x


class Agent:
    def __init__(self, state_dim, action_dim, args: Args, device):
        self.args, self.device = args, device
        self.actor = Actor(state_dim, action_dim, args.hdim).to(device)
        self.actor_target = Actor(state_dim, action_dim, args.hdim).to(device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.actor_lr, fused=True)

        self.critic = Critic(state_dim, action_dim, args.hdim).to(device)
        self.critic_target = Critic(state_dim, action_dim, args.hdim).to(device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.critic_lr, fused=True)

        self.replay_buffer = LAPBuffer(state_dim, action_dim, device, args.buffer_size, prioritized=False)
        self.noise = OUNoise(action_dim, args.ou_theta, args.ou_sigma) if args.noise == "ou" else None
        self.training_steps = 0
        self.losses = {}  # device tensors, read only when logged

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one state, with Gaussian or OU exploration noise if asked."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.actor(state).cpu().numpy().flatten()
        if use_exploration:
            if self.noise is not None:
                action = action + self.noise.sample()
            else:
                action = action + np.random.normal(0, self.args.exploration_noise, size=action.shape)
        return action.clip(-1, 1)

    def reset_noise(self):
        """Called at each episode start: the OU process restarts from 0 (Gaussian noise has no state)."""
        if self.noise is not None:
            self.noise.reset()

    def train(self):
        self.training_steps += 1
        self.update(*self.replay_buffer.sample(self.args.batch_size))

    def update(self, state, action, next_state, reward, not_done):
        """One DDPG gradient step on a batch: critic, actor and targets."""
        args = self.args
        # Target: one critic at the target actor's action, no smoothing noise, no min.
        with torch.no_grad():
            Q_target = self.critic_target(next_state, self.actor_target(next_state))
            Q_target = reward + not_done * args.discount * Q_target

        # Critic.
        Q = self.critic(state, action)
        critic_loss = F.mse_loss(Q, Q_target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.losses["critic_loss"] = critic_loss.detach()

        # Actor and target updates at every step.
        self.critic.requires_grad_(False)  # the actor's gradient needs no critic weight gradients
        actor_loss = -self.critic(state, self.actor(state)).mean()
        self.critic.requires_grad_(True)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.losses["actor_loss"] = actor_loss.detach()

        with torch.no_grad():
            for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), args.tau)

    def state_dict(self):
        return {name: getattr(self, name).state_dict() for name in
                ("actor", "actor_target", "actor_optimizer", "critic", "critic_target", "critic_optimizer")} | {
                "training_steps": self.training_steps}

    def load_state_dict(self, state):
        for name, value in state.items():
            if isinstance(getattr(self, name), (nn.Module, torch.optim.Optimizer)):
                getattr(self, name).load_state_dict(value)
            elif isinstance(value, torch.Tensor):
                setattr(self, name, value.to(self.device))
            else:
                setattr(self, name, value)


# ---------------------------------------------------------------------------------------------
# Shared by every script, written the same way in each.


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


def check_args(args: Args):
    positive = ["total_timesteps", "eval_freq", "eval_episodes", "batch_size", "buffer_size", "hdim"]
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["start_timesteps", "torch_threads", "exploration_noise", "ou_theta", "ou_sigma",
                 "actor_lr", "critic_lr", "tau"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if not 0 <= args.discount <= 1:
        raise UsageError(f"--discount must be in [0, 1], got {args.discount}")
    if not 0 <= args.tau <= 1:
        raise UsageError(f"--tau must be in [0, 1], got {args.tau}")
    if args.noise not in ("gaussian", "ou"):
        raise UsageError(f"--noise must be gaussian or ou, got {args.noise!r}")


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


def make_env(env_id: str, seed: int) -> gym.Env:
    """A seeded environment with a bounded Box action space, or a UsageError."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as e:
        raise UsageError(f"cannot make environment {env_id!r}: {e}")
    except ImportError as e:
        raise UsageError(f"environment {env_id!r} needs a missing package: {e}")
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


def evaluate(agent, env: gym.Env, episodes: int) -> np.ndarray:
    """Returns of `episodes` deterministic episodes (no exploration noise)."""
    scale, bias = action_scale_bias(env.action_space)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        state, _ = env.reset()
        done = False
        while not done:
            action = agent.select_action(state, use_exploration=False)
            state, reward, terminated, truncated, _ = env.step(action * scale + bias)
            returns[episode] += reward
            done = terminated or truncated
    return returns


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
    """The run folder: config.json, evaluations.csv (rewritten atomically) and TensorBoard scalars."""

    def __init__(self, args: Args, device: torch.device):
        from torch.utils.tensorboard import SummaryWriter

        self.path = os.path.join(args.run_dir, f"{args.env}__{ALGO}__{args.seed}__{int(time.time())}")
        os.makedirs(self.path, exist_ok=True)
        config = asdict(args) | versions() | {"algo": ALGO, "device": str(device),
                                               "torch_threads": torch.get_num_threads()}
        atomic_write(os.path.join(self.path, "config.json"), json.dumps(config, indent=2) + "\n")
        self.writer = SummaryWriter(self.path)
        self.rows = []

    def scalar(self, name: str, value, step: int):
        self.writer.add_scalar(name, float(value), step)

    def evaluation(self, step: int, wall_seconds: float, returns: np.ndarray):
        self.rows.append([step, f"{wall_seconds:.1f}", f"{returns.mean():.3f}", f"{returns.std():.3f}",
                          " ".join(f"{r:.3f}" for r in returns)])
        lines = [",".join(["step", "wall_seconds", "mean_return", "std_return", "returns"])]
        lines += [",".join(map(str, row)) for row in self.rows]
        atomic_write(os.path.join(self.path, "evaluations.csv"), "\n".join(lines) + "\n")
        self.scalar("eval/mean_return", returns.mean(), step)
        self.writer.flush()

    def close(self):
        self.writer.close()


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


def format_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def seed_everything(seed: int):
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
    device = resolve_device(args.device)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    if args.eval_only:
        return run_eval_only(args, device)

    env = make_env(args.env, args.seed)
    eval_env = make_env(args.env, args.seed + 100)
    agent = make_agent(env, args, device)
    scale, bias = action_scale_bias(env.action_space)
    logger = RunLogger(args, device)
    model_path = os.path.join(logger.path, "model.pt")
    print(f"{ALGO} on {args.env}, seed {args.seed}, device {device}: {logger.path}")

    start_time = time.time()
    train_start, train_start_step = None, 0

    def evaluate_and_log(step: int):
        returns = evaluate(agent, eval_env, args.eval_episodes)
        logger.evaluation(step, time.time() - start_time, returns)
        sps = (agent.training_steps / (time.time() - train_start)) if train_start and agent.training_steps else 0.0
        left = format_time((args.total_timesteps - step) / (step - train_start_step) * (time.time() - train_start)
                           ) if train_start and step > train_start_step else "-"
        print(f"step {step:>8d} | eval return {returns.mean():9.1f} +- {returns.std():7.1f} | "
              f"{sps:6.1f} train steps/s | {left} left", flush=True)
        if args.save_model:
            save_model(agent, args, model_path, step)

    state, _ = env.reset(seed=args.seed)
    episode_return, episode_steps, episode_num, t = 0.0, 0, 0, 0
    try:
        evaluate_and_log(0)
        for t in range(args.total_timesteps):
            # Act: uniform random at first, then the policy with Gaussian (or OU) noise.
            if t < args.start_timesteps:
                action = (env.action_space.sample() - bias) / scale
            else:
                action = agent.select_action(state, use_exploration=True)

            # Step and store; only a termination ends bootstrapping, a time limit does not.
            next_state, reward, terminated, truncated, _ = env.step(action * scale + bias)
            agent.replay_buffer.add(state, action, next_state, reward, terminated)
            state = next_state
            episode_return += reward
            episode_steps += 1

            # Train: one gradient step per environment step after the random phase.
            if t >= args.start_timesteps:
                if train_start is None:
                    train_start, train_start_step = time.time(), t
                agent.train()

            if terminated or truncated:
                logger.scalar("train/episode_return", episode_return, t + 1)
                logger.scalar("train/episode_length", episode_steps, t + 1)
                for name, value in agent.losses.items():
                    logger.scalar(f"losses/{name}", value, t + 1)
                if train_start is not None:
                    logger.scalar("train/SPS", agent.training_steps / (time.time() - train_start), t + 1)
                state, _ = env.reset()
                agent.reset_noise()
                episode_return, episode_steps, episode_num = 0.0, 0, episode_num + 1

            if (t + 1) % args.eval_freq == 0:
                evaluate_and_log(t + 1)
    except KeyboardInterrupt:
        if args.save_model:
            save_model(agent, args, model_path, t)
        logger.close()
        print(f"interrupted at step {t}; evaluations so far are in {logger.path}", file=sys.stderr)
        sys.exit(130)
    if args.save_model:
        save_model(agent, args, model_path, args.total_timesteps)
    logger.close()
    return logger.path


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as e:
        print(f"{ALGO}.py: error: {e}", file=sys.stderr)
        sys.exit(2)
