"""LAPBuffer: sampling distributions, priorities, ring storage and errors."""

import os

import numpy as np
import pytest
import torch

import lap_buffer
from lap_buffer import LAPBuffer, SumTree

# Chi-square critical values at p = 0.001 (df = bins - 1).
CHI2_CRIT = {49: 85.35, 999: 1143.9}


def fill(buffer, n, state_dim=3, action_dim=2, start=0):
    for i in range(start, start + n):
        buffer.add(np.full(state_dim, i), np.full(action_dim, 0.5), np.full(state_dim, i + 1), float(i), i % 7 == 0)


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return ((counts - expected) ** 2 / expected).sum()


@pytest.mark.parametrize("n, capacity", [(50, 50), (1000, 2000), (1000, 40_000)])  # 1, 2 and 3 levels
def test_sampling_frequencies_match_priorities(n, capacity):
    torch.manual_seed(0)
    buffer = LAPBuffer(3, 2, "cpu", capacity=capacity)
    assert len(buffer.tree.levels) == {50: 1, 2000: 2, 40_000: 3}[capacity]
    fill(buffer, n)
    priority = torch.linspace(1.0, 10.0, n) ** 2  # uneven: the largest is 100 times the smallest
    buffer.ind = torch.arange(n)
    buffer.update_priority(priority)
    counts = np.zeros(n)
    for _ in range(100_000 // 50):
        buffer.sample(50)
        counts += np.bincount(buffer.ind.numpy(), minlength=n)
    probs = (priority / priority.sum()).numpy()
    assert chi_square(counts, probs) < CHI2_CRIT[n - 1]
    # and the test has power: the same counts are far from uniform
    assert chi_square(counts, np.full(n, 1.0 / n)) > 10 * CHI2_CRIT[n - 1]


def test_deep_tree_samples_every_region_in_proportion():
    """All 40,000 leaves of a three-level tree hold a priority: the walk crosses top nodes and children."""
    torch.manual_seed(6)
    tree = SumTree(40_000, "cpu")
    assert len(tree.levels) == 3
    priority = torch.linspace(0.0, 1.0, 40_000, dtype=torch.float64) ** 2
    tree.update(torch.arange(40_000), priority)
    draws = torch.cat([tree.sample(1000) for _ in range(100)])
    assert (draws < 40_000).all() and (priority[draws] > 0).all()
    counts = np.bincount(draws.numpy() // 800, minlength=50)  # 50 regions of 800 leaves
    probs = (priority.view(50, 800).sum(1) / priority.sum()).numpy()
    assert chi_square(counts, probs) < CHI2_CRIT[49]
    assert chi_square(counts, np.full(50, 1 / 50)) > 10 * CHI2_CRIT[49]


def test_uniform_mode_samples_uniformly():
    torch.manual_seed(1)
    buffer = LAPBuffer(3, 2, "cpu", capacity=100, prioritized=False)
    fill(buffer, 50)
    counts = np.zeros(50)
    for _ in range(2000):
        buffer.sample(50)
        counts += np.bincount(buffer.ind.numpy(), minlength=50)
    assert chi_square(counts, np.full(50, 1 / 50)) < CHI2_CRIT[49]
    assert not hasattr(buffer, "tree")


def test_sample_returns_the_stored_rows():
    buffer = LAPBuffer(3, 2, "cpu", capacity=20)
    fill(buffer, 10)
    state, action, next_state, reward, not_done = buffer.sample(8)
    i = buffer.ind.float().unsqueeze(1)
    assert torch.equal(state, i.expand(-1, 3))
    assert torch.equal(action, torch.full((8, 2), 0.5))
    assert torch.equal(next_state, (i + 1).expand(-1, 3))
    assert torch.equal(reward, i)
    assert torch.equal(not_done, (buffer.ind % 7 != 0).float().unsqueeze(1))
    assert all(t.dtype == torch.float32 for t in (state, action, next_state, reward, not_done))


def test_new_items_get_the_max_priority_and_reset_max_priority():
    buffer = LAPBuffer(3, 2, "cpu", capacity=10)
    fill(buffer, 4)
    assert torch.equal(buffer.tree.leaves[:4], torch.ones(4, dtype=torch.float64))
    buffer.ind = torch.tensor([0, 1])
    buffer.update_priority(torch.tensor([5.0, 2.0]))
    fill(buffer, 1)  # the fifth item
    assert buffer.tree.leaves[4] == 5.0
    buffer.ind = torch.tensor([0, 4])
    buffer.update_priority(torch.tensor([1.5, 1.5]))
    assert buffer.max_priority == 5.0  # the max only grows between resets
    buffer.reset_max_priority()
    assert buffer.max_priority == 2.0  # largest stored: item 1
    fill(buffer, 1)
    assert buffer.tree.leaves[5] == 2.0


def test_duplicate_indices_keep_the_largest_priority():
    buffer = LAPBuffer(3, 2, "cpu", capacity=10)
    fill(buffer, 5)
    buffer.ind = torch.tensor([3, 1, 3, 3])
    buffer.update_priority(torch.tensor([2.0, 4.0, 7.0, 3.0]))
    assert buffer.tree.leaves[3] == 7.0 and buffer.tree.leaves[1] == 4.0


def test_tree_sums_stay_consistent():
    torch.manual_seed(2)
    tree = SumTree(50_000, "cpu")
    assert len(tree.levels) == 3
    for _ in range(50):
        index = torch.randint(0, 50_000, (256,))
        tree.update(index, torch.rand(256) * 10)
    for lower, upper in zip(tree.levels[:-1], tree.levels[1:]):
        torch.testing.assert_close(upper, lower.view(-1, 32).sum(1))
    torch.testing.assert_close(tree.total, tree.leaves.sum())


def test_zero_priority_items_are_never_sampled():
    torch.manual_seed(3)
    buffer = LAPBuffer(3, 2, "cpu", capacity=64)
    fill(buffer, 40)
    buffer.ind = torch.arange(0, 40, 2)
    buffer.update_priority(torch.zeros(20))
    for _ in range(200):
        buffer.sample(40)
        assert (buffer.ind % 2 == 1).all()


def test_ring_wrap_around():
    buffer = LAPBuffer(3, 2, "cpu", capacity=5)
    fill(buffer, 7)
    assert buffer.size == 5 and buffer.ptr == 2
    assert buffer.transitions[:, 0].tolist() == [5, 6, 2, 3, 4]  # items 5 and 6 replaced 0 and 1


def test_empty_and_oversized_batches_are_clear_errors():
    buffer = LAPBuffer(3, 2, "cpu", capacity=10)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    fill(buffer, 3)
    with pytest.raises(ValueError, match="larger than the 3 transitions"):
        buffer.sample(4)


def test_load_fills_from_d4rl_arrays_and_grows():
    n = 12
    dataset = {"observations": np.arange(n * 3).reshape(n, 3), "actions": np.zeros((n, 2)),
               "next_observations": np.arange(n * 3).reshape(n, 3) + 1, "rewards": np.arange(n),
               "terminals": np.arange(n) % 5 == 0}
    buffer = LAPBuffer(3, 2, "cpu", capacity=8)
    buffer.load(dataset)
    assert buffer.size == n and buffer.capacity >= n
    assert torch.equal(buffer.tree.leaves[:n], torch.ones(n, dtype=torch.float64))
    state, action, next_state, reward, not_done = buffer.sample(n)
    i = buffer.ind
    assert torch.equal(state[:, 0], 3 * i.float())
    assert torch.equal(not_done.squeeze(1), (i % 5 != 0).float())


@pytest.mark.parametrize("prioritized", [True, False])
def test_save_and_restore_continue_exactly(prioritized, tmp_path):
    buffer = LAPBuffer(3, 2, "cpu", capacity=8, prioritized=prioritized)
    fill(buffer, 11)  # wrapped around
    if prioritized:
        buffer.ind = torch.tensor([1, 4])
        buffer.update_priority(torch.tensor([3.0, 9.0]))
    state = buffer.save(str(tmp_path), version=1)
    restored = LAPBuffer(3, 2, "cpu", capacity=1, prioritized=prioritized)
    restored.restore(str(tmp_path), state)
    assert (restored.capacity, restored.ptr, restored.size) == (8, 3, 8)
    assert torch.equal(restored.transitions, buffer.transitions)
    if prioritized:
        for a, b in zip(restored.tree.levels, buffer.tree.levels):
            assert torch.equal(a, b)
        assert restored.max_priority == 9.0
    torch.manual_seed(5)
    first = buffer.sample(4)
    torch.manual_seed(5)
    second = restored.sample(4)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_a_save_writes_only_the_chunks_that_changed_and_keeps_the_last_state_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(lap_buffer, "CHUNK", 4)
    buffer = LAPBuffer(3, 2, "cpu", capacity=10, prioritized=True)  # chunks of rows 0-3, 4-7, 8-9
    fill(buffer, 6)
    first = buffer.save(str(tmp_path), version=1)
    assert first["files"] == {0: "rows_00000.1.npy", 1: "rows_00001.1.npy"}
    assert len(np.load(tmp_path / "rows_00001.1.npy")) == 2  # rows 4 and 5: the rest is not filled yet
    fill(buffer, 7, start=6)  # rows 6 to 9, then around the ring to 0, 1, 2
    second = buffer.save(str(tmp_path), version=2)
    assert second["files"] == {0: "rows_00000.2.npy", 1: "rows_00001.2.npy", 2: "rows_00002.2.npy"}
    fill(buffer, 1, start=13)  # row 3 only
    third = buffer.save(str(tmp_path), version=3)
    assert third["files"] == {0: "rows_00000.3.npy", 1: "rows_00001.2.npy", 2: "rows_00002.2.npy"}
    assert buffer.save(str(tmp_path), version=4)["files"] == third["files"]  # nothing new: nothing written
    # A save that was killed before its state was kept leaves the state before it whole: restore from it.
    restored = LAPBuffer(3, 2, "cpu", capacity=1, prioritized=True)
    restored.restore(str(tmp_path), second)
    expected = LAPBuffer(3, 2, "cpu", capacity=10, prioritized=True)
    fill(expected, 13)
    assert torch.equal(restored.transitions, expected.transitions) and restored.ptr == 3 and restored.added == 13
    # prune removes what the kept state does not name.
    LAPBuffer.prune(str(tmp_path), third)
    assert sorted(os.listdir(tmp_path)) == sorted(third["files"].values())
    restored.restore(str(tmp_path), third)
    assert torch.equal(restored.transitions, buffer.transitions)
