"""TD3: Twin Delayed Deep Deterministic policy gradient.

Fujimoto, van Hoof, Meger, "Addressing Function Approximation Error in Actor-Critic Methods", ICML 2018,
with the defaults of the official repository today (github.com/sfujim/TD3): 256-256 networks,
Adam 3e-4, batch 256, 25k random steps. `--lap` turns it into LAP-TD3 (Fujimoto, Meger, Precup 2020).

    python td3.py --env HalfCheetah-v4 --seed 0

Read down to the marker line: Args, the networks, the Agent (one gradient step in the paper's order) and
main(), the training loop. Below the marker is the run harness, the same in every script.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lap_buffer import LAPBuffer

ALGO = "td3"


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
    """evaluate every this many environment steps (and at step 0 and at the end)"""
    eval_episodes: int = 10
    """deterministic episodes per evaluation, on an environment seeded seed + 100"""

    # TD3 (official code's defaults)
    batch_size: int = 256
    """transitions per gradient step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target networks, applied on delayed steps"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise, in normalized action units"""
    target_policy_noise: float = 0.2
    """std of the target policy smoothing noise, in normalized action units"""
    noise_clip: float = 0.5
    """target policy noise is clipped to +-noise_clip"""
    policy_freq: int = 2
    """actor and target updates every policy_freq critic updates"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    hdim: int = 256
    """hidden width of the actor and the critics"""

    # LAP-TD3
    lap: bool = False
    """sample with LAP and train with its Huber loss (LAP-TD3)"""
    alpha: float = 0.4
    """LAP priority exponent"""
    min_priority: float = 1.0
    """LAP priorities are clamped below at this TD error; it is also the Huber threshold"""

    compile: bool = False
    """torch.compile the update and the acting policy: the same math, faster where launch-bound (see README)"""
    cudagraphs: bool = False
    """on a GPU, --compile with each compiled graph replayed as a CUDA graph (torch.compile's reduce-overhead)"""
    run: "RunFlags" = field(default_factory=lambda: RunFlags())
    """how the run is kept: device, run folder, logs, resume (the harness's flags)"""


def check_args(args: Args):
    require(args, positive=("batch_size", "buffer_size", "policy_freq", "hdim"),
            nonnegative=("start_timesteps", "exploration_noise", "target_policy_noise", "noise_clip", "actor_lr",
                         "critic_lr", "alpha", "min_priority"), unit=("discount", "tau"))
    if args.start_timesteps < args.batch_size:
        raise UsageError(f"--start-timesteps ({args.start_timesteps}) must be at least --batch-size ({args.batch_size})")
    if args.buffer_size < args.batch_size:
        raise UsageError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")


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
    """Twin Q networks, cat(s, a) -> 256 -> ReLU -> 256 -> ReLU -> 1 each, evaluated together."""

    def __init__(self, state_dim, action_dim, hdim=256):
        super().__init__()
        self.l1 = TwinLinear(state_dim + action_dim, hdim)
        self.l2 = TwinLinear(hdim, hdim)
        self.l3 = TwinLinear(hdim, 1)

    def forward(self, state, action):
        sa = torch.cat([state, action], 1).expand(2, -1, -1)  # both twins see the same input
        q = F.relu(self.l1(sa))
        q = F.relu(self.l2(q))
        return self.l3(q).squeeze(2).t()  # (B, 2): Q1, Q2

    def Q1(self, state, action):
        """Q1 alone, on the first twin's weights (the actor's objective, as the official Critic.Q1)."""
        q = F.relu(torch.addmm(self.l1.bias[0], torch.cat([state, action], 1), self.l1.weight[0]))
        q = F.relu(torch.addmm(self.l2.bias[0], q, self.l2.weight[0]))
        return torch.addmm(self.l3.bias[0], q, self.l3.weight[0])


def LAP_huber(x, min_priority=1.0):
    """LAP's Huber loss on |TD errors| x of shape (B, 2): summed over the twins, averaged over the batch."""
    return torch.where(x < min_priority, 0.5 * x.pow(2), min_priority * x).sum(1).mean()


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

        self.replay_buffer = LAPBuffer(state_dim, action_dim, device, args.buffer_size, prioritized=args.lap)
        self.training_steps = 0
        self.losses = {}  # device tensors, read only when logged
        # What model.pt and the resumable state hold.
        self.saved = ("actor", "actor_target", "actor_optimizer", "critic", "critic_target", "critic_optimizer",
                      "training_steps")

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one state, with Gaussian exploration noise if asked."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.policy(state).cpu().numpy().flatten()
        if use_exploration:
            action = action + np.random.normal(0, self.args.exploration_noise, size=action.shape)
        return action.clip(-1, 1)

    def eval_action(self, state: np.ndarray) -> np.ndarray:
        """The action evaluation takes: the deterministic policy."""
        return self.select_action(state, use_exploration=False)

    def policy(self, state):
        """The deterministic action for a batch of states (a method of its own for --compile)."""
        return self.actor(state)

    def train(self):
        self.training_steps += 1
        batch = self.replay_buffer.sample(self.args.batch_size)
        priority = self.update(*batch)
        if self.args.lap:
            self.replay_buffer.update_priority(priority)

    def update(self, state, action, next_state, reward, not_done):
        """One TD3 gradient step on a batch; returns the LAP priorities of the batch."""
        args = self.args
        # Target: clipped double Q with target policy smoothing.
        with torch.no_grad():
            noise = (torch.randn_like(action) * args.target_policy_noise).clamp(-args.noise_clip, args.noise_clip)
            next_action = (self.actor_target(next_state) + noise).clamp(-1, 1)
            Q_target = self.critic_target(next_state, next_action).min(1, keepdim=True)[0]
            Q_target = reward + not_done * args.discount * Q_target

        # Critic: both heads regress on the same target.
        Q = self.critic(state, action)
        td_loss = (Q - Q_target).abs()
        if args.lap:
            critic_loss = LAP_huber(td_loss, args.min_priority)
        else:
            critic_loss = td_loss.pow(2).mean(0).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.losses["critic_loss"] = critic_loss.detach()

        # Delayed actor and target updates.
        if self.training_steps % args.policy_freq == 0:
            self.critic.requires_grad_(False)  # the actor's gradient needs no critic weight gradients
            actor_loss = -self.critic.Q1(state, self.actor(state)).mean()
            self.critic.requires_grad_(True)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            self.losses["actor_loss"] = actor_loss.detach()

            with torch.no_grad():
                for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                    torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), args.tau)

        return td_loss.detach().max(1)[0].clamp(min=args.min_priority).pow(args.alpha)


