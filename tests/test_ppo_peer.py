"""benchmarks/ppo_peer.py: our PPO update gives the numbers of CleanRL's ppo_continuous_action.py (when CLEANRL_PATH
names a checkout of github.com/vwxyzjn/cleanrl) from the same weights, rollout, permutations and noise, the truncation
bootstrap being the one difference; with CLEANRL_GYMNASIUM (a folder holding gymnasium 0.29.1, which CleanRL pins)
also the rollout side, each side's normalization statistics against its documented rule. A different update, or
different statistics, of ours fail the check."""

import importlib.util
import os
from types import SimpleNamespace

import pytest

import ppo
from conftest import ROOT

spec = importlib.util.spec_from_file_location("ppo_peer", os.path.join(ROOT, "benchmarks", "ppo_peer.py"))
ppo_peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ppo_peer)


def cleanrl():
    path = os.environ.get("CLEANRL_PATH")
    if not path:
        pytest.skip("CLEANRL_PATH does not name a checkout of github.com/vwxyzjn/cleanrl")
    return os.path.join(os.path.abspath(path), ppo_peer.CLEANRL_FILE)


def check(env_id, num_steps=64, iterations=2, max_episode_steps=None, rollout=True):
    """check_env as the command line runs it, short: 2 updates of 10 epochs x 32 minibatches of 2 transitions."""
    gymnasium = os.environ.get("CLEANRL_GYMNASIUM") if rollout else None
    args = SimpleNamespace(num_steps=num_steps, iterations=iterations, seed=1, gymnasium=gymnasium,
                           max_episode_steps=max_episode_steps)
    return ppo_peer.check_env(ppo, env_id, args, cleanrl())


def worst(update: dict) -> float:
    return max(w.scaled for w in update.values())


def test_our_update_gives_cleanrls_numbers():
    result = check("Hopper-v4")
    assert result["truncations"] == 0 and "plain" not in result
    # float64: the same arithmetic in another order, nothing more (the pass criterion is 1e-9 of scale).
    assert worst(result["update"]) < 1e-13
    assert result["update"]["parameters"].count == 2 * 13  # 2 updates x (actor: 3 x 2 + log std; critic: 3 x 2)
    assert result["update"]["policy loss"].count == 2 * 10 * 32
    if "rollout" in result:  # each side's statistics follow its rule; ours' normalized float32 values round off
        rules = result["rollout"]["rule"]
        assert all(w.scaled <= (1e-6 if key in ("ours reward", "ours normalized") else 1e-9)
                   for key, w in rules.items()), {key: w.cell() for key, w in rules.items()}
        assert result["rollout"]["counts"][1] > result["rollout"]["counts"][0]  # CleanRL counts final observations


def test_the_truncation_bootstrap_is_the_one_difference():
    """HalfCheetah with a 100-step time limit: a truncation at step 100 of the 128. Without the bootstrap ours is
    CleanRL's update; with it the advantages of the truncated episode's last steps differ."""
    result = check("HalfCheetah-v4", max_episode_steps=100, rollout=False)
    assert result["truncations"] == 1
    assert worst(result["plain"]) < 1e-13
    assert result["update"]["advantages"].diff > 1e-3 and result["update"]["parameters"].scaled > 1e-9


def test_a_different_update_of_ours_fails(monkeypatch):
    """Our log-probability off by 1e-7 nats in the update's ratio: the float64 comparison must see it."""
    log_prob = ppo.gaussian_log_prob
    monkeypatch.setattr(ppo, "gaussian_log_prob", lambda *args: log_prob(*args) + 1e-7)
    result = check("Hopper-v4", iterations=1, rollout=False)
    assert 1e-9 < result["update"]["policy loss"].scaled < 1e-5
    assert result["update"]["parameters"].scaled > 1e-9


def test_different_statistics_of_ours_fail(monkeypatch):
    """Our running statistics started from a count of 1e-3 instead of baselines' 1e-4: the rules must see it."""
    if not os.environ.get("CLEANRL_GYMNASIUM"):
        pytest.skip("CLEANRL_GYMNASIUM does not name a folder holding gymnasium 0.29.1")
    init = ppo.RunningMeanStd.__init__
    monkeypatch.setattr(ppo.RunningMeanStd, "__init__", lambda self, shape=(), epsilon=1e-4: init(self, shape, 1e-3))
    rules = check("Hopper-v4", iterations=1)["rollout"]["rule"]
    assert rules["ours obs"].scaled > 1e-9 and rules["ours return"].scaled > 1e-9
    assert rules["theirs obs"].scaled <= 1e-9


def test_bad_input_is_one_line(monkeypatch, capsys, tmp_path):
    path = os.environ.get("CLEANRL_PATH", str(tmp_path))
    for argv in ([], ["--cleanrl", str(tmp_path)], ["--cleanrl", path, "--num-steps", "100"],
                 ["--cleanrl", path, "--gymnasium", str(tmp_path)]):
        monkeypatch.setattr("sys.argv", ["ppo_peer.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            ppo_peer.main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and "error" in err[0], (argv, err)
