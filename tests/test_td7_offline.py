"""td7.py --offline: the BC term of the actor loss, the dataset as the LAP buffer, no checkpoints, the run
folder with normalized scores, --eval-only on an offline model, and bad input."""

import copy
import csv
import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import td7
from conftest import make_args, one_error_line, run_script
from lap_buffer import check_dataset, load_dataset
from datasets_util import hopper, make_dataset, one_torch_thread, write_d4rl, write_minari  # noqa: F401 (fixtures)

HOPPER_SPEC = {"id": "Hopper-v4", "entry_point": "gymnasium.envs.mujoco.hopper_v4:HopperEnv",
               "max_episode_steps": 1000, "kwargs": {"terminate_when_unhealthy": True}}
SMALL = {"actor_hdim": 32, "critic_hdim": 32, "enc_hdim": 32, "zs_dim": 16, "batch_size": 64}




def hopper_agent(data, **kwargs):
    torch.manual_seed(0)
    env = gym.make("Hopper-v4")
    args = td7.Args(**({"offline": True} | SMALL | kwargs))
    agent = td7.Agent(env.observation_space.shape[0], env.action_space.shape[0], args, torch.device("cpu"))
    agent.load_dataset(check_dataset(data, env, "hopper"))
    return agent


@pytest.mark.parametrize("offline", [True, False])
def test_actor_loss_adds_lmbda_mean_abs_q_times_bc_offline_only(hopper, offline):
    """Offline: -mean over both heads of Q(s, pi(s)) + lmbda * mean|Q| (detached) * MSE(pi(s), a);
    online: the same without the BC term."""
    agent = hopper_agent(hopper, offline=offline, lmbda=0.5)
    batch = agent.replay_buffer.sample(64)
    state, action = batch[0], batch[1]
    actor_before = copy.deepcopy(agent.actor)
    agent.training_steps = 2  # an actor step
    agent.update(*batch)  # the critic after its step, the actor before its own, as in the update
    fixed = agent.fixed_encoder
    zs = fixed.zs(state)

    def loss(bc: bool, detach: bool = True):
        actor = copy.deepcopy(actor_before)
        pi = actor(state, zs)
        Q = agent.critic(state, pi, fixed.zsa(zs, pi), zs)
        assert Q.shape == (64, 2)
        weight = Q.abs().mean().detach() if detach else Q.abs().mean()
        value = -Q.mean() + (0.5 * weight * F.mse_loss(pi, action) if bc else 0)
        value.backward()
        return value.detach(), actor.l0.weight.grad

    expected, grad = loss(bc=offline)
    torch.testing.assert_close(agent.losses["actor_loss"], expected)
    torch.testing.assert_close(agent.actor.l0.weight.grad, grad)
    other, _ = loss(bc=not offline)
    assert not torch.allclose(other, expected, rtol=1e-4, atol=1e-5)  # the BC term shows in the numbers
    if offline:
        assert not torch.allclose(loss(bc=True, detach=False)[1], grad)  # mean|Q| is a constant


