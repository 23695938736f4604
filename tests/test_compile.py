"""--compile: the compiled update follows the eager one step for step, and a failed compilation falls back."""

import importlib

import numpy as np
import pytest
import torch

from datasets_util import one_torch_thread  # noqa: F401 (fixture)

SMALL = {"td3": {"hdim": 32}, "sac": {"hdim": 32}, "ddpg": {"hdim": 32}, "td3_bc": {"hdim": 32},
         "td7": {"actor_hdim": 32, "critic_hdim": 32, "enc_hdim": 32, "zs_dim": 16, "target_update_rate": 50}}


def trained(script, compile, steps):
    """An agent on 1,000 random 5-d transitions after `steps` updates, and its critic loss at every step."""
    module = importlib.import_module(script)
    torch.manual_seed(0)
    agent = module.Agent(5, 2, module.Args(compile=compile, **SMALL[script]), torch.device("cpu"))
    rng = np.random.default_rng(0)
    agent.replay_buffer.load({"observations": rng.normal(size=(1000, 5)), "actions": rng.uniform(-1, 1, (1000, 2)),
                              "next_observations": rng.normal(size=(1000, 5)), "rewards": rng.normal(size=1000),
                              "terminals": rng.random(1000) < 0.05})
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        agent.train()
        losses.append(float(agent.losses["critic_loss"]))
    return agent, np.array(losses)


@pytest.fixture(scope="module")
def compile_works():
    """torch.compile on CPU needs a C++ compiler and Python's headers; without them there is nothing to compare."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as e:
        pytest.skip(f"torch.compile does not run on this machine: {type(e).__name__}")


@pytest.mark.parametrize("script", ["td3", "td7", "sac", "ddpg", "td3_bc"])
def test_compiled_update_follows_the_eager_one(script, compile_works, one_torch_thread, capsys):
    (eager, eager_losses), (fast, fast_losses) = (trained(script, compile, 300) for compile in (False, True))
    assert "compiled in" in capsys.readouterr().out  # the first-compile time is printed
    # The same random numbers (target noise, SAC's samples) and the same math: the two runs differ by
    # float32 rounding, which Adam's normalized steps can grow to a few learning rates over 300 steps.
    np.testing.assert_allclose(fast_losses, eager_losses, rtol=1e-3)
    for name in ("actor", "critic"):
        for a, b in zip(getattr(eager, name).parameters(), getattr(fast, name).parameters()):
            torch.testing.assert_close(b, a, rtol=0, atol=3e-3)


@pytest.mark.parametrize("failing_call", [1, 3])  # the first call, or a later one (a graph reached late)
def test_a_failed_compilation_falls_back_to_eager_with_one_warning(failing_call, monkeypatch, capsys):
    import td3

    def broken_compile(fn, **kwargs):
        calls = 0

        def fast(*inputs):
            nonlocal calls
            calls += 1
            if calls >= failing_call:
                raise RuntimeError("no C++ compiler\nmore detail")
            return fn(*inputs)
        return fast

    monkeypatch.setattr(torch, "compile", broken_compile)
    (eager, eager_losses), (fallback, fallback_losses) = (trained("td3", compile, 20) for compile in (False, True))
    captured = capsys.readouterr()
    assert captured.err.count("warning: torch.compile failed, running eager (RuntimeError: no C++ compiler)") == 1
    assert ("compiled in" in captured.out) == (failing_call > 1)
    assert np.array_equal(fallback_losses, eager_losses)
    assert td3.Args().compile is False  # eager stays the default
