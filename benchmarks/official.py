"""Ours against the official code: td3.py and td7.py timed side by side; --check: td3, ddpg, td7, td3_bc updates.

    python benchmarks/official.py --td3 PATH --td7 PATH [--sizes 100000 1000000] [--threads 1 2]
                                  [--steps 200] [--rounds 3] [--end-to-end]
    python benchmarks/official.py [--td3 PATH] [--td7 PATH] [--td3-bc PATH] --check [--check-steps 260]

PATH is the user's own checkout of github.com/sfujim/TD3 (TD3.py, and OurDDPG.py for our ddpg.py), of
github.com/sfujim/TD7 or of github.com/sfujim/TD3_BC; nothing of it is copied into this project. Timing covers TD3
and TD7, those whose checkout is named; --check covers every algorithm whose checkout is named (--td3: TD3 and
DDPG). The checkout's files are imported from PATH under private module names (so that TD7.py's `import buffer`
gets its buffer.py, not benchmarks/buffer.py), on the CPU even where torch sees a GPU, and driven through their
own APIs with their default hyperparameters, as their main.py builds them: TD3.TD3(...),
OurDDPG.DDPG(...) and TD3_BC.TD3_BC(...) with .train(utils.ReplayBuffer(...), 256), TD7.Agent(...).train().
Ours are the Agent of td3.py, ddpg.py, td7.py and td3_bc.py with default Args (td3's and td7's as
benchmarks/throughput.py builds them).

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

--check times nothing: it checks that our update reproduces the official one. Both sides are built as above, on
4096 random transitions; TD3+BC on a dataset of 4096 such transitions whose state dimensions each have a mean and
spread of their own, loaded as each side loads it: ours through td3_bc's Agent.load_dataset, which normalizes the
states inside the agent (and keeps the mean and std to normalize at acting), theirs as their main.py does
(utils.ReplayBuffer.convert_D4RL, then normalize_states, outside the agent: mean and std of the states, + 1e-3).
The official networks get our initial weights, every one of them (actor, critic, their targets; TD7's encoder,
fixed encoder, fixed target encoder and checkpoint copies), our twin critics' TwinLinear layers (weight
(2, in, out), Q1 at [0]) mapped onto their separate nn.Linear layers (DDPG: one critic, the same layout both sides).
Our copies are first moved off the trained networks, so that a wrong copy used anywhere shows from step 1.
At each of --check-steps train() calls (260: past TD7's first hard copy at step 250) each side's buffer
returns the same rows (not a draw: its sample() is replaced, 256 distinct rows per step; the script verifies
that the two batches are equal, for TD3+BC so the normalized states of both buffers) and torch is seeded alike
just before each side's update, so that the one torch.randn_like draw of each (the target policy noise) is the
same; the script verifies that each side drew exactly once (DDPG: never) and the same numbers. The hyperparameters
must be equal, including those the official main.py sets outside its agent (batch size; start steps and
exploration noise of TD3 and DDPG, DDPG's Gaussian noise by default; TD3+BC's normalization and BC term on).
Compared: the losses (as backpropagated, each step), TD7's LAP priorities (each step, and all stored at the end),
TD7's clip range (Q_min/Q_max and the running min/max against min_target/max_target, min, max) and LAP max
priority (each step), TD3+BC's normalization (our state_mean/state_std against what normalize_states returned;
the actions, at the end, for raw dataset states: ours normalized in the agent, theirs by the code of their
main.py's evaluation), and every parameter (each step, and at the end). All of it runs twice, in float32 (as both
train) and in float64 (same weights, batches and noise). Pass: in float64, every difference within 1e-9 of its
tensor's scale (max(1, max |official|)): the same arithmetic in another order (batched twin critics, fused Adam)
agrees to ~1e-15 there, and any real difference stands out. In float32, within 1e-5 of scale, or within the
float32 rounding error of the two codes themselves (each one's float32 run against its float64 run), because Adam
amplifies rounding: over hundreds of steps float32 runs of the same code, or of two equal codes, drift apart
by up to ~1e-2 in a few parameters. TD3+BC also on the dataset stored in float32, as D4RL's files are: there our
statistics and normalized states (computed in float64, then kept in float32) must be the float32 rounding of the
exact ones (the official formula on the same values in float64), and the script prints how far the official
float32 arithmetic is from them (the mean's rounding, divided by a small std, shows). Exit status 1 on any failure
or mismatch. tests/test_official.py runs a short float64 check where TD3_PATH, TD7_PATH, TD3_BC_PATH name
checkouts.
"""

import argparse
import contextlib
import importlib
import importlib.util
import math
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
CHECKOUTS = {"TD3": {"utils": ["ReplayBuffer"], "TD3": ["TD3"], "OurDDPG": ["DDPG"]},
             "TD7": {"buffer": ["LAP"], "TD7": ["Agent", "Hyperparameters"]},
             "TD3_BC": {"utils": ["ReplayBuffer"], "TD3_BC": ["TD3_BC"]}}
# The algorithms, each with the checkout its official code is in; ours is the script <algorithm in lower case>.py.
REPOS = {"TD3": "TD3", "DDPG": "TD3", "TD7": "TD7", "TD3_BC": "TD3_BC"}
TIMED = ("TD3", "TD7")  # the others are only checked (--check)
OFFLINE = ("TD3_BC",)  # trained on a fixed dataset, whose states are normalized


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


