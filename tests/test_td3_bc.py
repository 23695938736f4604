"""td3_bc.py: the TD3+BC update, state normalization saved with the model, the run folder, and a
behaviour check on Pendulum-v1 data from a near-optimal scripted controller."""

import copy
import csv
import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import td3_bc
from conftest import evaluation_columns, full_and_interrupted, make_args
from datasets_util import hopper, make_dataset, one_torch_thread, write_d4rl  # noqa: F401 (fixtures)
from lap_buffer import check_dataset, load_dataset


def agent_for(env_id, args):
    """A td3_bc agent sized for env_id's observations and actions."""
    env = gym.make(env_id)
    return td3_bc.Agent(env.observation_space.shape[0], env.action_space.shape[0], args, torch.device("cpu"))


def hopper_agent(data, **kwargs):
    agent = agent_for("Hopper-v4", td3_bc.Args(**({"hdim": 64, "batch_size": 64} | kwargs)))
    agent.load_dataset(check_dataset(data, gym.make("Hopper-v4"), "hopper"))
    return agent


def test_state_normalization_round_trips(hopper, tmp_path):
    torch.manual_seed(0)
    data, _ = load_dataset(write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper))
    agent = hopper_agent(data)
    mean, std = data["observations"].mean(0), data["observations"].std(0) + 1e-3
    np.testing.assert_allclose(agent.state_mean.numpy().ravel(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agent.state_std.numpy().ravel(), std, rtol=1e-5)
    # The buffer holds normalized states; actions stay as given (Hopper's are already in [-1, 1]).
    stored = agent.replay_buffer.transitions[:agent.replay_buffer.size].numpy()
    np.testing.assert_allclose(stored[:, :11], (data["observations"] - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stored[:, 14:25], (data["next_observations"] - mean) / std, rtol=1e-4, atol=1e-4)
    # Evaluation normalizes with the same statistics.
    s = data["observations"][7]
    expected = agent.actor(torch.as_tensor((s - mean) / std, dtype=torch.float32)[None]).detach().numpy().ravel()
    np.testing.assert_allclose(agent.eval_action(s), expected, rtol=1e-5, atol=1e-6)

    # save_model / load_model / a fresh agent: same statistics, same actions.
    args = agent.args
    td3_bc.save_model(agent, args, str(tmp_path / "model.pt"), 5)
    checkpoint = td3_bc.load_model(str(tmp_path))
    fresh = agent_for("Hopper-v4", td3_bc.args_from_dict(checkpoint["args"]))
    assert not torch.equal(fresh.state_mean, agent.state_mean)
    td3_bc.load_agent_state(fresh, checkpoint["agent"])
    assert torch.equal(fresh.state_mean, agent.state_mean) and torch.equal(fresh.state_std, agent.state_std)
    np.testing.assert_array_equal(fresh.eval_action(s), agent.eval_action(s))
    # A model for another environment is refused, not broadcast.
    other = agent_for("Walker2d-v4", td3_bc.args_from_dict(checkpoint["args"]))
    with pytest.raises(RuntimeError):
        td3_bc.load_agent_state(other, checkpoint["agent"])


@pytest.mark.parametrize("bc", [True, False])
def test_actor_loss_is_td3_bc(hopper, bc):
    """The logged actor loss equals -(alpha / mean|Q1(s, pi(s))|) mean Q1(s, pi(s)) + MSE(pi(s), a)."""
    torch.manual_seed(0)
    agent = hopper_agent(hopper, bc=bc)
    batch = agent.replay_buffer.sample(64)
    actor_before = copy.deepcopy(agent.actor)
    agent.training_steps = 2  # a delayed (actor) step
    agent.update(*batch)
    state, action = batch[0], batch[1]
    with torch.no_grad():
        pi = actor_before(state)
        Q = agent.critic(state, pi)[:, 0]  # the critic after this step's critic update, as in the update
        expected = -(2.5 / Q.abs().mean()) * Q.mean() + (F.mse_loss(pi, action) if bc else 0)
    assert agent.losses["actor_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_few_hundred_updates_stay_finite(hopper):
    torch.manual_seed(0)
    agent = hopper_agent(hopper, hdim=256, batch_size=256)  # the default sizes
    for _ in range(300):
        agent.train()
    assert all(torch.isfinite(loss) for loss in agent.losses.values())
    for net in (agent.actor, agent.critic, agent.actor_target, agent.critic_target):
        assert all(torch.isfinite(p).all() for p in net.parameters())


def test_cli_run_folder_and_eval_only(script, hopper, tmp_path):
    dataset = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper)
    result = script("td3_bc.py", "--dataset", dataset, "--total-timesteps", "200", "--eval-freq", "100",
                    "--eval-episodes", "2", "--hdim", "32", "--batch-size", "64", "--torch-threads", "1",
                    "--save-model", "--run-dir", str(tmp_path / "runs"), timeout=180)
    assert result.returncode == 0, result.stderr
    (run,) = os.listdir(tmp_path / "runs")
    assert run.startswith("Hopper-v4__td3_bc__0__")
    run = tmp_path / "runs" / run
    config = json.load(open(run / "config.json"))
    assert config["env"] == "Hopper-v4" and config["dataset"] == dataset and config["algo"] == "td3_bc"
    assert config["ref_returns"] == [-20.272305, 3234.3] and config["dataset_transitions"] == 3000 - 1 - hopper["timeouts"][:-1].sum()
    rows = list(csv.DictReader(open(run / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [0, 100, 200]
    for r in rows:  # the normalized score of the mean return, by hand
        expected = 100 * (float(r["mean_return"]) + 20.272305) / (3234.3 + 20.272305)
        assert float(r["normalized_score"]) == pytest.approx(expected, abs=2e-3)
    checkpoint = torch.load(run / "model.pt", weights_only=True)
    assert checkpoint["step"] == 200 and checkpoint["agent"]["training_steps"] == 200
    data, _ = load_dataset(dataset)
    np.testing.assert_allclose(checkpoint["agent"]["state_mean"].numpy().ravel(), data["observations"].mean(0),
                               rtol=1e-5, atol=1e-6)

    result = script("td3_bc.py", "--eval-only", str(run), "--eval-episodes", "2", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Hopper-v4 td3_bc (step 200): mean return" in result.stdout and "normalized score" in result.stdout


# Behaviour: Pendulum-v1 data from a good policy.


def swing_up(obs: np.ndarray) -> np.ndarray:
    """Energy-shaping swing-up with a PD catch at the top, for Pendulum-v1's dynamics
    (theta'' = 15 sin(theta) + 3 u, |u| <= 2): about -150 per episode, near the best possible."""
    cos, sin, w = obs
    if cos > 0.85 and abs(w) < 4:
        u = -10.0 * np.arctan2(sin, cos) - 2.0 * w
    else:
        energy = 0.5 * w * w + 15.0 * cos  # 15 when upright at rest
        u = 0.5 * (15.0 - energy) * w if abs(w) > 1e-3 else 1.0
    return np.clip(np.array([u], np.float32), -2.0, 2.0)


def test_bc_term_keeps_the_policy_near_the_data(tmp_path):
    """TD3+BC on 4000 steps of the controller with N(0, 0.1) noise (normalized units) comes close to the
    controller, while the same training without the BC term does clearly worse."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    data = make_dataset.collect(env, lambda obs: (swing_up(obs) + rng.normal(0, 0.2, 1)).clip(-2, 2), 4000, 0)
    make_dataset.write_dataset(str(tmp_path / "pendulum.hdf5"), data, {"env_id": "Pendulum-v1"})
    eval_env = td3_bc.make_env(make_args(td3_bc, env="Pendulum-v1"), 100)  # the evaluations' (actions in [-1, 1])
    controller = np.mean(make_dataset.episode_returns(eval_env, lambda obs: swing_up(obs) / 2.0, 10, 100))
    random = np.mean(make_dataset.episode_returns(eval_env, lambda obs: eval_env.action_space.sample(), 10, 100))
    assert controller > -250 and random < -1000

    final = {}
    for bc in (True, False):
        path = td3_bc.launch(make_args(td3_bc, dataset=str(tmp_path / "pendulum.hdf5"), total_timesteps=6000,
                                       eval_freq=6000, hdim=64, bc=bc, torch_threads=1, run_dir=str(tmp_path / "runs")))
        final[bc] = float(list(csv.DictReader(open(os.path.join(path, "evaluations.csv"))))[-1]["mean_return"])
    print(f"controller {controller:.1f}, random {random:.1f}, TD3+BC {final[True]:.1f}, no BC {final[False]:.1f}")
    assert final[True] > controller - 100, final  # close to the data's policy (random is ~1000 lower)
    assert final[False] < final[True] - 150, final  # no BC: extrapolation error


# Research workflow: --resume, --capture-video, --track.



def evaluation_rows(run_path):
    return evaluation_columns(run_path, "step", "returns", "normalized_score")


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(hopper, tmp_path, monkeypatch):
    """300 gradient steps in one go, and 150 + a stop + --resume for 150 more (the dataset read again from its
    path), give the same evaluations and the same final networks to the bit; a changed dataset is refused."""
    dataset = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper)
    common = dict(dataset=dataset, total_timesteps=300, eval_freq=100, eval_episodes=2, hdim=32, batch_size=64,
                  device="cpu", torch_threads=1, save_model=True)
    full, interrupted = full_and_interrupted(td3_bc, common, 150, tmp_path, monkeypatch)
    assert [row[0] for row in evaluation_rows(interrupted)] == ["0", "100"]
    assert torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)["loop"]["t"] == 150
    assert torch.load(os.path.join(interrupted, "model.pt"), weights_only=True)["step"] == 150

    # Another dataset at the same path: refused in one line, nothing changed.
    write_d4rl(dataset, hopper, replace={"rewards": hopper["rewards"] + 1.0})
    with pytest.raises(td3_bc.UsageError, match="is not the dataset"):
        td3_bc.launch(make_args(td3_bc, resume=interrupted, device="cpu", torch_threads=1))
    write_d4rl(dataset, hopper)

    resumed = td3_bc.launch(make_args(td3_bc, resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted
    assert evaluation_rows(resumed) == evaluation_rows(full)
    assert not os.path.exists(os.path.join(resumed, "resume.pt"))  # finished: nothing left to resume
    a = torch.load(os.path.join(full, "model.pt"), weights_only=True)["agent"]
    b = torch.load(os.path.join(resumed, "model.pt"), weights_only=True)["agent"]
    assert a["training_steps"] == b["training_steps"] == 300
    for part in ("actor", "actor_target", "critic", "critic_target"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert torch.equal(a["state_mean"], b["state_mean"]) and torch.equal(a["state_std"], b["state_std"])
