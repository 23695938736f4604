"""The twin critics, evaluated as one batched call, are two independent networks initialized as nn.Linear."""

import importlib

import pytest
import torch
import torch.nn.functional as F


def head(i, x, layers, activation, first_norm=None, embeddings=None):
    """Q_i computed on its own, layer by layer, from head i's slice of the stacked parameters."""
    for k, layer in enumerate(layers):
        x = x @ layer.weight[i] + layer.bias[i]
        if k == 0 and first_norm is not None:
            x = torch.cat([first_norm(x), embeddings], 1)
        elif k < len(layers) - 1:
            x = activation(x)
    return x.squeeze(1)


@pytest.mark.parametrize("script", ["td3", "sac", "td3_bc", "td7"])
def test_each_twin_is_its_own_network(script):
    """Each twin is computed from its own slice of the stacked parameters (and td3's Q1 from the first alone)."""
    module = importlib.import_module(script)
    torch.manual_seed(0)
    s, a = torch.randn(5, 3), torch.randn(5, 2)
    if script == "td7":
        critic = module.Critic(3, 2, zs_dim=4, hdim=8)
        zsa, zs = torch.randn(5, 4), torch.randn(5, 4)
        Q = critic(s, a, zsa, zs)
        expected = [head(i, torch.cat([s, a], 1), [critic.l0, critic.l1, critic.l2, critic.l3], F.elu,
                         first_norm=module.AvgL1Norm, embeddings=torch.cat([zsa, zs], 1)) for i in (0, 1)]
    else:
        critic = module.Critic(3, 2, hdim=8)
        Q = critic(s, a)
        expected = [head(i, torch.cat([s, a], 1), [critic.l1, critic.l2, critic.l3], F.relu) for i in (0, 1)]
    assert Q.shape == (5, 2)
    torch.testing.assert_close(Q, torch.stack(expected, 1))
    assert (Q[:, 0] - Q[:, 1]).abs().min() > 1e-4  # initialized independently
    if hasattr(critic, "Q1"):  # td3, td3_bc: the actor's objective computes the first twin alone
        torch.testing.assert_close(critic.Q1(s, a), expected[0].unsqueeze(1))


def test_twin_layers_are_initialized_like_nn_linear():
    import td3

    torch.manual_seed(0)
    layer = td3.TwinLinear(256, 256)
    bound = 256 ** -0.5  # nn.Linear: kaiming_uniform(a=sqrt(5)) gives uniform(-1/sqrt(in), 1/sqrt(in))
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    torch.testing.assert_close(layer.weight.std().item(), bound / 3 ** 0.5, rtol=0.01, atol=0)
    assert not torch.equal(layer.weight[0], layer.weight[1])