# The agents of the TD3 and TD3_BC checkouts: (file, class, the keyword arguments their main.py passes beyond the
# defaults: it scales the target policy noise and its clip by max_action, here 1).
POLICIES = {"TD3": ("TD3", "TD3", {"policy_noise": 0.2 * MAX_ACTION, "noise_clip": 0.5 * MAX_ACTION}),
            "DDPG": ("OurDDPG", "DDPG", {}),
            "TD3_BC": ("TD3_BC", "TD3_BC", {"policy_noise": 0.2 * MAX_ACTION, "noise_clip": 0.5 * MAX_ACTION})}


class OfficialPolicy:
    """TD3.TD3 or OurDDPG.DDPG of github.com/sfujim/TD3, or TD3_BC.TD3_BC of github.com/sfujim/TD3_BC, with the
    utils.ReplayBuffer of its checkout, built and driven as its main.py does: policy.train(replay_buffer, 256)."""

    def __init__(self, algo: str, modules: dict, data: dict, capacity: int):
        file, name, kwargs = POLICIES[algo]
        with cpu_only():
            self.agent = getattr(modules[file], name)(STATE_DIM, ACTION_DIM, MAX_ACTION, **kwargs)
            self.replay_buffer = modules["utils"].ReplayBuffer(STATE_DIM, ACTION_DIM, max_size=capacity)
        if algo in OFFLINE:
            # TD3_BC's main.py: the dataset becomes the buffer, whose states it normalizes (outside the agent); its
            # evaluation normalizes the environment's states with the mean and std returned.
            self.replay_buffer.convert_D4RL(data)
            self.state_mean, self.state_std = self.replay_buffer.normalize_states()
        else:
            add_all(self.replay_buffer, data)
        self.critic = self.agent.critic
        require_cpu(f"official {algo}", [self.agent.actor, self.agent.critic], self.replay_buffer.device)

    def train(self):
        self.agent.train(self.replay_buffer, BATCH_SIZE)

    def act(self, state):
        action = self.agent.select_action(np.array(state))
        noise = np.random.normal(0, MAX_ACTION * EXPLORATION_NOISE, size=ACTION_DIM)
        return (action + noise).clip(-MAX_ACTION, MAX_ACTION)


class OfficialTD7:
    """TD7.Agent of github.com/sfujim/TD7 with its default Hyperparameters (LAP buffer, LAP loss)."""

    def __init__(self, algo: str, modules: dict, data: dict, capacity: int):
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


def official_agent(algo: str, modules: dict, data: dict, capacity: int):
    """The official agent of `algo` (its checkout's modules), with `data` in its buffer."""
    return (OfficialTD7 if algo == "TD7" else OfficialPolicy)(algo, modules, data, capacity)


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
    """Our Agent of `algo` with default Args, as benchmarks/throughput.py builds them; td3_bc's with the dataset
    loaded through its load_dataset, which normalizes the states."""

    def __init__(self, algo: str, data: dict, capacity: int):
        self.module = importlib.import_module(algo.lower())
        offline = algo in OFFLINE
        self.args = self.module.Args() if offline else self.module.Args(env=ENV_ID, buffer_size=capacity)
        self.agent = self.module.Agent(STATE_DIM, ACTION_DIM, self.args, torch.device("cpu"))
        (self.agent.load_dataset if offline else self.agent.replay_buffer.load)(data)
        self.replay_buffer, self.critic = self.agent.replay_buffer, self.agent.critic
        self.acting = {"use_checkpoint": False} if algo == "TD7" else {}  # the policy being trained, as main() acts

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
            pairs[algo, n] = {"ours": Ours(algo, data, capacity),
                              "official": official_agent(algo, modules, data, capacity)}
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


# ---- --check: the same update, not the same speed ----
# Both sides are built as above, on a small buffer of the same random transitions (TD3+BC: a dataset that each side
# normalizes its own way); the official networks start from our weights (every copy: targets, fixed encoders,
# checkpoints); at each step both are handed the same batch and draw the same target policy noise (DDPG draws none);
# what they compute is compared after every step, every parameter at the end.
# All of it twice: in float32, as both train, and in float64 from the same weights, batches and noise. In float64
# the same computation done in a different order (batched twin critics, fused Adam) agrees to ~1e-15, so
# any real difference stands out. In float32, rounding amplified over many steps (Adam divides by sqrt(v) + 1e-8,
# which makes a near-zero gradient's step sensitive to its last bits; ReLU/ELU kinks; clipped noise) reaches
# ~1e-3 in 260 TD3 steps, as far as each code's own float32 run is from its float64 run: that puts it in scale.

