"""Our td3.py and td7.py against the official TD3 and TD7 code, timed side by side in one process.

    python benchmarks/official.py --td3 PATH --td7 PATH [--sizes 100000 1000000] [--threads 1 2]
                                  [--steps 200] [--rounds 3] [--end-to-end]

PATH is the user's own checkout of github.com/sfujim/TD3 or github.com/sfujim/TD7; nothing of it is copied
into this project. Its files are imported from PATH under private module names (so that TD7.py's
`import buffer` gets its buffer.py, not benchmarks/buffer.py), on the CPU even where torch sees a GPU, and
driven through their own APIs with their default hyperparameters, as their main.py builds them:
TD3.TD3(...).train(utils.ReplayBuffer(...), 256) and TD7.Agent(...).train(). Ours are td3.Agent and
td7.Agent with default Args, as benchmarks/throughput.py builds them.

Update speed (first table): gradient steps per second of train() alone, sampling included. For each buffer
size N, both sides hold the same N random HalfCheetah-shaped transitions (17-d states, 6-d actions uniform
in [-1, 1], which is HalfCheetah's action range: the same numbers in our normalized units and in theirs),
in buffers of capacity 1M (or N if larger), as in a training run that has stored N transitions: theirs
filled with their own add(), ours with LAPBuffer.load(). The official TD7 draws each LAP batch with a
cumulative sum over all N stored priorities, so its cost grows with N (the point of the 1M rows); the
script checks that its buffer holds N positive priorities and that its batches draw from all of them.

Timing: one pair of agents (ours, official) per algorithm and N, serving every thread count. Everything
timed is first called WARMUP_STEPS times, untimed, at every thread count, after which the script checks
that every critic changed (a no-op is not timed). Then each round visits every configuration (algorithm,
N, threads) under torch.set_num_threads(threads) and times --steps train() calls of ours and of theirs,
back to back, the order alternating from round to round; both agents of a pair always have taken the same
number of steps. The best round of each is kept, so a noisy neighbour hurts both alike; the ratio is
ours / official.

--end-to-end adds a second table: environment steps per second of the online loop of each side, one
gradient step per environment step for both: act with the exploration policy and its noise (theirs:
select_action plus the noise as their main.py adds it), step HalfCheetah-v4, store, train(), reset at
episode ends. Both step the same gymnasium environment (ours through its make_env, with its wrappers;
theirs through gymnasium.make, the gym-era loop with gymnasium's step API), in the same rounds. The official
TD7 main.py trains with policy checkpoints in batches at episode ends: as many steps and the same work as
one step per environment step (its --no-use_checkpoints loop), which is what is timed for both sides.
Left out on both sides: the first 25k uniform-random steps, the evaluations (10 episodes every 5000
steps in both official main.py), logging. So this is not the speed of a whole training run. The online
steps add their transitions to the same buffers, N + a few thousand by the end, alike on both sides.
"""

import argparse
import contextlib
import importlib
import importlib.util
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENV_ID = "HalfCheetah-v4"
STATE_DIM, ACTION_DIM, MAX_ACTION = 17, 6, 1.0  # HalfCheetah's shapes; its actions are in [-1, 1]
BATCH_SIZE = 256  # both official main.py, and our default Args
EXPLORATION_NOISE = 0.1  # both official main.py, in units of max_action
WARMUP_STEPS = 20  # untimed calls of everything timed, at every thread count
CAPACITY = 1_000_000  # the default buffer capacity of both official codes and of ours
# What this benchmark uses of each official checkout: its files, in the order they are imported, and their names.
CHECKOUTS = {"TD3": {"utils": ["ReplayBuffer"], "TD3": ["TD3"]},
             "TD7": {"buffer": ["LAP"], "TD7": ["Agent", "Hyperparameters"]}}


# ---- the official code, from the user's checkouts ----

@contextlib.contextmanager
def cpu_only():
    """Their code picks CUDA wherever torch sees a GPU (TD3.py at import, its ReplayBuffer and TD7's Agent when
    built); this benchmark is about CPU threads."""
    available = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        yield
    finally:
        torch.cuda.is_available = available