def main(run: "Run"):
    """The official main.py: uniform-random actions for start_timesteps steps, then the policy with exploration
    noise and one gradient step per environment step. The harness made run.env (actions in [-1, 1]), run.agent
    and run.loop (t and the current state, restored on --resume); between steps it evaluates and stops."""
    args, env, agent, loop = run.args, run.env, run.agent, run.loop
    for t in run.steps(args.total_timesteps):
        # Act: uniform random at first, then the policy with Gaussian noise.
        if t < args.start_timesteps:
            action = env.action_space.sample()
        else:
            action = agent.select_action(loop.state, use_exploration=True)

        # Step and store; only a termination ends bootstrapping, a time limit does not.
        next_state, reward, terminated, truncated, info = env.step(action)
        agent.replay_buffer.add(loop.state, action, next_state, reward, terminated)
        loop.state = next_state

        # Train: one gradient step per environment step after the random phase.
        if t >= args.start_timesteps:
            agent.train()

        if terminated or truncated:
            run.log_episode(info["episode"], t + 1)
            loop.state, _ = env.reset()


# ---- run harness: the same in every script below this line ----
# Everything a run needs besides the algorithm: argument checks, the device, environments, evaluation, the run
# folder and its logs, video, the progress line, stop requests, model files, exact resume and the compile wrapper.
# launch() checks the arguments and hands main() a Run. Repeated in every script so that each file, with
# lap_buffer.py, can be copied and run on its own: change it in td3.py, then run tools/sync_harness.py.

import contextlib
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from types import SimpleNamespace
from typing import Annotated, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from gymnasium.wrappers import RecordEpisodeStatistics
from tqdm import tqdm

from lap_buffer import DatasetError, check_dataset, load_dataset, normalized_score, reference_returns


@dataclass
class RunFlags:
    device: str = "auto"
    """auto (cuda when available), cpu, cuda or cuda:N"""
    torch_threads: int = 0
    """CPU threads for torch (0 = torch's default)"""
    run_dir: str = "runs"
    """where the run folder goes"""
    save_model: bool = False
    """write model.pt (the agent's networks and optimizers) at each evaluation and at the end"""
    eval_only: Annotated[Optional[str], tyro.conf.arg(metavar="PATH", help_behavior_hint="")] = None
    """evaluate a saved model.pt (or the run folder holding it) and exit"""
    resume: Annotated[Optional[str], tyro.conf.arg(metavar="RUN_DIR", help_behavior_hint="")] = None
    """continue the stopped (or killed) run in this run folder exactly, from its last resumable state"""
    snapshot_every: float = 10.0
    """write the resumable state every this many minutes, so that a kill -9 loses at most that (0: only on a stop)"""
    capture_video: bool = False
    """record one evaluation episode to an mp4 in the run folder every video_every evaluations and at the end"""
    video_every: int = 10
    """evaluations between videos"""
    track: bool = False
    """mirror the TensorBoard scalars to Weights & Biases (needs wandb; WANDB_MODE=offline works offline)"""
    wandb_project: str = "continuous-control-rl"
    """Weights & Biases project of --track"""
    progress: bool = True
    """a live progress line on a terminal (never in a log file)"""


class UsageError(Exception):
    """Bad input: one line on stderr and exit status 2, never a traceback."""


class Stop(Exception):
    """A stop request honoured: the resumable state is written and the run exits with status 130."""


def require(args, positive=(), nonnegative=(), unit=()):
    """A UsageError unless each named field of args is > 0 (positive), >= 0 (nonnegative) or in [0, 1] (unit)."""
    for names, ok, must in ((positive, lambda v: v > 0, "be positive"), (nonnegative, lambda v: v >= 0,
                            "not be negative"), (unit, lambda v: 0 <= v <= 1, "be in [0, 1]")):
        for name in names:
            if not ok(getattr(args, name)):
                raise UsageError(f"--{name.replace('_', '-')} must {must}, got {getattr(args, name)}")


def check(args):
    """The checks every script shares, then the script's own (check_args)."""
    for flags in (args, args.run):
        for name, value in vars(flags).items():
            if isinstance(value, float) and not np.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    require(args, positive=("total_timesteps", "eval_freq", "eval_episodes"))
    require(args.run, positive=("video_every",), nonnegative=("torch_threads", "snapshot_every"))
    for name in ("eval_only", "resume", "run_dir"):  # "$MODEL" with MODEL unset must not start a new run
        if getattr(args.run, name) == "":
            raise UsageError(f"--{name.replace('_', '-')} was given an empty path")
    if not 0 <= args.seed < 2 ** 32 - 200:  # numpy's seeds; the evaluation and video environments add 100 and 200
        raise UsageError(f"--seed must be in [0, {2 ** 32 - 201}], got {args.seed}")
    check_args(args)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for, but torch sees no CUDA device: use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:N-1")
    return device


def parse_env_kwargs(text: str) -> dict:
    """--env-kwargs (a JSON object, or empty) as a dict."""
    try:
        kwargs = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise UsageError(f"--env-kwargs must be a JSON object such as '{{\"use_contact_forces\": true}}': {e}")
    if not isinstance(kwargs, dict):
        raise UsageError(f"--env-kwargs must be a JSON object, got {text!r}")
    return kwargs


class NormalizedActions(gym.ActionWrapper):
    """The agent acts in [-1, 1]; the environment gets action * scale + bias, in [low, high] (asymmetric bounds and
    Humanoid's +-0.4 too). Our own: gymnasium's RescaleAction keeps a closure, which --resume cannot pickle."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        self.scale, self.bias = (high - low) / 2.0, (high + low) / 2.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, low.shape, np.float32)

    def action(self, action):
        return action * self.scale + self.bias


def mujoco_warning(text: str):
    """MuJoCo's warnings, as one line on stderr instead of MUJOCO_LOG.TXT in the working directory. One is dropped:
    MuJoCo 3 deprecates the settotalmass of gymnasium's HalfCheetah, Ant and Humanoid models, not ours to change."""
    if "settotalmass" not in text:
        print(f"MuJoCo warning: {text}", file=sys.stderr)


