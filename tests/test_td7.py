"""TD7: SALE networks, which encoder feeds what, value clipping, hard copies, losses, checkpoints, learning."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import td7
from conftest import pendulum_rows

STATE_DIM, ACTION_DIM, B, H = 3, 2, 6, 8


def make_agent(**overrides):
    torch.manual_seed(0)
    args = td7.Args(actor_hdim=H, critic_hdim=H, enc_hdim=H, zs_dim=4, buffer_size=100, **overrides)
    agent = td7.Agent(STATE_DIM, ACTION_DIM, args, torch.device("cpu"))
    # Make the three encoders and the targets differ, so a swap shows in the numbers.
    for net in (agent.fixed_encoder, agent.fixed_encoder_target, agent.actor_target, agent.critic_target):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    return agent


def tiny_batch():
    g = torch.Generator().manual_seed(1)
    state, next_state = torch.randn(B, STATE_DIM, generator=g), torch.randn(B, STATE_DIM, generator=g)
    action = torch.rand(B, ACTION_DIM, generator=g) * 2 - 1
    reward = torch.tensor([[1.0], [-0.5], [2.0], [0.0], [3.0], [-2.0]])
    not_done = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    return state, action, next_state, reward, not_done


def test_avg_l1_norm():
    x = torch.tensor([[1.0, -3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    out = td7.AvgL1Norm(x)
    torch.testing.assert_close(out[0], x[0] / 2.0)
    assert torch.equal(out[1], torch.zeros(4))  # eps keeps zeros finite
    torch.testing.assert_close(out[0].abs().mean(), torch.tensor(1.0))


def test_shapes():
    agent = make_agent()
    state, action = tiny_batch()[:2]
    zs = agent.encoder.zs(state)
    zsa = agent.encoder.zsa(zs, action)
    assert zs.shape == (B, 4) and zsa.shape == (B, 4)
    torch.testing.assert_close(zs.abs().mean(1), torch.ones(B))  # zs is AvgL1Normed, zsa is not
    assert agent.actor(state, zs).shape == (B, ACTION_DIM)
    assert agent.critic(state, action, zsa, zs).shape == (B, 2)
    assert agent.critic.l1.weight.shape[1] == 2 * 4 + H  # cat(AvgL1Norm(l0(s, a)), zsa, zs)


def expected_update(agent, batch, noise):
    """The TD7 step computed by hand from copies of the networks, before any weight moves."""
    state, action, next_state, reward, not_done = batch
    a = agent.args
    with torch.no_grad():
        # Encoder loss uses the trained encoder.
        enc = agent.encoder
        encoder_loss = F.mse_loss(enc.zsa(enc.zs(state), action), enc.zs(next_state))
        # Target uses the fixed target encoder and the target networks, clipped to [Q_min, Q_max].
        tgt = agent.fixed_encoder_target
        zs_next = tgt.zs(next_state)
        next_action = (agent.actor_target(next_state, zs_next) + noise.clamp(-a.noise_clip, a.noise_clip)).clamp(-1, 1)
        q_next = agent.critic_target(next_state, next_action, tgt.zsa(zs_next, next_action), zs_next)
        q_next = torch.minimum(q_next[:, :1], q_next[:, 1:]).clamp(agent.Q_min, agent.Q_max)
        y = reward + not_done * a.discount * q_next
        # The current Q uses the fixed encoder.
        fixed = agent.fixed_encoder
        zs = fixed.zs(state)
        Q = agent.critic(state, action, fixed.zsa(zs, action), zs)
        td = (Q - y).abs()
        huber = torch.where(td < 1, 0.5 * td ** 2, td)
    return encoder_loss, y, huber.sum(1).mean(), td.max(1)[0].clamp(min=1) ** 0.4


@pytest.mark.parametrize("clip_range", [(0.0, 0.0), (-1.5, 0.7)])
def test_critic_loss_priorities_and_encoders_match_hand_computation(clip_range):
    agent = make_agent()
    agent.Q_min, agent.Q_max = torch.tensor(clip_range[0]), torch.tensor(clip_range[1])
    batch = tiny_batch()
    torch.manual_seed(7)
    noise = torch.randn(B, ACTION_DIM) * agent.args.target_policy_noise
    encoder_loss, y, critic_loss, priority = expected_update(agent, batch, noise)
    if clip_range == (0.0, 0.0):
        torch.testing.assert_close(y, batch[3])  # before the first copy the target is the reward
    torch.manual_seed(7)
    got_priority = agent.update(*batch)
    torch.testing.assert_close(agent.losses["encoder_loss"], encoder_loss)
    torch.testing.assert_close(agent.losses["critic_loss"], critic_loss)
    torch.testing.assert_close(got_priority, priority)
    torch.testing.assert_close(agent.running_min, y.min())
    torch.testing.assert_close(agent.running_max, y.max())


def test_swapped_encoders_would_be_caught():
    """The hand computation above has power: swapping the fixed and trained encoder changes the loss."""
    agent = make_agent()
    batch = tiny_batch()
    noise = torch.zeros(B, ACTION_DIM)
    _, _, loss, _ = expected_update(agent, batch, noise)
    agent.fixed_encoder, agent.encoder = agent.encoder, agent.fixed_encoder
    _, _, swapped, _ = expected_update(agent, batch, noise)
    assert not torch.allclose(loss, swapped)


def test_actor_loss_averages_both_heads_through_the_fixed_encoder():
    agent = make_agent()
    batch = tiny_batch()
    state = batch[0]
    actor_before = copy.deepcopy(agent.actor)
    agent.training_steps = 2  # an actor step
    agent.update(*batch)  # the actor loss uses the critic after its step and the actor before its own
    fixed = agent.fixed_encoder
    zs = fixed.zs(state)

    def loss(heads, detach_zsa=False):
        actor = copy.deepcopy(actor_before)
        pi = actor(state, zs)
        zsa = fixed.zsa(zs, pi.detach() if detach_zsa else pi)
        value = -agent.critic(state, pi, zsa, zs)[:, heads].mean()
        value.backward()
        return value.detach(), actor.l0.weight.grad

    both, grad = loss([0, 1])
    torch.testing.assert_close(agent.losses["actor_loss"], both)
    torch.testing.assert_close(agent.actor.l0.weight.grad, grad)
    assert not torch.allclose(loss([0])[0], both)  # Q1 alone differs
    assert not torch.allclose(loss([0, 1], detach_zsa=True)[1], grad)  # the gradient goes through g(zs, pi)
    assert all(p.grad is None for p in fixed.parameters())  # the fixed encoder gets no weight gradient


def hard_copies(agent):
    return [(agent.actor_target, agent.actor), (agent.critic_target, agent.critic),
            (agent.fixed_encoder, agent.encoder)]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def agent_with_twenty_transitions():
    """Hard copies every 5 steps, batches of 4, rewards 0 to 19: the value range keeps growing."""
    agent = make_agent(target_update_rate=5, batch_size=4)
    for i in range(20):
        agent.replay_buffer.add(np.random.randn(STATE_DIM), np.random.rand(ACTION_DIM), np.random.randn(STATE_DIM),
                                float(i), False)
    return agent


def test_hard_copies_and_clip_range_every_target_update_rate_steps():
    agent = agent_with_twenty_transitions()
    for step in range(1, 11):
        fixed_before = copy.deepcopy(agent.fixed_encoder)
        running = (agent.running_min.clone(), agent.running_max.clone())
        agent.train()
        copied = all(same(target, net) for target, net in hard_copies(agent))
        assert copied == (step % 5 == 0), step
        if step % 5 == 0:
            assert same(agent.fixed_encoder_target, fixed_before)  # the old fixed encoder, not the new one
            assert agent.Q_min == agent.running_min and agent.Q_max == agent.running_max
            assert agent.Q_max > 0
            clip_range = (agent.Q_min.item(), agent.Q_max.item())
        elif step < 5:
            assert agent.Q_min == 0 and agent.Q_max == 0  # [0, 0] until the first copy
        else:  # a copy of the running range, not the same tensors: it stays put while the running one moves
            assert (agent.Q_min.item(), agent.Q_max.item()) == clip_range
            moved = agent.running_max > clip_range[1] or agent.running_min < clip_range[0]
        assert agent.running_min <= running[0] and agent.running_max >= running[1]
    assert moved  # between the copies at 5 and 10 the running range left the clip range


def test_agent_state_is_a_snapshot_of_the_value_range_updated_in_place():
    agent = agent_with_twenty_transitions()
    for _ in range(5):
        agent.train()
    names = ("Q_min", "Q_max", "running_min", "running_max")
    saved = td7.agent_state(agent)
    values = [saved[name].item() for name in names]
    for _ in range(5):
        agent.train()
    assert [saved[name].item() for name in names] == values
    assert [getattr(agent, name).item() for name in names] != values  # the agent's own moved on


class CountingAgent(td7.Agent):
    """A TD7 agent whose gradient steps only count (and keep the checkpoint schedule of train())."""

    def __init__(self, args):
        super().__init__(STATE_DIM, ACTION_DIM, args, torch.device("cpu"))
        for _ in range(4):
            self.replay_buffer.add(np.zeros(STATE_DIM), np.zeros(ACTION_DIM), np.zeros(STATE_DIM), 0.0, False)

    def update(self, state, *batch):
        return torch.ones(len(state))


def assess(agent, ep_timesteps, ep_return):
    """An episode end as main() handles it: the assessment, then the gradient steps it releases."""
    for _ in range(agent.maybe_train_and_checkpoint(ep_timesteps, ep_return)):
        agent.train()


def test_checkpoint_logic_with_scripted_returns():
    torch.manual_seed(0)
    agent = CountingAgent(td7.Args(actor_hdim=H, critic_hdim=H, enc_hdim=H, zs_dim=4, buffer_size=10, batch_size=4,
                                   steps_before_checkpointing=300, max_eps_when_checkpointing=3))

    def perturb_actor():
        with torch.no_grad():
            agent.actor.l3.bias.add_(1.0)

    # First assessment: one episode, always becomes the checkpoint.
    perturb_actor()
    assess(agent, 100, 50.0)
    assert agent.best_min_return == 50.0 and same(agent.checkpoint_actor, agent.actor)
    assert agent.training_steps == 100
    # Worse than the checkpoint: no new checkpoint, but the 100 steps are trained.
    perturb_actor()
    assess(agent, 100, 40.0)
    assert agent.best_min_return == 50.0 and not same(agent.checkpoint_actor, agent.actor)
    assert agent.training_steps == 200
    # Better: replaces the checkpoint. Training crosses step 300: the switch to 3 episodes,
    # and the best score is lowered by the reset weight.
    assess(agent, 150, 60.0)
    assert same(agent.checkpoint_actor, agent.actor) and agent.training_steps == 350
    assert agent.max_eps_before_update == 3 and agent.best_min_return == pytest.approx(54.0)
    # Three episodes per assessment now: two good ones do not train yet.
    perturb_actor()
    assert agent.maybe_train_and_checkpoint(10, 70.0) == 0 and agent.maybe_train_and_checkpoint(10, 65.0) == 0
    assert agent.training_steps == 350 and not same(agent.checkpoint_actor, agent.actor)
    assess(agent, 10, 80.0)  # third: the min over the assessment (65) is the score, and 30 steps to train
    assert agent.best_min_return == 65.0 and same(agent.checkpoint_actor, agent.actor)
    assert agent.training_steps == 380
    # Early stop: the first episode below the bar ends the assessment and trains at once.
    perturb_actor()
    assert agent.maybe_train_and_checkpoint(20, 30.0) == 20
    assert agent.best_min_return == 65.0 and agent.eps_since_update == 0 and agent.min_return == 1e8


def test_reset_weight_lowers_a_negative_bar():
    torch.manual_seed(0)
    agent = CountingAgent(td7.Args(actor_hdim=H, critic_hdim=H, enc_hdim=H, zs_dim=4, buffer_size=10, batch_size=4,
                                   steps_before_checkpointing=5))
    assess(agent, 10, -200.0)
    assert agent.best_min_return == pytest.approx(-220.0)  # the official * 0.9 would give -180


def test_td7_learns_pendulum(tmp_path):
    # Seed 0 reaches about -110 at 4k steps (random play: about -1200), in about 70 s on one thread with
    # half-width networks (the default width gets about -115 too, in 64 s on two threads).
    rows = pendulum_rows("td7.py", tmp_path, "--total-timesteps", "4000", "--start-timesteps", "1000",
                         "--eval-freq", "2000", "--actor-hdim", "128", "--critic-hdim",
                         "128", "--enc-hdim", "128", "--zs-dim", "128")
    assert float(rows[0]["mean_return"]) < -900  # untrained: about as bad as random (-1200)
    assert float(rows[-1]["mean_return"]) > -600, rows[-1]
