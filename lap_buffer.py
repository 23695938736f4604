"""Replay buffer with uniform or LAP sampling, shared by the off-policy scripts.

LAP (Loss-Adjusted Prioritized experience replay; Fujimoto, Meger, Precup 2020, "An Equivalence
between Loss Functions and Non-Uniform Sampling in Experience Replay") samples transition i with
probability

    P(i) = p_i / sum_j p_j,    p_i = max(|delta_i|, min_priority) ** alpha     (LAP paper, eq. 8)

and pairs it with a Huber loss whose quadratic region is [0, min_priority]. The scripts compute
p_i from the TD errors of a batch and hand it back with `update_priority`; this file only stores
priorities and samples from them. Semantics follow the `LAP` buffer of the official TD7 code:
a new transition gets the current maximum priority, `reset_max_priority()` sets that maximum to the
largest stored priority, and `prioritized=False` samples uniformly.

The official code draws a batch with a cumulative sum over every stored priority followed by a
binary search: O(N) work per batch. Here the priorities live in the leaves of a sum tree whose
every node holds the sum of its `BRANCHING` children, so one draw walks from the top to a leaf:
O(B log N) per batch, vectorized over the batch. The tree stops growing upwards at `TOP` nodes or
fewer; the walk starts with one prefix sum over that top level (what the levels above it would
hold), so at N = 1e6 it is a prefix sum over 977 nodes and two steps down. The cost is the number
of small tensor operations, not the arithmetic, hence the wide nodes and the short walk.
"""

import numpy as np
import torch

BRANCHING = 32
TOP = 1024