def route_mujoco_warnings():
    """MuJoCo's warnings through mujoco_warning from now on: before an environment is made, and before a resumable
    state is read (unpickling its environments compiles their MuJoCo models again)."""
    import mujoco

    mujoco.set_mju_user_warning(mujoco_warning)


def make_env(args, seed: int, **kwargs) -> gym.Env:
    """args.env from gym.make (with --env-kwargs and kwargs), checked, its actions normalized to [-1, 1], the
    return and length of each episode in info["episode"] at its end, and seeded; or a UsageError."""
    env_id, kwargs = args.env, parse_env_kwargs(getattr(args, "env_kwargs", "")) | kwargs
    route_mujoco_warnings()
    namespace, name, version = gym.envs.registration.parse_env_id(env_id)
    versions = sorted(spec.id for spec in gym.registry.values() if (spec.namespace, spec.name) == (namespace, name))
    if env_id not in gym.registry and version is None and versions:  # gymnasium would warn and pick the newest
        raise UsageError(f"--env {env_id} names no version: pass one of {', '.join(versions)}")
    try:
        with warnings.catch_warnings():  # v4 is the papers' version on purpose: no "out of date" warning
            warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
            env = gym.make(env_id, **kwargs)
            env.reset(seed=seed)  # a bad keyword value may only show here
    except gym.error.Error as e:
        raise UsageError(f"cannot make environment {env_id!r}: {e}")
    except ImportError as e:
        raise UsageError(f"environment {env_id!r} needs a missing package: {e}")
    except Exception as e:  # whatever the environment raises for keyword arguments it cannot take
        raise UsageError(f"environment {env_id!r} fails with the keyword arguments {kwargs}: {type(e).__name__}: {e}")
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise UsageError(f"{env_id} has a {type(space).__name__} action space; {ALGO}.py needs continuous (Box) actions")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UsageError(f"{env_id} has an unbounded action space; {ALGO}.py needs finite action bounds")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        raise UsageError(f"{env_id} must have a flat Box observation space, got {env.observation_space}")
    env = RecordEpisodeStatistics(NormalizedActions(env))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def make_vector_env(envs: list) -> gym.vector.SyncVectorEnv:
    """make_env's environments stepped together (PPO). SAME_STEP autoreset: an episode's last step returns the next
    episode's first observation, the true final one in infos["final_obs"] (the default, NEXT_STEP, would spend a
    step on the reset). Such a vector keeps no state of its own, so a resumed run's environments are wrapped again."""
    return gym.vector.SyncVectorEnv([lambda env=env: env for env in envs],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def evaluate(agent, env: gym.Env, episodes: int, frames: Optional[list] = None, stop=None,
             progress=None) -> Optional[np.ndarray]:
    """Returns of `episodes` episodes acted by agent.eval_action; the first one's rendered frames go to `frames`.
    None if stop() turns true before an episode: the evaluation is cut short. Each episode is shown on `progress`."""
    returns = np.zeros(episodes)
    for episode in range(episodes):
        if stop is not None and stop():
            return None
        if progress is not None:
            progress.show("evaluation episode", episode + 1, episodes)
        state, _ = env.reset()
        done = False
        while not done:
            if frames is not None and episode == 0:
                frames.append(env.render())
            state, reward, terminated, truncated, _ = env.step(agent.eval_action(state))
            returns[episode] += reward
            done = terminated or truncated
    return returns


class VideoRecorder:
    """--capture-video: one evaluation episode to <run>/videos/step_<step>.mp4 (imageio + imageio-ffmpeg).
    MuJoCo renders headless through EGL unless MUJOCO_GL says otherwise."""

    def __init__(self, args, run_path: str):
        os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 (the mp4 writer imageio uses)
        except ImportError:
            raise UsageError("--capture-video needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg")
        self.imageio, self.path = imageio, os.path.join(run_path, "videos")
        self.env = make_env(args, args.seed + 200, render_mode="rgb_array")
        try:
            self.env.render()
        except Exception as e:
            raise UsageError(f"cannot render {args.env} for --capture-video ({type(e).__name__}: {e}); "
                             f"headless MuJoCo needs MUJOCO_GL=egl (libEGL) or MUJOCO_GL=osmesa (libOSMesa)")
        os.makedirs(self.path, exist_ok=True)

    def record(self, agent, step: int):
        frames = []
        evaluate(agent, self.env, 1, frames)
        path = os.path.join(self.path, f"step_{step}.mp4")
        self.imageio.mimwrite(path + ".tmp.mp4", frames, fps=self.env.metadata.get("render_fps") or 30,
                              macro_block_size=1)
        os.replace(path + ".tmp.mp4", path)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb"):
    """A file that a kill leaves whole or as it was: written to path.tmp, synced to disk, then renamed to path."""
    with open(path + ".tmp", mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def versions() -> dict:
    import mujoco  # noqa: F401 (imported by gymnasium's MuJoCo environments anyway)

    try:
        here = os.path.dirname(os.path.abspath(__file__))
        git = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, cwd=here,
                             timeout=5)
        commit = git.stdout.strip() if git.returncode == 0 else None
        # Whether tracked files differ from that commit: then the commit alone does not say what ran.
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, cwd=here, timeout=5)
        dirty = bool(status.stdout.strip()) if commit and status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = dirty = None
    return {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
            "mujoco": mujoco.__version__, "numpy": np.__version__, "git_commit": commit, "git_dirty": dirty}


