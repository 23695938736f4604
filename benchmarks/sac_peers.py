"""Our sac.py against two trusted SAC implementations, gradient step for gradient step.

    python benchmarks/sac_peers.py --sb3 [--spinup PATH] [--steps 300] [--threads 1]

Peers (nothing of either is copied into this project):
- Stable-Baselines3's SAC (--sb3: the installed stable_baselines3 package) with its defaults: learned temperature
  (ent_coef="auto", from 1), target entropy -dim(A), Adam 3e-4, batch 256, tau 0.005, gamma 0.99, 256-256 networks;
  against ours with default Args, which are the same numbers. Built as SAC("MlpPolicy", env), on a stand-in
  environment with HalfCheetah's spaces (17-d states, 6-d actions in [-1, 1]), and driven through its own
  SAC.train(gradient_steps=1), its replay buffer's sample() replaced by one that hands it our batch.
- OpenAI Spinning Up's PyTorch SAC (--spinup PATH: the user's checkout of github.com/openai/spinningup,
  spinup/algos/pytorch/sac), fixed temperature 0.2 (its default alpha); against ours with --fixed-alpha --alpha 0.2.
  Its update lives in closures inside sac(): the check calls sac() with its defaults (but lr=3e-4, our rate;
  its default 1e-3 would differ, and its batch size and update schedule are loop matters) and a stand-in
  environment whose first reset(), which sac() calls right after defining update(), stops sac() and hands back
  sac()'s local variables; the check then calls that update(data) closure itself, step after step. Its files are
  loaded from PATH without spinup/__init__.py (which imports TensorFlow and every algorithm); stubbed, because
  this project needs neither: spinup.utils.logx (EpochLogger, logging only: every call does nothing; the real one
  imports TensorFlow, joblib and mpi4py) and gym (imported by sac.py, used only under its __main__).

Inputs, the same on both sides: our initial weights (actor, twin critics, target critics; the target critics first
moved off the critics by up to 10% of each tensor's largest value, so that a side reading the wrong copy differs
from step 1), mapped onto the peer's layout (our TwinLinear weight (2, in, out) holds Q1's W^T at [0], Q2's at [1]);
at each step the same batch (256 random transitions, HalfCheetah-shaped, 5% terminal) and the same standard normal
noise eps of the two reparameterized actions (a' at s' for the target, a at s for the actor and temperature): our
torch.randn_like and the peer's Normal.rsample (torch.distributions.normal._standard_normal) are replaced for the
step by one that hands out these, in the order each side draws them (ours and Spinning Up: s' then s; SB3: s
then s'); the check verifies that each side drew exactly twice. The batch and eps are float32 numbers, cast to
the run's dtype.

Compared after each of --steps steps: every loss as backpropagated (critic, actor, and with SB3 the temperature's),
the temperature exp(log alpha) after the step, and every parameter (actor, critics, target critics, and with SB3
log alpha = log_ent_coef); the parameters again at the end. All of it twice: in float32 (as both train) and in
float64 (same weights, batches and noise; each side's networks built in float64).

Patched in the peers for the check, one expression each; the float64 run is repeated with the peer's own
expression and its effect reported ("by-design differences", next to what float32 rounding alone does to our code
over the same steps, for scale):
- SB3, math: its squash correction sum log(1 - tanh(u)^2 + 1e-6) (SquashedDiagGaussianDistribution.log_prob) is
  replaced, on the actor's distribution instance, by ours, sum 2 (log 2 - u - softplus(-2u)), exact; its Gaussian
  part is its own. Measured: its expression as is (the 1e-6 term), and with epsilon = 0 (the naive
  log(1 - tanh(u)^2), whose float64 rounding alone is measured so: it grows with |u|: 2.7e-10 at u = 8).
- SB3, dtypes only: preprocess_obs casts observations to float32 (.float()); in float64 its output is cast back
  to the input's dtype, which is exact (the batches hold float32 numbers); in float32 it changes nothing.
- Spinning Up, math: its critic loss MSE(Q1, y) + MSE(Q2, y) is twice ours (SB3's and softlearning's
  0.5 (MSE + MSE)); the check backpropagates half of it (an exact factor). Half of it is what is compared, also
  in the run that measures its loss as is: there Adam sees gradients twice as large, the same as ours with
  Adam's eps halved.
Not patched, because they give the same numbers (which the float64 pass proves): SB3 steps the temperature
first, but its losses use alpha from before that step, as ours do, and its actor's sample at s is drawn before
the critic step from the same actor weights; SB3 and Spinning Up write the Polyak step as (1 - tau) t + tau p, and
Spinning Up's target Q networks as t * polyak + (1 - polyak) p with polyak 0.995, ours as lerp(t, p, tau); their
Gaussian log density is Normal.log_prob(u), ours -eps^2/2 - log std - log(2 pi)/2; Adam: theirs torch.optim.Adam
(for-each), ours fused, the same formula; SB3 does not freeze the critics for the actor's backward and Spinning Up's
freeze is a no-op (its q_params is an itertools.chain already used up by the critic optimizer): the critic
gradients they accumulate are cleared by zero_grad before the next critic step. Same on both sides, checked:
log std clamped to [-20, 2], log alpha the learned parameter (from 0), target entropy -6, hyperparameters.

Pass: in float64, every difference within 1e-9 of its tensor's scale max(1, max |peer|), at every step (the same
arithmetic in another order agrees to ~1e-15 there; any real difference stands out); in float32, within 1e-5 of
scale, or no more than the float32 rounding error of the two codes themselves (each one's float32 run against its
float64 run, plus the float64 difference), which Adam amplifies over many steps, as benchmarks/official.py --check.
Exit status 1 on a failure or mismatch, 2 on bad input.
"""