CHECK_N = 4096  # transitions in each side's buffer for --check: the batches are drawn from these
CHECK_SEED = 12345
# Pass in float64: max |ours - official| <= F64_TOL x max(1, max |official|), for every compared tensor.
F64_TOL = 1e-9
# Pass in float32: max |ours - official| <= F32_TOL x max(1, max |official|), or no more than F32_FLOOR times the
# float32 error of the two codes themselves (max |float32 run - float64 run| of ours plus that of theirs, plus the
# float64 difference): by the triangle inequality that bound holds once float64 agrees; the float64 test decides.
F32_TOL = 1e-5
F32_FLOOR = 1.0
# Our twin critics' TwinLinear layers, by name, and the official nn.Linear layers of Q1 and Q2 they hold.
# DDPG has one critic, with the same layer names on both sides.
TWIN_LAYERS = {"TD3": {"l1": ("l1", "l4"), "l2": ("l2", "l5"), "l3": ("l3", "l6")},
               "TD7": {"l0": ("q01", "q02"), "l1": ("q1", "q4"), "l2": ("q2", "q5"), "l3": ("q3", "q6")}}
TWIN_LAYERS["TD3_BC"] = TWIN_LAYERS["TD3"]
# The networks of each agent, by attribute name (the same on both sides), and whether each is a copy.
NETWORKS = {"TD3": {"actor": False, "actor_target": True, "critic": False, "critic_target": True},
            "TD7": {"actor": False, "actor_target": True, "critic": False, "critic_target": True,
                    "encoder": False, "fixed_encoder": True, "fixed_encoder_target": True,
                    "checkpoint_actor": True, "checkpoint_encoder": True}}
NETWORKS["DDPG"] = NETWORKS["TD3_BC"] = NETWORKS["TD3"]
# The losses each update backpropagates, in the order it calls backward(); the actor's only on delayed steps.
LOSSES = {"TD3": ["critic", "actor"], "TD7": ["encoder", "critic", "actor"], "TD3_BC": ["critic", "actor"],
          "DDPG": ["critic", "actor"]}
DRAWS = {"TD3": 1, "TD7": 1, "TD3_BC": 1, "DDPG": 0}  # torch.randn_like calls per update: the target policy noise
# What is compared: losses and parameters for all, and what an algorithm has beyond them.
COLUMNS = ("losses", "params", "priorities", "clip", "normalization")
EXTRA_COLUMNS = {"TD7": ("priorities", "clip"), "TD3_BC": ("normalization",)}


class Mismatch(Exception):
    """A difference that is not rounding: structure, hyperparameters, batches, random draws."""


def paired_parameters(algo: str, name: str, ours: torch.nn.Module, theirs: torch.nn.Module) -> list:
    """[(label, our tensor in their layout, their parameter)] covering every parameter of both networks exactly
    once. Critics: our TwinLinear weight (2, in, out) holds Q1's W^T at [0] and Q2's at [1], its bias (2, 1, out)
    their biases; every other network has the same parameter names and shapes on both sides."""
    pairs, theirs_params = [], dict(theirs.named_parameters())
    twin = TWIN_LAYERS.get(algo) if name.startswith("critic") else None
    for label, p in ours.named_parameters():
        if twin is None:
            pairs.append((f"{name}.{label}", p, theirs_params.pop(label, None)))
            continue
        layer, kind = label.split(".")
        for head, their_layer in enumerate(twin[layer]):
            view = p[head].t() if kind == "weight" else p[head, 0]
            pairs.append((f"{name}.{label}[Q{head + 1}] = {their_layer}.{kind}", view,
                          theirs_params.pop(f"{their_layer}.{kind}", None)))
    missing = [label for label, _, q in pairs if q is None]
    wrong = [f"{label} {tuple(p.shape)} vs {tuple(q.shape)}" for label, p, q in pairs
             if q is not None and p.shape != q.shape]
    if missing or wrong or theirs_params:
        raise Mismatch(f"{algo} {name}: the parameters do not pair up: ours without theirs {missing}, shapes {wrong}, "
                       f"theirs without ours {list(theirs_params)}")
    return pairs


class Worst:
    """The largest difference over a series of tensors: max |a - b|, and the largest of max |a - b| / max(1, max |b|)
    with where it was seen; first: where that exceeded F32_TOL first (the series are in step order). A value that is
    not finite counts as an infinite difference; python floats are read as float64, not float32."""

    def __init__(self):
        self.diff, self.scaled, self.where, self.first = 0.0, 0.0, "-", None

    def add(self, a, b, where: str):
        a, b = ((x.detach() if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, np.float64))).double().reshape(-1)
                for x in (a, b))
        if a.shape != b.shape:
            raise Mismatch(f"{where}: shapes {tuple(a.shape)} and {tuple(b.shape)}")
        diff = (a - b).abs().max().item() if len(a) else 0.0
        scaled = diff / max(1.0, b.abs().max().item() if len(b) else 0.0)
        if not (math.isfinite(diff) and math.isfinite(scaled)):
            diff = scaled = math.inf
        if scaled > self.scaled or self.where == "-":
            self.scaled, self.where = scaled, where
        if scaled > F32_TOL and self.first is None:
            self.first = where
        self.diff = max(self.diff, diff)
        return self


def differences(x: dict, y: dict, columns=COLUMNS) -> dict:
    """Worst per column between two sides' records (the same labels in the same order)."""
    worst = {}
    for column in columns:
        worst[column] = Worst()
        for (label, a), (other, b) in zip(x[column], y[column], strict=True):
            assert label == other, (label, other)
            worst[column].add(a, b, label)
    return worst


