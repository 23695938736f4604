"""ppo.py: GAE with terminations and truncations, the surrogate objectives (clipped, KL penalty, none) and the
adaptive beta, normalization statistics, the vector path, the command line, stops between minibatch steps with exact
resume, and learning InvertedPendulum."""

import json
import math
import os
import signal
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RecordEpisodeStatistics
from torch.distributions import Independent, Normal, kl_divergence

import ppo
from conftest import (ROOT, assert_videos, evaluation_columns, full_and_interrupted, make_args, read_evaluations,
                      signal_when_running)


def make_agent(seed=0, env_id="InvertedPendulum-v4", **overrides):
    torch.manual_seed(seed)
    args = make_args(ppo, env=env_id, **overrides)
    env = ppo.make_env(args, seed)
    return ppo.Agent(env.observation_space.shape[0], env.action_space.shape[0], args, torch.device("cpu")), env


def test_gae_with_termination_and_truncation_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    values = torch.tensor([[0.5], [1.0], [-0.5], [2.0], [1.5], [0.25]])
    # Step 1 terminates (no bootstrap); step 3 is cut by the time limit, and the true final observation of that
    # episode has value 3.0; the rollout ends mid-episode and the observation after it has value 0.8.
    dones = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [0.0]])
    final_values = torch.tensor([[0.0], [0.0], [0.0], [3.0], [0.0], [0.0]])
    next_value = torch.tensor([0.8])

    # By hand, backwards: delta_t = r_t + gamma * V(next) - V(s_t); A_t = delta_t + gamma * lam * A_t+1 within
    # an episode.
    A5 = 6 + 0.9 * 0.8 - 0.25  # 6.47: bootstraps from the observation after the rollout
    A4 = (5 + 0.9 * 0.25 - 1.5) + 0.72 * A5  # 3.725 + 4.6584 = 8.3834
    A3 = 4 + 0.9 * 3.0 - 2.0  # 4.7: truncation, bootstraps from V(s_final) = 3.0, not from V(s_4) = 1.5
    A2 = (3 + 0.9 * 2.0 + 0.5) + 0.72 * A3  # 5.3 + 3.384 = 8.684
    A1 = 2 - 1.0  # 1.0: termination, no bootstrap
    A0 = (1 + 0.9 * 1.0 - 0.5) + 0.72 * A1  # 1.4 + 0.72 = 2.12
    expected = torch.tensor([[A0], [A1], [A2], [A3], [A4], [A5]])
    assert torch.allclose(expected.flatten(), torch.tensor([2.12, 1.0, 8.684, 4.7, 8.3834, 6.47]))

    advantages, returns = ppo.compute_gae(rewards, values, dones, final_values, next_value, gamma, lam)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_clipped_objective_gradient_vanishes_only_where_clipping_binds():
    eps = 0.2
    # (ratio, advantage): clipping binds when r > 1 + eps with A > 0 and when r < 1 - eps with A < 0.
    cases = [(1.3, 1.0, True), (1.3, -1.0, False), (0.7, -1.0, True), (0.7, 1.0, False),
             (1.1, 1.0, False), (0.9, -1.0, False), (1.1, -2.0, False)]
    logratio = torch.tensor([math.log(r) for r, _, _ in cases], requires_grad=True)
    advantages = torch.tensor([a for _, a, _ in cases])
    ppo.clipped_surrogate_loss(logratio, advantages, eps).backward()
    n = len(cases)
    for (ratio, advantage, binds), grad in zip(cases, logratio.grad):
        if binds:
            assert grad == 0, (ratio, advantage)
        else:  # d/dlogratio of -A * exp(logratio) / n
            assert grad == pytest.approx(-advantage * ratio / n, rel=1e-5), (ratio, advantage)


def test_each_surrogate_objective_matches_a_hand_computation():
    # r = 1.5, 0.5, 1.1 with A = 1, -2, 0.5; KL 0.1, 0.2, 0.3 with beta 2; clip epsilon 0.2.
    logratio = torch.tensor([1.5, 0.5, 1.1]).log()
    advantages = torch.tensor([1.0, -2.0, 0.5])
    kl = torch.tensor([0.1, 0.2, 0.3])
    # none: -E[r A] = -(1.5 - 1.0 + 0.55) / 3
    assert ppo.surrogate_loss(logratio, advantages).item() == pytest.approx(-1.05 / 3)
    # KL penalty: -E[r A - beta KL] = -((1.5 - 0.2) + (-1.0 - 0.4) + (0.55 - 0.6)) / 3
    assert ppo.kl_penalty_loss(logratio, advantages, kl, 2.0).item() == pytest.approx(0.15 / 3)
    # clipped: min(1.5, 1.2 * 1) = 1.2; min(-1.0, 0.8 * -2) = -1.6; min(0.55, 0.55) = 0.55
    assert ppo.clipped_surrogate_loss(logratio, advantages, 0.2).item() == pytest.approx(-0.15 / 3)


