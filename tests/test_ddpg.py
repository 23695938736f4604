"""ddpg.py: the critic target, updates at every step, the Ornstein-Uhlenbeck noise, learning on
Pendulum-v1 and the command line."""

import json
import os

import numpy as np
import pytest
import torch

import ddpg
from conftest import evaluation_columns, full_and_interrupted, make_args, pendulum_rows, read_evaluations


def make_agent(state_dim=3, action_dim=2, **kwargs):
    torch.manual_seed(0)
    args = ddpg.Args(hdim=16, buffer_size=100, batch_size=4, **kwargs)
    return ddpg.Agent(state_dim, action_dim, args, torch.device("cpu"))


def test_critic_target_is_one_critic_without_noise():
    """y = r + not_done * gamma * Q'(s', pi'(s')): the target networks as they are, no smoothing noise,
    no min over twins; the critic loss is MSE(Q(s, a), y) before the step."""
    agent = make_agent(discount=0.9)
    with torch.no_grad():  # make the targets differ from the networks they follow
        for p in list(agent.critic_target.parameters()) + list(agent.actor_target.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    state, next_state = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    action = torch.rand(4, 2, generator=g) * 2 - 1
    reward = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    not_done = torch.tensor([[1.0], [0.0], [1.0], [1.0]])

    with torch.no_grad():
        Q = agent.critic(state, action)[:, 0].tolist()
        Q_next = agent.critic_target(next_state, agent.actor_target(next_state))[:, 0].tolist()
    y = [reward[i, 0].item() + not_done[i, 0].item() * 0.9 * Q_next[i] for i in range(4)]
    expected = sum((Q[i] - y[i]) ** 2 for i in range(4)) / 4

    for seed in (1, 2):  # the same loss whatever the random state: the target draws no noise
        probe = make_agent(discount=0.9)
        ddpg.load_agent_state(probe, ddpg.agent_state(agent))
        torch.manual_seed(seed)
        probe.update(state, action, next_state, reward, not_done)
        assert probe.losses["critic_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert agent.critic(state, action).shape == (4, 1)


def test_actor_and_targets_update_every_step():
    agent = make_agent()
    for _ in range(8):
        agent.replay_buffer.add(np.random.randn(3), np.random.uniform(-1, 1, 2), np.random.randn(3), 1.0, False)
    for step in range(1, 4):
        actor = [p.detach().clone() for p in agent.actor.parameters()]
        targets = [[p.detach().clone() for p in net.parameters()] for net in (agent.actor_target, agent.critic_target)]
        agent.train()
        assert agent.training_steps == step
        assert not torch.equal(actor[-1], list(agent.actor.parameters())[-1])
        for old, target, net in zip(targets, (agent.actor_target, agent.critic_target), (agent.actor, agent.critic)):
            for o, t, n in zip(old, target.parameters(), net.parameters()):
                assert torch.allclose(t, o + 0.005 * (n - o), atol=1e-7)
            assert not torch.equal(old[0], next(target.parameters()))


def test_ou_noise_stationary_variance_and_reset():
    """Discretized with dt = 1, x <- x - theta x + sigma N(0, 1) is an AR(1) process with coefficient
    1 - theta and stationary variance sigma^2 / (1 - (1 - theta)^2) = 0.1441 for theta 0.15, sigma 0.2
    (the continuous-time value sigma^2 / (2 theta) = 0.1333 is 7.5% lower, outside the tolerance)."""
    np.random.seed(0)
    noise = ddpg.OUNoise(50, theta=0.15, sigma=0.2)
    for _ in range(200):  # burn in: 0.85^200 ~ 1e-14
        noise.sample()
    xs = np.stack([noise.sample().copy() for _ in range(20_000)])  # 1e6 correlated draws
    assert xs.var() == pytest.approx(0.2 ** 2 / (1 - 0.85 ** 2), rel=0.02)
    assert abs(xs.mean()) < 0.01
    lag1 = np.mean(xs[1:] * xs[:-1]) / xs.var()
    assert lag1 == pytest.approx(0.85, abs=0.01)

    noise.reset()
    np.testing.assert_array_equal(noise.x, np.zeros(50))
    first = np.stack([(noise.reset(), noise.sample().copy())[1] for _ in range(4000)])
    assert first.var() == pytest.approx(0.2 ** 2, rel=0.05)  # one step from 0: sigma^2, not the stationary value


def test_agent_ou_noise_resets_at_episode_start():
    agent = make_agent(noise="ou")
    state = np.zeros(3, np.float32)
    deterministic = agent.select_action(state, use_exploration=False)
    for _ in range(5):
        agent.select_action(state, use_exploration=True)
    assert np.abs(agent.noise.x).sum() > 0
    agent.reset_noise()
    np.testing.assert_array_equal(agent.noise.x, np.zeros(2))
    np.testing.assert_array_equal(agent.select_action(state, use_exploration=False), deterministic)
    assert make_agent().noise is None  # Gaussian by default (the TD3 paper's DDPG)


def test_learns_pendulum(tmp_path):
    """Random play scores about -1200 on Pendulum-v1; 9k gradient steps of DDPG reach about -110 (seed 0,
    10 episodes; -110 to -220 from step 6000 on). 64-64 networks keep the test fast: it checks learning,
    not the width; one thread keeps it reproducible."""
    rows = pendulum_rows("ddpg.py", tmp_path, "--total-timesteps", "10000", "--start-timesteps", "1000",
                         "--eval-freq", "5000", "--eval-episodes", "10", "--hdim", "64", "--torch-threads", "1")
    assert [int(r["step"]) for r in rows] == [0, 5000, 10000]
    assert float(rows[-1]["mean_return"]) > -400, rows


def test_cli_run_save_and_eval_only(script, tmp_path):
    result = script("ddpg.py", "--env", "Pendulum-v1", "--total-timesteps", "300", "--start-timesteps", "100",
                    "--eval-freq", "150", "--eval-episodes", "1", "--batch-size", "32", "--hdim", "32",
                    "--noise", "ou", "--torch-threads", "1", "--save-model", "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    folder, rows = read_evaluations(tmp_path)
    assert os.path.basename(folder).startswith("Pendulum-v1__ddpg__0__")
    assert [int(r["step"]) for r in rows] == [0, 150, 300]
    assert list(rows[0]) == ["step", "wall_seconds", "mean_return", "std_return", "returns"]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    assert config["algo"] == "ddpg" and config["noise"] == "ou"
    assert os.path.isfile(os.path.join(folder, "model.pt"))

    result = script("ddpg.py", "--eval-only", folder, "--eval-episodes", "2", "--torch-threads", "1")
    assert result.returncode == 0, result.stderr
    assert "Pendulum-v1 ddpg (step 300): mean return" in result.stdout



def test_resumed_ou_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """--noise ou: the process value mid-episode is part of the resumable state. Stopped at step 350 of
    Pendulum-v1 (200-step episodes, policy from step 250), the OU process is 100 steps into its episode;
    the resumed run must continue it exactly, so that every evaluation matches the uninterrupted run."""
    common = dict(env="Pendulum-v1", total_timesteps=600, start_timesteps=250, eval_freq=100, eval_episodes=2,
                  batch_size=32, hdim=32, noise="ou", device="cpu", torch_threads=1)
    full, interrupted = full_and_interrupted(ddpg, common, 350, tmp_path, monkeypatch)  # mid-episode
    saved = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)
    assert saved["loop"]["t"] == 350 and np.abs(saved["agent"]["noise"]["x"].numpy()).sum() > 0

    resumed = ddpg.launch(make_args(ddpg, resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted
    assert evaluation_columns(resumed, "step", "returns") == evaluation_columns(full, "step", "returns")
    assert [step for step, in evaluation_columns(resumed, "step")] == ["0", "100", "200", "300", "400", "500", "600"]
