"""Our ppo.py against CleanRL's ppo_continuous_action.py, update for update and step for step.

    python benchmarks/ppo_peer.py --cleanrl PATH [--gymnasium DIR] [--envs Hopper-v4 HalfCheetah-v4]
                                  [--num-steps 2048] [--iterations 2] [--seed 1] [--max-episode-steps N]

PATH is the user's checkout of github.com/vwxyzjn/cleanrl (checked against commit fe8d8a0); nothing of it is copied
into this project. Its cleanrl/ppo_continuous_action.py is run, unmodified, with runpy as "__main__" in a child
process (its update loop is inline in that block), with its own command line (--env-id, --seed, --num-steps,
--total-timesteps, --no-cuda; every hyperparameter at its default, checked equal to ours). DIR is a folder where
gymnasium 0.29.1 can be imported (`pip install --no-deps --target DIR gymnasium==0.29.1`), the version CleanRL pins:
under our gymnasium 1.x its make_env fails (TransformObservation wants an observation_space), so the rollout side
needs DIR; without it only the update is checked. How the child drives CleanRL, all from outside its file:
- torch.optim.Adam is a subclass whose constructor first loads our initial weights into CleanRL's `agent` (CleanRL
  builds its optimizer right after its agent); its step() records the parameters after each whole update;
- torch.nn.utils.clip_grad_norm_ records, at each minibatch, what CleanRL's globals then hold (pg_loss, v_loss,
  entropy_loss, approx_kl, the last clipfrac, mb_inds, the learning rate) and the gradient norm it returns;
- numpy.random.shuffle writes our epoch's permutation (torch.randperm's, recorded on our side) into b_inds, and at
  each update's first epoch records CleanRL's flattened rollout (b_actions, b_logprobs, b_values, b_advantages,
  b_returns) and its V(s_T) (next_value, of the observation after the rollout, next_obs);
- the environment: for the update check gymnasium.vector.SyncVectorEnv is a replay of our rollout (CleanRL's whole
  wrapper stack is skipped: it gets our normalized observations, scaled rewards, terminations and truncations); for
  the rollout check gymnasium.make is a replay of the raw MuJoCo stream our run saw (observations, rewards,
  terminated, truncated; the actions it is sent are recorded), under CleanRL's own wrappers (RecordEpisodeStatistics,
  ClipAction, NormalizeObservation, clip +-10, NormalizeReward, clip +-10) in gymnasium 0.29.1's SyncVectorEnv;
- the noise: torch is seeded with SEED + k just before the k-th action is drawn, on both sides (CleanRL's replay
  seeds after each reset/step; nothing else draws from torch between), so Normal.sample and our mean + std *
  randn_like draw the same numbers (bitwise: the same kernel).
Our side runs ppo.main() itself, with a small stand-in for the harness's Run: for the rollout check its collect()
on the real environment (one SyncVectorEnv, SAME_STEP autoreset, as in a run); for the update check the rollout is
the same replayed data, acted on by our Agent.act in float64 (collect keeps float32 buffers) and handed to main()
the way a run resumed inside an update is, so main()'s own update loop runs (annealing, permutations, minibatches).

Update check (float64, per environment; pass: every difference <= 1e-9 x max(1, max |CleanRL|), indices exact):
the same initial weights (ours, cast to float64), the same rollout and permutations, --iterations updates of 10
epochs x 32 minibatches with learning-rate annealing (over --iterations rollouts) and gradient clipping; the
observation after each rollout, s_T, as ours normalized it for V(s_T). Compared: each rollout's actions,
log-probabilities, values, V(s_T); advantages and returns; at every minibatch its indices, policy loss, value loss,
entropy, approximate KL, clip fraction, gradient norm before clipping and learning rate; every parameter after every
update. Hopper-v4 gives rollouts without time-limit truncations: both must agree. On
HalfCheetah-v4 (a truncation every 1000 steps) ours bootstraps from the value of the true final observation, CleanRL
treats a truncation as a termination (deliberate: our fix); the check then requires that ours with that bootstrap
removed (final values 0) agrees with CleanRL to 1e-9 everywhere, and reports the difference the bootstrap makes.

Rollout check (float32 as both run, with --gymnasium; CleanRL's wrappers on the raw stream of our run, so both see
the same MuJoCo observations and rewards; --iterations rollouts with both updates in between): before each action,
the observation statistics (mean, var, count) and the reward scaling statistics (var, count) of each side, each
checked (1e-9 of scale) against its documented rule recomputed here from the raw stream, then compared with each
other; the normalized observations, scaled rewards and actions of each side; the action each sends to MuJoCo
(checked: the stored action clipped to [-1, 1], on both sides) and the control cost it is charged. After each
rollout, V(s_T) by the rule both sides follow: s_T normalized with statistics that count it, valued by the critic
that collected the rollout (each side's statistics, normalized s_T and V(s_T) checked against it; float32: 1e-6 of
scale); ours also the bootstrap value of each truncation (its final observation normalized with the statistics its
action was chosen with). Where both must agree, ours V(s_T) is required to be CleanRL's (1e-5 of scale): rollout 1
(the same weights) when no episode ends in it (no final observation counted by CleanRL, so the same statistics by
both rules; e.g. --envs HalfCheetah-v4 --max-episode-steps 5000); elsewhere difference 3 separates them.

Deliberate differences, with their sizes as measured by the default command (seed 1, 2 rollouts of 2048 steps on
each environment; CleanRL fe8d8a0 under gymnasium 0.29.1, ours under 1.4.0; 153 to 165 s on a busy 2-core machine):
1. Truncation bootstrap (update; ours = our fix): ours bootstraps a time-limit truncation from V(true final
   observation), CleanRL (as baselines) treats it as a termination. HalfCheetah, 4 truncations: advantages and
   returns differ by up to 0.94, a minibatch's policy loss by 0.0089 and value loss by 0.027, the parameters after
   2 updates by 0.0045; ours without the bootstrap agrees with CleanRL to 6e-16 of scale in every compared number.
2. Reward scaling (rollout; ours = baselines' VecNormalize): ours updates the return statistics with G = gamma G + r
   and zeroes G at every episode end; gymnasium's NormalizeReward (CleanRL) computes G = gamma G (1 - terminated) + r:
   at a termination G is the last reward alone, which carries into the next episode, and a truncation never resets
   G. The std of the return statistics after 4096 steps: HalfCheetah 20.82 (ours) vs 18.21 (+14%: ours scales
   rewards 12.5% smaller), Hopper 12.98 vs 12.97 (early on, scaled rewards differ by up to 7.5%).
3. Observation statistics (rollout; ours = baselines, whose VecNormalize never sees a final observation): ours count
   each observation as it arrives (the first reset's once, then each step's: after an episode end the next episode's
   first), never the final observation that autoreset replaces; gymnasium's NormalizeObservation (CleanRL) also each
   final observation (one more sample per episode end). Hopper, 194 episode ends in 4096 steps (4291 samples against
   4097 at the end): a variance differs by 14.5% at the end (37% early), normalized observations by up to 0.73,
   V(s_T) of rollout 1 (the same weights) by 0.0030; HalfCheetah (4 ends): 0.07%, 0.005 and 1.3e-5.
Equal, and checked: s_T counted before V(s_T) on both (CleanRL's wrapper counts it before handing it out; ours since
ppo.py's 0be1c4a, which fixed the one difference this check found that was not deliberate: ours had normalized s_T
with statistics that did not count it, V(s_T) off by 3.2e-6 on Hopper and 2.8e-4 on HalfCheetah; that ppo.py fails
the check: "ours obs" and "ours V"); SAME_STEP autoreset on both (gymnasium 0.29's SyncVectorEnv resets within the
step; ours asks 1.x for it), epsilons (1e-8 in both normalizations, 1e-4 initial count, Adam 1e-5, advantage
normalization 1e-8), normalize then clip +-10 (observations and rewards), unclipped actions stored for the update,
actions clipped only on the way to MuJoCo (CleanRL's ClipAction, our clamp), so both are charged the control cost of
the clipped action (clipped in 68% of Hopper's steps, 90% of HalfCheetah's, on both sides; total control cost equal
to 1e-4, the rest of the difference being the normalization's: CleanRL's actions of rollout 1 are our actor's on
CleanRL's observations with our noise, to 2.4e-7). These environments' bounds are [-1, 1]; elsewhere ours rescales
[-1, 1] to the bounds, CleanRL clips to them (the check refuses such environments). Not exercised: --total-timesteps
that is not a multiple of a rollout (ours rounds the iterations up, CleanRL down); the initial weights of a seed
(CleanRL builds its critic first: the check hands it ours); Adam (ours fused, CleanRL's default: the same arithmetic,
in float64 to 1e-16).
Exit status 1 on a difference that is none of these; 2 on bad input.
"""