def test_closed_form_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mean_old, mean = torch.randn(7, 3), torch.randn(7, 3)
    log_std_old, log_std = torch.randn(3), torch.randn(3)  # state-independent, as the actor's
    old, new = (Independent(Normal(m, s.exp()), 1) for m, s in ((mean_old, log_std_old), (mean, log_std)))
    kl = ppo.gaussian_kl(mean_old, log_std_old, mean, log_std)
    torch.testing.assert_close(kl, kl_divergence(old, new))
    assert not torch.allclose(kl, kl_divergence(new, old))  # KL[pi_old, pi_theta], the paper's direction
    assert ppo.gaussian_kl(mean, log_std, mean, log_std).abs().max() < 1e-6


def tiny_batch(agent, n=6):
    """A batch of n transitions as Rollout.batch makes them, from a pi_old whose means and log std differ from the
    agent's policy (so that the ratios spread on both sides of the clip range), and pi_old itself."""
    torch.manual_seed(1)
    obs = torch.randn(n, 4)
    with torch.no_grad():
        means = agent.actor(obs) + 0.5 * torch.randn(n, 1)
    log_std = torch.tensor([-0.4])
    old = Independent(Normal(means, log_std.exp()), 1)
    actions = old.sample()
    batch = {"obs": obs, "actions": actions, "log_probs": old.log_prob(actions), "means": means, "log_std": log_std,
             "values": torch.randn(n), "advantages": torch.randn(n), "returns": torch.randn(n)}
    return batch, old


@pytest.mark.parametrize("objective", ["clip", "adaptive-kl", "fixed-kl", "none"])
def test_a_minibatch_step_optimizes_the_chosen_objective(objective):
    """The policy loss of Agent.update, from its batch (pi_old's log-probs, means and log std), against the same
    objective computed with torch.distributions."""
    agent, _ = make_agent(seed=0, objective=objective, kl_beta=3.0, norm_adv=False)
    batch, old = tiny_batch(agent)
    with torch.no_grad():
        new = Independent(Normal(agent.actor(batch["obs"]), agent.actor.log_std.exp()), 1)
        ratio, A = (new.log_prob(batch["actions"]) - batch["log_probs"]).exp(), batch["advantages"]
    assert (ratio > 1.2).any() and (ratio < 0.8).any()
    penalty = -(ratio * A - 3.0 * kl_divergence(old, new)).mean()
    expected = {"none": -(ratio * A).mean(), "clip": -torch.min(ratio * A, ratio.clamp(0.8, 1.2) * A).mean(),
                "fixed-kl": penalty, "adaptive-kl": penalty}
    before = [p.clone() for p in agent.actor.parameters()]
    stats = agent.update(batch, torch.arange(6))
    torch.testing.assert_close(stats[0], expected[objective])
    assert all(not torch.equal(p, q) for p, q in zip(before, agent.actor.parameters()))  # a step was taken


def test_the_kl_penalty_pulls_the_policy_back_to_pi_old():
    """With zero advantages only the penalty moves the policy: gradient steps shrink the measured KL, the mean over
    the batch's states of KL[pi_old, pi_theta] in closed form."""
    agent, _ = make_agent(seed=0, objective="fixed-kl", kl_beta=1.0, norm_adv=False, learning_rate=1e-2)
    batch, old = tiny_batch(agent)
    batch["advantages"] = torch.zeros(6)
    kl = [agent.measure_kl(batch)]
    with torch.no_grad():
        expected = kl_divergence(old, Independent(Normal(agent.actor(batch["obs"]), agent.actor.log_std.exp()), 1))
    assert kl[0] == pytest.approx(expected.mean().item(), rel=1e-5)
    for _ in range(20):
        agent.update(batch, torch.arange(6))
        kl.append(agent.measure_kl(batch))
    assert kl[-1] < 0.5 * kl[0] and all(b < a for a, b in zip(kl, kl[1:])), kl