def test_dataset_is_the_lap_buffer_with_priorities_1(hopper, tmp_path):
    data, _ = td7.load_dataset(write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper))
    data["rewards"] = data["rewards"] * 10  # TD errors above min_priority, so priorities move off 1
    n = len(data["rewards"])
    agent = hopper_agent(data, target_update_rate=5)
    buffer = agent.replay_buffer
    assert buffer.size == buffer.capacity == n and buffer.prioritized  # grown to the dataset, LAP on
    stored = buffer.transitions[:n].numpy()
    np.testing.assert_array_equal(stored[:, :11], data["observations"])  # no state normalization
    np.testing.assert_array_equal(stored[:, 11:14], data["actions"])  # Hopper's actions are already in [-1, 1]
    np.testing.assert_array_equal(stored[:, 14:25], data["next_observations"])
    np.testing.assert_array_equal(stored[:, 25], data["rewards"])
    np.testing.assert_array_equal(stored[:, 26], 1 - data["terminals"])
    assert torch.equal(buffer.tree.leaves[:n], torch.ones(n, dtype=torch.float64))
    assert buffer.tree.total.item() == n and buffer.max_priority.item() == 1

    for step in range(1, 6):
        agent.train()
        leaves = buffer.tree.leaves[:n]
        # The batch got its LAP priorities max(|delta|, 1) ** alpha; the rest kept 1 or earlier ones.
        assert (leaves[buffer.ind] >= 1).all() and (leaves[buffer.ind] > 1).float().mean() > 0.5
        if step < 5:
            assert buffer.max_priority.item() == pytest.approx(leaves.max().item())  # the largest seen
    assert buffer.max_priority.item() == leaves.max().item()  # reset_max_priority at the hard copy
    assert same_weights(agent.actor_target, agent.actor)
    # --no-lap samples uniformly.
    assert not hopper_agent(data, lap=False).replay_buffer.prioritized


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_actions_are_normalized_with_the_environment_bounds(tmp_path):
    env = gym.make("Pendulum-v1")  # actions in [-2, 2]
    env.action_space.seed(0)
    data = make_dataset.collect(env, lambda obs: env.action_space.sample(), 300, 0)
    assert np.abs(data["actions"]).max() > 1.5
    path = str(tmp_path / "pendulum.hdf5")
    make_dataset.write_dataset(path, data, {"env_id": "Pendulum-v1"})
    dataset, info = load_dataset(path)
    assert info["env"] == "Pendulum-v1"
    agent = td7.Agent(3, 1, td7.Args(offline=True, **SMALL), torch.device("cpu"))
    agent.load_dataset(check_dataset(dataset, env, path))
    stored = agent.replay_buffer.transitions[:agent.replay_buffer.size, 3:4].numpy()
    np.testing.assert_allclose(stored, dataset["actions"] / 2.0, rtol=1e-6)


def test_a_few_hundred_offline_updates_stay_finite(hopper):
    agent = hopper_agent(hopper, **{key: 256 for key in SMALL})  # the default sizes
    for _ in range(300):  # crosses a hard copy (every 250 steps)
        agent.train()
    assert set(agent.losses) == {"encoder_loss", "critic_loss", "actor_loss"}
    assert all(torch.isfinite(loss) for loss in agent.losses.values())
    assert torch.isfinite(agent.Q_min) and torch.isfinite(agent.Q_max) and agent.Q_max > agent.Q_min
    for net in (agent.actor, agent.critic, agent.encoder, agent.fixed_encoder, agent.actor_target, agent.critic_target):
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert torch.isfinite(agent.replay_buffer.tree.leaves).all()


