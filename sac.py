"""SAC: Soft Actor-Critic with automatic entropy tuning.

Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel, Levine, "Soft Actor-Critic
Algorithms and Applications", arXiv:1812.05905, 2018, with the defaults of its code (softlearning,
github.com/rail-berkeley/softlearning) and Table 1 of the paper: twin Q 256-256, tanh-squashed Gaussian
actor, Adam 3e-4 for the critics, the actor and the temperature, batch 256, Polyak targets every step,
10k uniform-random steps. `--fixed-alpha` keeps the temperature at `--alpha` instead of learning it.

    python sac.py --env HalfCheetah-v4 --seed 0
"""

import math

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

ALGO = "sac"

# Bounds of the actor's log std, as in the paper's code (softlearning's Gaussian policy, and the
# original github.com/haarnoja/sac); CleanRL squashes into [-5, 2] instead.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclass
class Args:
    env: str = "HalfCheetah-v4"
    """gymnasium environment id (any Box action space)"""
    seed: int = 0
    """seed of python, numpy, torch, the environments and their action spaces"""
    total_timesteps: int = 1_000_000
    """environment steps"""
    start_timesteps: int = 10_000
    """uniform-random steps before learning starts (10k: softlearning's 10 episodes of 1000 steps)"""
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

    # SAC (Table 1 of the paper and softlearning's defaults)
    batch_size: int = 256
    """transitions per gradient step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target critics, applied every step"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha (the temperature)"""
    hdim: int = 256
    """hidden width of the actor and the critics"""

    # Ablation
    fixed_alpha: bool = False
    """keep the temperature fixed at --alpha instead of learning it (the learned one starts at 1)"""
    alpha: float = 0.2
    """the temperature used with --fixed-alpha (0.2: CleanRL's and Spinning Up's value)"""


class Actor(nn.Module):
    """s -> 256 -> ReLU -> 256 -> ReLU -> (mean, log std) of a Gaussian whose samples tanh squashes into [-1, 1]."""

    def __init__(self, state_dim, action_dim, hdim=256):
        super().__init__()
        self.l1 = nn.Linear(state_dim, hdim)
        self.l2 = nn.Linear(hdim, hdim)
        self.mean = nn.Linear(hdim, action_dim)
        self.log_std = nn.Linear(hdim, action_dim)

    def forward(self, state):
        a = F.relu(self.l1(state))
        a = F.relu(self.l2(a))
        return self.mean(a), self.log_std(a).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, state):
        """A reparameterized squashed sample a = tanh(mean + std * eps) (eq. 8) and its log-probability (B, 1).

        Change of variables (the paper's appendix "Enforcing Action Bounds"):
        log pi(a|s) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2), where
        log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) stays finite when tanh(u) rounds to +-1."""
        mean, log_std = self(state)
        eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        log_prob = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)  # log N(u; mean, std)
        log_prob = log_prob - 2 * (math.log(2) - u - F.softplus(-2 * u))
        return torch.tanh(u), log_prob.sum(1, keepdim=True)


class Critic(nn.Module):
    """Twin Q networks: cat(s, a) -> 256 -> ReLU -> 256 -> ReLU -> 1, twice."""

    def __init__(self, state_dim, action_dim, hdim=256):
        super().__init__()
        self.q1_l1 = nn.Linear(state_dim + action_dim, hdim)
        self.q1_l2 = nn.Linear(hdim, hdim)
        self.q1_l3 = nn.Linear(hdim, 1)
        self.q2_l1 = nn.Linear(state_dim + action_dim, hdim)
        self.q2_l2 = nn.Linear(hdim, hdim)
        self.q2_l3 = nn.Linear(hdim, 1)

    def forward(self, state, action):
        sa = torch.cat([state, action], 1)
        q1 = F.relu(self.q1_l1(sa))
        q1 = F.relu(self.q1_l2(q1))
        q1 = self.q1_l3(q1)
        q2 = F.relu(self.q2_l1(sa))
        q2 = F.relu(self.q2_l2(q2))
        q2 = self.q2_l3(q2)
        return torch.cat([q1, q2], 1)


