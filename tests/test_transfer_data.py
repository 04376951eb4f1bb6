"""Training data: manifests, real pairs, --frac subsets, patches as a pure function of (seed, position)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lowsim.imageio import write_png
from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split
from test_transfer_fixtures import lol_tiny, make_lol, make_manifest, manifest_tiny  # noqa: F401
from lowsim.params import PARAM_NAMES
from transfer.data import (ALPHA_COLUMN, Decoded, PairItem, PairStore, PatchDataset, StepBatchSampler, collate_nhwc,
                           cut_patch, dark_to_float, decode_item, default_workers, load_manifest, load_pairs,
                           plan_patch, select_fraction, split_real_pairs, whole_image_view)
from transfer.errors import TransferError


def items(n: int) -> list[PairItem]:
    return [PairItem(f"n{i:03d}", Path(f"d{i}.png"), Path(f"b{i}.png")) for i in range(n)]


def test_manifest_ok_rows_by_split_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = make_manifest(tmp_path / "m", {"train": 3, "val": 2}, statuses=["ok", "error", "ok", "ok", "ok"])
    train, val = load_manifest(path, "train"), load_manifest(path, "val")
    assert [i.name for i in train] == ["train00", "train02"] and len(val) == 2
    assert train[0].dark == path.parent / "dark" / "train00.png" and train[0].dark.is_file()
    assert train[0].bright == path.parent / "clean" / "train00.png"


def test_manifest_paths_follow_the_recorded_dataset_dir(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    local = make_manifest(tmp_path / "out", {"train": 2})
    table = pq.read_table(local)
    moved = tmp_path / "manifests" / "m.parquet"  # as `lowsim generate` writes it: OUT relative to the manifest
    moved.parent.mkdir()
    pq.write_table(table.replace_schema_metadata({"lowsim.dataset_dir": "../out"}), moved)
    items = load_manifest(moved, "train")
    assert items[0].dark.resolve() == (tmp_path / "out" / "dark" / "train00.png").resolve()
    assert items[0].dark.is_file() and items[0].bright.is_file()


def test_manifest_errors(tmp_path: Path) -> None:
    none_ok = make_manifest(tmp_path / "a", {"train": 2}, statuses=["error", "error"])
    with pytest.raises(TransferError, match="no rows with status 'ok'"):
        load_manifest(none_ok, "train")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(TransferError, match="Parquet"):
        load_manifest(bad, "train")
    pd.DataFrame({"split": ["train"]}).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(TransferError, match="lacks column"):
        load_manifest(tmp_path / "cols.parquet", "train")
    with pytest.raises(TransferError, match="not found"):
        load_manifest(tmp_path / "missing.parquet", "train")


def test_real_split_follows_lowsim_splits() -> None:
    pool, val = split_real_pairs(items(50), "pool"), split_real_pairs(items(50), "val")
    assert len(pool) + len(val) == 50 and not {i.name for i in pool} & {i.name for i in val}
    assert all(assign_split(i.name, REAL_PAIR_FRACTIONS) == "val" for i in val)


def test_frac_subset_is_seeded_sized_and_checked() -> None:
    pool = items(40)
    a, b = select_fraction(pool, 0.1, seed=0), select_fraction(pool, 0.1, seed=0)
    assert a == b and len(a) == 4 and a == sorted(a, key=lambda i: i.name)
    assert select_fraction(pool, 0.1, seed=1) != a
    assert select_fraction(pool, 1.0, seed=0) == pool
    assert len(select_fraction(items(3), 0.2, seed=0)) == 1  # 0.6 rounds to one pair
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(TransferError, match=r"\(0, 1\]"):
            select_fraction(pool, bad, seed=0)
    with pytest.raises(TransferError, match="selects no pair"):
        select_fraction(items(10), 0.01, seed=0)


def test_plan_is_a_pure_function_of_seed_and_position() -> None:
    shapes = [(40, 50), (64, 64), (33, 90)]
    plans = [plan_patch(7, p, shapes, 32) for p in range(9)]
    assert plans == [plan_patch(7, p, shapes, 32) for p in range(9)]
    assert plans != [plan_patch(8, p, shapes, 32) for p in range(9)]
    for cycle in range(3):  # every image exactly once per pass
        assert sorted(p.index for p in plans[3 * cycle: 3 * cycle + 3]) == [0, 1, 2]
    for p in plans:
        height, width = shapes[p.index]
        assert 0 <= p.top <= height - 32 and 0 <= p.left <= width - 32


def test_ranks_split_each_global_batch_without_overlap() -> None:
    single = list(StepBatchSampler(2, 5, 8))
    ranks = [list(StepBatchSampler(2, 5, 8, rank=r, world=2)) for r in range(2)]
    assert single[0] == list(range(16, 24)) and len(single) == 3
    for step in range(3):
        assert ranks[0][step] + ranks[1][step] == single[step]
    with pytest.raises(TransferError, match="divisible"):
        StepBatchSampler(0, 1, 5, rank=0, world=2)


def test_patches_stay_aligned_through_flips_and_transposes() -> None:
    rng = np.random.default_rng(0)
    bright = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    pair = Decoded(bright // 4, bright, 1.0)
    for position in range(12):
        plan = plan_patch(3, position, [(40, 60)], 16)
        x, y = cut_patch(pair, plan, 16, 1)
        assert x.shape == y.shape == (16, 16, 3)
        assert np.array_equal(np.round(x * 255).astype(np.uint8), np.round(y * 255).astype(np.uint8) // 4)
    # packed raw: the target is twice the size; its 2x2 means stand in for the packed input here
    packed = rng.integers(0, 65536, (20, 30, 4), dtype=np.uint16)
    target = np.repeat(np.repeat(packed[..., :3], 2, axis=0), 2, axis=1)
    raw_pair = Decoded(packed, target, 1.0)
    for position in range(12):
        plan = plan_patch(5, position, [(20, 30)], 8)
        x, y = cut_patch(raw_pair, plan, 8, 2)
        assert y.shape == (16, 16, 3) and np.allclose(y[::2, ::2], x[..., :3])


def test_raw_input_is_amplified_and_clipped() -> None:
    dark = np.array([[[300, 30000, 65535, 0]]], dtype=np.uint16)
    out = dark_to_float(dark, 100.0)
    assert np.allclose(out, [[[300 * 100 / 65535, 1, 1, 0]]])


def test_batches_are_channels_last_and_cache_budget_is_respected(lol_tiny: Path) -> None:
    pairs = load_pairs(lol_tiny)
    cached = PairStore(pairs, "srgb", cache_bytes=10**9)
    uncached = PairStore(pairs, "srgb", cache_bytes=0)
    assert cached.fully_cached and not uncached.cache and uncached.dark_shapes == cached.dark_shapes
    assert default_workers(True) == 0 and default_workers(False, cores=2, local_world=1) == 1
    a = PatchDataset(cached, 32, 0, 1)
    b = PatchDataset(uncached, 32, 0, 1)
    x, y = collate_nhwc([a[i] for i in range(4)])
    x2, _ = collate_nhwc([b[i] for i in range(4)])
    assert x.shape == (4, 3, 32, 32) and y.shape == x.shape and np.array_equal(x.numpy(), x2.numpy())
    assert x.is_contiguous(memory_format=__import__("torch").channels_last)


def test_pair_of_different_sizes_is_refused(tmp_path: Path) -> None:
    make_lol(tmp_path, n=2)
    write_png(tmp_path / "low" / "p01.png", np.zeros((64, 80, 3), np.uint8))
    with pytest.raises(TransferError, match="p01.*96x64.*one size|p01.*80x64"):
        PairStore(load_pairs(tmp_path), "srgb", 10**9)


def test_image_smaller_than_patch_is_refused(lol_tiny: Path) -> None:
    store = PairStore(load_pairs(lol_tiny), "srgb", 10**9)
    with pytest.raises(TransferError, match="smaller than the training patch 128"):
        PatchDataset(store, 128, 0, 1)


def test_raw_pairs_need_a_ratio(tmp_path: Path) -> None:
    from rawfixtures import make_sid_tree

    make_sid_tree(tmp_path / "sid", n_scenes=1, height=32, width=48, test_scenes=0)
    pair = load_pairs(tmp_path / "sid")[0]
    decoded = decode_item(pair, "raw")
    assert decoded.dark.shape == (16, 24, 4) and decoded.bright.shape == (32, 48, 3)
    assert decoded.ratio == pair.ratio
    with pytest.raises(TransferError, match="no exposure ratio"):
        decode_item(PairItem(pair.name, pair.dark, pair.bright, None), "raw")


def test_default_workers_share_the_cores_among_local_processes(monkeypatch) -> None:
    assert default_workers(True, cores=16, local_world=1) == 0  # cached: cutting patches needs no worker
    assert default_workers(False, cores=16, local_world=1) == 2
    assert default_workers(False, cores=4, local_world=2) == 1
    assert default_workers(False, cores=2, local_world=2) == 0  # 2 ranks on 2 cores: decode in the rank itself
    assert default_workers(False, cores=1, local_world=1) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun sets it
    assert default_workers(False, cores=2) == 0 and default_workers(False, cores=16) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_workers(False, cores=16) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "nonsense")
    assert default_workers(False, cores=4) == 2


def test_manifest_rows_carry_their_illumination_alpha(tmp_path: Path) -> None:
    assert ALPHA_COLUMN in PARAM_NAMES  # the column lowsim generate writes
    path = make_manifest(tmp_path / "m", {"train": 3, "val": 1}, alphas=[0.25, float("nan"), 1.5, 0.75])
    train, val = load_manifest(path, "train"), load_manifest(path, "val")
    assert [i.alpha for i in train] == [0.25, None, 1.5] and val[0].alpha == 0.75
    assert all(i.alpha is None for i in load_manifest(make_manifest(tmp_path / "n", {"train": 1}), "train"))


def test_patches_carry_their_pair_alpha_through_the_collate(tmp_path: Path) -> None:
    alphas = [0.1, 0.2, 0.3, 0.4]
    items = load_manifest(make_manifest(tmp_path / "m", {"train": 4}, alphas=alphas), "train")
    store = PairStore(items, "srgb", 10**9)
    with_alpha = PatchDataset(store, 32, 7, 1, [i.alpha for i in items])
    plain = PatchDataset(store, 32, 7, 1)
    positions = list(range(10))
    x, y, alpha = collate_nhwc([with_alpha[p] for p in positions])
    expected = [alphas[plan_patch(7, p, store.dark_shapes, 32).index] for p in positions]
    assert alpha.dtype == torch.float32 and alpha.tolist() == pytest.approx(expected)
    assert len(set(expected)) > 1  # the batch really mixes pairs
    x2, y2 = collate_nhwc([plain[p] for p in positions])  # no alpha: two tensors, the same patches
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError, match="one alpha per pair"):
        PatchDataset(store, 32, 7, 1, [1.0])


def test_patches_carry_a_flipped_view_of_their_whole_image(tmp_path: Path) -> None:
    items = load_manifest(make_manifest(tmp_path / "m", {"train": 3}, height=64, width=96), "train")
    store = PairStore(items, "srgb", 10**9)
    with_view = PatchDataset(store, 32, 3, 1, view_size=16)
    plain = PatchDataset(store, 32, 3, 1)
    positions = list(range(12))
    x, y, views = collate_nhwc([with_view[p] for p in positions])
    x2, y2 = collate_nhwc([plain[p] for p in positions])
    assert torch.equal(x, x2) and torch.equal(y, y2) and views.shape == (12, 3, 16, 16)
    for i, p in enumerate(positions):  # each view is its pair's whole dark image, pooled, with the patch's flips
        plan = plan_patch(3, p, store.dark_shapes, 32)
        pair = store.get(plan.index)
        expected = whole_image_view(pair.dark, 1.0, 16)
        expected = expected[::-1] if plan.flip_v else expected
        expected = expected[:, ::-1] if plan.flip_h else expected
        expected = expected.transpose(1, 0, 2) if plan.transpose else expected
        assert np.array_equal(views[i].permute(1, 2, 0).numpy(), expected)
    assert np.allclose(whole_image_view(store.get(0).dark, 1.0, 16).mean((0, 1)),
                       dark_to_float(store.get(0).dark, 1.0).mean((0, 1)), atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        PatchDataset(store, 32, 3, 1, [1.0, 1.0, 1.0], view_size=16)


@pytest.mark.parametrize("shape", [(64, 96), (37, 53), (400, 600), (20, 20)])
def test_the_whole_image_view_pools_as_torch_does(shape: tuple[int, int]) -> None:
    from transfer.data import adaptive_average_pool

    img = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(img).permute(2, 0, 1), 16).permute(1, 2, 0)
    assert np.allclose(adaptive_average_pool(img, 16), expected.numpy(), atol=1e-6)