@contextlib.contextmanager
def patched(owner, name: str, wrapper):
    original = getattr(owner, name)
    setattr(owner, name, wrapper(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def default_dtype(dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class Recorder:
    """What one train() call of one side hands out: the batch it sampled (the fixed one, see sample), the target
    policy noise it drew (torch.randn_like), the losses it backpropagated (Tensor.backward, in order) and the LAP
    priorities it set (update_priority)."""

    def __init__(self, side_buffer, rows):
        self.batch, self.draws, self.losses, self.priorities = None, [], [], []
        self.buffer, self.rows, self.ind = side_buffer, rows, None
        side_buffer.sample = self.sample  # an instance attribute: the class, theirs or ours, is untouched
        if hasattr(side_buffer, "update_priority"):
            update = side_buffer.update_priority

            def update_priority(priority):
                self.priorities.append(priority.detach().reshape(-1).clone())
                return update(priority)
            side_buffer.update_priority = update_priority

    def sample(self, *args):
        """The rows self.ind of this side's own buffer, instead of a draw."""
        self.batch = self.rows(self.buffer, self.ind)
        return self.batch

    def train(self, train, ind, seed: int):
        """One train() call of one side on the rows `ind` of its buffer, torch seeded with `seed` just before."""
        self.ind, self.batch, self.draws, self.losses, self.priorities = ind, None, [], [], []

        def randn_like(original):
            def draw(like):
                # Drawn in float32 whatever the run's dtype (in float32, exactly their call), so that the float64
                # run draws the very same noise as the float32 one: torch's float64 normal draws other numbers.
                out = original(like.float()).to(like.dtype)
                self.draws.append(out.clone())
                return out
            return draw

        def backward(original):
            def record(loss, *args, **kwargs):
                self.losses.append(loss.detach().clone())
                return original(loss, *args, **kwargs)
            return record

        torch.manual_seed(seed)
        with patched(torch, "randn_like", randn_like), patched(torch.Tensor, "backward", backward):
            train()


def our_rows(buffer, ind):
    """Our LAPBuffer.sample without the draw: the rows `ind` (float32, as stored, then in the run's dtype), with
    buffer.ind set for update_priority."""
    buffer.ind = torch.as_tensor(ind, device=buffer.device)
    return buffer.transitions.index_select(0, buffer.ind).to(torch.get_default_dtype()).split(buffer.split, dim=1)


def their_rows(buffer, ind):
    """The official buffers' sample() without the draw: the rows `ind` of their float64 arrays as float32 tensors
    (then in the run's dtype), with buffer.ind set for TD7's update_priority."""
    buffer.ind = ind
    return tuple(torch.tensor(getattr(buffer, key)[ind], dtype=torch.float32, device=buffer.device)
                 .to(torch.get_default_dtype()) for key in ("state", "action", "next_state", "reward", "not_done"))


def give_copies_own_weights(agent, algo: str, generator: torch.Generator):
    """Our target, fixed and checkpoint copies start equal to the trained networks; each gets weights of its own
    (the trained network's, moved by up to 10% of that tensor's largest value), so that a side that read the wrong
    copy anywhere would differ from the first step."""
    with torch.no_grad():
        for name, is_copy in NETWORKS[algo].items():
            if is_copy:
                for p in getattr(agent, name).parameters():
                    noise = torch.rand(p.shape, generator=generator, dtype=p.dtype) * 2 - 1
                    p.add_(noise * 0.1 * p.abs().max())


# Settings our Args must share with the official main.py (its agent does not hold them), or that the official code
# has no switch for: TD3+BC's behaviour cloning and state normalization, DDPG's Gaussian exploration noise.
MAIN_PY = {"TD3": {"batch_size": BATCH_SIZE, "start_timesteps": 25_000, "exploration_noise": EXPLORATION_NOISE},
           "TD3_BC": {"batch_size": BATCH_SIZE, "normalize": True, "bc": True}, "TD7": {}}
MAIN_PY["DDPG"] = MAIN_PY["TD3"] | {"noise": "gaussian"}


def same_hyperparameters(algo: str, a, their_agent):
    """Ours and theirs train with the same hyperparameters, where the two codes name them differently."""
    same = {key: (getattr(a, key), value) for key, value in MAIN_PY[algo].items()}
    if algo == "TD7":
        same |= {key: (getattr(a, key), getattr(their_agent.hp, key)) for key in (
            "batch_size", "discount", "target_update_rate", "target_policy_noise", "noise_clip", "policy_freq",
            "alpha", "min_priority", "zs_dim", "enc_hdim", "critic_hdim", "actor_hdim")}
        same |= {"lap": (a.lap, their_agent.replay_buffer.prioritized), "max_action": (1.0, their_agent.max_action),
                 "encoder_lr": (a.encoder_lr, their_agent.encoder_optimizer.param_groups[0]["lr"])}
    else:
        same |= {"discount": (a.discount, their_agent.discount), "tau": (a.tau, their_agent.tau),
                 "max_action": (1.0, their_agent.actor.max_action)}
        if algo != "DDPG":  # TD3's tricks
            same |= {"target_policy_noise": (a.target_policy_noise, their_agent.policy_noise),
                     "noise_clip": (a.noise_clip, their_agent.noise_clip),
                     "policy_freq": (a.policy_freq, their_agent.policy_freq)}
        if algo == "TD3_BC":
            same["alpha"] = (a.alpha, their_agent.alpha)
    for net in ("actor", "critic"):
        same[f"{net}_lr"] = (getattr(a, f"{net}_lr"), getattr(their_agent, f"{net}_optimizer").param_groups[0]["lr"])
    differ = {key: pair for key, pair in same.items() if pair[0] != pair[1]}
    if differ:
        raise Mismatch(f"{algo}: different hyperparameters (ours, official): {differ}")


def offline_dataset(n: int) -> dict:
    """random_transitions(n) with each state dimension shifted and scaled its own way (means -10..10, stds 0.01..20,
    as a D4RL dataset's angles and velocities differ), so that normalizing the states changes them."""
    data = random_transitions(n)
    rng = np.random.default_rng(1)
    shift, scale = rng.uniform(-10, 10, STATE_DIM), np.exp(rng.uniform(np.log(0.01), np.log(20), STATE_DIM))
    return data | {key: data[key] * scale + shift for key in ("observations", "next_observations")}


def check_data(algo: str) -> dict:
    """The transitions of --check for `algo`, float64 (so that both sides' normalizations give the same batches)."""
    return offline_dataset(CHECK_N) if algo in OFFLINE else random_transitions(CHECK_N)


def normalization(ours, theirs, data: dict, dtype: torch.dtype) -> dict:
    """TD3+BC's state normalization, per side: the statistics (ours: the agent's state_mean and state_std, set by its
    load_dataset; theirs: what normalize_states returned) and the actions of the actor for raw dataset states as
    each acts in evaluation (ours normalizes inside the agent, in select_action's float32; their main.py normalizes
    in numpy's float64 before select_action)."""
    raw = data["observations"][:BATCH_SIZE]
    with torch.no_grad():
        actions = {"ours": ours.agent.policy(torch.as_tensor(raw, dtype=dtype)),
                   "official": theirs.agent.actor(torch.as_tensor((raw - theirs.state_mean) / theirs.state_std,
                                                                  dtype=dtype))}
    stats = {"ours": (ours.agent.state_mean, ours.agent.state_std), "official": (theirs.state_mean, theirs.state_std)}
    return {side: [("state mean", stats[side][0]), ("state std", stats[side][1]),
                   ("actions for raw states, at the end", actions[side])] for side in stats}


def stored_in_float32(modules: dict) -> dict:
    """TD3+BC's normalization of the check's dataset stored in float32, as D4RL's files store it: our load_dataset
    computes in float64 (the statistics, and the normalized states before the buffer keeps them in float32), the
    official normalize_states in the data's float32. Both against "exact": the official formula on the same float32
    values in float64. Returns the largest differences (Worst) per pair of sides, over the mean, the std and the
    normalized states and next states of the whole buffer, and ok: ours is the float32 rounding of exact (within
    2^-24 of each value)."""
    data = {key: value.astype(np.float32) for key, value in offline_dataset(CHECK_N).items()}
    with default_dtype(torch.float32):
        ours = Ours("TD3_BC", data, CHECK_N)
        official = {"official": OfficialPolicy("TD3_BC", modules, data, CHECK_N),
                    "exact": OfficialPolicy("TD3_BC", modules, {k: v.astype(np.float64) for k, v in data.items()},
                                            CHECK_N)}
    batch = our_rows(ours.replay_buffer, np.arange(CHECK_N))
    values = {"ours": (ours.agent.state_mean, ours.agent.state_std, batch[0], batch[2])}
    values |= {side: (o.state_mean, o.state_std, o.replay_buffer.state, o.replay_buffer.next_state)
               for side, o in official.items()}
    worst = {pair: Worst() for pair in (("ours", "exact"), ("official", "exact"), ("ours", "official"))}
    ok = True
    for i, label in enumerate(("state mean", "state std", "normalized states", "normalized next states")):
        for (a, b), w in worst.items():
            w.add(values[a][i], values[b][i], label)
        mine, exact = (torch.as_tensor(values[side][i]).double().reshape(-1) for side in ("ours", "exact"))
        ok &= bool(((mine - exact).abs() <= 2 ** -24 * exact.abs() + 1e-12 * max(1.0, exact.abs().max())).all())
    return {"worst": worst, "ok": ok}


def run_pair(algo: str, modules: dict, steps: int, dtype: torch.dtype, init: dict = None) -> dict:
    """`steps` train() calls of ours and of theirs, built in `dtype`, on the same batches with the same noise.
    init: our initial weights, every network (None: torch's draw, the copies then given weights of their own).
    Returns what each side computed, as {"ours": records, "official": records}, records being, per column,
    [(label, tensor)] in the same order on both sides, and the worst parameter difference over all steps."""
    with default_dtype(dtype):
        data = check_data(algo)
        ours, theirs = Ours(algo, data, CHECK_N), official_agent(algo, modules, data, CHECK_N)
        our_agent, their_agent = ours.agent, theirs.agent
        if init is None:
            give_copies_own_weights(our_agent, algo, torch.Generator().manual_seed(CHECK_SEED))
            init = {name: {key: value.clone() for key, value in getattr(our_agent, name).state_dict().items()}
                    for name in NETWORKS[algo]}
        else:
            for name, state in init.items():
                getattr(our_agent, name).load_state_dict(state)  # cast to dtype
        same_hyperparameters(algo, ours.args, their_agent)
        policy_freq = 1 if algo == "DDPG" else ours.args.policy_freq  # DDPG: the actor at every step

        # Our weights into theirs, every network; then every pair must be bitwise equal.
        pairs = [pair for name in NETWORKS[algo]
                 for pair in paired_parameters(algo, name, getattr(our_agent, name), getattr(their_agent, name))]
        with torch.no_grad():
            for _, p, q in pairs:
                q.copy_(p)
        if not all(p.dtype == q.dtype == dtype and torch.equal(p, q) for _, p, q in pairs):
            raise Mismatch(f"{algo}: the official networks could not be given our initial weights in {dtype}")

        sides = {"ours": (ours, Recorder(ours.replay_buffer, our_rows)),
                 "official": (theirs, Recorder(theirs.replay_buffer, their_rows))}
        records = {name: {column: [] for column in COLUMNS} for name in sides}
        params_any = Worst()
        rng = np.random.default_rng(CHECK_SEED)
        counts = {"actor": 0, "hard copies": 0}
        for step in range(1, steps + 1):
            # Distinct rows: with a repeated index the official LAP keeps one of its priorities, ours the largest.
            ind = np.sort(rng.choice(CHECK_N, BATCH_SIZE, replace=False))
            for side, recorder in sides.values():
                recorder.train(side.train, ind, CHECK_SEED + step)
            mine, other = sides["ours"][1], sides["official"][1]

            # The same inputs: the batch (actions in [-1, 1]) and the random draws.
            if mine.batch is None or other.batch is None:
                raise Mismatch(f"{algo} step {step}: a side did not sample its batch")
            if [x.shape for x in mine.batch] != [y.shape for y in other.batch] or \
                    not all(torch.equal(x, y) for x, y in zip(mine.batch, other.batch)):
                raise Mismatch(f"{algo} step {step}: the two buffers hold different rows {ind[:4]}...")
            if mine.batch[0].dtype != dtype or not bool((mine.batch[1].abs() <= MAX_ACTION).all()):
                raise Mismatch(f"{algo} step {step}: a batch not in {dtype}, or actions outside [-1, 1]")
            if not len(mine.draws) == len(other.draws) == DRAWS[algo] or \
                    not all(torch.equal(x, y) for x, y in zip(mine.draws, other.draws)):
                raise Mismatch(f"{algo} step {step}: the random draws differ: ours made {len(mine.draws)} randn_like "
                               f"draws, theirs {len(other.draws)}, {DRAWS[algo]} expected" +
                               (", of different numbers" if len(mine.draws) == len(other.draws) else ""))

            # Losses, in the order backpropagated.
            delayed = step % policy_freq == 0
            names = [n for n in LOSSES[algo] if n != "actor" or delayed]
            for name, (_, recorder) in sides.items():
                if len(recorder.losses) != len(names):
                    raise Mismatch(f"{algo} step {step}: expected the losses {names}, {name} backpropagated "
                                   f"{len(recorder.losses)}")
                records[name]["losses"] += [(f"{n} loss, step {step}", x) for n, x in zip(names, recorder.losses)]
            counts["actor"] += delayed

            if algo == "TD7":
                for name, (_, recorder) in sides.items():
                    if len(recorder.priorities) != 1:
                        raise Mismatch(f"{algo} step {step}: {name} set LAP priorities {len(recorder.priorities)} "
                                       f"times")
                    records[name]["priorities"].append((f"step {step}", recorder.priorities[0]))
                counts["hard copies"] += step % ours.args.target_update_rate == 0
                records["ours"]["clip"].append((f"step {step}", torch.stack([
                    our_agent.Q_min.double(), our_agent.Q_max.double(), our_agent.running_min.double(),
                    our_agent.running_max.double(), our_agent.replay_buffer.max_priority.double()])))
                records["official"]["clip"].append((f"step {step}", torch.tensor([
                    their_agent.min_target, their_agent.max_target, their_agent.min, their_agent.max,
                    their_agent.replay_buffer.max_priority], dtype=torch.float64)))

            for label, p, q in pairs:
                params_any.add(p, q, f"{label}, step {step}")

        for name, buffer in (("ours", our_agent.replay_buffer.tree.leaves[:CHECK_N] if algo == "TD7" else None),
                             ("official", their_agent.replay_buffer.priority[:CHECK_N] if algo == "TD7" else None)):
            if buffer is not None:  # every stored priority, not only the batches'
                records[name]["priorities"].append(("stored priorities at the end", buffer.clone()))
        for label, p, q in pairs:
            records["ours"]["params"].append((label, p.detach().clone()))
            records["official"]["params"].append((label, q.detach().clone()))
        if algo in OFFLINE:
            for side, compared in normalization(ours, theirs, data, dtype).items():
                records[side]["normalization"] += compared
    return {"records": records, "params_any": params_any, "counts": counts, "init": init}


def columns(algo: str) -> tuple:
    """What is compared for `algo`, of COLUMNS."""
    return ("losses", "params") + EXTRA_COLUMNS.get(algo, ())


def compare(algo: str, modules: dict, steps: int, float32: bool = True) -> dict:
    """Ours against the official `algo` (modules: its checkout's) over `steps` train() calls in float64, and first in
    float32 unless float32=False. Returns "ok" (the verdict), "mismatch" (a difference that is not rounding: it
    stopped the check) or None, "failures" (lines), the differences d64 (and d32, and own: each code's float32 error)
    per column, the runs, and "stored32" for TD3+BC (stored_in_float32)."""
    try:
        torch.manual_seed(CHECK_SEED)
        run32 = run_pair(algo, modules, steps, torch.float32) if float32 else None
        run64 = run_pair(algo, modules, steps, torch.float64, init=run32["init"] if float32 else None)
        stored32 = stored_in_float32(modules) if algo in OFFLINE else None
    except Mismatch as e:
        return {"ok": False, "mismatch": str(e), "failures": [f"mismatch: {e}"]}
    rec64 = run64["records"]
    d64 = differences(rec64["ours"], rec64["official"])
    failures = [f"float64 {c}: {d64[c].diff:.3g} at {d64[c].where}, {d64[c].scaled:.3g} of its scale, above "
                f"{F64_TOL:g}" for c in COLUMNS if d64[c].scaled > F64_TOL]
    if run64["params_any"].scaled > F64_TOL:
        failures.append(f"float64 params: {run64['params_any'].scaled:.3g} of scale at {run64['params_any'].where}")
    if stored32 is not None and not stored32["ok"]:
        failures.append(f"normalization of the float32 dataset: ours is not the float32 rounding of the exact "
                        f"normalization; {stored32['worst']['ours', 'exact'].diff:.3g} off at "
                        f"{stored32['worst']['ours', 'exact'].where}")
    result = {"mismatch": None, "d64": d64, "run32": run32, "run64": run64, "stored32": stored32}
    if float32:
        rec32 = run32["records"]
        d32 = differences(rec32["ours"], rec32["official"])
        # The float32 error of each code on its own: its float32 run against its float64 run.
        own = {side: differences(rec32[side], rec64[side]) for side in ("ours", "official")}
        for c in COLUMNS:
            # |ours32 - official32| <= |ours32 - ours64| + |ours64 - official64| + |official64 - official32|: once
            # float64 agrees, this bound holds; what it says is that the float32 difference is rounding's.
            floor = own["ours"][c].diff + own["official"][c].diff + d64[c].diff
            if d32[c].scaled > F32_TOL and d32[c].diff > F32_FLOOR * floor:
                failures.append(f"float32 {c}: {d32[c].diff:.3g} at {d32[c].where}, above {F32_TOL:g} of its scale "
                                f"and above the two codes' own float32 error {floor:.3g}")
        result |= {"d32": d32, "own": own}
    return result | {"ok": not failures, "failures": failures}


def check(official: dict, steps: int, paths: dict) -> bool:
    """The --check tables, for each algorithm of `official` ({algorithm: its checkout's modules}); True when every
    one passes."""
    print(f"Check: our update against the official one, {steps} train() steps each, from the same initial weights "
          f"(every copy), on the same batches, with the same target policy noise; CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print("Official code: " + ", ".join(f"{repo} at {path} (commit {git_commit(path)})"
                                        for repo, path in paths.items()))
    print("Compared: every loss (each step), TD7's LAP priorities (each step, and all stored at the end), TD7's clip "
          "range Q_min/Q_max vs min_target/max_target with the running min/max and the LAP max priority (each step), "
          "TD3+BC's state normalization (mean, std, and the actions for raw states at the end), every parameter "
          "(each step and at the end). A difference is max |ours - official|.")
    print(f"Pass: in float64, every difference <= {F64_TOL:g} x max(1, max |official|) of its tensor (the same "
          f"arithmetic in another order agrees to ~1e-15); in float32, <= {F32_TOL:g} x that scale, or no larger than "
          f"the float32 rounding error of the two codes themselves (each one's float32 run against its float64 run), "
          f"which Adam amplifies over many steps.\n")
    results, start = {}, time.perf_counter()
    for algo, modules in official.items():
        began = time.perf_counter()
        results[algo] = compare(algo, modules, steps)
        results[algo]["seconds"] = time.perf_counter() - began
        if results[algo]["mismatch"]:
            print(f"{algo}: MISMATCH: {results[algo]['mismatch']}\n")
    checked = {algo: r for algo, r in results.items() if not r["mismatch"]}

    def cells(worst, algo):
        return " | ".join(f"{worst[c].diff:.2e}" if c in columns(algo) else "-" for c in COLUMNS)

    print("| algorithm | steps | max \\|loss diff\\| | max \\|param diff\\| | max \\|LAP priority diff\\| | "
          "max \\|clip range diff\\| | max \\|normalization diff\\| | pass/fail |")
    print("|---|---|---|---|---|---|---|---|")
    for algo, r in results.items():
        if r["mismatch"]:
            print(f"| {algo} | - | - | - | - | - | - | FAIL: mismatch |")
            continue
        counts = r["run32"]["counts"]
        extra = f", {counts['hard copies']} hard cop{'y' if counts['hard copies'] == 1 else 'ies'}" \
            if algo == "TD7" else ""
        for dtype, worst in (("float32", r["d32"]), ("float64", r["d64"])):
            print(f"| {algo}, {dtype} | {steps} ({counts['actor']} actor{extra}) | {cells(worst, algo)} | "
                  f"{'pass' if r['ok'] else 'FAIL'} |")

    print("\nThe float32 rounding error of each code on its own (max |its float32 run - its float64 run|):\n")
    print("| algorithm | code | losses | params | LAP priorities | clip range | normalization |")
    print("|---|---|---|---|---|---|---|")
    for algo, r in checked.items():
        for side in ("ours", "official"):
            print(f"| {algo} | {side} | {cells(r['own'][side], algo)} |")

    for algo, r in checked.items():
        print()
        for dtype, worst, run in (("float32", r["d32"], r["run32"]), ("float64", r["d64"], r["run64"])):
            print(f"{algo}, {dtype}, largest differences relative to scale: " + "; ".join(
                f"{c}: {worst[c].scaled:.2g} ({worst[c].where})" for c in columns(algo)) +
                f"; params at any step: {run['params_any'].scaled:.2g} ({run['params_any'].where})")
        firsts = [w.first for w in (r["d32"]["losses"], r["run32"]["params_any"]) if w.first]
        print(f"{algo}, float32, first beyond {F32_TOL:g} of scale: " + ("; ".join(firsts) or "none"))
        if r["stored32"] is not None:
            print(f"{algo}, the dataset stored in float32 (as D4RL's files), normalized: max |difference| (at) between "
                  f"ours (computed in float64, kept in float32), official (computed in float32) and exact (the "
                  f"official formula in float64): " + "; ".join(
                      f"{a} - {b}: {w.diff:.2e} ({w.where})" for (a, b), w in r["stored32"]["worst"].items()) +
                  f"; ours {'is' if r['stored32']['ok'] else 'is NOT'} the float32 rounding of exact")
    for algo, r in results.items():
        for line in r["failures"]:
            print(f"{algo} FAIL, {line}")
    print(f"\nTook {time.perf_counter() - start:.0f} s: " + ", ".join(f"{algo} {r['seconds']:.0f} s"
                                                             for algo, r in results.items()))
    return all(r["ok"] for r in results.values())


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
    parser.add_argument("--td3", type=checkout("TD3"),
                        help="checkout of github.com/sfujim/TD3 (TD3.py, and OurDDPG.py for --check)")
    parser.add_argument("--td7", type=checkout("TD7"), help="checkout of github.com/sfujim/TD7")
    parser.add_argument("--td3-bc", type=checkout("TD3_BC"),
                        help="checkout of github.com/sfujim/TD3_BC (with --check only: TD3+BC is not timed)")
    parser.add_argument("--sizes", type=at_least(BATCH_SIZE), nargs="+", default=[100_000, 1_000_000],
                        help="transitions in the buffers")
    parser.add_argument("--threads", type=at_least(1), nargs="+", default=[1, 2], help="torch.set_num_threads")
    parser.add_argument("--steps", type=at_least(1), default=200,
                        help="train() calls (online steps) per side, configuration and round")
    parser.add_argument("--rounds", type=at_least(1), default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time the online loop (act + env.step + store + train) on HalfCheetah-v4")
    parser.add_argument("--check", action="store_true",
                        help="instead of timing: check that our updates reproduce the official ones (same losses and "
                             "parameters to float32 rounding from the same weights, batches and noise); exit status 1 "
                             "on a failure")
    parser.add_argument("--check-steps", type=at_least(1), default=260,
                        help="train() calls per side with --check (260: past TD7's first hard copy at step 250)")
    args = parser.parse_args()
    args.sizes, args.threads = list(dict.fromkeys(args.sizes)), list(dict.fromkeys(args.threads))
    paths = {repo: path for repo, path in (("TD3", args.td3), ("TD7", args.td7), ("TD3_BC", args.td3_bc)) if path}
    if not args.check and "TD3_BC" in paths:
        parser.error("--td3-bc is for --check only (TD3+BC is not timed)")
    if not paths:
        parser.error("no official code named: give --td3 PATH and/or --td7 PATH" +
                     (" and/or --td3-bc PATH" if args.check else " (and --check to check instead of timing)"))
    modules = {}
    for repo, path in paths.items():
        try:
            modules[repo] = load_official(path, repo)
        except Exception as e:  # their code, or not theirs: one line, as for a wrong path
            parser.error(f"cannot import the official {repo} from {path}: {type(e).__name__}: {e}")
    # Every algorithm whose checkout is named: all of them with --check, TD3 and TD7 for timing.
    official = {algo: modules[repo] for algo, repo in REPOS.items()
                if repo in modules and (args.check or algo in TIMED)}
    # The official TD7's update_priority calls float() on a tensor that requires grad; torch warns once.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    if args.check:
        torch.set_num_threads(args.threads[0])
        sys.exit(0 if check(official, args.check_steps, paths) else 1)
    torch.manual_seed(0)
    np.random.seed(0)  # the official TD3 samples with np.random, both official loops add their noise with it
    best, checks = benchmark(official, args.sizes, args.threads, args.steps, args.rounds, args.end_to_end)
    report(best, checks, args, paths)


if __name__ == "__main__":
    main()
