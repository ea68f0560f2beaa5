"""The pieces of llm_surgeon.dist that need no second process: owners, sharding, traffic,
launch errors, and the sharded global threshold on ranks simulated by threads."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from llm_surgeon.dist import Communicator, Traffic, assign_owners, current, describe, init_from_env
from llm_surgeon.errors import ConfigError
from llm_surgeon.pruning import CandidateSet, global_threshold


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_owners_are_deterministic_and_balanced(size):
    gen = torch.Generator().manual_seed(size)
    costs = (torch.rand(40, generator=gen) ** 3 * 100).tolist()
    owners = assign_owners(costs, size)
    assert owners == assign_owners(costs, size)
    loads = [sum(c for c, o in zip(costs, owners, strict=True) if o == r) for r in range(size)]
    # Longest processing time first: within 4/3 of the optimum, which is at least the mean
    # and at least the largest item.
    bound = max(sum(costs) / size, max(costs))
    assert max(loads) <= 4 / 3 * bound + 1e-9
    assert set(owners) == set(range(size))


def test_owners_of_equal_items_alternate_and_size_must_be_positive():
    assert assign_owners([1.0] * 5, 2) == [0, 1, 0, 1, 0]
    assert assign_owners([3.0, 1.0, 1.0, 1.0], 2) == [0, 1, 1, 1]
    with pytest.raises(ValueError):
        assign_owners([1.0], 0)


def test_one_process_collectives_are_the_identity():
    comm = current()
    assert not comm.distributed and comm.is_main
    t = torch.randn(4, 4)
    assert comm.all_reduce_(t, symmetric=True) is t and comm.broadcast_(t, 0) is t
    assert comm.sum(3) == 3 and comm.max(2.5) == 2.5
    assert comm.gather_objects("x") == ["x"] and comm.broadcast_object(7) == 7
    assert comm.shard(t) is not None and torch.equal(comm.shard(t), t)
    assert comm.owners([1.0, 2.0]) == [0, 0]
    assert comm.traffic.bytes == {}


def test_shards_partition_the_windows():
    x = torch.arange(10)
    parts = [Communicator(r, 3).shard(x) for r in range(3)]
    assert torch.equal(torch.cat(parts), x) and [len(p) for p in parts] == [3, 3, 4]
    with pytest.raises(ValueError):
        Communicator(2, 2)


def test_traffic_since_counts_per_kind():
    traffic = Traffic()
    traffic.add("statistics", 2**20)
    before = traffic.snapshot()
    traffic.add("statistics", 2**21)
    traffic.add("weights", 2**19)
    since = traffic.since(before)
    assert since["mb"] == {"statistics": 2.0, "weights": 0.5}
    assert since["calls"] == {"statistics": 1, "weights": 1} and since["total_mb"] == 2.5


def test_launch_without_torchrun_variables_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="launch distributed runs with torchrun"):
        init_from_env()


def test_one_gpu_for_all_ranks_is_refused(monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="every rank needs its own"):
        init_from_env("cuda:1")


def test_a_lost_peer_is_named_as_such():
    text = describe(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:50330"))
    assert text.startswith("lost contact with another rank")
    assert describe(ValueError("bad")) == "ValueError: bad"


class _Board:
    """Where simulated ranks (threads) exchange values, in lock step."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size, timeout=30)
        self.slots: list[object] = [None] * size

    def exchange(self, rank: int, value: object) -> list[object]:
        self.barrier.wait()
        self.slots[rank] = value
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out


class ThreadComm(Communicator):
    """The scalar and object collectives of :class:`Communicator` among threads."""

    def __init__(self, board: _Board, rank: int, size: int) -> None:
        super().__init__(rank, size)
        self.board = board

    def sum(self, value, *, kind="threshold"):
        return type(value)(sum(self.board.exchange(self.rank, value)))

    def max(self, value, *, kind="threshold"):
        return max(self.board.exchange(self.rank, value))

    def gather_objects(self, obj, *, kind="other"):
        return self.board.exchange(self.rank, obj)


