"""benchmarks/ppo_peer.py: our PPO update gives the numbers of CleanRL's ppo_continuous_action.py (when CLEANRL_PATH
names a checkout of github.com/vwxyzjn/cleanrl) from the same weights, rollout, permutations and noise, the truncation
bootstrap being the one difference; with CLEANRL_GYMNASIUM (a folder holding gymnasium 0.29.1, which CleanRL pins)
also the rollout side, each side's normalization statistics and V(s_T) against its documented rule. A different
update, different statistics, or V(s_T) normalized before s_T is counted (ppo.py before 0be1c4a), fail the check."""

import importlib.util
import os
from types import SimpleNamespace

import pytest
import torch

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


def failing_rules(rollout: dict) -> dict:
    """The rules of the rollout check that fail, as the report judges them."""
    return {key: w.cell() for key, w in rollout["rule"].items()
            if w.scaled > (ppo_peer.F32_TOL if key in ppo_peer.F32_RULES else ppo_peer.TOL)}


def gymnasium_029():
    if not os.environ.get("CLEANRL_GYMNASIUM"):
        pytest.skip("CLEANRL_GYMNASIUM does not name a folder holding gymnasium 0.29.1")


def test_our_update_gives_cleanrls_numbers():
    result = check("Hopper-v4")
    assert result["truncations"] == 0 and "plain" not in result
    # float64: the same arithmetic in another order, nothing more (the pass criterion is 1e-9 of scale).
    assert worst(result["update"]) < 1e-13
    assert result["update"]["parameters"].count == 2 * 13  # 2 updates x (actor: 3 x 2 + log std; critic: 3 x 2)
    assert result["update"]["policy loss"].count == 2 * 10 * 32
    assert result["update"]["V(s_T)"].count == 2
    if "rollout" in result:  # each side's statistics follow its rule; ours' normalized float32 values round off
        assert not failing_rules(result["rollout"])
        assert result["rollout"]["rule"]["ours V"].count == result["rollout"]["rule"]["theirs V"].count == 2
        assert result["rollout"]["counts"][1] > result["rollout"]["counts"][0]  # CleanRL counts final observations
        assert result["rollout"]["agree"] is None  # Hopper falls within rollout 1: the statistics differ at s_T


def test_the_truncation_bootstrap_is_the_one_difference():
    """HalfCheetah with a 100-step time limit: a truncation at step 100 of the 128. Without the bootstrap ours is
    CleanRL's update; with it the advantages of the truncated episode's last steps differ. On the rollout side, no
    episode ends in rollout 1, so both sides' statistics are the same at its s_T: ours V(s_T) must be CleanRL's."""
    result = check("HalfCheetah-v4", max_episode_steps=100)
    assert result["truncations"] == 1
    assert worst(result["plain"]) < 1e-13
    assert result["update"]["advantages"].diff > 1e-3 and result["update"]["parameters"].scaled > 1e-9
    if "rollout" in result:
        rollout = result["rollout"]
        assert not failing_rules(rollout)
        assert rollout["agree"] is not None and rollout["agree"].scaled <= 1e-6
        assert rollout["truncations"] == 1 and rollout["rule"]["ours bootstrap"].count == 2


def old_order(collect):
    """Rollout.collect as ppo.py had it before 0be1c4a: an observation counted only when the policy next acts on it,
    so V(s_T) normalized with statistics that do not count s_T. Made from the fixed collect: the statistics as they
    were before s_T was counted, V(s_T) again with them, and s_T left to the next collect to count first."""

    def collect_in_old_order(self, agent, env, state, num_steps):
        rms, before = agent.obs_rms, []
        update = rms.update
        rms.update = lambda x: (before.append((rms.mean.copy(), rms.var.copy(), rms.count)), update(x))
        try:
            state, episodes = collect(self, agent, env, state, num_steps)
        finally:
            del rms.update
        rms.mean, rms.var, rms.count = before[-1]
        self.counted_reset = False
        with torch.no_grad():
            self.next_value = agent.critic(torch.from_numpy(agent.normalize_obs(state)))
        return state, episodes

    return collect_in_old_order


def test_the_old_order_fails(monkeypatch):
    """V(s_T) normalized before s_T is counted (ppo.py before 0be1c4a; the actions are the same): our statistics at
    s_T and our V(s_T) break their rule, and V(s_T) is no longer CleanRL's where both must agree."""
    gymnasium_029()
    monkeypatch.setattr(ppo.Rollout, "collect", old_order(ppo.Rollout.collect))
    rollout = check("HalfCheetah-v4", max_episode_steps=100)["rollout"]
    assert set(failing_rules(rollout)) == {"ours obs", "ours V"}
    assert rollout["rule"]["ours obs"].where == "s_T of rollout 1"
    assert rollout["agree"].scaled > 1e-4


def test_a_different_update_of_ours_fails(monkeypatch):
    """Our log-probability off by 1e-7 nats in the update's ratio: the float64 comparison must see it."""
    log_prob = ppo.gaussian_log_prob
    monkeypatch.setattr(ppo, "gaussian_log_prob", lambda *args: log_prob(*args) + 1e-7)
    result = check("Hopper-v4", iterations=1, rollout=False)
    assert 1e-9 < result["update"]["policy loss"].scaled < 1e-5
    assert result["update"]["parameters"].scaled > 1e-9


def test_different_statistics_of_ours_fail(monkeypatch):
    """Our running statistics started from a count of 1e-3 instead of baselines' 1e-4: the rules must see it."""
    gymnasium_029()
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