def load_official(path: str, repo: str) -> dict:
    """Imports the files CHECKOUTS[repo] of the checkout at `path`, in order, as modules official_<repo>_<name>.
    While they load, each is also sys.modules[name], so that their own `import buffer` finds theirs (not
    benchmarks/buffer.py); afterwards sys.modules[name] is what it was, so this project's modules stay untouched."""
    names = list(CHECKOUTS[repo])
    before = {name: sys.modules.get(name) for name in names}
    modules = {}
    try:
        with cpu_only():
            for name in names:
                spec = importlib.util.spec_from_file_location(f"official_{repo.lower()}_{name}",
                                                              os.path.join(path, f"{name}.py"))
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = sys.modules[name] = module
                spec.loader.exec_module(module)
                missing = [attr for attr in CHECKOUTS[repo][name] if not hasattr(module, attr)]
                if missing:
                    raise ImportError(f"{name}.py has no {', '.join(missing)}")
                modules[name] = module
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return modules


def git_commit(path: str) -> str:
    """The checkout's commit, for the record; "?" where it is not the top of a git work tree."""
    if not os.path.exists(os.path.join(path, ".git")):
        return "?"
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


class OfficialTD3:
    """TD3.TD3 and utils.ReplayBuffer of github.com/sfujim/TD3, built and driven as its main.py does."""

    def __init__(self, modules: dict, data: dict, capacity: int):
        with cpu_only():
            # main.py scales the target policy noise and its clip by max_action (here 1).
            self.policy = modules["TD3"].TD3(STATE_DIM, ACTION_DIM, MAX_ACTION, policy_noise=0.2 * MAX_ACTION,
                                             noise_clip=0.5 * MAX_ACTION)
            self.replay_buffer = modules["utils"].ReplayBuffer(STATE_DIM, ACTION_DIM, max_size=capacity)
        add_all(self.replay_buffer, data)
        self.critic = self.policy.critic
        require_cpu("official TD3", [self.policy.actor, self.policy.critic], self.replay_buffer.device)

    def train(self):
        self.policy.train(self.replay_buffer, BATCH_SIZE)

    def act(self, state):
        action = self.policy.select_action(np.array(state))
        noise = np.random.normal(0, MAX_ACTION * EXPLORATION_NOISE, size=ACTION_DIM)
        return (action + noise).clip(-MAX_ACTION, MAX_ACTION)


class OfficialTD7:
    """TD7.Agent of github.com/sfujim/TD7 with its default Hyperparameters (LAP buffer, LAP loss)."""

    def __init__(self, modules: dict, data: dict, capacity: int):
        with cpu_only():
            hp = modules["TD7"].Hyperparameters(buffer_size=capacity)
            self.agent = modules["TD7"].Agent(STATE_DIM, ACTION_DIM, MAX_ACTION, hp=hp)
        self.replay_buffer = self.agent.replay_buffer
        add_all(self.replay_buffer, data)
        self.critic = self.agent.critic
        require_cpu("official TD7", [self.agent.actor, self.agent.critic, self.agent.encoder],
                    self.replay_buffer.priority.device)

    def train(self):
        self.agent.train()

    def act(self, state):
        return self.agent.select_action(np.array(state))  # the current policy with exploration, as main.py acts

    def check_lap(self, n: int) -> str:
        """That its batches are drawn with LAP over all (at least n) stored transitions; one line for the record."""
        buffer = self.replay_buffer
        stored = buffer.priority[:buffer.size]  # what its sample() takes the cumulative sum of
        drawn = buffer.ind  # the indices of the last batch
        if not (buffer.prioritized and len(stored) == buffer.size >= n and bool((stored > 0).all())):
            raise RuntimeError(f"official TD7's buffer does not sample with LAP over {n} transitions")
        if not 0 <= drawn.min() <= drawn.max() < buffer.size or drawn.max() < n // 2:
            raise RuntimeError(f"official TD7's last batch drew indices {drawn.min()}..{drawn.max()}, not from all {n}")
        return (f"official TD7, N={size_label(n)}: LAP over {len(stored)} stored priorities (all > 0); its last batch "
                f"drew indices {drawn.min()}..{drawn.max()}")


def add_all(replay_buffer, data: dict):
    """Fills an official buffer one transition at a time through its add(), as its training loop does."""
    for row in zip(data["observations"], data["actions"], data["next_observations"], data["rewards"],
                   data["terminals"]):
        replay_buffer.add(*row)


