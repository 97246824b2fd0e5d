"""Query sampling (official rules) and the resumable, sharded batch stream."""

from __future__ import annotations

import torch

from cotracker3_plugin.train.data import BatchStream, TrackingSample, guard_queries, sample_queries


def _gt(B=2, T=10, N=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    traj = torch.rand(B, T, N, 2, generator=g) * 100
    vis = torch.rand(B, T, N, generator=g) > 0.5
    vis[:, 7, :] = True  # every track visible somewhere
    return traj, vis


def test_random_queries_are_visible_ground_truth_points():
    traj, vis = _gt()
    q = sample_queries(traj, vis, "random", torch.Generator().manual_seed(1))
    t = q[..., 0].long()
    assert q.shape == (2, 40, 3)
    for b in range(2):
        for n in range(40):
            assert vis[b, t[b, n], n]
            assert torch.equal(q[b, n, 1:], traj[b, t[b, n], n])
    assert len(set(t.flatten().tolist())) > 3  # frames vary


def test_first_queries_quarter_random():
    traj, vis = _gt(seed=3)
    q = sample_queries(traj, vis, "first", torch.Generator().manual_seed(1))
    first = vis.float().argmax(1)
    t = q[..., 0].long()
    assert torch.equal(t[:, 10:], first[:, 10:])
    assert (t[:, :10] >= first[:, :10]).all() and (t[:, :10] != first[:, :10]).any()


def test_guard_replaces_bad_queries():
    traj, vis = _gt()
    q = sample_queries(traj, vis, "random")
    valid = torch.ones(vis.shape)
    q2, v2 = guard_queries(q, traj, valid)
    assert q2 is q and v2 is valid
    q[0, 0, 1] = 2000.0
    q2, v2 = guard_queries(q, traj, valid)
    assert (q2 == 1).all() and (v2 == 0).all()


class _Counter:
    """A source whose samples record their index and the first number of their generator."""

    def __len__(self) -> int:
        return 7

    def sample(self, index, rng):
        if index == 3:
            return None  # unusable
        z = torch.zeros(2, 1)
        return TrackingSample(torch.zeros(2, 3, 4, 4), torch.full((2, 1, 2), float(index)), z.bool(), z,
                              name=f"{index}:{rng.random():.6f}")


def test_stream_shards_resumes_and_skips():
    ranks = [BatchStream(_Counter(), 1, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = [[ranks[r].next_batch().names[0] for _ in range(6)] for r in range(2)]
    idx = [[int(n.split(":")[0]) for n in s] for s in seen]
    assert 3 not in idx[0] + idx[1]
    assert not set(seen[0]) & set(seen[1])
    # resume rank 1 from its state after 2 batches
    s = BatchStream(_Counter(), 1, seed=5, rank=1, world_size=2)
    s.next_batch(), s.next_batch()
    r = BatchStream(_Counter(), 1, seed=5, rank=1, world_size=2)
    r.load_state_dict(s.state_dict())
    assert [r.next_batch().names[0] for _ in range(4)] == seen[1][2:]
    # one epoch (7 positions) visits every index once per epoch
    one = BatchStream(_Counter(), 1, seed=9)
    names = [one.next_batch().names[0] for _ in range(6)]
    assert sorted(int(n.split(":")[0]) for n in names) == [0, 1, 2, 4, 5, 6]
    assert one.skipped == one.local_position - 6 and one.local_position in (6, 7)
