"""Offline dataset reading (D4RL HDF5 and Minari folders) and tools/make_dataset.py, on data made here."""

import json
import os

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

import lap_buffer
import td3
import td3_bc
from conftest import make_args
from datasets_util import d4rl_qlearning_dataset, episodes, make_dataset, random_hopper, write_d4rl, write_minari
from lap_buffer import DatasetError, check_dataset, load_dataset, normalized_score, reference_returns

HOPPER_SPEC = {"id": "Hopper-v4", "entry_point": "gymnasium.envs.mujoco.hopper_v4:HopperEnv",
               "max_episode_steps": 1000, "kwargs": {"terminate_when_unhealthy": True}}


@pytest.fixture(scope="module")
def hopper():
    return random_hopper()


def test_d4rl_loader_is_qlearning_dataset(hopper, tmp_path):
    raw = {key: hopper[key] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    n = len(raw["rewards"])
    expected = d4rl_qlearning_dataset(raw)
    for keys in (list(raw), list(raw) + ["next_observations"]):  # next_observations is ignored, as in D4RL
        data, info = load_dataset(write_d4rl(str(tmp_path / f"hopper-random-{len(keys)}.hdf5"), hopper, keys))
        for key, value in expected.items():
            np.testing.assert_array_equal(data[key], value.astype(np.float32), err_msg=key)
        assert info == {"env": "Hopper-v4", "env_kwargs": {}, "ref_returns": None, "format": "d4rl"}

    # Rows at a timeout are dropped, the last row is dropped, terminal rows stay with done = 1.
    timeouts, terminals = raw["timeouts"][:-1], raw["terminals"][:-1]
    assert not (timeouts & terminals).any()
    kept = np.flatnonzero(~timeouts)
    assert len(data["rewards"]) == n - 1 - timeouts.sum() == len(kept)
    assert data["terminals"].sum() == terminals.sum() > 50
    np.testing.assert_array_equal(data["terminals"], terminals[kept])
    # s' = observations[i + 1]: the true next observation whenever the episode goes on.
    np.testing.assert_array_equal(data["observations"], raw["observations"][kept])
    np.testing.assert_array_equal(data["next_observations"], raw["observations"][kept + 1])
    going_on = ~terminals[kept]
    np.testing.assert_array_equal(data["next_observations"][going_on], hopper["next_observations"][kept][going_on])
    # and at a timeout observations[i + 1] would have been the next episode's start: those rows are gone.
    assert not np.allclose(raw["observations"][np.flatnonzero(timeouts) + 1],
                           hopper["next_observations"][np.flatnonzero(timeouts)])


def test_minari_loader(hopper, tmp_path):
    eps = episodes(hopper)
    folder = write_minari(str(tmp_path), "mujoco/hopper/random-v0", hopper, HOPPER_SPEC,
                          {"ref_min_score": -20.0, "ref_max_score": 3000.0})
    for path in (folder, os.path.join(folder, "data")):
        data, info = load_dataset(path)
        assert info == {"env": "Hopper-v4", "env_kwargs": {"terminate_when_unhealthy": True},
                        "ref_returns": (-20.0, 3000.0), "format": "minari"}
    # Every step is a transition (Minari stores the real final observation), done = terminations.
    assert len(data["rewards"]) == sum(len(ep["actions"]) for ep in eps) == len(hopper["rewards"])
    for key in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_array_equal(data[key], hopper[key], err_msg=key)
    np.testing.assert_array_equal(data["terminals"], hopper["terminals"])
    truncated = np.flatnonzero(hopper["timeouts"])
    assert len(truncated) > 10 and not data["terminals"][truncated].any()
    np.testing.assert_array_equal(data["next_observations"][truncated],
                                  np.stack([ep["observations"][-1] for ep in eps if ep["truncations"][-1]]))


def test_environment_from_the_dataset(tmp_path):
    assert lap_buffer.d4rl_env("/data/halfcheetah-medium-replay-v2.hdf5") == ("HalfCheetah-v4", {})
    assert lap_buffer.d4rl_env("walker2d_medium_expert-v2.hdf5", "v5") == ("Walker2d-v5", {})
    assert lap_buffer.d4rl_env("hopper-medium-v2.hdf5", "v5") == ("Hopper-v5", {})
    assert lap_buffer.d4rl_env("pendulum.hdf5") is None
    env_id, kwargs = lap_buffer.d4rl_env("ant-medium-v2.hdf5", "v5")
    assert (env_id, kwargs) == ("Ant-v4", {"use_contact_forces": True})
    args = make_args(td3_bc, env=env_id, env_kwargs=json.dumps(kwargs))
    assert td3_bc.make_env(args, 0).observation_space.shape == (111,)


def test_normalized_score_by_hand(tmp_path):
    ref = reference_returns("Hopper-v4", {})
    assert ref == (-20.272305, 3234.3)
    # 100 (1500 - (-20.272305)) / (3234.3 - (-20.272305)) = 100 * 1520.272305 / 3254.572305
    assert normalized_score(1500.0, ref) == pytest.approx(46.711892, abs=1e-6)
    assert normalized_score(-280.178953, reference_returns("HalfCheetah-v5", {})) == pytest.approx(0)
    assert normalized_score(4592.3, reference_returns("Walker2d-v4", {})) == pytest.approx(100)
    assert reference_returns("Pendulum-v1", {}) is None
    (tmp_path / "ref.json").write_text(json.dumps({"ref_min_score": -1200.0, "ref_max_score": -150.0}))
    ref = reference_returns("Pendulum-v1", {}, str(tmp_path / "ref.json"))
    assert normalized_score(-360.0, ref) == pytest.approx(100 * 840 / 1050)
    assert reference_returns("Hopper-v4", {"ref_returns": (1.0, 2.0)}) == (1.0, 2.0)  # the dataset's own


def one_line_error(fn, *args) -> str:
    with pytest.raises(DatasetError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_datasets_say_what_is_wrong(hopper, tmp_path):
    keys = ["observations", "actions", "rewards", "terminals"]
    assert "'timeouts'" in one_line_error(load_dataset, write_d4rl(str(tmp_path / "a.hdf5"), hopper, keys))
    short = write_d4rl(str(tmp_path / "b.hdf5"), hopper, replace={"rewards": hopper["rewards"][:-5]})
    assert "'rewards' has shape" in one_line_error(load_dataset, short)
    (tmp_path / "c.hdf5").write_bytes(b"not an hdf5 file at all")
    assert "cannot read" in one_line_error(load_dataset, str(tmp_path / "c.hdf5"))
    assert "no dataset at" in one_line_error(load_dataset, str(tmp_path / "missing.hdf5"))
    os.makedirs(tmp_path / "empty")
    assert "not a Minari dataset" in one_line_error(load_dataset, str(tmp_path / "empty"))
    # Shapes are checked against the evaluation environment.
    data, _ = load_dataset(write_d4rl(str(tmp_path / "d.hdf5"), hopper))
    message = one_line_error(check_dataset, data, gym.make("HalfCheetah-v4"), "d.hdf5")
    assert "(11,) observations" in message and "(17,)" in message


def error_lines(stderr: str) -> list:
    """stderr without gymnasium's deprecation notice for -v4 environments (gymnasium prints it whatever
    PYTHONWARNINGS says); there must be no traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.strip().splitlines()
            if "DeprecationWarning" not in line and line.strip() != "logger.deprecation("]


def test_cli_bad_input_exits_2(script, hopper, tmp_path):
    write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), hopper, ["observations", "actions", "rewards", "timeouts"])
    write_d4rl(str(tmp_path / "hopper-x-v2.hdf5"), hopper)
    for args, expected in ((["--run-dir", str(tmp_path)], "--dataset PATH is required"),
                           (["--dataset", str(tmp_path / "hopper-random-v2.hdf5")], "no 'terminals' dataset"),
                           (["--dataset", str(tmp_path / "hopper-x-v2.hdf5"), "--env", "Walker2d-v4"],
                            "(11,) observations")):
        result = script("td3_bc.py", *args, "--run-dir", str(tmp_path / "runs"), timeout=120)
        assert result.returncode == 2, result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("td3_bc.py: error:") and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_td3_bc_runs_on_a_minari_folder(hopper, tmp_path):
    folder = write_minari(str(tmp_path), "hopper-random-v0", hopper, HOPPER_SPEC)
    path = td3_bc.launch(make_args(td3_bc, dataset=folder, total_timesteps=40, eval_freq=40, eval_episodes=1, hdim=32,
                                   batch_size=32, torch_threads=1, run_dir=str(tmp_path / "runs")))
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["env"] == "Hopper-v4" and json.loads(config["env_kwargs"]) == HOPPER_SPEC["kwargs"]
    assert config["dataset_transitions"] == len(hopper["rewards"]) and config["dataset_format"] == "minari"
    assert open(os.path.join(path, "evaluations.csv")).readline().strip().endswith(",normalized_score")


# tools/make_dataset.py


def make(tmp_path, **kwargs):
    args = make_dataset.Args(**({"seed": 0} | kwargs))
    make_dataset.main(args)
    return args.out


def test_make_random_and_medium_expert(tmp_path):
    first = make(tmp_path, kind="random", env="Hopper-v4", steps=300, out=str(tmp_path / "a.hdf5"))
    second = make(tmp_path, kind="random", env="Hopper-v4", steps=200, seed=1, out=str(tmp_path / "b.hdf5"))
    with h5py.File(first) as f:
        assert set(f) == {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}
        attrs = dict(f.attrs)
        assert f["observations"].shape == (300, 11) and f["actions"].shape == (300, 3)
        assert f["timeouts"][-1] or f["terminals"][-1]  # the collection's end closes the last episode
    assert attrs["env_id"] == "Hopper-v4" and attrs["policy"] == "random" and attrs["seed"] == 0
    assert attrs["gymnasium_version"] == gym.__version__ and "mujoco_version" in attrs
    assert attrs["num_episodes"] == len(attrs["episode_returns"]) > 5
    assert attrs["returns_mean"] == pytest.approx(np.mean(attrs["episode_returns"]))
    data, info = load_dataset(first)
    assert info["env"] == "Hopper-v4" and info["env_kwargs"] == {}

    both = make(tmp_path, kind="medium-expert", inputs=(first, second), out=str(tmp_path / "me.hdf5"))
    with h5py.File(both) as f:
        assert len(f["rewards"]) == 500 and f.attrs["policy"] == "medium-expert"
        np.testing.assert_array_equal(f["observations"][300:], h5py.File(second)["observations"][()])
        assert f["timeouts"][299] or f["terminals"][299]

    # Plain D4RL files carry no env_id: files of two environments are told apart by their shapes.
    with h5py.File(first) as f:
        hopper = {key: f[key][()] for key in make_dataset.D4RL_KEYS}
    plain = write_d4rl(str(tmp_path / "plain.hdf5"), hopper)
    other = write_d4rl(str(tmp_path / "other.hdf5"), hopper, replace={"actions": np.zeros((300, 6), np.float32)})
    with pytest.raises(make_dataset.UsageError, match="shape of their actions"):
        make(tmp_path, kind="medium-expert", inputs=(plain, other), out=str(tmp_path / "bad.hdf5"))


def test_make_from_a_td3_model(tmp_path):
    targs = td3.Args(env="Pendulum-v1", buffer_size=10, hdim=32, exploration_noise=0.3)
    agent = td3.Agent(3, 1, targs, torch.device("cpu"))  # Pendulum-v1: 3-d observations, 1-d actions
    td3.save_model(agent, targs, str(tmp_path / "model.pt"), 1234)
    out = make(tmp_path, kind="expert", model=str(tmp_path / "model.pt"), steps=450, out=str(tmp_path / "e.hdf5"))
    with h5py.File(out) as f:
        assert f.attrs["env_id"] == "Pendulum-v1" and f.attrs["checkpoint_step"] == 1234
        assert f.attrs["exploration_noise"] == 0.3 and f["timeouts"][()].sum() == 3  # 200-step episodes
        actions, observations = f["actions"][()], f["observations"][()]
    deterministic = np.stack([agent.select_action(o, use_exploration=False) * 2 for o in observations])
    assert 0.25 < np.std((actions - deterministic) / 2) < 0.35  # the model's own exploration noise

    ref = make(tmp_path, kind="reference", model=str(tmp_path / "model.pt"), episodes=2, out=str(tmp_path / "r.json"))
    ref = json.load(open(ref))
    assert len(ref["random"]["returns"]) == len(ref["expert"]["returns"]) == 2
    assert ref["ref_min_score"] == pytest.approx(np.mean(ref["random"]["returns"]))
    assert ref["ref_max_score"] == pytest.approx(np.mean(ref["expert"]["returns"]))
    assert reference_returns("Pendulum-v1", {}, str(tmp_path / "r.json")) == (ref["ref_min_score"],
                                                                               ref["ref_max_score"])


def test_make_medium_replay(tmp_path):
    out = make(tmp_path, kind="medium-replay", env="Pendulum-v1", steps=300, start_timesteps=260, torch_threads=1,
               out=str(tmp_path / "mr.hdf5"))
    with h5py.File(out) as f:
        assert len(f["rewards"]) == 300 and f.attrs["checkpoint_step"] == 300
        assert f["timeouts"][199] and f["timeouts"][299] and f["timeouts"][()].sum() == 2
        assert 1.5 < np.abs(f["actions"][()]).max() <= 2.0  # Pendulum-v1's own units, not [-1, 1]
    checkpoint = td3.load_model(str(tmp_path / "mr.model.pt"))
    assert checkpoint["step"] == 300 and checkpoint["agent"]["training_steps"] == 40
    # td3.py's own run, same seed: the same loop and random draws give the same networks, to the bit.
    run = td3.launch(make_args(td3, env="Pendulum-v1", total_timesteps=300, start_timesteps=260, buffer_size=300,
                               eval_episodes=1, save_model=True, device="cpu", torch_threads=1,
                               run_dir=str(tmp_path / "runs")))
    reference = td3.load_model(run)["agent"]
    for part in ("actor", "actor_target", "critic", "critic_target"):
        for key, value in reference[part].items():
            assert torch.equal(checkpoint["agent"][part][key], value), (part, key)


def test_make_dataset_cli_bad_input(script, tmp_path):
    (tmp_path / "exists.hdf5").write_bytes(b"")
    for args, expected in ((["--kind", "expert", "--out", str(tmp_path / "x.hdf5")], "needs --model"),
                           (["--kind", "random", "--env", "Hopper-v4", "--out", str(tmp_path / "exists.hdf5")],
                            "--overwrite"),
                           (["--kind", "medium", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "y.h5")],
                            "no model file")):
        result = script("tools/make_dataset.py", *args, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("make_dataset.py: error:") and expected in lines[0], result.stderr
