"""sac.py: the squashed log-probability, the temperature step, the soft Q target, the deterministic
evaluation action, learning on Pendulum-v1 and the command line."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

import sac
from conftest import pendulum_rows


def make_agent(state_dim=3, action_dim=2, **kwargs):
    torch.manual_seed(0)
    args = sac.Args(hdim=16, buffer_size=100, batch_size=4, **kwargs)
    return sac.Agent(state_dim, action_dim, args, torch.device("cpu"))


def hand_batch(state_dim=3, action_dim=2):
    g = torch.Generator().manual_seed(1)
    state = torch.randn(4, state_dim, generator=g)
    action = torch.rand(4, action_dim, generator=g) * 2 - 1
    next_state = torch.randn(4, state_dim, generator=g)
    reward = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    not_done = torch.tensor([[1.0], [0.0], [1.0], [1.0]])
    return state, action, next_state, reward, not_done


def fixed_sample(agent, action, log_prob):
    """A stand-in for Actor.sample that returns known actions and log-probabilities; the actions still
    depend on the actor's mean (with weight 0) so the actor step has a graph to differentiate."""
    def sample(state):
        mean, _ = sac.Actor.forward(agent.actor, state)
        return action + 0 * mean, log_prob
    return sample


# --- the squashed Gaussian ------------------------------------------------------------------------

@pytest.mark.parametrize("mean_bias", [0.0, 12.0])
def test_log_prob_matches_change_of_variables(mean_bias):
    """log pi(a|s) = log N(u; mean, std) - sum log(1 - tanh(u)^2), a = tanh(u), computed directly in
    float64; at mean 12 tanh(u) rounds to 1 in float32, where the naive formula gives inf."""
    torch.manual_seed(0)
    actor = sac.Actor(3, 2, hdim=16)
    with torch.no_grad():
        actor.mean.bias.fill_(mean_bias)
    state = torch.randn(64, 3)
    torch.manual_seed(1)
    action, log_prob = actor.sample(state)
    torch.manual_seed(1)  # the same eps again: the forward pass draws no random numbers
    mean, log_std = actor(state)
    u = (mean + log_std.exp() * torch.randn_like(mean)).double()
    mean, std = mean.double(), log_std.exp().double()

    assert log_prob.shape == (64, 1)
    assert torch.allclose(action.double(), torch.tanh(u), atol=1e-6)
    direct = Normal(mean, std).log_prob(u).sum(1, keepdim=True) - torch.log(1 - torch.tanh(u).pow(2)).sum(1, keepdim=True)
    assert torch.isfinite(log_prob).all()
    assert torch.allclose(log_prob.double(), direct, rtol=1e-4, atol=1e-3)
    if mean_bias == 0.0:  # torch's own change of variables (it inverts tanh, so only away from +-1)
        squashed = TransformedDistribution(Normal(mean, std), [TanhTransform()])
        assert torch.allclose(log_prob.double(), squashed.log_prob(torch.tanh(u)).sum(1, keepdim=True),
                              rtol=1e-4, atol=1e-4)


def test_log_std_is_clamped():
    actor = sac.Actor(3, 2, hdim=16)
    with torch.no_grad():
        actor.log_std.bias.fill_(100.0)
        _, high = actor(torch.randn(8, 3))
        actor.log_std.bias.fill_(-100.0)
        _, low = actor(torch.randn(8, 3))
    assert torch.all(high == sac.LOG_STD_MAX) and torch.all(low == sac.LOG_STD_MIN)


# --- the temperature --------------------------------------------------------------------------------

@pytest.mark.parametrize("log_prob_value", [5.0, -5.0])
def test_temperature_step_moves_toward_target_entropy(monkeypatch, log_prob_value):
    """Target entropy -|A| = -2. log pi = 5 (entropy -5, below target): alpha must rise; log pi = -5
    (entropy 5, above target): alpha must fall. The gradient on log alpha is -(log pi + target) (eq. 18,
    written with log alpha as in softlearning)."""
    agent = make_agent()
    assert agent.target_entropy == -2.0 and agent.log_alpha.item() == 0.0
    action = torch.zeros(4, 2)
    monkeypatch.setattr(agent.actor, "sample", fixed_sample(agent, action, torch.full((4, 1), log_prob_value)))
    agent.update(*hand_batch())
    assert agent.log_alpha.grad.item() == pytest.approx(-(log_prob_value - 2.0))
    if log_prob_value > 2.0:
        assert agent.log_alpha.item() > 0.0  # alpha = exp(log alpha) > 1: rose
    else:
        assert agent.log_alpha.item() < 0.0  # fell
    assert agent.losses["alpha"].item() == pytest.approx(1.0)  # the alpha used in this step's losses


def test_fixed_alpha_stays_fixed(monkeypatch):
    agent = make_agent(fixed_alpha=True, alpha=0.3)
    monkeypatch.setattr(agent.actor, "sample", fixed_sample(agent, torch.zeros(4, 2), torch.full((4, 1), 5.0)))
    for _ in range(3):
        agent.update(*hand_batch())
    assert agent.log_alpha.exp().item() == pytest.approx(0.3)
    assert not hasattr(agent, "alpha_optimizer") and "alpha_loss" not in agent.losses


