"""pdr.data's loaders: process shards that cover a split exactly, and the normalisation a loader exposes."""
import numpy as np
import torch

from pdr.data import Normalisation, build_eval_loader, build_train_loader
from pdr.registry import DATASETS


def fields(split="val", **kwargs):
    return DATASETS.build("advected_fields", split=split, in_frames=2, out_frames=2, num_train=12, num_val=7,
                          **kwargs)


class Standardised(torch.utils.data.Dataset):
    """Per-channel standardised frames, as WeatherBench's variables are (three channels, two variables)."""

    mean = np.array([280.0, 5.0, -1.0])
    std = np.array([10.0, 2.0, 0.5])
    spatial_norm = True
    channel_names = ["t2m", "uv10"]

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.full((2, 3, 4, 4), float(i)), torch.full((1, 3, 4, 4), float(i))


def test_eval_shards_cover_the_split_once_and_in_order():
    ds = fields()
    targets = {i: ds[i][1] for i in range(len(ds))}
    seen = []
    for rank in range(3):
        loader = build_eval_loader(ds, batch_size=2, rank=rank, world_size=3)
        shard = [y for _, y in loader]
        expected = [targets[i] for i in range(rank, len(ds), 3)]
        assert torch.equal(torch.cat(shard), torch.stack(expected))
        seen += list(range(rank, len(ds), 3))
    assert sorted(seen) == list(range(len(ds)))


def test_train_shares_of_two_processes_make_the_batches_of_one():
    ds = fields("train")
    one = build_train_loader(ds, batch_size=4, seed=3)
    two = [build_train_loader(ds, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    for loader in (one, *two):
        loader.set_epoch(1)
    whole = [y for _, y in one]
    halves = [[y for _, y in loader] for loader in two]
    assert len(whole) == 3  # 12 sequences, batches of 4
    for b, batch in enumerate(whole):
        assert torch.equal(batch, torch.cat([halves[0][b], halves[1][b]]))
    one.set_epoch(1, start_batch=2)  # a run resumed mid-epoch reads the rest of the same order
    assert [torch.equal(y, whole[2]) for _, y in one] == [True]
    one.set_epoch(2)
    assert not all(torch.equal(a, b) for a, b in zip((y for _, y in one), whole))


def test_a_loader_says_how_its_frames_are_normalised_even_when_sharded():
    ds = Standardised()
    for world_size in (1, 2):
        loader = build_eval_loader(ds, batch_size=2, rank=world_size - 1, world_size=world_size)
        norm = loader.normalisation
        assert norm.spatial_norm and list(norm.channel_names) == ["t2m", "uv10"]
        assert np.array_equal(norm.mean, ds.mean) and np.array_equal(norm.std, ds.std)
        assert norm.metric_options() == {"mean": ds.mean, "std": ds.std, "spatial_norm": True,
                                         "channel_names": ["t2m", "uv10"]}
    mean, std = Normalisation.of(ds).plain_stats()
    assert mean == [280.0, 5.0, -1.0] and std == [10.0, 2.0, 0.5] and all(type(v) is float for v in mean + std)
    assert Normalisation(mean=0.5, std=None).plain_stats() == (0.5, None)
    unnormalised = build_eval_loader(fields(), batch_size=2).normalisation
    assert unnormalised == Normalisation()  # advected_fields' frames are already in the data's units