def _candidates(seed: int) -> list[CandidateSet]:
    """Row-col and element sets with ties, zero costs (dead candidates) and coarse costs."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(7):
        if i % 2:
            n = int(torch.randint(5, 40, (1,), generator=gen))
            costs = torch.randint(0, 6, (n,), generator=gen).double() / 5  # many ties, some zeros
            out.append(CandidateSet({"elements": costs}, lambda c, n=n: n - c["elements"]))
        else:
            r, c = (int(v) for v in torch.randint(3, 12, (2,), generator=gen))
            rows = torch.randint(0, 4, (r,), generator=gen).double()
            cols = torch.randint(0, 4, (c,), generator=gen).double()
            out.append(CandidateSet({"rows": rows, "cols": cols},
                                    lambda k, r=r, c=c: (r - k["rows"]) * (c - k["cols"])))
    return out


@pytest.mark.parametrize(("seed", "size"), list(itertools.product(range(4), [2, 3])))
def test_sharded_threshold_selects_what_one_process_selects(seed, size):
    candidates = _candidates(seed)
    total = sum(cs.remaining({g: 0 for g in cs.costs}) for cs in candidates)
    owners = assign_owners([float(sum(len(v) for v in cs.costs.values())) for cs in candidates], size)
    for fraction in (0.9, 0.6, 0.35):
        target = round(fraction * total)
        want, kept = global_threshold(candidates, target)
        board = _Board(size)
        results: list[object] = [None] * size

        def rank_main(rank: int, target: int = target) -> None:
            mine = [cs if owners[i] == rank else None for i, cs in enumerate(candidates)]
            results[rank] = global_threshold(mine, target, comm=ThreadComm(board, rank, size))

        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for rank, (selections, rank_kept) in enumerate(results):
            assert rank_kept == kept
            for i, selection in enumerate(selections):
                if owners[i] != rank:
                    assert selection is None
                    continue
                assert selection.keys() == want[i].keys()
                for group in selection:
                    assert torch.equal(selection[group], want[i][group]), (fraction, i, group)


def test_a_failure_goes_into_torchruns_error_file(tmp_path, monkeypatch):
    import json

    from llm_surgeon.dist import record_failure

    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    try:
        raise RuntimeError("the message torchrun shows")
    except RuntimeError as exc:
        record_failure(exc)
    assert "the message torchrun shows" in json.dumps(json.loads(path.read_text()))


def test_compare_under_torchrun_is_refused(monkeypatch, capsys):
    from llm_surgeon import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["compare", "smollm2-135m", "--methods", "magnitude", "--out", "unused"]) == 2
    assert "llm-surgeon: rank 1/2 error: compare runs" in capsys.readouterr().err


def test_resume_under_torchrun_is_refused_before_anything_starts(monkeypatch, tmp_path):
    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.runner import prune

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    config = RunConfig(model="tiny-llama", out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="resuming is not supported under torchrun"):
        prune(config, resume=True)
    assert not (tmp_path / "out").exists()


def test_what_distributed_runs_cannot_do_is_refused():
    import attrs

    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.ranks import check_distributed

    two = Communicator(0, 2)
    config = RunConfig(model="tiny-llama")
    check_distributed(config, two)  # nothing to refuse
    check_distributed(attrs.evolve(config, lora=attrs.evolve(config.lora, enabled=True)), Communicator())
    with pytest.raises(ConfigError, match="LoRA"):
        check_distributed(attrs.evolve(config, lora=attrs.evolve(config.lora, enabled=True)), two)
    tasks = attrs.evolve(config, downstream=attrs.evolve(config.downstream, tasks=["arc_easy"]))
    with pytest.raises(ConfigError, match="downstream tasks"):
        check_distributed(tasks, two)
    with pytest.raises(ConfigError, match="cannot be split over 2 ranks"):
        check_distributed(config, two, calibration=torch.zeros(1, 4, dtype=torch.long))


def test_structures_that_cannot_predict_other_ranks_masks_are_refused():
    from llm_surgeon.plugins.structures.dims import DimsStructure
    from llm_surgeon.plugins.structures.row_col import RowColStructure
    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.ranks import check_distributed

    two = Communicator(0, 2)
    check_distributed(RunConfig(model="tiny-llama", structure="row-col"), two, structure=RowColStructure())
    check_distributed(RunConfig(model="tiny-llama", structure="dims"), Communicator(), structure=DimsStructure())
    with pytest.raises(ConfigError, match="structure 'dims' is not supported in distributed runs"):
        check_distributed(RunConfig(model="tiny-llama", structure="dims"), two, structure=DimsStructure())