# --- the soft Q target --------------------------------------------------------------------------------

@pytest.mark.parametrize("fixed_alpha", [False, True])
def test_critic_target_uses_the_entropy_term(monkeypatch, fixed_alpha):
    """y = r + not_done * gamma * (min(Q1', Q2')(s', a') - alpha log pi(a'|s')), with a known a' and
    log pi(a'|s'); the critic loss is (MSE(Q1, y) + MSE(Q2, y)) / 2 before the step (eq. 5)."""
    agent = make_agent(fixed_alpha=fixed_alpha, alpha=0.3, discount=0.9)
    alpha = 0.3 if fixed_alpha else 0.5
    if not fixed_alpha:
        with torch.no_grad():
            agent.log_alpha.fill_(math.log(0.5))
    with torch.no_grad():  # make the target critics differ from the critics
        for p in agent.critic_target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    state, action, next_state, reward, not_done = hand_batch()
    next_action = torch.tensor([[0.5, -0.2], [0.1, 0.9], [-0.7, 0.3], [0.0, -1.0]])
    next_log_prob = torch.tensor([[3.0], [-2.0], [5.0], [1.0]])
    monkeypatch.setattr(agent.actor, "sample", fixed_sample(agent, next_action, next_log_prob))

    with torch.no_grad():
        Q_next = agent.critic_target(next_state, next_action)
        Q = agent.critic(state, action)
    y = [reward[i, 0].item() + not_done[i, 0].item() * 0.9 * (
        min(Q_next[i, 0].item(), Q_next[i, 1].item()) - alpha * next_log_prob[i, 0].item()) for i in range(4)]
    expected = 0.5 * sum((Q[i, j].item() - y[i]) ** 2 for i in range(4) for j in range(2)) / 4
    y_without_entropy = [reward[i, 0].item() + not_done[i, 0].item() * 0.9 * min(Q_next[i, 0].item(), Q_next[i, 1].item())
                         for i in range(4)]
    without_entropy = 0.5 * sum((Q[i, j].item() - y_without_entropy[i]) ** 2 for i in range(4) for j in range(2)) / 4
    assert abs(expected - without_entropy) > 0.1  # the check below can tell the two apart

    agent.update(state, action, next_state, reward, not_done)
    assert agent.losses["critic_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_targets_follow_the_critics_every_step():
    agent = make_agent()
    for _ in range(8):
        agent.replay_buffer.add(np.random.randn(3), np.random.uniform(-1, 1, 2), np.random.randn(3), 1.0, False)
    for _ in range(2):
        old = [p.detach().clone() for p in agent.critic_target.parameters()]
        agent.train()
        for o, t, c in zip(old, agent.critic_target.parameters(), agent.critic.parameters()):
            assert torch.allclose(t, o + agent.args.tau * (c - o), atol=1e-7)
        assert not torch.equal(old[0], next(agent.critic_target.parameters()))


# --- evaluation -----------------------------------------------------------------------------------------

class RecordingEnv(gym.Env):
    """Three steps with known observations; records the environment actions it gets."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(low=np.array([-2.0, 0.0]), high=np.array([2.0, 1.0]), dtype=np.float32)
        self.observations = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        self.actions = []

    def reset(self, seed=None, options=None):
        self.t = 0
        return self.observations[0], {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        return self.observations[self.t], 0.0, False, self.t == 3, {}


def test_deterministic_evaluation_is_tanh_of_the_mean():
    agent = make_agent()
    env = RecordingEnv()
    sac.evaluate(agent, sac.NormalizedActions(env), episodes=1)  # as the harness makes every environment
    with torch.no_grad():
        mean, _ = agent.actor(torch.as_tensor(env.observations[:3]))
    expected = torch.tanh(mean).numpy() * np.array([2.0, 0.5]) + np.array([0.0, 0.5])
    np.testing.assert_allclose(np.stack(env.actions), expected, rtol=1e-5, atol=1e-6)
    # Exploring samples the policy instead: different, but still inside [-1, 1].
    explored = np.stack([agent.select_action(env.observations[0], use_exploration=True) for _ in range(20)])
    assert np.all(np.abs(explored) <= 1) and explored.std(0).min() > 1e-3


# --- learning and the command line -------------------------------------------------------------------

def test_learns_pendulum(tmp_path):
    """Random play scores about -1200 on Pendulum-v1; 9k gradient steps of SAC reach about -110 (seed 0,
    10 episodes; -110 to -220 from step 6000 on). 64-64 networks keep the test fast: it checks learning,
    not the width; one thread keeps it reproducible."""
    rows = pendulum_rows("sac.py", tmp_path, "--total-timesteps", "10000", "--start-timesteps", "1000",
                         "--eval-freq", "5000", "--eval-episodes", "10", "--hdim", "64", "--torch-threads", "1")
    assert [int(r["step"]) for r in rows] == [0, 5000, 10000]
    assert float(rows[-1]["mean_return"]) > -400, rows