def test_adaptive_beta_halves_and_doubles_on_a_scripted_sequence_of_kl():
    agent, _ = make_agent(objective="adaptive-kl", kl_target=0.01, kl_beta=1.0)
    # d_targ / 1.5 = 0.00667 and d_targ * 1.5 = 0.015: below, beta / 2; above, beta * 2; in between, unchanged.
    script = [(0.001, 0.5), (0.006, 0.25), (0.02, 0.5), (0.01, 0.5), (0.0067, 0.5), (0.0149, 0.5), (0.0151, 1.0),
              (0.3, 2.0), (0.016, 4.0), (0.0066, 2.0)]
    for d, beta in script:
        agent.adapt_beta(d)
        assert agent.beta == beta, (d, agent.beta, beta)


def test_normalization_statistics_survive_save_and_load(tmp_path):
    agent, _ = make_agent(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        agent.obs_rms.update(rng.normal(3.0, 2.0, size=(7, 4)))
        agent.return_rms.update(rng.normal(0.0, 5.0, size=(3,)))
    path = str(tmp_path / "model.pt")
    ppo.save_model(agent, agent.args, path, step=123)

    loaded, _ = make_agent(seed=1)
    checkpoint = ppo.load_model(str(tmp_path))
    ppo.load_agent_state(loaded, checkpoint["agent"])
    assert checkpoint["step"] == 123
    for name in ("obs_rms", "return_rms"):
        saved, restored = getattr(agent, name), getattr(loaded, name)
        assert np.array_equal(saved.mean, restored.mean) and np.array_equal(saved.var, restored.var), name
        assert saved.count == restored.count, name
        assert restored.mean.dtype == np.float64
    assert not np.array_equal(loaded.obs_rms.mean, np.zeros(4))
    for p, q in zip([*agent.actor.parameters(), *agent.critic.parameters()],
                    [*loaded.actor.parameters(), *loaded.critic.parameters()]):
        assert torch.equal(p, q)


class ActedOnStates(gym.Wrapper):
    """Records the raw observation each action was chosen for."""

    def __init__(self, env):
        super().__init__(env)
        self.acted_on = []

    def reset(self, **kwargs):
        self.last, info = self.env.reset(**kwargs)
        return self.last, info

    def step(self, action):
        self.acted_on.append(self.last)
        self.last, *rest = self.env.step(action)
        return (self.last, *rest)


def test_evaluation_normalizes_with_the_saved_statistics_and_never_updates_them():
    agent, _ = make_agent(seed=0)
    with torch.no_grad():
        agent.actor.net[-1].weight.mul_(30)  # actions that depend visibly on the observations
    agent.obs_rms.mean = np.array([0.05, -0.02, 0.1, -0.3])
    agent.obs_rms.var = np.array([0.01, 0.04, 0.5, 2.0])
    agent.obs_rms.count = 17.0
    before = {k: v.clone() for k, v in agent.obs_rms.state_dict().items()}
    inputs = []  # what the actor sees
    agent.actor.register_forward_hook(lambda module, args, output: inputs.append(args[0].flatten().numpy().copy()))

    env = ActedOnStates(ppo.make_env(agent.args, 100))
    returns = ppo.evaluate(agent, env, episodes=3)

    assert len(returns) == 3 and len(inputs) == len(env.acted_on) == returns.sum()  # reward 1 per step
    after = agent.obs_rms.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    mean, var = before["mean"].numpy(), before["var"].numpy()
    expected = np.clip((np.array(env.acted_on) - mean) / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(np.array(inputs), expected, rtol=1e-6, atol=1e-6)


# InvertedDoublePendulum: rewards that vary from step to step and from environment to environment.
PENDULUM, TIME_LIMIT = "InvertedDoublePendulum-v4", 7


def frozen_agent():
    """A seeded agent that acts deterministically (log std -30) with fixed normalization statistics, pushing the
    pendulum over in about 7 steps, so that a time limit of 7 sees both terminations and truncations."""
    agent, _ = make_agent(seed=0, env_id=PENDULUM)
    rng = np.random.default_rng(0)
    dim = agent.obs_rms.mean.shape[0]
    agent.obs_rms.mean, agent.obs_rms.var = rng.normal(0, 0.1, dim), rng.uniform(0.5, 2, dim)
    agent.return_rms.var = np.array(4.0)
    agent.obs_rms.update = agent.return_rms.update = lambda x: None
    with torch.no_grad():
        agent.actor.net[-1].weight.mul_(100)
        agent.actor.net[-1].bias.fill_(0.35)
        agent.actor.log_std.fill_(-30.0)
    return agent


def pendulum_env(seed):
    """The pendulum as the harness makes it (actions normalized to [-1, 1], episode statistics), time limit 7."""
    return ppo.make_env(make_args(ppo, env=PENDULUM), seed, max_episode_steps=TIME_LIMIT)


def collect(agent, num_envs, seed, steps=32):
    """A Rollout collected on num_envs pendulums reset as the harness resets them (env i with seed + i)."""
    envs = ppo.make_vector_env([pendulum_env(seed + i) for i in range(num_envs)])
    state, _ = envs.reset(seed=seed)
    rollout = ppo.Rollout(num_envs)
    _, episodes = rollout.collect(agent, envs, state, steps)
    return rollout, episodes


def rollout_data(agent, num_envs, seed, steps=32):
    rollout, _ = collect(agent, num_envs, seed, steps)
    rollout.estimate_advantages(agent.args.gamma, agent.args.gae_lambda)
    return {"obs": torch.from_numpy(rollout.obs), "actions": rollout.actions, "values": rollout.values,
            "rewards": torch.from_numpy(rollout.rewards), "dones": torch.from_numpy(rollout.dones),
            "final_values": rollout.final_values, "advantages": rollout.advantages, "returns": rollout.returns,
            "means": rollout.means}


def test_vector_env_rollouts_match_single_env_rollouts():
    agent = frozen_agent()
    both = rollout_data(agent, 2, seed=3)  # env i is reset with seed 3 + i
    # Both kinds of episode end occur in each environment, so both paths are exercised.
    truncations = (both["final_values"] != 0).sum(0)
    terminations = both["dones"].sum(0) - truncations
    assert (truncations > 0).all() and (terminations > 0).all(), (truncations, terminations)

    for i in range(2):
        alone = rollout_data(agent, 1, seed=3 + i)
        for name, value in alone.items():
            torch.testing.assert_close(both[name][:, i], value[:, 0], rtol=1e-5, atol=1e-6, msg=name)


def test_observation_statistics_count_each_observation_once_as_it_arrives():
    """VecNormalize's order: the first reset's observations, then each step's (after autoreset: the next episode's
    first, never the final observation it replaced), counted as they arrive, so that the observation after a rollout
    is counted before V(s_T) is computed, and not again by the next rollout."""
    agent, _ = make_agent(seed=0, env_id=PENDULUM)
    envs = ppo.make_vector_env([pendulum_env(3 + i) for i in range(2)])
    state, _ = envs.reset(seed=3)
    arrived, step = [state.copy()], envs.step
    envs.step = lambda action: (lambda out: (arrived.append(out[0].copy()), out)[1])(step(action))
    rollout, finals = ppo.Rollout(2), 0
    for _ in range(2):  # two rollouts, as main() collects them: the same Rollout, the state handed on
        state, episodes = rollout.collect(agent, envs, state, 16)
        finals += len(episodes)
    assert finals > 2  # autoresets happened: their final observations must not be counted
    expected = ppo.RunningMeanStd(agent.obs_rms.mean.shape)
    for batch in arrived:
        expected.update(batch)
    assert agent.obs_rms.count == expected.count == pytest.approx(1e-4 + 2 * 33)
    np.testing.assert_array_equal(agent.obs_rms.mean, expected.mean)
    np.testing.assert_array_equal(agent.obs_rms.var, expected.var)
    with torch.no_grad():
        torch.testing.assert_close(rollout.next_value, agent.critic(torch.from_numpy(agent.normalize_obs(state))))


def test_truncation_bootstraps_from_the_true_final_observation():
    agent = frozen_agent()
    rollout, episodes = collect(agent, 1, seed=3)
    # Replay the rollout's actions on a single environment (reset the way the vector env resets it) to get the true
    # final observation of every episode the time limit cut, and each episode's return and length.
    env = pendulum_env(3)
    env.reset(seed=3)
    truncated_at, ended, episode_return, episode_length = [], [], 0.0, 0
    for t in range(32):
        state, reward, terminated, truncated, _ = env.step(rollout.actions[t, 0].clamp(-1, 1).numpy())
        episode_return, episode_length = episode_return + reward, episode_length + 1
        assert rollout.dones[t, 0] == float(terminated or truncated)
        if truncated and not terminated:
            truncated_at.append(t)
            final = np.clip((state - agent.obs_rms.mean) / np.sqrt(agent.obs_rms.var + 1e-8), -10, 10)
            with torch.no_grad():
                expected = agent.critic(torch.tensor(final, dtype=torch.float32))
                next_episode_first = agent.critic(torch.from_numpy(rollout.obs[t + 1, 0]))
            torch.testing.assert_close(rollout.final_values[t, 0], expected)
            assert not torch.allclose(rollout.final_values[t, 0], next_episode_first)
        else:
            assert rollout.final_values[t, 0] == 0  # no bootstrap after a termination (or mid-episode)
        if terminated or truncated:
            ended.append((t, episode_return, episode_length))
            episode_return, episode_length = 0.0, 0
            env.reset()
    assert truncated_at and len(truncated_at) < rollout.dones.sum()  # truncations and terminations both occur
    # The episodes the rollout reports for logging: where they ended, their raw (unscaled) returns and lengths.
    assert [(t, pytest.approx(episode["r"]), episode["l"]) for t, episode in episodes] == ended


def test_cli_short_run_writes_run_folder_and_eval_only_reads_it(script, tmp_path):
    run_dir = str(tmp_path / "runs")
    result = script("ppo.py", "--env", "InvertedPendulum-v4", "--num-envs", "2", "--num-steps", "64",
                    "--num-minibatches", "4", "--update-epochs", "2", "--total-timesteps", "256", "--eval-freq", "128",
                    "--eval-episodes", "2", "--torch-threads", "1", "--run-dir", run_dir, "--save-model")
    assert result.returncode == 0, result.stderr
    path, rows = read_evaluations(run_dir)
    assert [int(r["step"]) for r in rows] == [0, 128, 256]
    assert all(len(r["returns"].split()) == 2 for r in rows)
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["algo"] == "ppo" and config["num_envs"] == 2 and config["env"] == "InvertedPendulum-v4"
    assert "torch" in config and "gymnasium" in config
    assert os.path.isfile(os.path.join(path, "model.pt"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(path))

    result = script("ppo.py", "--eval-only", path, "--eval-episodes", "2", "--torch-threads", "1")
    assert result.returncode == 0, result.stderr
    assert "InvertedPendulum-v4 ppo (step 256): mean return" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--env", "NoSuchEnv-v0"], "cannot make environment"),
    (["--env", "CartPole-v1"], "Discrete action space"),
    (["--num-minibatches", "0"], "--num-minibatches must be positive"),
    (["--objective", "foo"], "--objective must be clip, adaptive-kl, fixed-kl or none, got 'foo'"),
    (["--kl-target", "-0.01"], "--kl-target must be positive"),
    (["--kl-target", "nan"], "--kl-target must be a finite number"),
    (["--kl-beta", "0"], "--kl-beta must be positive"),
    (["--target-kl", "-1"], "--target-kl must not be negative"),
])
def test_cli_bad_input_is_one_line_and_exit_2(script, tmp_path, argv, message):
    result = script("ppo.py", *argv, "--run-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("ppo.py: error:") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not os.listdir(tmp_path)  # no run folder for a run that never started


def test_cli_ctrl_c_exits_130_with_the_logs_written(tmp_path):
    run_dir = str(tmp_path / "runs")
    returncode, stderr = signal_when_running("ppo.py", [
        "--env", "InvertedPendulum-v4", "--eval-episodes", "1", "--torch-threads", "1", "--run-dir", run_dir],
        signal.SIGINT)
    assert returncode == 130, stderr
    assert "interrupted at step" in stderr
    _, rows = read_evaluations(run_dir)
    assert rows[0]["step"] == "0"


@pytest.mark.parametrize("objective", ["clip", "adaptive-kl"])
def test_learns_inverted_pendulum(objective, script, tmp_path):
    # 20 rollouts of 2048 steps: about 25 s on 2 idle cores; with clip, seeds 0-4 all end at 900-1000 (1000 is the
    # maximum); adaptive-kl, seed 0: 892 at 20480 steps, 1000 at 40960.
    run_dir = str(tmp_path / "runs")
    start = time.time()
    result = script("ppo.py", "--env", "InvertedPendulum-v4", "--seed", "0", "--total-timesteps", "40960",
                    "--eval-freq", "20480", "--objective", objective, "--torch-threads", "1", "--run-dir", run_dir,
                    timeout=900)
    assert result.returncode == 0, result.stderr
    _, rows = read_evaluations(run_dir)
    assert [int(r["step"]) for r in rows] == [0, 20480, 40960]
    assert float(rows[0]["mean_return"]) < 100  # an untrained policy drops the pole quickly
    assert float(rows[-1]["mean_return"]) >= 500, (rows, time.time() - start)


# Research workflow: --resume, SIGTERM, --capture-video, --track.



def evaluation_returns(run_path):
    return evaluation_columns(run_path, "step", "returns")


SHORT = dict(num_envs=2, num_steps=64, num_minibatches=4, update_epochs=2, total_timesteps=6 * 128, eval_freq=128,
             eval_episodes=2, device="cpu", torch_threads=1, save_model=True)
# The harness checks for a stop before each of an iteration's 2 * 4 minibatch steps and once after the iteration:
# the k-th check (k = 1, 2, ...) is before minibatch step (k - 1) % 9 of iteration (k - 1) // 9, or after it (% 9 = 8).
CHECKS = 9


def scalars(run_path) -> dict:
    """The TensorBoard scalars of a run folder (all its event files: a resumed run adds one), as {tag: sorted
    [(step, value)]}, without the speed, which depends on the machine."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_path))
    events.Reload()
    return {tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]
            if tag != "train/SPS"}


def assert_same_agent(full, resumed):
    """The final model.pt of two runs: networks, optimizer, normalization statistics, beta and KL, to the bit."""
    a = torch.load(os.path.join(full, "model.pt"), weights_only=True)["agent"]
    b = torch.load(os.path.join(resumed, "model.pt"), weights_only=True)["agent"]
    for part in ("actor", "critic", "obs_rms", "return_rms"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for i, state in a["optimizer"]["state"].items():
        for key in state:
            assert torch.equal(state[key], b["optimizer"]["state"][i][key]), ("optimizer", i, key)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    assert (a["beta"], a["kl"]) == (b["beta"], b["kl"])


@pytest.mark.parametrize("env", ["Pendulum-v1", "Hopper-v4"])  # Hopper: MuJoCo physics mid-episode
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(env, tmp_path, monkeypatch):
    """6 iterations in one go, and 3 iterations + SIGINT-style stop + --resume for 3 more, give the same evaluations
    and the same final agent (networks, optimizer, normalization statistics) to the bit."""
    full, interrupted = full_and_interrupted(ppo, dict(env=env, **SHORT), 3 * CHECKS, tmp_path, monkeypatch)
    assert [step for step, _ in evaluation_returns(interrupted)] == ["0", "128", "256", "384"]
    state = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)
    assert state["loop"]["t"] == 3 and state["loop"]["substep"] == 0 and not state["loop"]["updating"]  # a boundary
    assert any(state["envs"][f"env_{i}"]["env"].episode_lengths > 0 for i in range(2))  # stopped mid-episode
    assert (state["loop"]["rollout"].discounted_return != 0).any()  # reward scaling's state carries over

    resumed = ppo.launch(make_args(ppo, resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted
    assert evaluation_returns(resumed) == evaluation_returns(full)
    assert not os.path.exists(os.path.join(resumed, "resume.pt"))  # finished: nothing left to resume
    assert_same_agent(full, resumed)


@pytest.mark.parametrize("stop, objective, target_kl", [
    (CHECKS + 1, "clip", 0.0),  # iteration 1, before its first minibatch step: collected, no permutation drawn yet
    (CHECKS + 7, "clip", 0.0),  # iteration 1, epoch 1, before its 3rd minibatch: that epoch's permutation is drawn
    (2 * CHECKS + 6, "adaptive-kl", 0.0),  # iteration 2, with a beta the first two updates changed
    (3 * CHECKS + 7, "fixed-kl", 1e-9),  # iteration 3, in the epoch that --target-kl skips
])
def test_a_stop_between_two_minibatch_steps_is_honoured_and_resumes_exactly(stop, objective, target_kl, tmp_path,
                                                                           monkeypatch):
    """A stop requested before a minibatch step is honoured before it (no gradient step after the request); --resume
    goes on from that step, with the rollout, its advantages, the epoch's permutation, the loss statistics and beta
    from the saved state, and ends with the evaluations and the agent of the uninterrupted run, to the bit."""
    common = dict(env="Pendulum-v1", objective=objective, target_kl=target_kl, **SHORT)
    full, interrupted = full_and_interrupted(ppo, common, stop, tmp_path, monkeypatch)
    t, substep = divmod(stop - 1, CHECKS)
    state = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)
    loop = state["loop"]
    assert (loop["t"], loop["substep"], loop["updating"]) == (t, substep, True)
    steps_per_update = 4 if target_kl else 8  # --target-kl: one epoch of 4 minibatches
    done = min(substep, steps_per_update)  # this iteration's minibatch steps before the stop
    assert int(loop["stats"][5]) == done and loop["stopped_early"] == (substep >= steps_per_update)
    assert int(state["agent"]["optimizer"]["state"][0]["step"]) == t * steps_per_update + done
    assert [step for step, _ in evaluation_returns(interrupted)] == [str(128 * i) for i in range(t + 1)]
    if objective == "adaptive-kl":
        assert state["agent"]["beta"] != 1.0  # changed by the updates before the stop, and saved

    resumed = ppo.launch(make_args(ppo, resume=interrupted, device="cpu", torch_threads=1))
    assert evaluation_returns(resumed) == evaluation_returns(full)
    assert_same_agent(full, resumed)
    logged = scalars(full)  # the losses, the learning rate, the measured KL and beta of every iteration
    assert scalars(resumed) == logged and len(logged["train/kl"]) == len(logged["train/beta"]) == 6


@pytest.mark.parametrize("target_kl, epochs", [(0.0, 2), (1.0, 2), (1e-9, 1)])
def test_each_epoch_takes_every_transition_once_and_target_kl_stops_the_epochs_early(target_kl, epochs, tmp_path,
                                                                                     monkeypatch):
    """Each epoch's minibatches split one permutation of the 128 transitions; --target-kl 1e-9 stops every update
    after its first epoch (the approximate KL of that epoch's last minibatch is above it), 1.0 never does."""
    update, minibatches, kls = ppo.Agent.update, [], []

    def recorded_update(self, batch, mb):
        minibatches.append(mb.clone())
        stats = update(self, batch, mb)
        kls.append(float(stats[3]))
        return stats

    monkeypatch.setattr(ppo.Agent, "update", recorded_update)
    ppo.launch(make_args(ppo, env="Pendulum-v1", run_dir=str(tmp_path), target_kl=target_kl, **SHORT))
    assert len(minibatches) == 6 * epochs * 4  # 6 iterations of `epochs` epochs of 4 minibatches
    for epoch in range(6 * epochs):
        assert torch.equal(torch.cat(minibatches[4 * epoch:4 * epoch + 4]).sort().values, torch.arange(128))
    if target_kl == 1e-9:
        assert all(kls[i] > 1e-9 for i in range(3, len(kls), 4))  # each epoch's last minibatch
    elif target_kl == 1.0:
        assert max(kls) < 1.0


def test_a_second_ctrl_c_inside_an_iteration_writes_no_state(tmp_path, monkeypatch, capfd):
    """Two Ctrl-C in the middle of an iteration stop at once and leave no resumable state that would not be exact."""
    update = ppo.Agent.update
    calls = []

    def interrupted_update(self, *args):
        calls.append(1)
        if len(calls) == 10:  # the 2nd minibatch step of the 2nd iteration (8 a iteration)
            signal.raise_signal(signal.SIGINT)  # asks to stop before the next minibatch step
            signal.raise_signal(signal.SIGINT)  # stops now
        return update(self, *args)

    monkeypatch.setattr(ppo.Agent, "update", interrupted_update)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exit_info:
            ppo.launch(make_args(ppo, env="Pendulum-v1", run_dir=str(tmp_path), **SHORT))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert exit_info.value.code == 130 and len(calls) == 10
    [folder] = os.listdir(tmp_path)
    assert not os.path.exists(tmp_path / folder / "resume.pt")
    assert [step for step, _ in evaluation_returns(tmp_path / folder)] == ["0", "128"]
    assert "stopped at once: no resumable state written" in capfd.readouterr().err  # written to fd 2 directly


def test_sigterm_stops_between_two_minibatch_steps_and_writes_a_resumable_state(tmp_path):
    # Iterations of 16 environment steps and 400 epochs of 8 minibatches: nearly all the time goes to the update,
    # so the signal comes in the middle of one, and the run stops there, not at the end of the iteration.
    returncode, stderr = signal_when_running("ppo.py", [
        "--env", "Pendulum-v1", "--total-timesteps", "1000000", "--num-steps", "16", "--num-minibatches", "8",
        "--update-epochs", "400", "--eval-freq", "1000000", "--eval-episodes", "1", "--torch-threads", "1",
        "--run-dir", str(tmp_path)], signal.SIGTERM)
    assert returncode == 130, stderr
    [folder] = os.listdir(tmp_path)
    assert f"--resume {tmp_path / folder}" in stderr
    state = torch.load(tmp_path / folder / "resume.pt", weights_only=False)  # its classes are ppo's, not __main__'s
    loop = state["loop"]
    assert loop["updating"] and 0 < loop["substep"] < 3200, (loop["t"], loop["substep"])
    assert int(state["agent"]["optimizer"]["state"][0]["step"]) == 3200 * loop["t"] + loop["substep"]
    assert f"interrupted at step {16 * loop['t']};" in stderr  # the environment steps collected before this update


def test_capture_video_writes_mp4s_headless(script, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    result = script("ppo.py", "--env", "InvertedPendulum-v4", "--num-steps", "64", "--num-minibatches", "4",
                    "--update-epochs", "1", "--total-timesteps", "320", "--eval-freq", "64", "--eval-episodes", "1",
                    "--capture-video", "--video-every", "2", "--torch-threads", "1", "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [folder] = os.listdir(tmp_path)
    # videos at evaluations 1, 3, 5, last
    assert_videos(tmp_path / folder, ["step_0.mp4", "step_128.mp4", "step_256.mp4", "step_320.mp4"])
    assert "Exception ignored" not in result.stderr  # the GL context is freed cleanly


class UnitRewardEnv(gym.Env):
    """Reward 1 every step; episodes of `length` steps end by termination."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length):
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(4, np.float32), 1.0, self.t == self.length, False, {}


def test_reward_scaling_keeps_one_discounted_return_per_env():
    """Env 0 ends an episode every 3 steps and env 1 every 5: after 7 steps with gamma 0.5 the running
    discounted returns are 1 (env 0: 1 step into its 3rd episode) and 1.5 (env 1: 2 steps into its 2nd);
    the scaled rewards divide by the running std of those returns (clipped at 10), recomputed here."""
    agent, _ = make_agent(seed=0, gamma=0.5)
    envs = ppo.make_vector_env([RecordEpisodeStatistics(UnitRewardEnv(3)), RecordEpisodeStatistics(UnitRewardEnv(5))])
    state, _ = envs.reset(seed=0)
    rollout = ppo.Rollout(2)
    _, episodes = rollout.collect(agent, envs, state, 7)
    assert [(t, episode["l"]) for t, episode in episodes] == [(2, 3), (4, 5), (5, 3)]
    np.testing.assert_allclose(rollout.discounted_return, [1.0, 1.5])
    returns, seen = np.zeros(2), []
    for t in range(7):
        returns = returns * 0.5 + 1.0
        seen.append(returns.copy())
        rms = ppo.RunningMeanStd(())
        for batch in seen:  # RunningMeanStd merges batches exactly: their pooled variance
            rms.update(batch)
        expected = np.clip(1.0 / np.sqrt(rms.var + 1e-8), -agent.args.reward_clip, agent.args.reward_clip)
        np.testing.assert_allclose(rollout.rewards[t], np.full(2, expected), rtol=1e-5)
        returns[[(t + 1) % 3 == 0, (t + 1) % 5 == 0]] = 0.0


def test_the_objectives_table_from_run_folders(tmp_path, monkeypatch, capsys):
    """tools/ppo_objectives.py: per seed the mean of the last evaluations, over seeds the mean and std (ddof 1),
    and the range over seeds of each run's median train/kl."""
    from torch.utils.tensorboard import SummaryWriter

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import ppo_objectives

    for objective, seed, returns, kls in (("none", 0, [0, 5, 7, 9], [1.0, 2.0, 9.0]), ("clip", 0, [0, 1, 2, 3], [0.01]),
                                          ("clip", 1, [0, 3, 4, 5], [0.02, 0.04])):
        folder = tmp_path / f"{objective}_{seed}"
        os.makedirs(folder)
        json.dump({"algo": "ppo", "objective": objective, "seed": seed}, open(folder / "config.json", "w"))
        rows = "".join(f"{10 * i},0,{r},0,{r}\n" for i, r in enumerate(returns))
        (folder / "evaluations.csv").write_text("step,wall_seconds,mean_return,std_return,returns\n" + rows)
        with SummaryWriter(str(folder)) as writer:
            for step, kl in enumerate(kls):
                writer.add_scalar("train/kl", kl, step)
    monkeypatch.setattr(sys, "argv", ["ppo_objectives.py", str(tmp_path)])
    ppo_objectives.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| clip | 2.0 | 4.0 | 3.0 (1.4) | 0.0100-0.0300 |"  # clip first, as in the paper's table
    assert lines[3] == "| none | 7.0 | 7.0 (-) | 2.0000-2.0000 |"