import contextlib
import os
import re
import runpy
import subprocess
import sys
import tempfile
import time
import warnings
from types import SimpleNamespace

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import official  # noqa: E402 (the comparison helpers it shares: Worst, patched, default_dtype, ...)
from benchmarks.official import Mismatch, Parser, default_dtype, git_commit, patched  # noqa: E402
CLEANRL_FILE = os.path.join("cleanrl", "ppo_continuous_action.py")
TOL = 1e-9  # float64: max |ours - CleanRL| <= TOL x max(1, max |CleanRL|)
F32_TOL = 1e-6  # a rule on values a side computes or stores in float32
F32_RULES = ("ours normalized", "ours reward", "ours V", "theirs V", "ours bootstrap")
NOISE_SEED = 7_000_000  # torch is seeded with NOISE_SEED + k before the k-th action of a run is drawn
# Per minibatch: CleanRL's global for each of our Agent.update statistics (ours: stats[0..4]).
MINIBATCH = {"policy loss": "pg_loss", "value loss": "v_loss", "entropy": "entropy_loss", "approx KL": "approx_kl"}


def their_name(ours: str) -> str:
    """CleanRL's parameter name for ours: actor.net.i -> actor_mean.i, critic.net.i -> critic.i, actor.log_std ->
    actor_logstd (shape (1, A) there, (A,) here)."""
    return {"actor.log_std": "actor_logstd"}.get(ours, ours.replace("actor.net.", "actor_mean.")
                                                  .replace("critic.net.", "critic."))


# ---- the peer side: runs in a child process, CleanRL's gymnasium first on sys.path ----