class Agent:
    def __init__(self, state_dim, action_dim, args: Args, device):
        self.args, self.device = args, device
        self.actor = Actor(state_dim, action_dim, args.hdim).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.actor_lr, fused=True)

        self.critic = Critic(state_dim, action_dim, args.hdim).to(device)
        self.critic_target = Critic(state_dim, action_dim, args.hdim).to(device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.critic_lr, fused=True)

        # Temperature, learned in log space from log alpha = 0 as in softlearning, toward the target
        # entropy -|A| (section 5 of the paper); a plain tensor on the device, never a Python float.
        self.target_entropy = -float(action_dim)
        if args.fixed_alpha:
            self.log_alpha = torch.tensor(math.log(args.alpha) if args.alpha > 0 else -math.inf, device=device)
        else:
            self.log_alpha = torch.zeros((), device=device, requires_grad=True)
            self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=args.alpha_lr, fused=True)

        self.replay_buffer = LAPBuffer(state_dim, action_dim, device, args.buffer_size, prioritized=False)
        self.training_steps = 0
        self.losses = {}  # device tensors, read only when logged

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one state: a sample of the policy if exploring, else tanh(mean)."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.actor.sample(state)[0] if use_exploration else torch.tanh(self.actor(state)[0])
        return action.cpu().numpy().flatten()

    def train(self):
        self.training_steps += 1
        self.update(*self.replay_buffer.sample(self.args.batch_size))

    def update(self, state, action, next_state, reward, not_done):
        """One SAC gradient step on a batch: critics, actor, temperature, then the target critics."""
        args = self.args
        alpha = self.log_alpha.exp().detach()
        # Soft Q target (eqs. 2, 3, 5): r + gamma * not_done * (min_j Q'_j(s', a') - alpha log pi(a'|s')),
        # a' ~ pi(.|s'), with the minimum of the twin target critics as in the paper's code.
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_state)
            Q_target = self.critic_target(next_state, next_action).min(1, keepdim=True)[0]
            Q_target = reward + not_done * args.discount * (Q_target - alpha * next_log_prob)

        # Critics (eq. 5): both heads regress on the same target.
        Q = self.critic(state, action)
        critic_loss = 0.5 * (Q - Q_target).pow(2).mean(0).sum()  # (MSE(Q1, y) + MSE(Q2, y)) / 2
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.losses["critic_loss"] = critic_loss.detach()

        # Actor (eqs. 7, 9): E[alpha log pi(a|s) - min_j Q_j(s, a)], a reparameterized.
        pi_action, log_prob = self.actor.sample(state)
        self.critic.requires_grad_(False)  # the actor's gradient needs no critic weight gradients
        actor_loss = (alpha * log_prob - self.critic(state, pi_action).min(1, keepdim=True)[0]).mean()
        self.critic.requires_grad_(True)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.losses["actor_loss"] = actor_loss.detach()

        # Temperature (eq. 18): J(alpha) = E[-alpha (log pi(a|s) + target entropy)], written with log alpha
        # in place of alpha as in softlearning (same sign of gradient): alpha rises when the entropy
        # -log pi is below the target and falls when it is above.
        if not args.fixed_alpha:
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            self.losses["alpha_loss"] = alpha_loss.detach()
        self.losses["alpha"] = alpha
        self.losses["entropy"] = -log_prob.detach().mean()

        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), args.tau)

    def state_dict(self):
        names = ("actor", "actor_optimizer", "critic", "critic_target", "critic_optimizer") + (
            () if self.args.fixed_alpha else ("alpha_optimizer",))
        return {name: getattr(self, name).state_dict() for name in names} | {
                "log_alpha": self.log_alpha.detach().clone(), "training_steps": self.training_steps}

    def load_state_dict(self, state):
        for name, value in state.items():
            if isinstance(getattr(self, name), (nn.Module, torch.optim.Optimizer)):
                getattr(self, name).load_state_dict(value)
            elif isinstance(value, torch.Tensor):
                with torch.no_grad():  # in place: log_alpha stays the tensor its optimizer updates
                    getattr(self, name).copy_(value)
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
    for name in ["start_timesteps", "torch_threads", "actor_lr", "critic_lr", "alpha_lr", "tau", "alpha"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if not 0 <= args.discount <= 1:
        raise UsageError(f"--discount must be in [0, 1], got {args.discount}")
    if not 0 <= args.tau <= 1:
        raise UsageError(f"--tau must be in [0, 1], got {args.tau}")


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
            # Act: uniform random at first, then a sample of the policy.
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