def require_cpu(name: str, nets: list, buffer_device):
    """That an official agent's networks and buffer are on the CPU (cpu_only() worked)."""
    devices = {p.device.type for net in nets for p in net.parameters()} | {torch.device(buffer_device).type}
    if devices != {"cpu"}:
        raise RuntimeError(f"{name} is not on the CPU: {devices}")


# ---- ours ----

class Ours:
    """td3.Agent or td7.Agent with default Args, as benchmarks/throughput.py builds them."""

    def __init__(self, script: str, data: dict, capacity: int):
        self.module = importlib.import_module(script)
        self.args = self.module.Args(env=ENV_ID, buffer_size=capacity)
        self.agent = self.module.Agent(STATE_DIM, ACTION_DIM, self.args, torch.device("cpu"))
        self.agent.replay_buffer.load(data)
        self.replay_buffer, self.critic = self.agent.replay_buffer, self.agent.critic
        self.acting = {"use_checkpoint": False} if script == "td7" else {}  # the policy being trained, as main() acts

    def train(self):
        self.agent.train()

    def act(self, state):
        return self.agent.select_action(state, use_exploration=True, **self.acting)


# ---- timing ----

class Online:
    """The online loop of one side: act, step the environment, store, one gradient step."""

    def __init__(self, side, env):
        self.side, self.env = side, env
        self.state, _ = env.reset(seed=0)

    def step(self):
        action = self.side.act(self.state)
        next_state, reward, terminated, truncated, _ = self.env.step(action)
        self.side.replay_buffer.add(self.state, action, next_state, reward, float(terminated))
        self.state = self.env.reset()[0] if terminated or truncated else next_state
        self.side.train()


def official_env():
    """HalfCheetah-v4 as gymnasium.make gives it (the official main.py called gym.make)."""
    import gymnasium

    with warnings.catch_warnings():  # v4 is the papers' version on purpose
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        env = gymnasium.make(ENV_ID)
    env.action_space.seed(0)
    if env.observation_space.shape != (STATE_DIM,) or env.action_space.shape != (ACTION_DIM,) or \
            not (env.action_space.high == MAX_ACTION).all():
        raise RuntimeError(f"{ENV_ID} does not have the shapes this benchmark assumes")
    return env


def timed(fn, steps: int) -> float:
    """Calls per second of `steps` calls of fn."""
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - start)


def random_transitions(n: int) -> dict:
    """n random HalfCheetah-shaped transitions with D4RL's keys, float64 (the official buffers' dtype)."""
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(n, STATE_DIM)),
            "actions": rng.uniform(-MAX_ACTION, MAX_ACTION, (n, ACTION_DIM)),
            "next_observations": rng.normal(size=(n, STATE_DIM)),
            "rewards": rng.normal(size=n), "terminals": (rng.random(n) < 0.01).astype(np.float64)}


def critic_weight(side) -> torch.Tensor:
    return next(side.critic.parameters()).detach().clone()


