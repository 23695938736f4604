"""benchmarks/sac_peers.py: our SAC update gives the numbers of Stable-Baselines3's SAC (when stable_baselines3 is
installed) and of Spinning Up's PyTorch SAC (when SPINUP_PATH names a checkout of github.com/openai/spinningup), step
for step, from the same weights, batches and noise; a different update of ours fails the check."""

import importlib.util
import os

import pytest

import sac
from conftest import ROOT

spec = importlib.util.spec_from_file_location("sac_peers", os.path.join(ROOT, "benchmarks", "sac_peers.py"))
sac_peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sac_peers)

STEPS = 6  # the command line's 300 take minutes; these few already compare every loss, temperature and parameter


def sb3():
    pytest.importorskip("stable_baselines3")
    return sac_peers.StableBaselines3


def spinup():
    path = os.environ.get("SPINUP_PATH")
    if not path:
        pytest.skip("SPINUP_PATH does not name a checkout of github.com/openai/spinningup")
    modules = sac_peers.load_spinup(path)
    return lambda variant="patched": sac_peers.SpinningUp(modules, variant)


PEERS = {"sb3": sb3, "spinup": spinup}


@pytest.mark.parametrize("peer", PEERS)
def test_our_update_gives_the_peers_numbers(peer):
    build = PEERS[peer]()
    result = sac_peers.check_peer(build, STEPS)
    assert result["mismatch"] is None and result["ok"], result["mismatch"] or result["verdict"]
    # float64: the same arithmetic in another order, nothing more (the pass criterion is 1e-9 of scale).
    assert result["d64"]["losses"].scaled < 1e-13 and result["run64"]["params_any"].scaled < 1e-13
    losses = result["run64"]["records"]["ours"]["losses"]
    assert len(losses) == STEPS * (2 if build().fixed_alpha else 3)


@pytest.mark.parametrize("peer", PEERS)
def test_a_different_update_of_ours_fails(peer, monkeypatch):
    """Our log-probability off by 1e-7 nats (the entropy term of the critic target and of the actor's loss): the
    float64 comparison must see it; and the peer's own by-design expression, unpatched, must show too."""
    build = PEERS[peer]()
    sample = sac.Actor.sample

    def shifted(self, state):
        action, log_prob = sample(self, state)
        return action, log_prob + 1e-7

    with monkeypatch.context() as patch:
        patch.setattr(sac.Actor, "sample", shifted)
        result = sac_peers.check_peer(build, 2)
    assert result["mismatch"] is None and not result["ok"]
    assert 1e-9 < result["d64"]["losses"].scaled < 1e-5
    assert not result["verdict"]["losses"][1]  # the float64 losses failed

    as_is = sac_peers.check_peer(lambda: build("as is"), 2)
    assert as_is["mismatch"] is None and not as_is["ok"]


def test_bad_input_is_one_line(monkeypatch, capsys, tmp_path):
    for argv in ([], ["--spinup", str(tmp_path)], ["--sb3", "--steps", "0"]):
        monkeypatch.setattr("sys.argv", ["sac_peers.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            sac_peers.main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and "error" in err[0], (argv, err)