def peer_side(job_path: str, out_path: str):
    """Runs CleanRL's script as __main__ under the hooks the module docstring lists; saves what they recorded."""
    job = torch.load(job_path, weights_only=False)
    import gymnasium as gym

    torch.set_num_threads(1)
    torch.set_default_dtype(job["dtype"])
    rec = {"gymnasium": gym.__version__, "steps": [], "minibatches": [], "rollouts": [], "params": [],
           "env_actions": [], "sent": []}
    perms = iter(job["perms"])
    per_update = job["epochs"] * job["minibatches"]

    def g():  # CleanRL's globals while it runs (runpy makes its module __main__)
        return sys.modules["__main__"].__dict__

    Adam, clip_grad_norm_ = torch.optim.Adam, torch.nn.utils.clip_grad_norm_

    class HookedAdam(Adam):
        def __init__(self, params, **kwargs):
            agent = g()["agent"]
            agent.load_state_dict(job["init"])
            super().__init__(params, **kwargs)
            a = g()["args"]
            rec["hyper"] = {"gamma": a.gamma, "gae_lambda": a.gae_lambda, "clip_coef": a.clip_coef,
                            "update_epochs": a.update_epochs, "num_minibatches": a.num_minibatches,
                            "learning_rate": a.learning_rate, "anneal_lr": a.anneal_lr, "norm_adv": a.norm_adv,
                            "clip_vloss": a.clip_vloss, "ent_coef": a.ent_coef, "vf_coef": a.vf_coef,
                            "max_grad_norm": a.max_grad_norm, "target_kl": a.target_kl or 0.0,
                            "adam_eps": self.defaults["eps"], "hdim": agent.critic[0].out_features}
            self.count = 0

        def step(self, closure=None):
            out = super().step(closure)
            self.count += 1
            if self.count % per_update == 0:
                rec["params"].append({k: v.detach().clone() for k, v in g()["agent"].named_parameters()})
            return out

    def clip_and_record(parameters, max_norm, *args, **kwargs):
        norm = clip_grad_norm_(parameters, max_norm, *args, **kwargs)
        m = g()
        rec["minibatches"].append({**{name: m[key].detach().clone() for name, key in MINIBATCH.items()},
                                   "clip fraction": m["clipfracs"][-1], "gradient norm": norm.detach().clone(),
                                   "learning rate": m["optimizer"].param_groups[0]["lr"],
                                   "indices": np.array(m["mb_inds"])})
        return norm

    def shuffle(x):
        m = g()
        if m["epoch"] == 0:
            rec["rollouts"].append({**{key: m[f"b_{key}"].detach().clone()
                                       for key in ("obs", "actions", "logprobs", "values", "advantages", "returns")},
                                    "next_value": m["next_value"].detach().clone().reshape(-1),
                                    "next_obs": m["next_obs"].detach().clone().reshape(-1)})
        perm = next(perms)
        if len(perm) != len(x):
            raise RuntimeError(f"CleanRL shuffles {len(x)} indices, our permutation has {len(perm)}")
        x[:] = perm

    def seed_noise(k: int):
        torch.manual_seed(NOISE_SEED + k)

    observation_space = gym.spaces.Box(-np.inf, np.inf, (job["obs_dim"],), np.float64)
    action_space = gym.spaces.Box(job["action_low"], job["action_high"], dtype=np.float32)

    if job["phase"] == "update":
        class ReplayVectorEnv:
            """Our rollout as a vector of one environment: normalized observations and scaled rewards."""
            single_observation_space, single_action_space, num_envs = observation_space, action_space, 1

            def __init__(self, thunks, **kwargs):
                self.k, self.stream = 0, job["stream"]

            def reset(self, seed=None, options=None):
                seed_noise(0)
                return self.stream["obs0"][None].copy(), {}

            def step(self, actions):
                k, s = self.k, self.stream
                rec["sent"].append(np.array(actions))
                self.k += 1
                seed_noise(self.k)
                return (s["next_obs"][k][None].copy(), np.array([s["rewards"][k]]), np.array([s["terminated"][k]]),
                        np.array([s["truncated"][k]]), {})

            def close(self):
                pass

        gym.vector.SyncVectorEnv = ReplayVectorEnv
    else:
        events = iter(job["events"])
        received = rec["env_actions"]

        class ReplayEnv(gym.Env):
            """The raw MuJoCo stream of our run, replayed whatever the action (which is recorded)."""
            metadata = {"render_modes": []}

            def __init__(self):
                self.observation_space, self.action_space = observation_space, action_space

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                kind, obs = next(events)
                assert kind == "reset", "the replay is out of step"
                return obs.copy(), {}

            def step(self, action):
                received.append(np.array(action, copy=True))
                kind, obs, reward, terminated, truncated = next(events)
                assert kind == "step", "the replay is out of step"
                return obs.copy(), reward, terminated, truncated, {}

        def wrapper(env, name):
            while env is not None and type(env).__name__ != name:
                env = getattr(env, "env", None)
            return env

        def snapshot(vector, obs, reward):
            obs_wrapper = wrapper(vector.envs[0], "NormalizeObservation")
            reward_wrapper = wrapper(vector.envs[0], "NormalizeReward")
            o, r = obs_wrapper.obs_rms, reward_wrapper.return_rms
            rec["steps"].append({"obs_mean": np.array(o.mean), "obs_var": np.array(o.var), "obs_count": o.count,
                                 "ret_mean": float(r.mean), "ret_var": float(r.var), "ret_count": r.count,
                                 "obs": np.array(obs[0]),
                                 "reward": None if reward is None else float(reward[0])})
            rec["epsilons"] = {"obs": obs_wrapper.epsilon, "reward": reward_wrapper.epsilon,
                               "gamma": reward_wrapper.gamma}

        class HookedSyncVectorEnv(gym.vector.SyncVectorEnv):
            def reset(self, **kwargs):
                obs, info = super().reset(**kwargs)
                snapshot(self, obs, None)
                self.k = 0
                seed_noise(0)
                return obs, info

            def step(self, actions):
                rec["sent"].append(np.array(actions))
                obs, reward, terminated, truncated, info = super().step(actions)
                snapshot(self, obs, reward)
                self.k += 1
                seed_noise(self.k)
                return obs, reward, terminated, truncated, info

        gym.make = lambda *args, **kwargs: ReplayEnv()
        gym.vector.SyncVectorEnv = HookedSyncVectorEnv

    torch.optim.Adam, torch.nn.utils.clip_grad_norm_, np.random.shuffle = HookedAdam, clip_and_record, shuffle
    sys.argv = [job["file"], "--env-id", job["env"], "--seed", str(job["seed"]), "--num-steps", str(job["num_steps"]),
                "--total-timesteps", str(job["num_steps"] * job["iterations"]), "--no-cuda"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(job["file"], run_name="__main__")
    torch.save(rec, out_path)


def run_peer(job: dict, gymnasium_dir) -> dict:
    """peer_side() in a child process (in a scratch folder: CleanRL writes runs/ there); its records."""
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = os.path.join(tmp, "job.pt"), os.path.join(tmp, "out.pt")
        torch.save(job, job_path)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        if gymnasium_dir:
            env["PYTHONPATH"] = os.pathsep.join([gymnasium_dir] + [p for p in [env.get("PYTHONPATH")] if p])
        result = subprocess.run([sys.executable, os.path.abspath(__file__), "--peer-side", job_path, out_path],
                                cwd=tmp, env=env, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(out_path):
            tail = (result.stderr or result.stdout).strip().splitlines()[-12:]
            raise Mismatch(f"CleanRL's script failed under the hooks ({job['phase']}, {job['env']}):\n    " +
                           "\n    ".join(tail))
        return torch.load(out_path, weights_only=False)


# ---- our side ----

class Driver:
    """What ppo.main() uses of the harness's Run: args, env, agent, the loop's state, steps() (one per rollout;
    before(t) and after(t) run around each) and substeps() (the minibatch steps); no logging, evaluation or stops."""

    def __init__(self, args, env, agent, state, before, after):
        self.args, self.env, self.agent, self.state = args, env, agent, state
        self.before, self.after = before, after
        self.logger = SimpleNamespace(scalar=lambda *a: None)

    def init_loop(self, **initial):
        self.loop = SimpleNamespace(t=0, substep=0, state=self.state, **initial)
        return self.loop

    def steps(self, count: int, size: int = 1):
        for t in range(count):
            self.before(t, self.loop)
            yield t
            self.after(t, self.loop)

    def substeps(self, count: int):
        yield from range(count)

    def log_episode(self, episode, step):
        pass


def record_update(ppo, agent, rec: dict):
    """Context: our minibatch steps (Agent.update's statistics, indices, learning rate), the gradient norms of
    clip_grad_norm_ and the permutations of torch.randperm go into rec."""
    stack = contextlib.ExitStack()

    def recording_update(update):
        def update_and_record(batch, mb):
            stats = update(batch, mb)
            rec["minibatches"].append({**{name: stats[i].detach().clone() for i, name in enumerate(MINIBATCH)},
                                       "clip fraction": stats[4].item(), "gradient norm": rec.pop("norm"),
                                       "learning rate": agent.optimizer.param_groups[0]["lr"],
                                       "indices": mb.cpu().numpy().copy()})
            return stats
        return update_and_record

    def recording_clip(clip):
        def clip_and_record(parameters, max_norm, *args, **kwargs):
            rec["norm"] = clip(parameters, max_norm, *args, **kwargs).detach().clone()
            return rec["norm"]
        return clip_and_record

    def recording_randperm(randperm):
        def randperm_and_record(*args, **kwargs):
            perm = randperm(*args, **kwargs)
            rec["perms"].append(perm.cpu().numpy().copy())
            return perm
        return randperm_and_record

    rec.update(minibatches=[], perms=[], params=[], rollouts=[])
    stack.enter_context(patched(agent, "update", recording_update))
    stack.enter_context(patched(torch, "randperm", recording_randperm))
    stack.enter_context(patched(torch.nn.utils, "clip_grad_norm_", recording_clip))
    return stack


def params_of(agent) -> dict:
    return {f"{net}.{k}": v.detach().clone() for net in ("actor", "critic")
            for k, v in getattr(agent, net).named_parameters()}


def to_theirs(params: dict) -> dict:
    """Our parameters as CleanRL's Agent.state_dict()."""
    return {their_name(k): (v[None] if k == "actor.log_std" else v) for k, v in params.items()}


def make_ours(ppo, env_id: str, seed: int, num_steps: int, iterations: int):
    args = ppo.Args(env=env_id, seed=seed, num_steps=num_steps, total_timesteps=num_steps * iterations)
    ppo.seed_everything(seed)  # as launch() does, then the agent (Run builds it right after its evaluation env)
    return args


def raw_recorder(gym):
    """A wrapper to put between gym.make's environment and ours' wrappers: it records each reset observation and
    each step (observation, reward, terminated, truncated, and the action MuJoCo receives)."""

    class RawRecorder(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            self.events = []

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.events.append(("reset", np.array(obs, copy=True)))
            return obs, info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.events.append(("step", np.array(obs, copy=True), float(reward), bool(terminated), bool(truncated),
                                np.array(action, copy=True)))
            return obs, reward, terminated, truncated, info

    return RawRecorder


def our_rollout_run(ppo, env_id: str, seed: int, num_steps: int, iterations: int, max_episode_steps=None) -> dict:
    """ppo.main() on the real environment (float32, as it trains), recording the rollout side (see the docstring);
    max_episode_steps: another time limit than the environment's."""
    import gymnasium as gym

    args = make_ours(ppo, env_id, seed, num_steps, iterations)
    Recorder, made = raw_recorder(gym), []
    with patched(gym, "make", lambda make: lambda *a, **k: made.append(Recorder(make(*a, **k))) or made[-1]):
        single = ppo.make_env(args, seed, **({"max_episode_steps": max_episode_steps} if max_episode_steps else {}))
    recorder, space = made[0], single.unwrapped.action_space
    if not (np.all(space.low == -1) and np.all(space.high == 1)):
        raise ppo.UsageError(f"{env_id} has actions bounded by {space.low}..{space.high}: this check compares "
                             f"environments bounded by [-1, 1], where our rescaling and CleanRL's clipping agree")
    agent = ppo.Agent(single.observation_space.shape[0], single.action_space.shape[0], args, torch.device("cpu"))
    init = params_of(agent)
    rec = {"steps": [], "final_obs": {}, "init": init}

    class Hook(gym.vector.VectorWrapper):
        """Before each step: our statistics as the action was chosen; after: the normalized final observation of a
        truncation (what collect computes its bootstrap value from), and the seed of the next action's noise."""

        def step(self, actions):
            rec["steps"].append({"obs_mean": agent.obs_rms.mean.copy(), "obs_var": agent.obs_rms.var.copy(),
                                 "obs_count": agent.obs_rms.count, "ret_mean": float(agent.return_rms.mean),
                                 "ret_var": float(agent.return_rms.var), "ret_count": agent.return_rms.count})
            out = self.env.step(actions)
            k = len(rec["steps"])
            if out[3][0] and not out[2][0]:
                rec["final_obs"][k - 1] = agent.normalize_obs(np.stack(out[4]["final_obs"])[:1])[0]
            torch.manual_seed(NOISE_SEED + k)
            return out

    env = Hook(ppo.make_vector_env([single]))
    state, _ = env.reset(seed=seed)
    del recorder.events[:-1]  # the stream starts at the reset the run starts from
    T = num_steps

    def before(t, loop):
        torch.manual_seed(NOISE_SEED + t * T)  # (the update's randperm drew from torch since the last step)

    def after(t, loop):
        ro = loop.rollout
        rec["rollouts"].append({"obs": ro.obs[:, 0].copy(), "rewards": ro.rewards[:, 0].copy(),
                                "actions": ro.actions[:, 0].clone(), "means": ro.means[:, 0].clone(),
                                "log_std": ro.log_std.clone(), "final_values": ro.final_values[:, 0].clone()})
        rec["params"].append(params_of(agent))

    rec["s_T"] = []

    def recording_estimate(estimate):
        def estimate_and_record(rollout, *a):
            """Right after collect (nothing has touched the statistics since): V(s_T) of the observation after the
            rollout, that observation as collect normalized it, the statistics it was normalized with, and the return
            statistics after the rollout's last step."""
            rms, ret = agent.obs_rms, agent.return_rms
            rec["s_T"].append({"value": rollout.next_value[0].item(), "obs": agent.normalize_obs(driver.loop.state)[0],
                               "obs_mean": rms.mean.copy(), "obs_var": rms.var.copy(), "obs_count": rms.count,
                               "ret_mean": float(ret.mean), "ret_var": float(ret.var), "ret_count": ret.count})
            return estimate(rollout, *a)
        return estimate_and_record

    driver = Driver(args, env, agent, state, before, after)
    with record_update(ppo, agent, rec), patched(ppo.Rollout, "estimate_advantages", recording_estimate):
        ppo.main(driver)
    rec["events"] = recorder.events
    rec["ctrl_cost_weight"] = getattr(single.unwrapped, "_ctrl_cost_weight", None)
    rec["obs_dim"], rec["action_space"] = single.observation_space.shape[0], space
    return rec


def update_stream(ours: dict) -> dict:
    """The update check's rollout data, from our rollout run: normalized observations, scaled rewards, terminated
    and truncated, the normalized final observations of truncations. next_obs[k] is the observation acted on at step
    k + 1, and after the last step s_T as ours normalized it for V(s_T) (which the rollout check holds to the rule: by
    statistics that count s_T, so also the same as the next rollout acts on)."""
    steps = [e for e in ours["events"] if e[0] == "step"]
    obs = np.concatenate([r["obs"] for r in ours["rollouts"]]).astype(np.float64)
    next_obs = np.concatenate([obs[1:], ours["s_T"][-1]["obs"][None].astype(np.float64)])
    return {"obs0": obs[0], "obs": obs, "next_obs": next_obs,
            "rewards": np.concatenate([r["rewards"] for r in ours["rollouts"]]).astype(np.float64),
            "terminated": np.array([e[3] for e in steps]), "truncated": np.array([e[4] for e in steps]),
            "final_obs": {k: v.astype(np.float64) for k, v in ours["final_obs"].items()}}


def our_update_run(ppo, env_id: str, seed: int, num_steps: int, iterations: int, init: dict, stream: dict,
                   obs_dim: int, action_dim: int, bootstrap: bool = True) -> dict:
    """ppo.main() in float64 on the replayed rollout (see the docstring): each rollout acted on by Agent.act with the
    noise seeded as CleanRL's, stored as collect stores it, its advantages estimated by ppo's own
    Rollout.estimate_advantages, then handed to main() as a run resumed inside its update is. bootstrap=False: the
    final values of truncations left at 0 (CleanRL's treatment, for the counterfactual check)."""
    args = make_ours(ppo, env_id, seed, num_steps, iterations)
    with default_dtype(torch.float64):
        agent = ppo.Agent(obs_dim, action_dim, args, torch.device("cpu"))
        for net in ("actor", "critic"):
            getattr(agent, net).load_state_dict({k[len(net) + 1:]: v for k, v in init.items() if k.startswith(net)})
        rec = {"init": params_of(agent)}
        T = num_steps

        def before(t, loop):
            ro, span = ppo.Rollout(1), slice(t * T, (t + 1) * T)
            ro.obs = stream["obs"][span][:, None].copy()
            acted = []
            for k in range(t * T, (t + 1) * T):
                torch.manual_seed(NOISE_SEED + k)
                acted.append(agent.act(torch.from_numpy(stream["obs"][k][None])))
            ro.actions, ro.log_probs, ro.means, ro.values = (torch.stack([a[i] for a in acted]) for i in range(4))
            ro.log_std = agent.actor.log_std.detach().clone()
            ro.rewards = stream["rewards"][span][:, None].copy()
            ro.dones = (stream["terminated"] | stream["truncated"])[span][:, None].astype(np.float64)
            ro.final_values = torch.zeros(T, 1)
            with torch.no_grad():
                for k, final in stream["final_obs"].items():
                    if bootstrap and t * T <= k < (t + 1) * T:
                        ro.final_values[k - t * T, 0] = agent.critic(torch.from_numpy(final[None]))[0]
                ro.next_value = agent.critic(torch.from_numpy(stream["next_obs"][(t + 1) * T - 1][None]))
            ro.estimate_advantages(args.gamma, args.gae_lambda)
            loop.rollout, loop.updating, loop.stats, loop.stopped_early = ro, True, torch.zeros(6), False

        def after(t, loop):
            ro = loop.rollout
            rec["rollouts"].append({key: getattr(ro, k)[:, 0].detach().clone() for key, k in (  # CleanRL's names
                ("actions", "actions"), ("logprobs", "log_probs"), ("values", "values"), ("advantages", "advantages"),
                ("returns", "returns"))} | {"next_value": ro.next_value.detach().clone()})
            rec["params"].append(params_of(agent))

        driver = Driver(args, None, agent, stream["obs0"][None], before, after)
        with record_update(ppo, agent, rec):
            ppo.main(driver)
        rec["hyper"] = {k: getattr(args, k) for k in (
            "gamma", "gae_lambda", "clip_coef", "update_epochs", "num_minibatches", "learning_rate", "anneal_lr",
            "norm_adv", "clip_vloss", "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "hdim")}
        rec["hyper"]["adam_eps"] = agent.optimizer.defaults["eps"]
        if args.objective != "clip":
            raise Mismatch(f"ppo.Args().objective is {args.objective!r}; CleanRL has only the clipped objective")
        return rec


# ---- comparing ----

class Worst(official.Worst):
    """official.py's: the largest difference over a series of tensors, max |a - b|, and the largest relative to
    max(1, max |b|) (b: CleanRL's) with where it was seen; here also how many pairs it saw, and a Mismatch for a value
    that is not finite (which would compare as no difference)."""

    count = 0

    def add(self, a, b, where: str):
        # Through numpy first: torch.as_tensor would make python floats float32.
        a, b = (x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, np.float64)) for x in (a, b))
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise Mismatch(f"{where}: a value that is not finite")
        self.count += 1
        return super().add(a, b, where)

    def cell(self) -> str:
        return f"{self.diff:.2e} ({self.scaled:.1e} of scale, {self.where})"


def compare_updates(ours: dict, theirs: dict, iterations: int) -> dict:
    """Worst per quantity between our update run and CleanRL's; a Mismatch where the structure differs (indices,
    counts)."""
    w = {name: Worst() for name in ("actions", "log-probabilities", "values", "V(s_T)", "advantages", "returns",
                                    *MINIBATCH, "clip fraction", "gradient norm", "learning rate", "parameters")}
    if len(theirs["rollouts"]) != iterations or len(theirs["params"]) != iterations:
        raise Mismatch(f"CleanRL made {len(theirs['rollouts'])} rollouts and {len(theirs['params'])} updates, "
                       f"not {iterations}")
    for i, (mine, other) in enumerate(zip(ours["rollouts"], theirs["rollouts"])):
        for name, key in (("actions", "actions"), ("log-probabilities", "logprobs"), ("values", "values"),
                          ("V(s_T)", "next_value"), ("advantages", "advantages"), ("returns", "returns")):
            w[name].add(mine[key], other[key], f"rollout {i + 1}")
    if len(ours["minibatches"]) != len(theirs["minibatches"]):
        raise Mismatch(f"{len(ours['minibatches'])} minibatch steps here, {len(theirs['minibatches'])} in CleanRL")
    per_update = len(ours["minibatches"]) // iterations
    for j, (mine, other) in enumerate(zip(ours["minibatches"], theirs["minibatches"])):
        where = f"update {j // per_update + 1}, minibatch {j % per_update + 1}"
        if not np.array_equal(mine["indices"], other["indices"]):
            raise Mismatch(f"{where}: the minibatches hold different transitions")
        for name in (*MINIBATCH, "clip fraction", "gradient norm", "learning rate"):
            w[name].add(torch.tensor(float(mine[name])), torch.tensor(float(other[name])), where)
    for i, (mine, other) in enumerate(zip(ours["params"], theirs["params"])):
        theirs_params = dict(other)
        for name, p in mine.items():
            q = theirs_params.pop(their_name(name), None)
            if q is None or q.numel() != p.numel():
                raise Mismatch(f"parameter {name} has no counterpart {their_name(name)} in CleanRL")
            w["parameters"].add(p, q, f"{name} after update {i + 1}")
        if theirs_params:
            raise Mismatch(f"CleanRL parameters without ours: {list(theirs_params)}")
    return w


def compare_params(ours: list, theirs: list) -> Worst:
    w = Worst()
    for i, (mine, other) in enumerate(zip(ours, theirs)):
        for name, p in mine.items():
            w.add(p, other[their_name(name)], f"{name} after update {i + 1}")
    return w


def clipped_norms(rec: dict, max_norm: float) -> int:
    return sum(float(m["gradient norm"]) > max_norm for m in rec["minibatches"])


def same_hyperparameters(ours: dict, theirs: dict):
    differ = {k: (v, theirs.get(k)) for k, v in ours.items() if v != theirs.get(k)}
    if differ:
        raise Mismatch(f"different hyperparameters (ours, CleanRL's): {differ}")


def rms_rule(samples) -> list:
    """Running mean, var, count (initial count 1e-4) after each sample, one at a time (both sides' update)."""
    mean, var, count, out = 0.0, 1.0, 1e-4, []
    for x in samples:
        x = np.asarray(x, np.float64)
        delta, total = x - mean, count + 1
        mean, var = mean + delta / total, (var * count + delta ** 2 * count / total) / total
        count = total
        out.append((mean, var, count))
    return out


def rollout_rules(events: list, gamma: float) -> dict:
    """The documented statistics of each side, recomputed from the raw stream: [k] is before action k, and [n] (n
    steps) after the last step, where V(s_T) is computed. Observations: ours over each observation as it arrives (the
    first reset's, then each step's: after an episode end the next episode's first, never the final one that autoreset
    replaces); CleanRL's also over each final observation. Return: ours G = gamma G + r, reset at every episode end;
    CleanRL's G = gamma G (1 - terminated) + r."""
    acted, every, before_act = [events[0][1]], [events[0][1]], [1]
    steps = []
    for e in events[1:]:
        if e[0] == "step":
            steps.append(e)
            every.append(e[1])
            if not (e[3] or e[4]):
                acted.append(e[1])
                before_act.append(len(every))
        else:
            acted.append(e[1])
            every.append(e[1])
            before_act.append(len(every))
    ours_obs, theirs_obs = rms_rule(acted), rms_rule(every)
    G_ours, G_theirs, ret_ours, ret_theirs = 0.0, 0.0, [], []
    for e in steps:
        G_ours = G_ours * gamma + e[2]
        G_theirs = G_theirs * gamma * (1 - e[3]) + e[2]
        ret_ours.append(G_ours)
        ret_theirs.append(G_theirs)
        if e[3] or e[4]:
            G_ours = 0.0
    return {"ours_obs": ours_obs, "theirs_obs": [theirs_obs[n - 1] for n in before_act], "acted": acted,
            "ours_ret": rms_rule(ret_ours), "theirs_ret": rms_rule(ret_theirs), "steps": steps}


def compare_rollouts(ours: dict, theirs: dict, gamma: float, num_steps: int) -> dict:
    """Each side's statistics, normalized observations, scaled rewards and V(s_T) against its rule (TOL, or float32
    rounding where a side stores float32), and the two sides against each other."""
    import ppo

    rules = rollout_rules(ours["events"], gamma)
    n, T = len(rules["steps"]), num_steps
    if len(ours["steps"]) != n or len(theirs["steps"]) != n + 1:
        raise Mismatch(f"{n} environment steps, but {len(ours['steps'])} of our snapshots and "
                       f"{len(theirs['steps']) - 1} of CleanRL's")
    if n % T or not len(ours["s_T"]) == len(theirs["rollouts"]) == n // T:
        raise Mismatch(f"{n} environment steps, {len(ours['s_T'])} rollouts of ours and {len(theirs['rollouts'])} of "
                       f"CleanRL's, of {T} steps")
    rule = {name: Worst() for name in ("ours obs", "theirs obs", "ours normalized", "theirs normalized", "ours V",
                                       "theirs V", "ours bootstrap", "ours return", "theirs return", "ours reward",
                                       "theirs reward")}
    side = {name: Worst() for name in ("obs mean", "obs var", "return var", "normalized obs", "scaled reward",
                                       "V(s_T)", "sent action", "env action")}
    eps = 1e-8  # both sides' epsilon, in both normalizations
    ours_rewards = np.concatenate([r["rewards"] for r in ours["rollouts"]])
    ours_obs = np.concatenate([r["obs"] for r in ours["rollouts"]])

    def stats(snap) -> np.ndarray:
        return np.concatenate([snap["obs_mean"], snap["obs_var"], [snap["obs_count"]]])

    def rule_stats(r) -> np.ndarray:
        return np.concatenate([r[0], r[1], [r[2]]])

    def normalized(state, r) -> np.ndarray:
        return np.clip((state - r[0]) / np.sqrt(r[1] + eps), -10, 10)

    for k in range(n):
        mine, other = ours["steps"][k], theirs["steps"][k]  # before action k
        for who, snap, r in (("ours", mine, rules["ours_obs"][k]), ("theirs", other, rules["theirs_obs"][k])):
            rule[f"{who} obs"].add(stats(snap), rule_stats(r), f"step {k}")
        for who, snap, obs in (("ours", mine, ours_obs[k]), ("theirs", other, other["obs"])):
            expected = normalized(rules["acted"][k], (snap["obs_mean"], snap["obs_var"]))
            rule[f"{who} normalized"].add(obs, expected, f"step {k}")
        side["obs mean"].add(mine["obs_mean"], other["obs_mean"], f"step {k}")
        side["obs var"].add(mine["obs_var"] / other["obs_var"] - 1, np.zeros_like(other["obs_var"]), f"step {k}")
        side["normalized obs"].add(ours_obs[k], other["obs"], f"step {k}")
        after_ours, after_theirs = (ours["steps"][k + 1] if k + 1 < n else ours["s_T"][-1]), theirs["steps"][k + 1]
        ro, rt = rules["ours_ret"][k], rules["theirs_ret"][k]
        rule["ours return"].add([after_ours["ret_mean"], after_ours["ret_var"], after_ours["ret_count"]],
                                [ro[0], ro[1], ro[2]], f"step {k}")
        rule["theirs return"].add([after_theirs["ret_mean"], after_theirs["ret_var"], after_theirs["ret_count"]],
                                  [rt[0], rt[1], rt[2]], f"step {k}")
        reward = rules["steps"][k][2]
        rule["ours reward"].add(ours_rewards[k], np.clip(reward / np.sqrt(ro[1] + eps), -10, 10), f"step {k}")
        rule["theirs reward"].add(after_theirs["reward"], np.clip(reward / np.sqrt(rt[1] + eps), -10, 10),
                                  f"step {k}")
        side["return var"].add(ro[1] / rt[1] - 1, 0.0, f"step {k}")
        side["scaled reward"].add(ours_rewards[k] / after_theirs["reward"] - 1 if after_theirs["reward"] else 0.0,
                                  0.0, f"step {k}")

    def critic(params: dict, key=lambda name: name) -> torch.nn.Module:
        """Our Critic with the critic weights of params (key: their name for each of ours)."""
        net = ppo.Critic(ours["obs_dim"], ppo.Args().hdim)
        net.load_state_dict({k[len("critic."):]: params[key(k)] for k in ours["init"] if k.startswith("critic.")})
        return net

    def value(net, state, r) -> torch.Tensor:
        with torch.no_grad():
            return net(torch.from_numpy(normalized(state, r).astype(np.float32)[None])).reshape(-1)

    # V(s_T) of each rollout: the same rule on both sides (CleanRL's wrapper counts s_T before handing it out; ours
    # counts each observation as it arrives): s_T normalized with statistics that count it, valued by the critic
    # that collected the rollout. Ours also V(final observation) of each truncation, with the statistics its action
    # was chosen with (ours alone bootstraps there), 0 at every other step.
    last = theirs["steps"][n]  # CleanRL's s_T of the last rollout (the others are the next rollouts' first, above)
    rule["theirs obs"].add(stats(last), rule_stats(rules["theirs_obs"][n]), f"s_T of rollout {n // T}")
    rule["theirs normalized"].add(last["obs"], normalized(rules["acted"][n], (last["obs_mean"], last["obs_var"])),
                                  f"s_T of rollout {n // T}")
    for t, snap in enumerate(ours["s_T"]):
        k, where = (t + 1) * T, f"s_T of rollout {t + 1}"
        r, state = rules["ours_obs"][k], rules["acted"][k]
        rule["ours obs"].add(stats(snap), rule_stats(r), where)
        rule["ours normalized"].add(snap["obs"], normalized(state, (snap["obs_mean"], snap["obs_var"])), where)
        ours_critic = critic(ours["init"] if t == 0 else ours["params"][t - 1])
        rule["ours V"].add(snap["value"], value(ours_critic, state, r), f"rollout {t + 1}")
        their_critic = critic(to_theirs(ours["init"]) if t == 0 else theirs["params"][t - 1], their_name)
        their_v = theirs["rollouts"][t]["next_value"]
        rule["theirs V"].add(their_v, value(their_critic, state, rules["theirs_obs"][k]), f"rollout {t + 1}")
        if not torch.equal(theirs["rollouts"][t]["next_obs"], torch.tensor(theirs["steps"][k]["obs"],
                                                                           dtype=torch.float32)):
            raise Mismatch(f"CleanRL's V(s_T) of rollout {t + 1} is not of the observation its wrapper handed out")
        expected = torch.zeros(T)
        for j in range(T):
            e = rules["steps"][t * T + j]
            if e[4] and not e[3]:
                expected[j] = value(ours_critic, e[1], rules["ours_obs"][t * T + j])[0]
        rule["ours bootstrap"].add(ours["rollouts"][t]["final_values"], expected, f"rollout {t + 1}")
        side["V(s_T)"].add(snap["value"], their_v, f"rollout {t + 1}")
    # Where both must agree: rollout 1 (the same weights) when no episode ended before its s_T (so that neither side
    # has counted a final observation: the same statistics by both rules), ours V(s_T) is CleanRL's, to float32.
    agree = None
    if not any(e[3] or e[4] for e in rules["steps"][:T]):
        agree = Worst().add(ours["s_T"][0]["value"], theirs["rollouts"][0]["next_value"], "rollout 1")
    ours_sent = torch.cat([r["actions"] for r in ours["rollouts"]]).numpy()
    theirs_sent = np.concatenate(theirs["sent"])
    env_ours = np.stack([e[5] for e in rules["steps"]])
    env_theirs = np.stack(theirs["env_actions"])
    # What reaches MuJoCo is the stored action clipped to [-1, 1] (the bounds here), on both sides.
    for who, env_a, sent in (("ours", env_ours, ours_sent), ("CleanRL", env_theirs, theirs_sent)):
        if not np.array_equal(env_a, np.clip(sent, -1, 1).astype(env_a.dtype)):
            raise Mismatch(f"{who}: MuJoCo did not receive the stored action clipped to [-1, 1]")
    side["sent action"].add(ours_sent, theirs_sent, "all steps")
    side["env action"].add(env_ours, env_theirs, "all steps")
    w = ours["ctrl_cost_weight"] or 0.0
    cost_ours, cost_theirs = w * np.square(env_ours).sum(1), w * np.square(env_theirs).sum(1)
    # Rollout 1: both act from the same weights with the same noise, so CleanRL's action must be our actor's on
    # CleanRL's normalized observation plus our noise, to float32 rounding: the action differences are the
    # normalization's alone.
    r0 = ours["rollouts"][0]
    noise = (r0["actions"] - r0["means"]) / r0["log_std"].exp()
    actor = ppo.Actor(ours["obs_dim"], noise.shape[1])
    actor.load_state_dict({k[len("actor."):]: v for k, v in ours["init"].items() if k.startswith("actor.")})
    their_obs = torch.tensor(np.stack([s["obs"] for s in theirs["steps"][:num_steps]]), dtype=torch.float32)
    with torch.no_grad():
        explained = actor(their_obs) + actor.log_std.exp() * noise
    consistency = Worst().add(explained, theirs_sent[:num_steps], "rollout 1")
    ends = [e for e in rules["steps"] if e[3] or e[4]]
    end_ours, end_theirs = ours["s_T"][-1], theirs["steps"][-1]  # the statistics at the end, s_T counted
    return {"rule": rule, "side": side, "consistency": consistency, "agree": agree, "steps": n,
            "terminations": sum(e[3] for e in ends), "truncations": sum(e[4] and not e[3] for e in ends),
            "counts": (end_ours["obs_count"], end_theirs["obs_count"]),
            "var_end": np.abs(end_ours["obs_var"] / end_theirs["obs_var"] - 1).max(),
            "values": [(s["value"], r["next_value"].item()) for s, r in zip(ours["s_T"], theirs["rollouts"])],
            "ret_std": (np.sqrt(ours["steps"][-1]["ret_var"]), np.sqrt(theirs["steps"][-2]["ret_var"])),
            "clipped": ((np.abs(ours_sent) > 1).any(1).mean(), (np.abs(theirs_sent) > 1).any(1).mean()),
            "cost": (cost_ours.sum(), cost_theirs.sum(), np.abs(cost_ours - cost_theirs).max()),
            "epsilons": theirs.get("epsilons")}


# ---- the check ----

def pinned_gymnasium(path: str) -> str:
    try:
        with open(os.path.join(path, "pyproject.toml")) as f:
            found = re.search(r'"gymnasium==([^"]+)"', f.read())
        return found.group(1) if found else "?"
    except OSError:
        return "?"


def check_env(ppo, env_id: str, args, file: str) -> dict:
    """Rollout run (ours, and CleanRL's with --gymnasium), then the update check; what to print."""
    import gymnasium as gym

    T, n_it = args.num_steps, args.iterations
    out = {"env": env_id, "gamma": ppo.Args().gamma}
    ours = our_rollout_run(ppo, env_id, args.seed, T, n_it, args.max_episode_steps)
    space = ours["action_space"]
    base_job = {"file": file, "env": env_id, "seed": args.seed, "num_steps": T, "iterations": n_it,
                "epochs": ppo.Args().update_epochs, "minibatches": ppo.Args().num_minibatches,
                "obs_dim": ours["obs_dim"], "action_low": space.low, "action_high": space.high}
    if args.gymnasium:
        job = base_job | {"phase": "rollout", "dtype": torch.float32, "init": to_theirs(ours["init"]),
                          "perms": ours["perms"], "events": [e[:5] for e in ours["events"]]}
        theirs = run_peer(job, args.gymnasium)
        out["rollout"] = compare_rollouts(ours, theirs, ppo.Args().gamma, T)
        out["gymnasium"] = theirs["gymnasium"]
        out["rollout_params"] = compare_params(ours["params"], theirs["params"])

    stream = update_stream(ours)
    truncations = int((stream["truncated"] & ~stream["terminated"]).sum())
    dims = (ours["obs_dim"], space.shape[0])
    init64 = {k: v.double() for k, v in ours["init"].items()}
    mine = our_update_run(ppo, env_id, args.seed, T, n_it, init64, stream, *dims)
    job = base_job | {"phase": "update", "dtype": torch.float64, "init": to_theirs(mine["init"]),
                      "perms": mine["perms"], "stream": stream}
    theirs = run_peer(job, None)
    same_hyperparameters(mine["hyper"], theirs["hyper"])
    out["update"] = compare_updates(mine, theirs, n_it)
    out["truncations"] = truncations
    out["clipped"] = (clipped_norms(mine, mine["hyper"]["max_grad_norm"]), len(mine["minibatches"]))
    if truncations:
        plain = our_update_run(ppo, env_id, args.seed, T, n_it, init64, stream, *dims, bootstrap=False)
        if any(not np.array_equal(a, b) for a, b in zip(plain["perms"], mine["perms"])):
            raise Mismatch("the run without the truncation bootstrap drew other permutations")
        out["plain"] = compare_updates(plain, theirs, n_it)
    return out


def report(results: list, args, file: str) -> bool:
    ok = True
    print(f"Ours: ppo.py (gymnasium {__import__('gymnasium').__version__}); CleanRL: {file} at commit "
          f"{git_commit(args.cleanrl)} (its pyproject pins gymnasium {pinned_gymnasium(args.cleanrl)}); torch "
          f"{torch.__version__}, CPU, 1 thread; seed {args.seed}; {args.iterations} rollouts of {args.num_steps} steps")
    print(f"\nUpdate check, float64, the same weights, rollout, permutations and noise; {args.iterations} updates of "
          f"10 epochs x 32 minibatches. Pass: every difference <= {TOL:g} x max(1, max |CleanRL|).\n")
    print("| environment | truncations | quantity | max \\|ours - CleanRL\\| (relative, where) | pass |")
    print("|---|---|---|---|---|")
    for r in results:
        compared = r["plain"] if r["truncations"] else r["update"]
        label = "ours without the truncation bootstrap" if r["truncations"] else "ours"
        for name, w in compared.items():
            good = w.scaled <= TOL
            ok &= good
            print(f"| {r['env']} | {r['truncations']} | {name} ({label}) | {w.cell()} | {'pass' if good else 'FAIL'} |")
    for r in results:
        print(f"\n{r['env']}: gradient clipping bound in {r['clipped'][0]} of {r['clipped'][1]} minibatch steps.")
        if r["truncations"]:
            print(f"{r['env']}, deliberate difference 1 (truncation bootstrap, {r['truncations']} truncations): ours "
                  f"against CleanRL, largest differences: " + "; ".join(
                      f"{name} {w.diff:.3g} ({w.where})" for name, w in r["update"].items()
                      if name in ("advantages", "returns", "policy loss", "value loss", "parameters")))
    if not args.gymnasium:
        print("\nRollout check not run: pass --gymnasium DIR (a folder holding gymnasium 0.29.1, which CleanRL pins; "
              "under gymnasium 1.x its make_env fails).")
        return ok
    print(f"\nRollout check, float32 as both run: CleanRL's wrappers (gymnasium {results[0].get('gymnasium')}) on the "
          f"raw MuJoCo stream of our run, the same initial weights and noise. Each side's statistics against its "
          f"documented rule (pass: <= {TOL:g} of scale):\n")
    print("| environment | steps | episode ends (term., trunc.) | rule | max difference (relative, where) | pass |")
    print("|---|---|---|---|---|---|")
    names = {"ours obs": "ours: observation statistics over each observation as it arrives (the first reset's once, "
                         "then each step's; never a final observation that autoreset replaces), before each action "
                         "and at V(s_T)",
             "theirs obs": "CleanRL: observation statistics over those and each final observation",
             "ours normalized": "ours: normalized observation clip((s - mean) / sqrt(var + 1e-8), +-10) "
                                "(stored in float32), s_T's for V(s_T) included",
             "theirs normalized": "CleanRL: normalized observation, the same formula on its statistics",
             "ours V": "ours: V(s_T) = the rollout's critic on s_T normalized with statistics that count s_T (float32)",
             "theirs V": "CleanRL: V(s_T), the same rule on its statistics",
             "ours bootstrap": "ours: V(final observation) of each truncation, 0 at other steps = the rollout's critic "
                               "on it normalized with the statistics its action was chosen with (float32)",
             "ours return": "ours: return statistics, G = gamma G + r, G = 0 at every episode end",
             "theirs return": "CleanRL: return statistics, G = gamma G (1 - terminated) + r",
             "ours reward": "ours: scaled reward clip(r / sqrt(var + 1e-8), +-10) (stored in float32)",
             "theirs reward": "CleanRL: scaled reward, the same formula on its statistics"}
    for r in results:
        ro = r["rollout"]
        for key, w in ro["rule"].items():
            tol = F32_TOL if key in F32_RULES else TOL
            good = w.scaled <= tol
            ok &= good
            print(f"| {r['env']} | {ro['steps']} | {ro['terminations']}, {ro['truncations']} | {names[key]} | "
                  f"{w.cell()} | {'pass' if good else 'FAIL'} |")
        good = ro["consistency"].scaled <= 1e-5
        ok &= good
        print(f"| {r['env']} | {args.num_steps} | | CleanRL's actions of rollout 1 = our actor on CleanRL's "
              f"normalized observations + our noise (float32) | {ro['consistency'].cell()} | "
              f"{'pass' if good else 'FAIL'} |")
        label = "ours V(s_T) = CleanRL's, rollout 1 (the same weights; no episode end before s_T: the same statistics)"
        if ro["agree"] is None:
            print(f"| {r['env']} | {args.num_steps} | | {label} | not compared: an episode ended in rollout 1, after "
                  f"which CleanRL's statistics count its final observation (difference 3) | - |")
        else:
            good = ro["agree"].scaled <= 1e-5
            ok &= good
            print(f"| {r['env']} | {args.num_steps} | | {label} (float32) | {ro['agree'].cell()} | "
                  f"{'pass' if good else 'FAIL'} |")
    print("\nThe two sides against each other (the deliberate differences 2 and 3 at work; no pass/fail):\n")
    print("| environment | quantity | ours | CleanRL | max difference (where) |")
    print("|---|---|---|---|---|")
    for r in results:
        ro, s = r["rollout"], r["rollout"]["side"]
        e = r["env"]
        print(f"| {e} | observation count at the end | {ro['counts'][0]:.4f} | {ro['counts'][1]:.4f} | |")
        print(f"| {e} | observation mean / var (var: relative) | | | {s['obs mean'].diff:.3g} / "
              f"{s['obs var'].diff:.3g} ({s['obs var'].where}) |")
        print(f"| {e} | normalized observations | | | {s['normalized obs'].diff:.3g} ({s['normalized obs'].where}) |")
        print(f"| {e} | return std at the end | {ro['ret_std'][0]:.5g} | {ro['ret_std'][1]:.5g} | relative "
              f"{ro['ret_std'][0] / ro['ret_std'][1] - 1:+.3g} |")
        print(f"| {e} | scaled rewards (relative) | | | {s['scaled reward'].diff:.3g} ({s['scaled reward'].where}) |")
        print(f"| {e} | actions stored (unclipped) / sent to MuJoCo | | | {s['sent action'].diff:.3g} / "
              f"{s['env action'].diff:.3g} |")
        print(f"| {e} | steps with an action clipped | {ro['clipped'][0]:.1%} | {ro['clipped'][1]:.1%} | |")
        print(f"| {e} | control cost charged, total | {ro['cost'][0]:.6g} | {ro['cost'][1]:.6g} | "
              f"{ro['cost'][2]:.3g} at most per step |")
        print(f"| {e} | V(s_T) after each rollout | {', '.join(f'{a:.5g}' for a, _ in ro['values'])} | "
              f"{', '.join(f'{b:.5g}' for _, b in ro['values'])} | "
              f"{', '.join(f'{abs(a - b):.2g}' for a, b in ro['values'])} (each rollout) |")
        print(f"| {e} | observation var at the end (relative) | | | {ro['var_end']:.3g} |")
        print(f"| {e} | parameters after the updates (own rollouts) | | | {r['rollout_params'].diff:.3g} "
              f"({r['rollout_params'].where}) |")
    eps = results[0]["rollout"]["epsilons"]
    print(f"\nCleanRL's wrapper constants: observation epsilon {eps['obs']:g}, reward epsilon {eps['reward']:g}, "
          f"gamma {eps['gamma']:g} (ours: 1e-8, 1e-8, {results[0]['gamma']:g}).")
    return ok


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--peer-side":
        return peer_side(sys.argv[2], sys.argv[3])
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--cleanrl", required=True, help="checkout of github.com/vwxyzjn/cleanrl")
    parser.add_argument("--gymnasium", help="a folder from which gymnasium 0.29.1 imports (for the rollout check)")
    parser.add_argument("--envs", nargs="+", default=["Hopper-v4", "HalfCheetah-v4"])
    parser.add_argument("--num-steps", type=int, default=2048, help="steps per rollout (a multiple of 32, >= 64)")
    parser.add_argument("--iterations", type=int, default=2, help="rollouts and updates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-episode-steps", type=int,
                        help="time limit of the environments (default: theirs, 1000 steps for these)")
    args = parser.parse_args()
    file = os.path.join(os.path.abspath(args.cleanrl), CLEANRL_FILE)
    if not os.path.isfile(file):
        parser.error(f"{args.cleanrl} is not a checkout of github.com/vwxyzjn/cleanrl: no {CLEANRL_FILE}")
    if args.gymnasium:
        pinned = pinned_gymnasium(args.cleanrl)
        try:
            with open(os.path.join(args.gymnasium, "gymnasium", "__init__.py")) as f:
                found = re.search(r'__version__ = "([^"]+)"', f.read())
        except OSError:
            found = None
        if found is None or found.group(1) != pinned:
            held = f"gymnasium {found.group(1)}" if found else "no gymnasium"
            parser.error(f"--gymnasium {args.gymnasium} holds {held}, not the {pinned} that CleanRL pins "
                         f"(pip install --no-deps --target DIR gymnasium=={pinned})")
    if args.num_steps < 64 or args.num_steps % 32 or args.iterations < 1 or (args.max_episode_steps or 1) < 1:
        parser.error("--num-steps must be a multiple of 32 (the minibatches), at least 64 (a minibatch of one "
                     "transition has no std to normalize its advantages), --iterations and --max-episode-steps at "
                     "least 1")
    args.cleanrl = os.path.abspath(args.cleanrl)
    args.gymnasium = args.gymnasium and os.path.abspath(args.gymnasium)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import ppo

    start = time.perf_counter()
    try:
        results = [check_env(ppo, env_id, args, file) for env_id in args.envs]
    except ppo.UsageError as e:
        parser.error(str(e))
    except Mismatch as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
    ok = report(results, args, file)
    print(f"\n{'PASS' if ok else 'FAIL'} ({time.perf_counter() - start:.0f} s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