def benchmark(official: dict, sizes: list, threads: list, steps: int, rounds: int, end_to_end: bool):
    """Best speed of each (kind, algorithm, N, threads, side) over the rounds, and the checks' lines."""
    pairs, checks = {}, []
    for n in sizes:
        data = random_transitions(n)
        capacity = max(CAPACITY, n)
        for algo, modules in official.items():
            build = OfficialTD3 if algo == "TD3" else OfficialTD7
            pairs[algo, n] = {"ours": Ours(algo.lower(), data, capacity), "official": build(modules, data, capacity)}
        del data

    # What each timing calls, per pair and kind; the environments only with --end-to-end.
    calls = {}
    for key, pair in pairs.items():
        calls["update", *key] = {name: side.train for name, side in pair.items()}
        if end_to_end:
            envs = {"ours": pair["ours"].module.make_env(pair["ours"].args, 0), "official": official_env()}
            calls["end to end", *key] = {name: Online(side, envs[name]).step for name, side in pair.items()}

    before = {(key, name): critic_weight(side) for key, pair in pairs.items() for name, side in pair.items()}
    for count in threads:  # both sides of a pair take the same steps, here and in every round
        torch.set_num_threads(count)
        for sides in calls.values():
            for call in sides.values():
                timed(call, WARMUP_STEPS)
    for (key, name), weight in before.items():
        if torch.equal(weight, critic_weight(pairs[key][name])):
            raise RuntimeError(f"{name} {key[0]} did not change its critic in its warm-up: nothing to time")
    checks += [pair["official"].check_lap(n) for (algo, n), pair in pairs.items() if algo == "TD7"]

    best, start = {}, time.perf_counter()
    for r in range(rounds):
        for count in threads:
            torch.set_num_threads(count)
            for (kind, algo, n), sides in calls.items():
                for name in (["ours", "official"] if r % 2 == 0 else ["official", "ours"]):
                    speed = timed(sides[name], steps)
                    best[kind, algo, n, count, name] = max(best.get((kind, algo, n, count, name), 0.0), speed)
        print(f"round {r + 1}/{rounds} done, {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr)
    return best, checks


# ---- report ----

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def report(best: dict, checks: list, args, paths: dict):
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, numpy "
          f"{np.__version__}, Python {platform.python_version()}")
    print("Official code: " + ", ".join(f"{repo} at {path} (commit {git_commit(path)})"
                                        for repo, path in paths.items()))
    print(f"Best of {args.rounds} interleaved rounds of {args.steps} steps, after {WARMUP_STEPS} warm-up steps "
          f"per thread count; CPU; HalfCheetah shapes; N transitions stored, buffer capacity "
          f"{size_label(CAPACITY)} (or N if larger)")
    for line in checks:
        print(f"Check: {line}")
    units = {"update": "gradient steps/s (Agent.train() only)",
             "end to end": "env steps/s (act + env.step + store + train(), 1 gradient step each)"}
    for kind in dict.fromkeys(key[0] for key in best):
        print(f"\n{kind.capitalize()}, {units[kind]}:\n")
        print("| algorithm | buffer N | threads | ours | official | ours / official |")
        print("|---|---|---|---|---|---|")
        for algo in dict.fromkeys(key[1] for key in best):
            for n in args.sizes:
                for count in args.threads:
                    ours, theirs = best[kind, algo, n, count, "ours"], best[kind, algo, n, count, "official"]
                    print(f"| {algo} | {size_label(n)} | {count} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")


# ---- command line ----

class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line on stderr and exit status 2 (argparse's own adds the usage)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def checkout(repo: str):
    """An argparse type: the path of a checkout of github.com/sfujim/<repo>."""
    def check(path: str) -> str:
        if not os.path.isdir(path):
            raise argparse.ArgumentTypeError(f"{path} is not a directory (a checkout of github.com/sfujim/{repo})")
        missing = [f"{name}.py" for name in CHECKOUTS[repo] if not os.path.isfile(os.path.join(path, f"{name}.py"))]
        if missing:
            raise argparse.ArgumentTypeError(f"{path} is not a checkout of github.com/sfujim/{repo}: "
                                             f"no {' or '.join(missing)}")
        return os.path.abspath(path)
    return check


def at_least(minimum: int):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    return check


def main():
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--td3", type=checkout("TD3"), required=True, help="checkout of github.com/sfujim/TD3")
    parser.add_argument("--td7", type=checkout("TD7"), required=True, help="checkout of github.com/sfujim/TD7")
    parser.add_argument("--sizes", type=at_least(BATCH_SIZE), nargs="+", default=[100_000, 1_000_000],
                        help="transitions in the buffers")
    parser.add_argument("--threads", type=at_least(1), nargs="+", default=[1, 2], help="torch.set_num_threads")
    parser.add_argument("--steps", type=at_least(1), default=200,
                        help="train() calls (online steps) per side, configuration and round")
    parser.add_argument("--rounds", type=at_least(1), default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time the online loop (act + env.step + store + train) on HalfCheetah-v4")
    args = parser.parse_args()
    args.sizes, args.threads = list(dict.fromkeys(args.sizes)), list(dict.fromkeys(args.threads))
    paths = {"TD3": args.td3, "TD7": args.td7}
    official = {}
    for repo, path in paths.items():
        try:
            official[repo] = load_official(path, repo)
        except Exception as e:  # their code, or not theirs: one line, as for a wrong path
            parser.error(f"cannot import the official {repo} from {path}: {type(e).__name__}: {e}")
    # The official TD7's update_priority calls float() on a tensor that requires grad; torch warns once.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    torch.manual_seed(0)
    np.random.seed(0)  # the official TD3 samples with np.random, both official loops add their noise with it
    best, checks = benchmark(official, args.sizes, args.threads, args.steps, args.rounds, args.end_to_end)
    report(best, checks, args, paths)


if __name__ == "__main__":
    main()