class RunLogger:
    """The run folder: config.json, evaluations.csv (rewritten atomically; offline runs add normalized_score),
    TensorBoard scalars and, with --track, their Weights & Biases mirror. A resumed run goes on in its folder."""

    def __init__(self, args, device: torch.device, ref_returns=None, extra=None, resumed_at=None):
        flags = args.run
        self.path = flags.resume or os.path.join(flags.run_dir, f"{args.env}__{ALGO}__{args.seed}__{int(time.time())}")
        self.ref_returns = ref_returns  # (random, expert) returns of the normalized score, or None
        self.header = ["step", "wall_seconds", "mean_return", "std_return", "returns"] + (
            ["normalized_score"] if ref_returns else [])
        self.rows = []
        try:
            os.makedirs(self.path, exist_ok=True)
            if flags.resume is None:
                config = asdict(args) | versions() | {"algo": ALGO, "device": str(device),
                                                       "torch_threads": torch.get_num_threads()} | (extra or {})
                with atomic_file(os.path.join(self.path, "config.json"), "w") as f:
                    f.write(json.dumps(config, indent=2) + "\n")
            elif not os.access(self.path, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            raise UsageError(f"cannot write the run folder {self.path}: {e.strerror or e}")
        if flags.resume is not None and os.path.exists(os.path.join(self.path, "evaluations.csv")):
            with open(os.path.join(self.path, "evaluations.csv")) as f:
                self.rows = [line.rstrip("\n").split(",") for line in f.readlines()[1:]]
        if flags.track:
            try:
                import wandb
            except ImportError:
                raise UsageError("--track needs wandb: pip install wandb (WANDB_MODE=offline works without a network)")
            wandb.init(project=flags.wandb_project, name=os.path.basename(self.path), config=asdict(args),
                       dir=self.path, sync_tensorboard=True, resume="allow", id=os.path.basename(self.path))
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run drops what a killed run logged after its resumable state (TensorBoard would show both).
        self.writer = SummaryWriter(self.path, purge_step=None if resumed_at is None else resumed_at + 1)

    def scalar(self, name: str, value, step: int):
        self.writer.add_scalar(name, float(value), step)

    def evaluation(self, step: int, wall_seconds: float, returns: np.ndarray):
        self.scalar("eval/mean_return", returns.mean(), step)
        row = [step, f"{wall_seconds:.1f}", f"{returns.mean():.3f}", f"{returns.std():.3f}",
               " ".join(f"{r:.3f}" for r in returns)]
        if self.ref_returns:
            row.append(f"{normalized_score(returns.mean(), self.ref_returns):.3f}")
            self.scalar("eval/normalized_score", row[-1], step)
        self.rows.append(row)
        lines = [",".join(self.header)] + [",".join(map(str, row)) for row in self.rows]
        with atomic_file(os.path.join(self.path, "evaluations.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.writer.flush()

    def close(self):
        self.writer.close()
        if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
            sys.modules["wandb"].finish()


class Pace:
    """The time left at the speed the run trains, measured on `clock`. The steps before `start` (the off-policy
    scripts' uniform-random actions, many times faster than training) are not counted; a run that trains in batches
    of substeps (TD7's checkpoint batches, PPO's updates) is measured from the end of its first batch to the end of
    its latest, the same point of each cycle, so that a batch never reads as a stall or an acting phase as a sprint.
    Until `warmup` seconds are measured the time left is not known (None), never extrapolated from a faster phase."""

    def __init__(self, total: int, step: int, start: int = 0, warmup: float = 60.0, clock=time.monotonic):
        self.total, self.start, self.warmup, self.clock = total, start, warmup, clock
        self.origin = self.latest = None  # (step, time) where the measure starts, and (batches) its latest point
        self.batches = False
        self.step(step)

    def step(self, step: int):
        """The run has done `step` steps."""
        if self.origin is None and step >= self.start and not self.batches:
            self.origin = (step, self.clock())

    def batch_begins(self):
        """A batch of substeps begins: the run trains in batches, measured at their ends from now on."""
        if not self.batches:
            self.batches, self.origin = True, None

    def batch_done(self, step: int):
        """A batch of substeps ended, `step` steps into the run."""
        self.latest = (step, self.clock())
        if self.origin is None and step >= self.start:
            self.origin = self.latest

    def measure(self, step: int) -> Optional[tuple]:
        """(steps per second, seconds left) at `step`, or None while not measured for `warmup` seconds."""
        if self.origin is None or (self.batches and self.latest is None):
            return None
        now = self.clock()
        (step0, time0), (step1, time1) = self.origin, self.latest if self.batches else (step, now)
        if time1 - time0 < self.warmup or step1 <= step0:
            return None
        speed = (step1 - step0) / (time1 - time0)
        return speed, max(0.0, (self.total - step1) / speed - (now - time1))

    def left(self, step: int, speed: bool = False) -> str:
        """"1:02:03 left" (with the speed first if asked), or that the time left is not known yet."""
        if step >= self.total:
            return "0:00:00 left"
        measured = self.measure(step)
        if measured is None:
            return "time left not known yet"
        hours, seconds = divmod(round(measured[1]), 3600)
        left = f"{hours}:{seconds // 60:02d}:{seconds % 60:02d} left"
        return f"{measured[0]:.1f} steps/s, {left}" if speed else left


class ProgressBar(tqdm):
    """tqdm whose postfix is made when the line is drawn (tqdm's documented format_dict override), not at each step."""

    def __init__(self, postfix, **kwargs):
        self.make_postfix = postfix
        super().__init__(**kwargs)

    @property
    def format_dict(self):
        return super().format_dict | {"postfix": self.make_postfix(self.n)}


class Progress:
    """The live progress line, on a terminal only (not in CI or cluster logs, nor with --no-progress): steps, elapsed
    time, speed, the time left (Pace), the last evaluation's return, and the part of a long step under way (a TD7
    checkpoint batch's or PPO update's gradient steps, an evaluation's episodes), so a run never looks hung. Console
    lines go through write(), above it, never into it."""

    def __init__(self, total: int, initial: int, enabled: bool, pace: Optional[Pace] = None):
        self.total, self.pace = total, pace or Pace(total, initial)
        self.last_return, self.part, self.next_draw = None, (), 0.0
        self.bar = ProgressBar(self.postfix, total=total, initial=initial, unit="step", dynamic_ncols=True,
                               leave=False, mininterval=0.5, disable=not (enabled and sys.stderr.isatty()),
                               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def postfix(self, step: int) -> str:
        text = self.pace.left(step, speed=True)
        if self.last_return is not None:
            text += f", eval {self.last_return:.1f}"
        if self.part:
            text += ", {} {}/{}".format(*self.part)
        return text

    def update(self, step: int):
        self.pace.step(step)
        self.bar.update(step - self.bar.n)  # drawn by tqdm at most every mininterval

    def show(self, *part):
        """The part of a long step under way, e.g. ("gradient step", 412, 1000); nothing: none. Drawn every 0.5 s."""
        self.part = part
        if not self.bar.disable and time.monotonic() >= self.next_draw:
            self.next_draw = time.monotonic() + 0.5
            self.bar.refresh()

    def write(self, line: str, last_return: float):
        self.bar.write(line, file=sys.stdout)
        sys.stdout.flush()
        self.last_return = last_return


class StopRequests:
    """SIGINT and SIGTERM ask the run to stop at its next safe point, within one gradient step (or evaluation
    episode), where it writes its resumable state; the first says so at once. A second Ctrl-C stops at once, without writing one (the last
    snapshot and the evaluations are on disk)."""

    def __init__(self):
        self.requested = False
        self.previous = {signum: signal.signal(signum, self.handle) for signum in (signal.SIGINT, signal.SIGTERM)}

    def during_evaluation(self) -> bool:
        """Checked before each evaluation episode: a stop cuts an evaluation short, and it is redone on resume."""
        return self.requested

    def handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            self.say("\nstopped at once: no resumable state written\n")
            raise SystemExit(130)
        if not self.requested:
            self.say(f"\n{signal.Signals(signum).name}: stopping after the current gradient step (or evaluation "
                     f"episode), then saving (Ctrl-C again: stop at once without saving)\n")
        self.requested = True

    @staticmethod
    def say(text: str):
        try:  # straight to the file descriptor: the signal may come in the middle of a print
            os.write(2, text.encode())
        except OSError:
            pass

    def close(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def agent_state(agent) -> dict:
    """What Agent.saved names: state dicts (networks, optimizers), copies of tensors, plain values."""
    return {name: value.state_dict() if hasattr(value, "state_dict") else
            value.detach().clone() if isinstance(value, torch.Tensor) else value
            for name, value in ((name, getattr(agent, name)) for name in agent.saved)}


def load_agent_state(agent, state: dict):
    """The inverse of agent_state; tensors are copied in place (optimizers and CUDA graphs hold them)."""
    for name, value in state.items():
        current = getattr(agent, name)
        if hasattr(current, "load_state_dict"):
            current.load_state_dict(value)
        elif isinstance(current, torch.Tensor):
            if current.shape != value.shape:
                raise RuntimeError(f"{name} has shape {tuple(value.shape)}, expected {tuple(current.shape)}")
            with torch.no_grad():
                current.copy_(value)
        else:
            setattr(agent, name, value)


def args_from_dict(values: dict):
    """Args from asdict(args), as model.pt and the resumable state keep them."""
    try:
        return Args(**(values | {"run": RunFlags(**values["run"])}))
    except TypeError as e:  # a field this version does not have
        raise UsageError(f"written by another version of {ALGO}.py: {e}")


def missing(path: str, hint: str) -> str:
    """What to say of a model.pt or resume.pt missing at path: that its folder is a run folder without one, or holds
    run folders with one (runs/ for runs/<run>), or else `hint`."""
    folder, name = os.path.split(path)
    try:
        inside = [os.path.join(folder, d) for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, name))]
    except OSError:
        inside = []
    if inside:
        return f"{folder} holds run folders: pass one, e.g. {max(inside, key=os.path.getmtime)} (the newest)"
    if os.path.isfile(os.path.join(folder, "config.json")) and name == "model.pt":
        return "the run in that folder was trained without --save-model, which writes it"
    if os.path.isfile(os.path.join(folder, "config.json")) and name == "resume.pt":
        return "the run in that folder finished, or was killed before its first snapshot: nothing to continue"
    return hint


def read_state(path: str, what: str, hint: str, weights_only: bool) -> dict:
    """A model.pt or resume.pt of this script, read with torch.load on the CPU; a UsageError if it is not one."""
    if not os.path.isfile(path):
        raise UsageError(f"no {what} at {path}: {missing(path, hint)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        raise UsageError(f"cannot read {what} {path}: {type(e).__name__}: {str(e).strip().split('. ')[0]}")
    if not isinstance(state, dict) or state.get("algo") != ALGO:
        raise UsageError(f"{path} is not a {ALGO}.py {what}")
    if "run" not in state["args"]:
        raise UsageError(f"{path} was written by an older {ALGO}.py, before the run flags had a field of their own")
    return state


def load_model(path: str) -> dict:
    """A model.pt (or the run folder holding one) as save_model wrote it."""
    return read_state(os.path.join(path, "model.pt") if os.path.isdir(path) else path, "model file",
                      "pass a model.pt written by --save-model, or its run folder", weights_only=True)


def save_model(agent, args, path: str, step: int):
    with atomic_file(path) as f:
        torch.save({"algo": ALGO, "args": asdict(args), "step": step, "agent": agent_state(agent)}, f)


def evaluate_saved(args, device: torch.device):
    """--eval-only: a saved agent on its environment (seeded seed + 100), printed."""
    path = args.run.eval_only
    checkpoint = load_model(path)
    saved = args_from_dict(checkpoint["args"])
    saved = replace(saved, buffer_size=1) if hasattr(saved, "buffer_size") else saved  # acting needs no buffer
    env = make_env(saved, args.seed + 100)
    agent = Agent(env.observation_space.shape[0], env.action_space.shape[0], saved, device)
    try:
        load_agent_state(agent, checkpoint["agent"])
    except (KeyError, AttributeError, RuntimeError) as e:
        raise UsageError(f"{path} does not match {saved.env}: {e}")
    returns = evaluate(agent, env, args.eval_episodes)
    ref = getattr(saved, "dataset", None) and reference_returns(saved.env, {}, args.ref_returns or saved.ref_returns)
    score = f", normalized score {normalized_score(returns.mean(), ref):.1f}" if ref else ""
    print(f"{saved.env} {ALGO} (step {checkpoint['step']}): mean return {returns.mean():.1f} +- {returns.std():.1f}"
          f" over {args.eval_episodes} episodes{score}")


def env_state(env: gym.Env) -> dict:
    """An environment mid-episode: the wrapped environment pickled (its time limit and episode counters too), its
    random generators, and MuJoCo's integration state, which gymnasium's MuJoCo environments do not pickle, with the
    body positions derived from it: Ant and Humanoid read them before a step for their reward, and they come from
    the last step's last substep, which mj_forward would not reproduce."""
    u = env.unwrapped
    state = {"env": env, "np_random": u.np_random.bit_generator.state,
             "action_space": env.action_space.np_random.bit_generator.state}
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        state["physics"] = np.empty(mujoco.mj_stateSize(u.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(u.model, u.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        state["derived"] = {name: getattr(u.data, name).copy() for name in ("xpos", "xipos")}
    return state


def restore_env(state: dict) -> gym.Env:
    env, u = state["env"], state["env"].unwrapped
    u.np_random.bit_generator.state = state["np_random"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "physics" in state:
        import mujoco

        mujoco.mj_setState(u.model, u.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        for name, value in state["derived"].items():
            getattr(u.data, name)[:] = value
    return env


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict):
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def compiled(fn, cudagraphs=False, keep=None):
    """--compile: fn through torch.compile (its first-compile time printed), or, if compiling fails at any call,
    one warning line and the eager fn from then on (a graph reached late, such as the first delayed actor step,
    may follow graphs that ran: the eager rerun repeats them once). --cudagraphs: each call is a new step of torch's
    CUDA graph trees, whose next replay overwrites this one's outputs: the tensors fn leaves in `keep` are copied."""
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
            print(f"warning: torch.compile failed, running eager ({type(e).__name__}: "
                  f"{(str(e).splitlines() or [''])[0]})", file=sys.stderr)
            fast = None
            return fn(*inputs)
        if cudagraphs and keep is not None:
            keep.update({name: value.clone() for name, value in keep.items()})
        if first:
            print(f"torch.compile: {fn.__name__} compiled in {time.perf_counter() - start:.1f} s")
            first = False
        return out
    return call


def compile_agent(agent, cudagraphs: bool = False):
    """--compile (--cudagraphs): the agent's update and policy through compiled(). Its plain tensors (TD7's value
    range, SAC's temperature) are marked as static addresses: CUDA graphs update them where they are."""
    for value in vars(agent).values():
        if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
            torch._dynamo.mark_static_address(value)
    agent.update = compiled(agent.update, cudagraphs, keep=agent.losses)
    agent.policy = compiled(agent.policy, cudagraphs)


class Run:
    """A run as main() sees it: args, env (the training environment; None offline; PPO's vector of them), agent,
    and loop, the training loop's state (t, the current state, and main's own fields), saved with the run and
    restored on --resume. steps() yields the loop's steps; between two, the harness evaluates, logs and stops."""

    def __init__(self, args, device: torch.device, saved: Optional[dict] = None):
        dataset, extra = None, {}
        if getattr(args, "dataset", None):  # offline: the dataset replaces the environment, and names it
            dataset, info = load_dataset(args.dataset, args.env_version)
            if args.env is None:
                if info["env"] is None:
                    raise UsageError(f"cannot tell which environment {args.dataset} comes from: pass --env")
                args = replace(args, env=info["env"], env_kwargs=args.env_kwargs or json.dumps(info["env_kwargs"]))
        elif args.env is None:
            args = replace(args, env="HalfCheetah-v4")
        self.args, self.ref_returns, self.env = args, None, None
        self.eval_env = make_env(args, args.seed + 100)
        self.agent = Agent(self.eval_env.observation_space.shape[0], self.eval_env.action_space.shape[0], args, device)
        # t: steps done, each of `size` environment steps; substep: the parts of step t done (see substeps).
        self.loop = SimpleNamespace(t=0, size=1, substep=0, snapshots=0, wall_seconds=0.0)
        if dataset is not None:
            dataset = check_dataset(dataset, self.eval_env.unwrapped, args.dataset)
            n = len(dataset["rewards"])
            if n < args.batch_size:
                raise UsageError(f"{args.dataset} holds {n} transitions, fewer than --batch-size {args.batch_size}")
            self.agent.load_dataset(dataset)
            self.ref_returns = reference_returns(args.env, info, args.ref_returns)
            extra = {"dataset_format": info["format"], "dataset_transitions": n, "ref_returns": self.ref_returns}
            # A resumed run reads its dataset again; this fingerprint tells whether it is still the same data.
            self.loop.dataset = [n, sum(float(np.sum(v, dtype=np.float64)) for v in dataset.values())]
        elif hasattr(args, "num_envs"):
            self.env = make_vector_env([make_env(args, args.seed + i) for i in range(args.num_envs)])
        else:
            self.env = make_env(args, args.seed)
        if self.env is not None:
            self.loop.state, _ = self.env.reset(seed=args.seed)
        # A resumed run logs again from the saved step on (from its end, for a step stopped part way: PPO logged its
        # rollout's episodes before the update).
        resumed_at = saved and (saved["loop"]["t"] + (saved["loop"]["substep"] > 0)) * saved["loop"]["size"]
        self.logger = RunLogger(args, device, self.ref_returns, extra, resumed_at)
        self.path = self.logger.path
        self.video = VideoRecorder(args, self.path) if args.run.capture_video else None
        if saved is not None:
            self.restore(saved)
        if getattr(args, "compile", False) or getattr(args, "cudagraphs", False):
            compile_agent(self.agent, args.cudagraphs)
        self.progress = Progress(0, 0, False)  # until steps() makes the run's
        self.start_time = time.time() - self.loop.wall_seconds
        self.next_snapshot = time.time() + 60 * args.run.snapshot_every
        self.stop = StopRequests()
        print(f"{ALGO} on {args.env}" + (f" from {args.dataset} ({n} transitions)" if dataset else "")
              + f", seed {args.seed}, device {device}: {self.path}"
              + (f" (resumed at step {self.loop.t * self.loop.size})" if saved else ""))

    def envs(self) -> dict:
        """The environments a resumable state holds, by name."""
        envs = {"eval_env": self.eval_env} | ({"video_env": self.video.env} if self.video else {})
        if isinstance(self.env, gym.vector.VectorEnv):
            return envs | {f"env_{i}": env for i, env in enumerate(self.env.envs)}
        return envs | ({"env": self.env} if self.env is not None else {})

    def restore(self, saved: dict):
        """--resume: the agent, its buffer, the environments mid-episode, the loop's state and every random
        generator, as they were when the run stopped."""
        if getattr(self.loop, "dataset", None) != saved["loop"].get("dataset"):
            raise UsageError(f"{self.args.dataset} is not the dataset the run in {self.path} was trained on")
        load_agent_state(self.agent, saved["agent"])
        buffer = getattr(self.agent, "replay_buffer", None)
        if buffer is not None and self.env is None:  # offline: the dataset's rows are in place
            buffer.load_state_dict(saved["buffer"])
        elif buffer is not None:
            try:
                buffer.restore(os.path.join(self.path, "replay_buffer"), saved["buffer"])
            except (OSError, ValueError, KeyError) as e:
                raise UsageError(f"cannot read the replay buffer of {self.path}: {type(e).__name__}: {e}")
        envs = {name: restore_env(state) for name, state in saved["envs"].items()}
        self.eval_env = envs["eval_env"]
        if self.video is not None:
            self.video.env = envs["video_env"]
        if isinstance(self.env, gym.vector.VectorEnv):
            self.env = make_vector_env([envs[f"env_{i}"] for i in range(self.env.num_envs)])
        elif self.env is not None:
            self.env = envs["env"]
        self.loop = SimpleNamespace(**saved["loop"])
        restore_rng(saved["rng"])

    def save(self):
        """The resumable state, written so that a kill at any moment leaves the last one whole: online, the replay
        buffer's new rows in new files of <run>/replay_buffer/; then <run>/resume.pt (pickled: resume only runs you
        trust), replaced in one rename; then the buffer files it no longer names are removed."""
        self.loop.wall_seconds, self.loop.snapshots = time.time() - self.start_time, self.loop.snapshots + 1
        state = {"algo": ALGO, "args": asdict(self.args), "agent": agent_state(self.agent), "loop": vars(self.loop),
                 "rng": rng_state(), "envs": {name: env_state(env) for name, env in self.envs().items()}}
        buffer, folder = getattr(self.agent, "replay_buffer", None), os.path.join(self.path, "replay_buffer")
        if buffer is not None:  # offline, the rows are the dataset's: the priorities are enough
            state["buffer"] = buffer.state_dict() if self.env is None else buffer.save(folder, self.loop.snapshots)
        with atomic_file(os.path.join(self.path, "resume.pt")) as f:
            torch.save(state, f)
        if buffer is not None and self.env is not None:
            buffer.prune(folder, state["buffer"])
        self.next_snapshot = time.time() + 60 * self.args.run.snapshot_every

    def init_loop(self, **initial) -> SimpleNamespace:
        """The loop's state with main's own fields added at these initial values (a resumed run keeps its own)."""
        for name, value in initial.items():
            if not hasattr(self.loop, name):
                setattr(self.loop, name, value)
        return self.loop

    def steps(self, count: int, size: int = 1):
        """Yields t = loop.t, ..., count - 1 (from 0, or where a resumed run stopped); each t is `size` environment
        steps (PPO: a rollout). After each, loop.t moves on, the harness evaluates (at step 0, after every
        eval_freq environment steps, and at the end), and a stop request stops the run there."""
        loop, args = self.loop, self.args
        loop.size = size
        # Evaluations written after the saved state (by a run killed later without saving one) are redone.
        self.logger.rows = [row for row in self.logger.rows if int(row[0]) <= loop.t * size]
        start = getattr(args, "start_timesteps", 0) if self.env is not None else 0  # the random phase is not timed
        pace = Pace(count * size, loop.t * size, start)
        self.progress = Progress(count * size, loop.t * size, args.run.progress, pace)
        if self.logger.rows:  # a resumed run's line shows its last evaluation from the start
            self.progress.last_return = float(self.logger.rows[-1][2])
        self.last = (loop.t * size, time.time())  # step and time of the last evaluation, for the speed
        if getattr(loop, "evaluation_due", None) is not None:  # the evaluation a stop cut short
            self.evaluate(loop.evaluation_due)
        if loop.t == 0 and not self.logger.rows:
            self.evaluate(0)
        while loop.t < count:
            yield loop.t
            loop.t += 1
            step = loop.t * size
            if step // args.eval_freq > (step - size) // args.eval_freq or loop.t == count:
                self.evaluate(step)
            self.progress.update(step)
            self.safe_point()

    def evaluate(self, step: int):
        """An evaluation, logged (evaluations.csv, TensorBoard, a console line), and model.pt and a video if asked.
        A stop request cuts it short: the evaluation environment's generator is put back and it is redone on resume."""
        generator = self.eval_env.unwrapped.np_random.bit_generator.state
        returns = evaluate(self.agent, self.eval_env, self.args.eval_episodes, stop=self.stop.during_evaluation,
                           progress=self.progress)
        self.progress.show()
        if returns is None:
            self.eval_env.unwrapped.np_random.bit_generator.state = generator
            self.loop.evaluation_due = step
            raise Stop
        self.loop.evaluation_due = None
        self.logger.evaluation(step, time.time() - self.start_time, returns)
        speed = (step - self.last[0]) / max(time.time() - self.last[1], 1e-9)  # since the last evaluation
        self.logger.scalar("train/SPS", speed, step)
        for name, value in self.agent.losses.items():
            self.logger.scalar(f"losses/{name}", value, step)
        total = self.progress.total or step
        score = f" | normalized {normalized_score(returns.mean(), self.ref_returns):6.1f}" if self.ref_returns else ""
        self.progress.write(f"step {step:>8d} | eval return {returns.mean():9.1f} +- {returns.std():7.1f}{score} | "
                            f"{speed:6.1f} steps/s | {self.progress.pace.left(step)}", returns.mean())
        if self.args.run.save_model:
            save_model(self.agent, self.args, os.path.join(self.path, "model.pt"), step)
        if self.video is not None and ((len(self.logger.rows) - 1) % self.args.run.video_every == 0 or step == total):
            self.video.record(self.agent, step)
        self.last = (step, time.time())

    def safe_point(self):
        """A point where the run's state is whole (between two steps, or two parts of one): a stop request is
        honoured here, and a snapshot is written when one is due (every --snapshot-every minutes)."""
        if self.stop.requested:
            raise Stop
        if self.args.run.snapshot_every and time.time() >= self.next_snapshot:
            self.save()

    def substeps(self, count: int):
        """Yields i = loop.substep, ..., count - 1: the parts of a long step (TD7's batch of gradient steps, PPO's
        minibatch updates), with a safe point before each, and each shown on the progress line. A run stopped there
        resumes at that part: the step is run again from its start, so what comes before its substeps must keep what
        it did in the loop's state."""
        if count:
            self.progress.pace.batch_begins()
        while self.loop.substep < count:
            self.safe_point()
            self.progress.show("gradient step", self.loop.substep + 1, count)
            yield self.loop.substep
            self.loop.substep += 1
        self.loop.substep = 0
        if count:
            self.progress.show()
            self.progress.pace.batch_done(self.loop.t * self.loop.size)

    def log_episode(self, episode: dict, step: int):
        """A training episode's return and length (info["episode"] of make_env's environments) and the losses."""
        self.logger.scalar("train/episode_return", episode["r"], step)
        self.logger.scalar("train/episode_length", episode["l"], step)
        for name, value in self.agent.losses.items():
            self.logger.scalar(f"losses/{name}", value, step)

    def close(self, stopped: bool):
        """The end of a run: a stopped one writes its resumable state, a finished one removes it."""
        step = self.loop.t * self.loop.size
        if stopped:
            self.save()
        else:  # a finished run has nothing to resume (resume.pt first: never one without its buffer)
            if os.path.exists(os.path.join(self.path, "resume.pt")):
                os.remove(os.path.join(self.path, "resume.pt"))
            shutil.rmtree(os.path.join(self.path, "replay_buffer"), ignore_errors=True)
        if self.args.run.save_model:
            save_model(self.agent, self.args, os.path.join(self.path, "model.pt"), step)
        self.release()
        if stopped:
            here = os.path.dirname(os.path.abspath(__file__)) == os.getcwd()  # the command as one pastes it here
            script = os.path.basename(__file__) if here else os.path.abspath(__file__)
            print(f"interrupted at step {step}; to continue: python {script} --resume {self.path}", file=sys.stderr)

    def release(self):
        """The logs flushed and closed, the renderer freed, the signal handlers as they were."""
        self.progress.bar.close()
        if self.video is not None:
            self.video.env.close()  # frees the GL context now, not in a destructor at interpreter exit
        self.logger.close()
        self.stop.close()


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def changed_flags(given, saved: dict, keep: tuple) -> str:
    """The flags given with --resume that are neither at their default nor at the run's value (those in keep may
    change: where and how the run goes on), as "--name value (the run's: value)", comma-separated."""
    default, given = asdict(Args()), asdict(given)
    values = [(name, given[name], saved.get(name), default[name]) for name in given if name != "run"]
    values += [(name, given["run"][name], saved["run"].get(name), default["run"][name]) for name in given["run"]]
    return ", ".join(f"--{name.replace('_', '-')} {value} (the run's: {old})" for name, value, old, unset in values
                     if name not in keep and value not in (unset, old))


def launch(args) -> str:
    """Checks args, then evaluates a saved model (--eval-only) or trains with main(): a new run or, with --resume,
    the stopped one from where it stopped. Returns the run folder; exits with status 130 after a stop request."""
    check(args)
    saved = None
    if args.run.resume:
        route_mujoco_warnings()  # before resume.pt's environments are unpickled, which compiles their models
        saved = read_state(os.path.join(args.run.resume, "resume.pt"), "resumable state",
                           f"--resume takes the folder of a stopped {ALGO}.py run", weights_only=False)
        now, args = args, args_from_dict(saved["args"])  # the saved arguments, but where and how it runs now:
        mine, ours = ("device", "torch_threads", "progress", "snapshot_every", "resume"), ("compile", "cudagraphs")
        differ = changed_flags(now, saved["args"], keep=mine + ours)
        if differ:
            raise UsageError(f"--resume continues a run with its own flags, and these would change it: {differ}")
        run = replace(args.run, **{name: getattr(now.run, name) for name in mine})
        args = replace(args, run=run, **{name: getattr(now, name) for name in ours if hasattr(now, name)})
    device = resolve_device(args.run.device)
    if getattr(args, "cudagraphs", False) and device.type != "cuda":
        raise UsageError(f"--cudagraphs needs a CUDA device, got --device {args.run.device} ({device})")
    if args.run.torch_threads > 0:
        torch.set_num_threads(args.run.torch_threads)
    seed_everything(args.seed)
    if args.run.eval_only:
        return evaluate_saved(args, device)
    run = Run(args, device, saved)
    try:
        main(run)
    except Stop:
        run.close(stopped=True)
        sys.exit(130)
    except BaseException:  # a second Ctrl-C, or an error: the logs are closed, nothing else is written
        run.release()
        raise
    run.close(stopped=False)
    return run.path


class Unbroken:
    """stdout or stderr that a closed reader cannot break (python td7.py | tee log, then Ctrl-C, which ends tee):
    what is written after that goes to /dev/null, and the run goes on to write its resumable state."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str):
        try:
            return self.stream.write(text)
        except OSError:
            self.to_devnull()
            return len(text)

    def flush(self):
        try:
            self.stream.flush()
        except OSError:
            self.to_devnull()

    def to_devnull(self):
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def __getattr__(self, name):
        return getattr(self.stream, name)


def parse_args():
    """Args from the command line (tyro). Its errors (an unknown flag, a value of the wrong type) come as a box of
    lines; they are made one line too: the box's first paragraph, and the flags it suggests."""
    for f in fields(Args):  # an optional text flag shows as STR in --help, not {None}|STR (default: None): its help
        if f.type == Optional[str]:  # says what no value means
            Args.__annotations__[f.name] = Annotated[f.type, tyro.conf.arg(metavar="STR", help_behavior_hint="")]
    text = io.StringIO()
    try:
        with contextlib.redirect_stderr(text):
            return tyro.cli(Args, description=__doc__.splitlines()[0], config=(tyro.conf.OmitArgPrefixes,))
    except SystemExit as e:
        if not e.code:
            raise
        lines = [line.strip("│ ") for line in text.getvalue().splitlines() if line.startswith("│")]
        first = " ".join(lines[:next((i for i, line in enumerate(lines) if set(line) == {"─"}), len(lines))])
        flags = [line.split()[0] for line in lines if line.startswith("--") and "Perhaps you meant:" in lines]
        raise UsageError(first + (f" (did you mean {', '.join(flags)}?)" if flags else "") + f"; see {ALGO}.py --help")
    finally:
        sys.stderr.write(text.getvalue() if not sys.exc_info()[0] else "")


def cli():
    """The command line (python <script>.py --help): bad input is one line on stderr and exit status 2."""
    sys.stdout, sys.stderr = Unbroken(sys.stdout), Unbroken(sys.stderr)
    try:
        launch(parse_args())
    except (UsageError, DatasetError) as e:
        print(f"{ALGO}.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before the run's own handler is installed: nothing to save yet
        print(f"{ALGO}.py: interrupted before training started", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    # Run as the module named after this file, not as __main__: the resumable state pickles classes defined here
    # (NormalizedActions, a loop's objects) by module name, and so an import of the script can resume the run too.
    import importlib

    importlib.import_module(os.path.splitext(os.path.basename(__file__))[0]).cli()