import argparse
import contextlib
import importlib.util
import math
import os
import sys
import types
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sac  # noqa: E402
# official.py's comparison helpers, shared
from benchmarks.official import Mismatch, Parser, Worst, default_dtype, differences, git_commit  # noqa: E402

STATE_DIM, ACTION_DIM = 17, 6  # HalfCheetah's shapes; its actions are in [-1, 1]
BATCH_SIZE = 256  # ours, SB3's default
CHECK_SEED = 12345
SPINUP_ALPHA = 0.2  # Spinning Up's default (fixed) temperature
# Pass in float64: max |ours - peer| <= F64_TOL x max(1, max |peer|), for every compared tensor.
F64_TOL = 1e-9
# Pass in float32: <= F32_TOL x that scale, or <= F32_FLOOR x the two codes' own float32 error plus the float64
# difference, |ours32 - ours64| + |peer32 - peer64| + |ours64 - peer64| (the triangle inequality's bound).
F32_TOL = 1e-5
F32_FLOOR = 1.0
COLUMNS = ("losses", "temperature", "params")
# Our layers (by name) and the peer's: a name for the actor's, a (Q1, Q2) pair for the twin critics' TwinLinear.
SB3_LAYERS = {"actor": {"l1": "latent_pi.0", "l2": "latent_pi.2", "mean": "mu", "log_std": "log_std"},
              "critic": {"l1": ("qf0.0", "qf1.0"), "l2": ("qf0.2", "qf1.2"), "l3": ("qf0.4", "qf1.4")}}
SPINUP_LAYERS = {"actor": {"l1": "net.0", "l2": "net.2", "mean": "mu_layer", "log_std": "log_std_layer"},
                 "critic": {"l1": ("q1.q.0", "q2.q.0"), "l2": ("q1.q.2", "q2.q.2"), "l3": ("q1.q.4", "q2.q.4")}}
SPINUP_FILES = ("spinup/algos/pytorch/sac/core.py", "spinup/algos/pytorch/sac/sac.py")


@contextlib.contextmanager
def patched(owner, name: str, value):
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield original
    finally:
        setattr(owner, name, original)


# ---- the same inputs on both sides ----

def make_batch(step: int, dtype) -> tuple:
    """Step `step`'s batch as our replay buffer hands it: state, action, next_state, reward (B, 1), not_done (B, 1);
    float32 numbers (our buffer's), in `dtype`."""
    g, f32 = torch.Generator().manual_seed(CHECK_SEED + step), torch.float32
    state = torch.randn(BATCH_SIZE, STATE_DIM, generator=g, dtype=f32)
    action = torch.rand(BATCH_SIZE, ACTION_DIM, generator=g, dtype=f32) * 2 - 1
    next_state = torch.randn(BATCH_SIZE, STATE_DIM, generator=g, dtype=f32)
    reward = torch.randn(BATCH_SIZE, 1, generator=g, dtype=f32)
    not_done = (torch.rand(BATCH_SIZE, 1, generator=g, dtype=f32) > 0.05).to(f32)
    return tuple(x.to(dtype) for x in (state, action, next_state, reward, not_done))


