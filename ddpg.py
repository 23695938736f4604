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

    def state_dict(self):
        """The process value mid-episode, part of the agent's state so that --resume continues it exactly."""
        return {"x": torch.from_numpy(self.x.copy())}

    def load_state_dict(self, state):
        self.x = state["x"].cpu().numpy().copy()


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
        if args.compile or args.cudagraphs:  # the fast path: same math; an eager fallback if compilation fails
            self.update = compiled(self.update, args.cudagraphs, keep=self.losses)
            self.policy = compiled(self.policy, args.cudagraphs)

    @torch.no_grad()
    def select_action(self, state: np.ndarray, use_exploration: bool) -> np.ndarray:
        """The normalized action in [-1, 1] for one state, with Gaussian or OU exploration noise if asked."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(1, -1)
        action = self.policy(state).cpu().numpy().flatten()
        if use_exploration:
            if self.noise is not None:
                action = action + self.noise.sample()
            else:
                action = action + np.random.normal(0, self.args.exploration_noise, size=action.shape)
        return action.clip(-1, 1)

    def policy(self, state):
        """The deterministic action for a batch of states (a method of its own for --compile)."""
        return self.actor(state)

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
        names = ("actor", "actor_target", "actor_optimizer", "critic", "critic_target", "critic_optimizer") + (
            () if self.noise is None else ("noise",))
        return {name: getattr(self, name).state_dict() for name in names} | {"training_steps": self.training_steps}

    def load_state_dict(self, state):
        for name, value in state.items():
            if isinstance(getattr(self, name), (nn.Module, torch.optim.Optimizer, OUNoise)):
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
    positive = ["total_timesteps", "eval_freq", "eval_episodes", "video_every", "batch_size", "buffer_size",
                "hdim"]
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["start_timesteps", "torch_threads", "exploration_noise", "ou_theta", "ou_sigma",
                 "actor_lr", "critic_lr", "tau"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.start_timesteps < args.batch_size:
        raise UsageError(f"--start-timesteps ({args.start_timesteps}) must be at least --batch-size ({args.batch_size})")
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
            action = agent.select_action(state, use_exploration=False)
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

    env = make_env(args.env, args.seed)
    eval_env = make_env(args.env, args.seed + 100)
    agent = make_agent(env, args, device)
    scale, bias = action_scale_bias(env.action_space)
    logger = RunLogger(args, device, args.resume)
    video = VideoRecorder(args, logger.path) if args.capture_video else None
    model_path = os.path.join(logger.path, "model.pt")

    # The loop's state: everything besides the agent, the buffer and the environments that --resume restores.
    loop = {"t": 0, "episode_return": 0.0, "episode_steps": 0, "episode_num": 0, "wall_seconds": 0.0}
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
            # Act: uniform random at first, then the policy with Gaussian (or OU) noise.
            if t < args.start_timesteps:
                action = (env.action_space.sample() - bias) / scale
            else:
                action = agent.select_action(state, use_exploration=True)

            # Step and store; only a termination ends bootstrapping, a time limit does not.
            next_state, reward, terminated, truncated, _ = env.step(action * scale + bias)
            agent.replay_buffer.add(state, action, next_state, reward, terminated)
            state = next_state
            loop["episode_return"] += float(reward)
            loop["episode_steps"] += 1

            # Train: one gradient step per environment step after the random phase.
            if t >= args.start_timesteps:
                if train_start is None:
                    train_start = time.time()
                agent.train()

            if terminated or truncated:
                logger.scalar("train/episode_return", loop["episode_return"], t + 1)
                logger.scalar("train/episode_length", loop["episode_steps"], t + 1)
                for name, value in agent.losses.items():
                    logger.scalar(f"losses/{name}", value, t + 1)
                if train_start is not None:
                    sps = (agent.training_steps - train_start_updates) / (time.time() - train_start)
                    logger.scalar("train/SPS", sps, t + 1)
                state, _ = env.reset()
                agent.reset_noise()
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


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as e:
        print(f"{ALGO}.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before the training loop's own handler is installed: nothing to save yet
        print(f"{ALGO}.py: interrupted before training started", file=sys.stderr)
        sys.exit(130)
