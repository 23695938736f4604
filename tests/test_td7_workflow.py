"""td7.py --resume beyond the shared tests (tests/test_resume.py): an interruption while the checkpoint
logic is mid-assessment (after the switch to several assessment episodes), without checkpoints, and
offline; plus the agent's state round trip and the start_timesteps < batch_size check."""

import csv
import os

import pytest
import torch

import td7
from datasets_util import random_hopper, write_d4rl
from conftest import full_and_interrupted, make_args

SMALL = {"actor_hdim": 32, "critic_hdim": 32, "enc_hdim": 32, "zs_dim": 16, "batch_size": 32}



def rows(run_path):
    with open(os.path.join(run_path, "evaluations.csv")) as f:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(f)]


def full_and_resumed(common, stop, tmp_path, monkeypatch):
    full, interrupted = full_and_interrupted(td7, common, stop, tmp_path, monkeypatch)
    state = torch.load(os.path.join(interrupted, "resume.pt"), weights_only=False)
    resumed = td7.launch(make_args(td7, resume=interrupted, device="cpu", torch_threads=1))
    assert resumed == interrupted and not os.path.exists(os.path.join(resumed, "resume.pt"))
    assert not os.path.exists(os.path.join(resumed, "replay_buffer"))
    full_model, resumed_model = td7.load_model(full), td7.load_model(resumed)
    for name, value in full_model["agent"].items():  # the same agent at the end, checkpoint included
        other = resumed_model["agent"][name]
        if name.endswith("optimizer"):
            continue  # their moments feed the weights compared here
        if isinstance(value, dict):  # a network's state_dict
            assert all(torch.equal(value[key], other[key]) for key in value), name
        elif torch.is_tensor(value):
            assert torch.equal(value, other), name
        else:
            assert value == other, name
    return full, resumed, state


@pytest.mark.parametrize("checkpoints", [True, False])
def test_resume_mid_assessment_equals_an_uninterrupted_run(checkpoints, tmp_path, monkeypatch):
    # Pendulum: 200-step episodes. Learning starts at the episode end at 200; with checkpoints the first
    # 200 gradient steps come at the episode end at 400, with the switch to 2 assessment episodes after 150
    # of them; the episode ending at 600 is the first of 2 assessing the policy, so the stop at 730 comes
    # mid-assessment (eps_since_update == 1); the episode end at 800 then trains 400 steps after the resume.
    # The stop comes at a check: one after each environment step, and one before each gradient step of a batch.
    common = dict(env="Pendulum-v1", total_timesteps=900, start_timesteps=100, eval_freq=100, eval_episodes=2,
                  device="cpu", torch_threads=1, save_model=True, checkpoints=checkpoints,
                  steps_before_checkpointing=150, max_eps_when_checkpointing=2, target_update_rate=50, **SMALL)
    full, resumed, state = full_and_resumed(common, 730 + 200 * checkpoints, tmp_path, monkeypatch)
    assert state["loop"]["t"] == 730 and state["loop"]["allow_train"] is True
    assert state["envs"]["env"]["env"].episode_lengths == 130  # RecordEpisodeStatistics, mid-episode
    if checkpoints:
        assert state["agent"]["max_eps_before_update"] == 2 and state["agent"]["eps_since_update"] == 1
        assert state["agent"]["training_steps"] == 200  # trained at the episode end at 400 only so far
    else:
        assert state["agent"]["training_steps"] == 730 - 200
    assert rows(resumed) == rows(full)
    assert len(rows(full)) == 10


def test_offline_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    dataset = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), random_hopper())
    common = dict(offline=True, dataset=dataset, total_timesteps=120, eval_freq=40, eval_episodes=1,
                  device="cpu", torch_threads=1, save_model=True, target_update_rate=25, **SMALL)
    full, resumed, state = full_and_resumed(common, 57, tmp_path, monkeypatch)
    assert state["loop"]["t"] == 57 and state["agent"]["training_steps"] == 57
    assert rows(resumed) == rows(full)
    assert [int(r["step"]) for r in rows(full)] == [0, 40, 80, 120]
    assert "normalized_score" in rows(full)[0]


def test_agent_state_round_trip_restores_tensors_optimizers_and_checkpoint():
    args = td7.Args(buffer_size=100, **SMALL)
    agent = td7.Agent(3, 2, args, torch.device("cpu"))
    for _ in range(40):
        agent.replay_buffer.add(torch.randn(3).numpy(), torch.rand(2).numpy() * 2 - 1, torch.randn(3).numpy(),
                                1.0, False)
    for ep in range(3):
        agent.timesteps_since_update += 10
        for _ in range(agent.maybe_train_and_checkpoint(10, -float(ep))):
            agent.train()
    state = td7.agent_state(agent)
    other = td7.Agent(3, 2, args, torch.device("cpu"))
    td7.load_agent_state(other, state)
    for name in ("actor", "critic", "encoder", "fixed_encoder", "fixed_encoder_target", "actor_target",
                 "critic_target", "checkpoint_actor", "checkpoint_encoder"):
        for a, b in zip(getattr(agent, name).state_dict().values(), getattr(other, name).state_dict().values()):
            assert torch.equal(a, b), name
    for name in ("actor_optimizer", "critic_optimizer", "encoder_optimizer"):
        a, b = getattr(agent, name).state_dict(), getattr(other, name).state_dict()
        assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
        for key in a["state"]:
            for k in a["state"][key]:
                assert torch.equal(a["state"][key][k], b["state"][key][k]), (name, key, k)
    for name in ("Q_min", "Q_max", "running_min", "running_max"):
        assert torch.equal(getattr(agent, name), getattr(other, name))
    for name in ("training_steps", "eps_since_update", "timesteps_since_update", "max_eps_before_update",
                 "min_return", "best_min_return"):
        assert getattr(agent, name) == getattr(other, name), name
    assert agent.training_steps > 0 and len(other.actor_optimizer.state_dict()["state"]) > 0


def test_start_timesteps_below_batch_size_is_rejected_online_only():
    with pytest.raises(td7.UsageError, match="--start-timesteps"):
        td7.check_args(td7.Args(start_timesteps=10, batch_size=32))
    td7.check_args(td7.Args(start_timesteps=0, batch_size=32, offline=True, dataset="d.hdf5"))  # offline has no random phase