def make_noise(step: int) -> dict:
    """Step `step`'s eps of the two reparameterized actions, float32: a' ~ pi(.|s') and a ~ pi(.|s)."""
    g = torch.Generator().manual_seed(CHECK_SEED + 1_000_000 + step)
    return {"next_state": torch.randn(BATCH_SIZE, ACTION_DIM, generator=g, dtype=torch.float32),
            "state": torch.randn(BATCH_SIZE, ACTION_DIM, generator=g, dtype=torch.float32)}


def run_step(side, batch: tuple, noise: dict) -> dict:
    """One gradient step of one side on `batch`, its reparameterized actions drawn with `noise` (in the order
    side.draw_order); returns {loss name: the loss}, times side.compare_scale[name] where given (a peer's loss
    defined at another scale than ours); side.loss_scale[name], where given, scales what is backpropagated."""
    draws, losses = [], []

    def draw(shape, dtype):
        if len(draws) == len(side.draw_order) or tuple(shape) != (BATCH_SIZE, ACTION_DIM):
            raise Mismatch(f"{side.name} drew noise of shape {tuple(shape)} after {len(draws)} draws")
        eps = noise[side.draw_order[len(draws)]].to(dtype)
        draws.append(eps)
        return eps.clone()

    def randn_like(like, **kwargs):
        return draw(like.shape, like.dtype)

    def standard_normal(shape, dtype=None, device=None):
        return draw(shape, dtype)

    def backward(loss, *args, **kwargs):
        name = side.loss_order[len(losses)] if len(losses) < len(side.loss_order) else f"extra loss {len(losses)}"
        losses.append((name, loss.detach() * side.compare_scale.get(name, 1.0)))
        return original_backward(loss * side.loss_scale[name] if name in side.loss_scale else loss, *args, **kwargs)

    with patched(torch, "randn_like", randn_like), \
            patched(torch.distributions.normal, "_standard_normal", standard_normal), \
            patched(torch.Tensor, "backward", backward) as original_backward:
        side.step(batch)
    if len(draws) != len(side.draw_order) or [name for name, _ in losses] != list(side.loss_order):
        raise Mismatch(f"{side.name} drew noise {len(draws)} times and backpropagated {[n for n, _ in losses]}, "
                       f"expected {len(side.draw_order)} draws and {list(side.loss_order)}")
    return dict(losses)


def pair_parameters(net: str, ours: torch.nn.Module, theirs: dict, layers: dict) -> list:
    """[(label, our tensor in the peer's layout, the peer's parameter)], every parameter of both exactly once.
    theirs: the peer's {name: parameter}; layers: our layer -> theirs, or -> (Q1's, Q2's) for a TwinLinear, whose
    weight (2, in, out) holds W^T of Q1 at [0] and of Q2 at [1], and whose bias (2, 1, out) their biases."""
    theirs, pairs = dict(theirs), []
    for label, p in ours.named_parameters():
        layer, kind = label.rsplit(".", 1)
        target = layers.get(layer)
        if isinstance(target, tuple):
            for head, their_layer in enumerate(target):
                view = p[head].t() if kind == "weight" else p[head, 0]
                pairs.append((f"{net}.{label}[Q{head + 1}] = {their_layer}.{kind}", view,
                              theirs.pop(f"{their_layer}.{kind}", None)))
        else:
            pairs.append((f"{net}.{label} = {target}.{kind}", p, theirs.pop(f"{target}.{kind}", None)))
    missing = [label for label, _, q in pairs if q is None]
    wrong = [f"{label} {tuple(p.shape)} vs {tuple(q.shape)}" for label, p, q in pairs
             if q is not None and p.shape != q.shape]
    if missing or wrong or theirs:
        raise Mismatch(f"{net}: the parameters do not pair up: ours without theirs {missing}, shapes {wrong}, "
                       f"theirs without ours {list(theirs)}")
    return pairs


def same(what: str, pairs: dict):
    """Ours and the peer's settings, {name: (ours, peer's)}, must be equal."""
    differ = {key: pair for key, pair in pairs.items() if pair[0] != pair[1]}
    if differ:
        raise Mismatch(f"{what}: different settings (ours, peer's): {differ}")