class SumTree:
    """Priorities in the leaves of a BRANCHING-ary tree; levels[0] are the leaves, levels[-1] the top
    level (at most TOP nodes); each node of a level holds the sum of BRANCHING nodes of the level below."""

    def __init__(self, capacity: int, device: torch.device):
        depth = 0
        while BRANCHING ** depth * TOP < capacity:
            depth += 1
        top = -(-capacity // BRANCHING ** depth)  # ceil: the leaves are padded to top * BRANCHING ** depth
        # float64: sums over 1e6 priorities keep about 1e-10 relative precision.
        self.levels = [torch.zeros(top * BRANCHING ** (depth - d), dtype=torch.float64, device=device)
                       for d in range(depth + 1)]

    @property
    def leaves(self) -> torch.Tensor:
        return self.levels[0]

    @property
    def total(self) -> torch.Tensor:
        return self.levels[-1].sum()

    def sample(self, batch_size: int) -> torch.Tensor:
        """Draws leaf indices i with probability leaves[i] / total.

        u, uniform in [0, total), picks the top node whose slice of the top level's prefix sum holds
        it; then, at each level down, the child whose slice of its siblings' prefix sum holds what is
        left of u, which becomes the offset inside that child."""
        top = self.levels[-1]
        before = top.cumsum(0)
        u = torch.rand(batch_size, dtype=torch.float64, device=top.device).mul_(before[-1])
        before.sub_(top)  # what the nodes to the left hold
        node = torch.searchsorted(before, u, right=True).sub_(1)
        u = u.sub_(before[node]).unsqueeze_(1)
        for level in reversed(self.levels[:-1]):
            child_sums = level.view(-1, BRANCHING).index_select(0, node)  # (B, BRANCHING)
            before = child_sums.cumsum(1).sub_(child_sums)
            child = torch.searchsorted(before, u, right=True).sub_(1)
            if level is not self.leaves:  # the offset inside the child, for the next level down
                u.sub_(before.gather(1, child))
            node = child.view(-1).add_(node, alpha=BRANCHING)
        return node

    def update(self, index: torch.Tensor, priority: torch.Tensor):
        """Sets leaves[index] = priority and refreshes the sums above them.

        Duplicate indices in one call keep the largest of their priorities, whatever the order or
        the device (a max does not depend on the order of the writes)."""
        self.leaves.scatter_reduce_(0, index, priority.to(self.leaves.dtype), "amax", include_self=False)
        for lower, upper in zip(self.levels[:-1], self.levels[1:]):
            index = index.div(BRANCHING, rounding_mode="floor")
            upper.index_copy_(0, index, lower.view(-1, BRANCHING).index_select(0, index).sum(1))


class LAPBuffer:
    """Ring buffer of (state, action, next_state, reward, not_done), float32, preallocated on `device`.

    Actions are stored as given; the scripts pass them normalized to [-1, 1]."""

    def __init__(self, state_dim: int, action_dim: int, device, capacity: int = 1_000_000,
                 prioritized: bool = True):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.state_dim, self.action_dim = state_dim, action_dim
        self.device = torch.device(device)
        self.prioritized = prioritized
        self._allocate(capacity)

    def _allocate(self, capacity: int):
        self.capacity, self.ptr, self.size = capacity, 0, 0
        # One row per transition: [state | action | next_state | reward | not_done]; one copy per
        # add and one gather per sample, whatever the device.
        self.width = 2 * self.state_dim + self.action_dim + 2
        self.transitions = torch.zeros(capacity, self.width, dtype=torch.float32, device=self.device)
        self.split = [self.state_dim, self.action_dim, self.state_dim, 1, 1]
        self.ind = None  # indices of the last sample
        if self.prioritized:
            self.tree = SumTree(capacity, self.device)
            self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)

    def add(self, state, action, next_state, reward, done):
        row = np.concatenate([np.asarray(state, np.float32).ravel(), np.asarray(action, np.float32).ravel(),
                              np.asarray(next_state, np.float32).ravel(),
                              np.array([reward, 1.0 - float(done)], np.float32)])
        self.transitions[self.ptr].copy_(torch.from_numpy(row))
        if self.prioritized:
            self.tree.update(torch.full((1,), self.ptr, device=self.device), self.max_priority.view(1))
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int):
        """Returns float32 tensors (state, action, next_state, reward, not_done) of `batch_size` rows,
        drawn with replacement; reward and not_done have shape (batch_size, 1)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size > self.size:
            raise ValueError(f"batch size {batch_size} is larger than the {self.size} transitions stored")
        if self.prioritized:
            # The clamp only matters if rounding walked past the last stored leaf (odds ~1e-16).
            self.ind = self.tree.sample(batch_size).clamp_(max=self.size - 1)
        else:
            self.ind = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.transitions.index_select(0, self.ind).split(self.split, dim=1)

    def update_priority(self, priority: torch.Tensor):
        """Sets the priorities of the last sample; stays on the device (no host sync)."""
        priority = priority.detach().reshape(-1)
        self.tree.update(self.ind, priority)
        self.max_priority = torch.maximum(self.max_priority, priority.max())

    def reset_max_priority(self):
        self.max_priority = self.tree.leaves[:self.size].max()

    def save(self, path: str):
        """Writes the stored transitions and priorities to an .npz file (raw arrays, no pickling)."""
        arrays = {"transitions": self.transitions[:self.size].cpu().numpy(),
                  "counters": np.array([self.capacity, self.ptr, self.size])}
        if self.prioritized:
            arrays |= {"priorities": self.tree.leaves[:self.size].cpu().numpy(),
                       "max_priority": self.max_priority.cpu().numpy()}
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def restore(self, path: str):
        """Reads what `save` wrote: the buffer continues exactly where it was."""
        with np.load(path) as arrays:
            capacity, ptr, size = (int(x) for x in arrays["counters"])
            self._allocate(capacity)
            self.transitions[:size] = torch.from_numpy(arrays["transitions"]).to(self.device)
            self.ptr, self.size = ptr, size
            if self.prioritized:
                self.tree.update(torch.arange(size, device=self.device),
                                 torch.from_numpy(arrays["priorities"]).to(self.device))
                self.max_priority = torch.from_numpy(arrays["max_priority"]).to(self.device)

    def load(self, dataset: dict):
        """Fills the buffer from arrays with D4RL's keys (observations, actions, next_observations,
        rewards, terminals); the buffer grows when the dataset is larger than its capacity. Every
        transition starts with priority 1, as in the official TD7 code."""
        n = len(dataset["observations"])
        if n > self.capacity:
            self._allocate(n)
        columns = [dataset["observations"], dataset["actions"], dataset["next_observations"],
                   np.asarray(dataset["rewards"]).reshape(-1, 1),
                   1.0 - np.asarray(dataset["terminals"], np.float32).reshape(-1, 1)]
        rows = np.concatenate([np.asarray(c, np.float32).reshape(n, -1) for c in columns], axis=1)
        self.transitions[:n] = torch.from_numpy(rows).to(self.device)
        self.ptr, self.size = n % self.capacity, n
        if self.prioritized:
            self.tree.update(torch.arange(n, device=self.device), torch.ones(n, device=self.device))
            self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)