def test_cli_run_folder_and_eval_only(hopper, tmp_path):
    dataset = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper)
    result = run_script("td7.py", "--offline", "--dataset", dataset, "--total-timesteps", "200", "--eval-freq", "100",
                        "--eval-episodes", "1", "--batch-size", "32", "--torch-threads", "1", "--save-model",
                        "--run-dir", str(tmp_path / "runs"), timeout=180)
    assert result.returncode == 0, result.stderr
    [run] = os.listdir(tmp_path / "runs")
    assert run.startswith("Hopper-v4__td7__0__")  # the environment comes from the dataset's name
    run = tmp_path / "runs" / run
    config = json.load(open(run / "config.json"))
    assert config["env"] == "Hopper-v4" and config["dataset"] == dataset and config["algo"] == "td7"
    assert config["offline"] is True and config["lmbda"] == 0.1
    assert config["ref_returns"] == [-20.272305, 3234.3]
    assert config["dataset_transitions"] == 3000 - 1 - hopper["timeouts"][:-1].sum()
    rows = list(csv.DictReader(open(run / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [0, 100, 200]
    for r in rows:  # the normalized score of the mean return, by hand
        expected = 100 * (float(r["mean_return"]) + 20.272305) / (3234.3 + 20.272305)
        assert float(r["normalized_score"]) == pytest.approx(expected, abs=2e-3)
    assert "normalized" in result.stdout

    checkpoint = td7.load_model(str(run))
    assert checkpoint["step"] == 200 and checkpoint["agent"]["training_steps"] == 200
    # Offline never checkpoints: the evaluated policy is the current actor, also when evaluated later.
    saved = td7.args_from_dict(checkpoint["args"])
    env = td7.make_env(saved, 100)
    agent = td7.Agent(env.observation_space.shape[0], env.action_space.shape[0], saved, torch.device("cpu"))
    td7.load_agent_state(agent, checkpoint["agent"])
    assert not same_weights(agent.checkpoint_actor, agent.actor)
    calls, select_action = [], agent.select_action
    agent.select_action = lambda state, use_checkpoint, use_exploration: \
        calls.append((use_checkpoint, use_exploration)) or select_action(state, use_checkpoint, use_exploration)
    td7.evaluate(agent, env, 1)
    assert calls and set(calls) == {(False, False)}

    result = run_script("td7.py", "--eval-only", str(run), "--eval-episodes", "1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Hopper-v4 td7 (step 200): mean return" in result.stdout and "normalized score" in result.stdout


def test_minari_folder_gives_environment_and_reference_returns(hopper, tmp_path):
    folder = write_minari(str(tmp_path), "mujoco/hopper/random-v0", hopper, HOPPER_SPEC,
                          {"ref_min_score": -20.0, "ref_max_score": 3000.0})
    path = td7.launch(make_args(td7, offline=True, dataset=folder, total_timesteps=20, eval_freq=10, eval_episodes=1,
                                torch_threads=1, run_dir=str(tmp_path / "runs"), **SMALL))
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["env"] == "Hopper-v4" and json.loads(config["env_kwargs"]) == {"terminate_when_unhealthy": True}
    assert config["ref_returns"] == [-20.0, 3000.0] and config["dataset_format"] == "minari"
    assert config["dataset_transitions"] == len(hopper["rewards"])
    rows = list(csv.DictReader(open(os.path.join(path, "evaluations.csv"))))
    assert [int(r["step"]) for r in rows] == [0, 10, 20]
    assert float(rows[-1]["normalized_score"]) == pytest.approx(
        100 * (float(rows[-1]["mean_return"]) + 20) / 3020, abs=2e-3)


def test_online_default_environment_is_unchanged(tmp_path):
    args = make_args(td7, total_timesteps=1, eval_freq=1, eval_episodes=1, buffer_size=64, torch_threads=1,
                     run_dir=str(tmp_path), **SMALL)
    assert args.env is None and not args.offline
    path = td7.launch(args)
    assert os.path.basename(path).startswith("HalfCheetah-v4__td7__0__")
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["env"] == "HalfCheetah-v4" and config["checkpoints"] is True
    assert "normalized_score" not in open(os.path.join(path, "evaluations.csv")).readline()


@pytest.mark.parametrize("arguments, message", [
    (["--offline"], "--offline needs --dataset"),
    (["--dataset", "{hdf5}"], "add --offline"),
    (["--offline", "--dataset", "/nonexistent/hopper-medium-v2.hdf5"], "no dataset at"),
    (["--offline", "--dataset", "{hdf5}", "--env", "Walker2d-v5"], "pass the matching --env"),
    (["--offline", "--dataset", "{hdf5}", "--lmbda", "-1"], "--lmbda"),
])
def test_bad_offline_input_is_one_line_and_exit_status_2(hopper, arguments, message, tmp_path):
    hdf5 = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper)
    arguments = [a.format(hdf5=hdf5) for a in arguments]
    result = run_script("td7.py", *arguments, "--run-dir", str(tmp_path / "runs"), timeout=120)
    assert one_error_line(result), (result.returncode, result.stderr)
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "runs")  # nothing written