def adam_settings(optimizer) -> tuple:
    group = optimizer.param_groups[0]
    return group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"], group["amsgrad"], group["maximize"]


# ---- the sides ----

class Ours:
    """sac.Agent with default Args (with the peer's fixed temperature where it has one), trained through train()."""
    name = "ours"
    draw_order = ("next_state", "state")  # the target's a' first, then the actor's a
    loss_scale = compare_scale = {}

    def __init__(self, fixed_alpha: bool):
        self.args = sac.Args(buffer_size=BATCH_SIZE, fixed_alpha=fixed_alpha, alpha=SPINUP_ALPHA)
        self.agent = sac.Agent(STATE_DIM, ACTION_DIM, self.args, torch.device("cpu"))
        self.loss_order = ("critic", "actor") + (() if fixed_alpha else ("temperature",))

    def step(self, batch):
        def sample(batch_size):
            if batch_size != BATCH_SIZE:
                raise Mismatch(f"ours asked for a batch of {batch_size}")
            return batch
        self.agent.replay_buffer.sample = sample  # an instance attribute: LAPBuffer is untouched
        self.agent.train()

    def temperature(self):
        return self.agent.log_alpha.detach().exp()


def stand_in_spaces():
    import gymnasium

    return (gymnasium.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
            gymnasium.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32))


class StableBaselines3:
    """stable_baselines3.SAC("MlpPolicy", env) with its defaults, one SAC.train(gradient_steps=1) per step."""
    name = "SB3"
    fixed_alpha = False
    draw_order = ("state", "next_state")  # the actor's a first (for the temperature step), then the target's a'
    loss_order = ("temperature", "critic", "actor")
    loss_scale = compare_scale = {}
    layers = SB3_LAYERS
    # The by-design difference the check patches, each variant measured against ours: its name -> its variant.
    variants = {"its squash correction as is, log(1 - tanh(u)^2 + 1e-6)": "as is",
                "log(1 - tanh(u)^2): its correction with epsilon 0, the naive form's rounding alone": "epsilon 0"}

    def __init__(self, variant="patched"):
        """variant: "patched" (the check: our exact squash correction in place of its), "as is" or "epsilon 0"."""
        import gymnasium
        from stable_baselines3 import SAC
        from stable_baselines3.common.logger import Logger

        observation_space, action_space = stand_in_spaces()

        class StandIn(gymnasium.Env):
            def __init__(self):
                self.observation_space, self.action_space = observation_space, action_space

            def reset(self, seed=None, options=None):
                return np.zeros(STATE_DIM, np.float32), {}

            def step(self, action):
                return np.zeros(STATE_DIM, np.float32), 0.0, False, False, {}

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = SAC("MlpPolicy", StandIn(), buffer_size=BATCH_SIZE, learning_starts=0, device="cpu")
        self.model.set_logger(Logger(None, []))  # train() records its losses there; no output
        distribution = self.model.actor.action_dist
        if variant == "epsilon 0":
            distribution.epsilon = 0.0
        elif variant == "patched":
            from stable_baselines3.common.distributions import DiagGaussianDistribution

            def log_prob(actions, gaussian_actions=None):
                """Its log_prob with the correction sum log(1 - tanh(u)^2 + 1e-6) replaced by ours."""
                u = gaussian_actions
                return DiagGaussianDistribution.log_prob(distribution, u) - \
                    (2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))).sum(dim=1)
            distribution.log_prob = log_prob  # an instance attribute: the class is untouched

    def step(self, batch):
        from stable_baselines3.common import policies
        from stable_baselines3.common.type_aliases import ReplayBufferSamples

        state, action, next_state, reward, not_done = batch
        samples = ReplayBufferSamples(observations=state, actions=action, next_observations=next_state,
                                      dones=1 - not_done, rewards=reward)

        def sample(batch_size, env=None):
            if batch_size != BATCH_SIZE:
                raise Mismatch(f"SB3 asked for a batch of {batch_size}")
            return samples

        def preprocess_obs(obs, *args, **kwargs):  # its .float(), undone in float64 (exact: float32 numbers)
            return original(obs, *args, **kwargs).to(obs.dtype)

        self.model.replay_buffer.sample = sample
        with patched(policies, "preprocess_obs", preprocess_obs) as original:
            self.model.train(gradient_steps=1, batch_size=self.model.batch_size)

    def temperature(self):
        return self.model.log_ent_coef.detach().exp()

    def networks(self) -> dict:
        return {"actor": self.model.actor, "critic": self.model.critic, "critic_target": self.model.critic_target}

    def check_settings(self, ours: Ours):
        from stable_baselines3.sac import policies

        a, model = ours.args, self.model
        pairs = {"discount": (a.discount, model.gamma), "tau": (a.tau, model.tau),
                 "batch_size": (a.batch_size, model.batch_size),
                 "target_entropy": (ours.agent.target_entropy, model.target_entropy),
                 "log std bounds": ((sac.LOG_STD_MIN, sac.LOG_STD_MAX), (policies.LOG_STD_MIN, policies.LOG_STD_MAX)),
                 "initial log alpha": (ours.agent.log_alpha.item(), model.log_ent_coef.item()),
                 "target_update_interval": (1, model.target_update_interval), "use_sde": (False, model.use_sde)}
        for net, theirs in (("actor", model.actor.optimizer), ("critic", model.critic.optimizer),
                            ("alpha", model.ent_coef_optimizer)):
            pairs[f"{net} Adam (lr, betas, eps, weight decay, amsgrad, maximize)"] = (
                adam_settings(getattr(ours.agent, f"{net}_optimizer")), adam_settings(theirs))
        same("SB3", pairs)

    def extra_pairs(self, ours: Ours) -> list:
        return [("log_alpha = log_ent_coef", ours.agent.log_alpha.reshape(1), self.model.log_ent_coef)]


class Captured(Exception):
    """Raised by the stand-in environment's reset() to stop Spinning Up's sac() and hand back its locals."""

    def __init__(self, local_variables: dict):
        super().__init__("sac() stopped at its first env.reset()")
        self.local_variables = local_variables


class SilentLogger:
    """Stands in for spinup.utils.logx.EpochLogger: every call does nothing (logging only)."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def load_spinup(path: str) -> dict:
    """Spinning Up's spinup/algos/pytorch/sac/core.py and sac.py from the checkout at `path`, as modules; see the
    module docstring for what is stubbed. sys.modules is as it was afterwards."""
    stubs = ["spinup", "spinup.utils", "spinup.utils.logx", "spinup.algos", "spinup.algos.pytorch",
             "spinup.algos.pytorch.sac", "gym"]
    names = stubs + ["spinup.algos.pytorch.sac.core", "spinningup_sac"]
    before = {name: sys.modules.get(name) for name in names}
    try:
        for name in stubs:
            module = sys.modules[name] = types.ModuleType(name)
            if name.startswith("spinup") and name != "spinup.utils.logx":
                module.__path__ = []
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
        sys.modules["spinup.utils.logx"].EpochLogger = SilentLogger
        modules = {}
        for key, name, file in (("core", "spinup.algos.pytorch.sac.core", SPINUP_FILES[0]),
                                ("sac", "spinningup_sac", SPINUP_FILES[1])):
            spec = importlib.util.spec_from_file_location(name, os.path.join(path, file))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            modules[key] = module
        sys.modules["spinup.algos.pytorch.sac"].core = modules["core"]
        if not callable(getattr(modules["sac"], "sac", None)):
            raise ImportError("its sac.py has no sac()")
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return modules


class SpinningUp:
    """Spinning Up's update(data) closure, taken from a call of its sac() (see the module docstring)."""
    name = "Spinning Up"
    fixed_alpha = True
    draw_order = ("next_state", "state")  # compute_loss_q's a' first, then compute_loss_pi's a
    loss_order = ("critic", "actor")
    layers = SPINUP_LAYERS
    compare_scale = {"critic": 0.5}  # its critic loss MSE(Q1, y) + MSE(Q2, y) is twice ours: half of it compared
    variants = {"its critic loss MSE(Q1, y) + MSE(Q2, y) backpropagated as is, twice ours": "as is"}

    def __init__(self, modules: dict, variant="patched"):
        """variant: "patched" (the check: half its critic loss backpropagated) or "as is"."""
        self.modules = modules
        self.loss_scale = {"critic": 0.5} if variant == "patched" else {}
        observation_space, action_space = stand_in_spaces()

        class StandIn:
            def __init__(self):
                self.observation_space, self.action_space = observation_space, action_space

            def reset(self):
                raise Captured(dict(sys._getframe(1).f_locals))

        try:
            # Its defaults but lr (1e-3) and a small replay_size (never used: update() is handed our batches).
            modules["sac"].sac(StandIn, replay_size=BATCH_SIZE, lr=3e-4)
        except Captured as stopped:
            found = stopped.local_variables
        else:
            raise Mismatch("Spinning Up's sac() returned without calling env.reset()")
        wanted = ("update", "ac", "ac_targ", "pi_optimizer", "q_optimizer", "gamma", "polyak", "alpha")
        if any(name not in found for name in wanted):
            raise Mismatch(f"Spinning Up's sac() has no local {[n for n in wanted if n not in found]} at its first "
                           f"env.reset()")
        self.found = found

    def step(self, batch):
        state, action, next_state, reward, not_done = batch
        self.found["update"](data=dict(obs=state, act=action, rew=reward[:, 0], obs2=next_state,
                                       done=1 - not_done[:, 0]))

    def temperature(self):
        return torch.tensor(self.found["alpha"], dtype=torch.float64)

    def networks(self) -> dict:
        ac, ac_targ = self.found["ac"], self.found["ac_targ"]
        return {"actor": ac.pi, "critic": torch.nn.ModuleDict({"q1": ac.q1, "q2": ac.q2}),
                "critic_target": torch.nn.ModuleDict({"q1": ac_targ.q1, "q2": ac_targ.q2})}

    def check_settings(self, ours: Ours):
        a, f, core = ours.args, self.found, self.modules["core"]
        pairs = {"discount": (a.discount, f["gamma"]), "alpha": (a.alpha, f["alpha"]),
                 "log std bounds": ((sac.LOG_STD_MIN, sac.LOG_STD_MAX), (core.LOG_STD_MIN, core.LOG_STD_MAX)),
                 "actor Adam": (adam_settings(ours.agent.actor_optimizer), adam_settings(f["pi_optimizer"])),
                 "critic Adam": (adam_settings(ours.agent.critic_optimizer), adam_settings(f["q_optimizer"])),
                 "action limit": (1.0, float(f["ac"].pi.act_limit))}
        same("Spinning Up", pairs)
        if abs(a.tau - (1 - f["polyak"])) > 1e-15:  # 1 - 0.995 is 0.005 + 4e-18 in floating point
            raise Mismatch(f"Spinning Up: tau {a.tau}, its 1 - polyak {1 - f['polyak']}")

    def extra_pairs(self, ours: Ours) -> list:
        return []


# ---- the check ----

def initial_weights(agent) -> dict:
    """Our initial networks, the target critics moved off the critics (see the module docstring)."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            noise = torch.rand(p.shape, generator=generator, dtype=p.dtype) * 2 - 1
            p.add_(noise * 0.1 * p.abs().max())
    return {name: {key: value.clone() for key, value in getattr(agent, name).state_dict().items()}
            for name in ("actor", "critic", "critic_target")}


def run_pair(make_peer, steps: int, dtype, init: dict = None) -> dict:
    """`steps` steps of ours and of the peer (make_peer() builds it), both in `dtype`, from our initial weights
    `init` (None: torch's draw, see initial_weights), on the same batches with the same noise. Returns both
    sides' records ({column: [(label, tensor)]}, the same labels in the same order), the worst parameter
    difference over all steps and the initial weights."""
    with default_dtype(dtype):
        torch.manual_seed(CHECK_SEED)
        peer = make_peer()
        ours = Ours(fixed_alpha=peer.fixed_alpha)
        if init is None:
            init = initial_weights(ours.agent)
        else:
            for name, state in init.items():
                getattr(ours.agent, name).load_state_dict(state)  # cast to dtype
        peer.check_settings(ours)

        # Our weights into the peer's networks; then every pair must be bitwise equal.
        theirs = peer.networks()
        pairs = [pair for net, module in theirs.items()
                 for pair in pair_parameters(net, getattr(ours.agent, net), dict(module.named_parameters()),
                                             peer.layers["actor" if net == "actor" else "critic"])]
        pairs += peer.extra_pairs(ours)
        with torch.no_grad():
            for _, p, q in pairs:
                q.copy_(p)
        if not all(p.dtype == q.dtype == dtype and torch.equal(p, q) for _, p, q in pairs):
            raise Mismatch(f"{peer.name}: its networks could not be given our initial weights in {dtype}")

        records = {side: {column: [] for column in COLUMNS} for side in ("ours", "peer")}
        params_any, start = Worst(), [q.detach().clone() for _, _, q in pairs]
        for step in range(1, steps + 1):
            batch, noise = make_batch(step, dtype), make_noise(step)
            for side, name in ((ours, "ours"), (peer, "peer")):
                losses = run_step(side, batch, noise)
                records[name]["losses"] += [(f"{loss} loss, step {step}", losses[loss]) for loss in ours.loss_order]
                records[name]["temperature"].append((f"temperature, step {step}", side.temperature().clone()))
            for label, p, q in pairs:
                params_any.add(p, q, f"{label}, step {step}")
        for label, p, q in pairs:
            records["ours"]["params"].append((label, p.detach().clone()))
            records["peer"]["params"].append((label, q.detach().clone()))
        still = [label for (label, _, q), q0 in zip(pairs, start) if torch.equal(q, q0)]
        if still:  # equal because nothing moved would prove nothing
            raise Mismatch(f"{peer.name}: {len(still)} parameter tensors did not change in {steps} steps: {still[:3]}")
    return {"records": records, "params_any": params_any, "init": init}


def check_peer(make_peer, steps: int, effects: dict = None) -> dict:
    """The float32 and float64 runs of ours against one peer, with the verdict; and for each of `effects`
    ({name: a builder of the peer with its own expression in place of a patch}), that float64 run. Returns what
    report() prints; result["ok"]: whether the peer passed."""
    result = {"steps": steps, "mismatch": None, "effects": {}}
    try:
        run32 = run_pair(make_peer, steps, torch.float32)
        run64 = run_pair(make_peer, steps, torch.float64, init=run32["init"])
    except Mismatch as e:
        return result | {"mismatch": str(e), "ok": False}
    rec32, rec64 = run32["records"], run64["records"]
    d32, d64 = differences(rec32["ours"], rec32["peer"], COLUMNS), differences(rec64["ours"], rec64["peer"], COLUMNS)
    own = {side: differences(rec32[side], rec64[side], COLUMNS) for side in ("ours", "peer")}
    verdict = {}
    for column in COLUMNS:
        floor = own["ours"][column].diff + own["peer"][column].diff + d64[column].diff
        verdict[column] = (d32[column].scaled <= F32_TOL or d32[column].diff <= F32_FLOOR * floor,
                           d64[column].scaled <= F64_TOL, floor)
    ok = all(a and b for a, b, _ in verdict.values()) and run64["params_any"].scaled <= F64_TOL
    result |= {"d32": d32, "d64": d64, "own": own, "verdict": verdict, "run32": run32, "run64": run64, "ok": ok}
    for name, make_unpatched in (effects or {}).items():
        try:
            run = run_pair(make_unpatched, steps, torch.float64, init=run32["init"])
        except Mismatch as e:
            result["effects"][name] = str(e)
            continue
        result["effects"][name] = {"d": differences(run["records"]["ours"], run["records"]["peer"], COLUMNS),
                                   "params_any": run["params_any"]}
    return result


def report(name: str, version: str, r: dict):
    """Prints one peer's tables."""
    print(f"\n{name} ({version}), {r['steps']} steps:")
    if r["mismatch"]:
        print(f"{name}: MISMATCH: {r['mismatch']}")
        return
    print("\n| peer | dtype | max \\|loss diff\\| | max \\|temperature diff\\| | max \\|param diff\\| at the end | "
          "max \\|param diff\\| at any step | pass/fail |")
    print("|---|---|---|---|---|---|---|")
    for dtype, worst, run in (("float32", r["d32"], r["run32"]), ("float64", r["d64"], r["run64"])):
        print(f"| {name} | {dtype} | " + " | ".join(f"{worst[c].diff:.2e}" for c in COLUMNS) +
              f" | {run['params_any'].diff:.2e} | {'pass' if r['ok'] else 'FAIL'} |")
    print("\nThe float32 rounding error of each code on its own (max |its float32 run - its float64 run|): " +
          "; ".join(f"{side}: " + ", ".join(f"{c} {r['own'][side][c].diff:.2e}" for c in COLUMNS)
                    for side in ("ours", "peer")))
    for dtype, worst, run in (("float32", r["d32"], r["run32"]), ("float64", r["d64"], r["run64"])):
        print(f"{dtype}, largest differences relative to scale: " +
              "; ".join(f"{c}: {worst[c].scaled:.2g} ({worst[c].where})" for c in COLUMNS) +
              f"; params at any step: {run['params_any'].scaled:.2g} ({run['params_any'].where})")
    for c, (ok32, ok64, floor) in r["verdict"].items():
        if not ok32:
            print(f"{name} FAIL, float32 {c}: {r['d32'][c].diff:.3g} at {r['d32'][c].where}, above {F32_TOL:g} of its "
                  f"scale and above the two codes' own float32 error {floor:.3g}")
        if not ok64:
            print(f"{name} FAIL, float64 {c}: {r['d64'][c].diff:.3g} at {r['d64'][c].where}, "
                  f"{r['d64'][c].scaled:.3g} of its scale, above {F64_TOL:g}")
    if r["run64"]["params_any"].scaled > F64_TOL:
        print(f"{name} FAIL, float64 params: {r['run64']['params_any'].where}")
    if r["effects"]:
        print("\nBy-design differences, each measured: the float64 run with the peer's expression as named (relative "
              "to scale):\n")
        print("| peer | peer's expression | max loss diff | max temperature diff | max param diff at the end | "
              "max param diff at any step |")
        print("|---|---|---|---|---|---|")
        for what, e in r["effects"].items():
            if isinstance(e, str):
                print(f"| {name} | {what} | MISMATCH: {e} | | | |")
                continue
            d = e["d"]
            print(f"| {name} | {what} | " + " | ".join(f"{d[c].scaled:.2e} ({d[c].where})" for c in COLUMNS) +
                  f" | {e['params_any'].scaled:.2e} ({e['params_any'].where}) |")
        own = r["own"]["ours"]  # for scale: what float32 rounding alone does to our code over the same steps
        print(f"| {name} | (for scale: our own float32 run against our float64 run) | " +
              " | ".join(f"{own[c].scaled:.2e} ({own[c].where})" for c in COLUMNS) + " | - |")


# ---- command line ----

def spinup_checkout(path: str) -> str:
    missing = [file for file in SPINUP_FILES if not os.path.isfile(os.path.join(path, file))]
    if missing:
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of github.com/openai/spinningup: no "
                                         f"{' or '.join(missing)}")
    return os.path.abspath(path)


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def main():
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--sb3", action="store_true", help="check against the installed stable_baselines3's SAC")
    parser.add_argument("--spinup", type=spinup_checkout, metavar="PATH",
                        help="check against Spinning Up's PyTorch SAC in this checkout of github.com/openai/spinningup")
    parser.add_argument("--steps", type=at_least_one, default=300, help="gradient steps per run")
    parser.add_argument("--threads", type=at_least_one, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    if not args.sb3 and not args.spinup:
        parser.error("name a peer: --sb3, --spinup PATH, or both")
    peers = []  # (name, version, peer class, build(variant))
    if args.sb3:
        try:
            import stable_baselines3
        except ImportError as e:
            parser.error(f"--sb3: cannot import stable_baselines3 ({e}); pip install stable-baselines3")
        peers.append(("Stable-Baselines3 SAC", f"stable-baselines3 {stable_baselines3.__version__}",
                      StableBaselines3, StableBaselines3))
    if args.spinup:
        try:
            modules = load_spinup(args.spinup)
        except Exception as e:  # their code, or not theirs: one line, as for a wrong path
            parser.error(f"cannot import Spinning Up's SAC from {args.spinup}: {type(e).__name__}: {e}")
        peers.append(("Spinning Up SAC (PyTorch)", f"{args.spinup}, commit {git_commit(args.spinup)}",
                      SpinningUp, lambda variant: SpinningUp(modules, variant)))
    torch.set_num_threads(args.threads)
    print(f"Our sac.py against its peers, update for update: same initial weights, batches and noise; CPU, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s). A difference is max |ours - peer|.")
    print(f"Pass: in float64, every difference <= {F64_TOL:g} x max(1, max |peer|) of its tensor, at every step; in "
          f"float32, <= {F32_TOL:g} x that scale or no more than the two codes' own float32 rounding error.")
    ok = True
    for name, version, peer, build in peers:
        effects = {what: (lambda variant=variant: build(variant)) for what, variant in peer.variants.items()}
        result = check_peer(lambda: build("patched"), args.steps, effects)
        report(name, version, result)
        ok &= result["ok"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
