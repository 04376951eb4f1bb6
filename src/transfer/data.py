"""Training data: synthetic pairs from a lowsim manifest, real pairs from a pairs folder, patches and batches.

Every batch is a pure function of (seed, step): the training stream is an endless sequence of positions;
position p belongs to "cycle" p // n (one pass over the n training images), whose image order is a seeded
permutation, and p's crop and flips come from its own Generator seeded with (seed, p). So a resumed run
sees exactly the batches an uninterrupted one would, whatever the number of loader workers or processes.

Decoded images are kept in RAM as stored (uint8 / uint16; packed raw as uint16) when they fit the cache
budget; cropping and flipping a cached patch costs microseconds, so input is never the bottleneck.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

import numpy as np
import torch

from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split
from transfer.errors import TransferError

MANIFEST_COLUMNS = ("split", "clean_file_name", "dark_file_name", "status")
# The alpha of seed 002's illumination model L = a*I^g + 1 - a (lowsim.params.PARAM_SPECS); models with an alpha
# input (estimate_enhance) are pretrained with each row's value as their restoration strength.
ALPHA_COLUMN = "illum_alpha"
RAW_SCALE = 65535.0  # packed raw floats in [0, 1] are cached as uint16 (finer than the 14-bit sensor)
_SUBSET_STREAM = 0x5EB5E7  # separate SeedSequence streams for the --frac subset and the patch plans
_ORDER_STREAM = 0x0DE4
_PATCH_STREAM = 0xC409
T = TypeVar("T")


@dataclass(frozen=True)
class PairItem:
    """One training/validation pair on disk; ratio multiplies the packed raw input (SID), else unused; alpha is
    a synthetic pair's illumination alpha (manifest column illum_alpha), None for real pairs."""

    name: str
    dark: Path
    bright: Path
    ratio: float | None = None
    alpha: float | None = None
    levels: tuple[float, float] | None = None  # (black, white) of a packed raw .npy dark frame (lowsim --output raw)


@dataclass
class Decoded:
    """A decoded pair: dark in the input representation (H, W, C), bright (H*s, W*s, 3), both as stored."""

    dark: np.ndarray
    bright: np.ndarray
    ratio: float = 1.0

    @property
    def nbytes(self) -> int:
        """Bytes held by both arrays."""
        return int(self.dark.nbytes + self.bright.nbytes)


# ------------------------------------------------------------------------------------------ finding data

def load_manifest(path: str | Path, split: str | None) -> list[PairItem]:
    """The ok rows of one split (None: every split) of a lowsim manifest (Parquet) as pairs.

    File names are relative to the dataset folder, which `lowsim generate` records in the Parquet metadata as
    `lowsim.dataset_dir` (relative to the manifest's folder); without it, to the manifest's own folder
    (OUT/metadata.parquet, or a hand-written manifest).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise TransferError("manifest not found", path)
    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a non-Parquet file
        raise TransferError(f"cannot read the manifest as Parquet ({type(err).__name__})", path) from None
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    frame = table.to_pandas()
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise TransferError(f"manifest lacks column(s) {', '.join(missing)}; expected a manifest written "
                            "by `lowsim generate`", path)
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        raise TransferError(f"manifest has no rows with status 'ok' ({len(frame)} rows in all); "
                            "nothing to train on", path)
    base = path.parent / metadata.get("lowsim.dataset_dir", ".")
    rows = ok if split is None else ok[ok["split"] == split]
    names = rows["key"].astype(str) if "key" in rows.columns else rows["dark_file_name"].astype(str)
    alphas = rows[ALPHA_COLUMN] if ALPHA_COLUMN in rows.columns else [None] * len(rows)
    raw = [_raw_fields(row) for row in rows.to_dict("records")]  # packed raw rows: their ratio and levels
    return [PairItem(name, _inside(base, dark, "dark", name), _inside(base, clean, "clean", name), ratio,
                     _optional_float(alpha), levels)
            for name, dark, clean, alpha, (ratio, levels)
            in zip(names, rows["dark_file_name"], rows["clean_file_name"], alphas, raw)]


def _inside(base: Path, relative: object, kind: str, name: str) -> Path:
    """A row's file below the dataset folder; a path that leads out of it (absolute, '..', a symlink) is refused."""
    from lowsim.safe_io import resolve_inside

    return resolve_inside(base, str(relative), f"{kind}_file_name of row {name}")


def _raw_fields(row: dict) -> tuple[float | None, tuple[float, float] | None]:
    """(exposure ratio, (black, white)) of a packed raw manifest row (a .npy dark frame), else (None, None)."""
    if not str(row["dark_file_name"]).endswith(".npy"):
        return None, None
    return _optional_float(row.get("exposure_ratio")), (float(row["adc_black"]), float(row["adc_white"]))


def _optional_float(value: object) -> float | None:
    """A finite manifest number as float; a missing one (None, NaN) as None."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if np.isfinite(number) else None


def load_pairs(root: str | Path, layout: str = "auto") -> list[PairItem]:
    """Real pairs under root in any layout lowsim reads, sorted by name."""
    from lowsim.pairs import find_pairs

    return [PairItem(p.name, p.dark, p.bright, p.ratio) for p in find_pairs(root, layout)]


def split_real_pairs(items: Sequence[PairItem], split: str) -> list[PairItem]:
    """The pairs that lowsim.splits assigns to `split` ('pool' trains, 'val' validates) by name hash."""
    if split not in REAL_PAIR_FRACTIONS:
        raise TransferError(f"unknown split {split!r}, expected one of {', '.join(REAL_PAIR_FRACTIONS)}")
    return [item for item in items if assign_split(item.name, REAL_PAIR_FRACTIONS) == split]


def split_fraction(items: Sequence[T], frac: float, seed: int) -> tuple[list[T], list[T]]:
    """A seeded subset of round(frac * n) items (frac in (0, 1]) and the rest, both kept in input order. The one
    subset selector: `--frac` in training and the experiment's fine-tuning subsets pick the same items for a seed."""
    if not (isinstance(frac, (int, float)) and 0.0 < frac <= 1.0):
        raise TransferError(f"--frac must be in (0, 1], got {frac!r}")
    count = int(np.floor(frac * len(items) + 0.5))
    if count == 0:
        raise TransferError(f"--frac {frac:g} of {len(items)} training pair(s) selects no pair; "
                            f"use at least {1 / max(len(items), 1):.3g}")
    if count == len(items):
        return list(items), []
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SUBSET_STREAM]))
    chosen = set(rng.choice(len(items), size=count, replace=False).tolist())
    return ([item for i, item in enumerate(items) if i in chosen],
            [item for i, item in enumerate(items) if i not in chosen])


def select_fraction(items: Sequence[T], frac: float, seed: int) -> list[T]:
    """The seeded subset of split_fraction: round(frac * n) items, kept in input (name) order."""
    return split_fraction(items, frac, seed)[0]


def items_sha256(items: Sequence[PairItem]) -> str:
    """A fingerprint of a pair list: names, file names and ratios (for run configs of real-pair runs)."""
    digest = hashlib.sha256()
    for item in items:
        line = f"{item.name}\t{item.dark.name}\t{item.bright.name}\t{item.ratio}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))  # a non-UTF-8 name hashes as its bytes
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ decoding

def decode_item(item: PairItem, input_kind: str) -> Decoded:
    """Read one pair in the model's input representation and check the two images line up."""
    from lowsim.imageio import read_bayer_packed, read_image
    from lowsim.raw.synthesize import read_packed

    bright = read_image(item.bright)
    if input_kind == "srgb":
        dark = read_image(item.dark)
        if dark.shape != bright.shape:
            raise TransferError(f"pair {item.name!r}: dark image is {_wxh(dark)} but the bright image "
                                f"{item.bright} is {_wxh(bright)}; a pair must have one size", item.dark)
        return Decoded(dark, bright, 1.0)
    if item.ratio is None:
        raise TransferError(f"pair {item.name!r} has no exposure ratio; packed raw input needs one "
                            "(SID layout, or a ratio column in a pairs CSV)", item.dark)
    packed = read_bayer_packed(item.dark) if item.levels is None else read_packed(item.dark, *item.levels)
    height, width = packed.shape[0] * 2, packed.shape[1] * 2
    if bright.shape[0] < height or bright.shape[1] < width or \
            bright.shape[0] > height + 1 or bright.shape[1] > width + 1:
        raise TransferError(f"pair {item.name!r}: the raw dark frame packs to {width}x{height} pixels but "
                            f"the bright image {item.bright} is {_wxh(bright)}; a pair must have one size",
                            item.dark)
    dark = np.round(packed * RAW_SCALE).astype(np.uint16)
    return Decoded(dark, np.ascontiguousarray(bright[:height, :width]), float(item.ratio))


def _wxh(img: np.ndarray) -> str:
    """'WxH' of an image array."""
    return f"{img.shape[1]}x{img.shape[0]}"


def dark_to_float(dark: np.ndarray, ratio: float) -> np.ndarray:
    """Stored dark pixels -> float32 network input; packed raw is amplified by the ratio and clipped (SID)."""
    if dark.dtype == np.uint8:
        return dark.astype(np.float32) * np.float32(1 / 255)
    x = dark.astype(np.float32) * np.float32(1 / 65535)
    if dark.shape[-1] == 4:
        return np.minimum(x * np.float32(ratio), np.float32(1.0))
    return x


def bright_to_float(bright: np.ndarray) -> np.ndarray:
    """Stored bright pixels -> float32 target in [0, 1]."""
    scale = 1 / 255 if bright.dtype == np.uint8 else 1 / 65535
    return bright.astype(np.float32) * np.float32(scale)


class DecodedStore(Generic[T]):
    """Items decoded once up front, so that an unreadable or mismatched one stops the run before training starts
    rather than in a loader worker hours later, and kept in RAM up to a byte budget (past it: decoded on each use).
    Subclasses say how to decode an item."""

    def __init__(self, items: Sequence[Any], cache_bytes: int, on_item: Callable[[int], None] | None = None) -> None:
        self.items = list(items)
        self.cache: dict[int, T] = {}
        used = 0
        for index, item in enumerate(self.items):
            decoded = self.decode(item)
            self.seen(decoded)
            if used + decoded.nbytes <= cache_bytes:
                self.cache[index] = decoded
                used += decoded.nbytes
            if on_item is not None:
                on_item(index)
        self.cached_bytes = used

    def decode(self, item: Any) -> T:
        """One item's decoded form."""
        raise NotImplementedError

    def seen(self, decoded: T) -> None:
        """What a subclass notes of each item as it is first decoded (default: nothing)."""

    @property
    def fully_cached(self) -> bool:
        """True when every item is held in RAM."""
        return len(self.cache) == len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int) -> T:
        """The decoded item, from the cache or decoded again."""
        cached = self.cache.get(index)
        return cached if cached is not None else self.decode(self.items[index])


class PairStore(DecodedStore[Decoded]):
    """Decoded pairs in the model's input representation, with each dark image's size."""

    def __init__(self, items: Sequence[PairItem], input_kind: str, cache_bytes: int,
                 on_item: Callable[[int], None] | None = None) -> None:
        self.input_kind = input_kind
        self.dark_shapes: list[tuple[int, int]] = []
        super().__init__(items, cache_bytes, on_item)

    def decode(self, item: PairItem) -> Decoded:
        """The pair read and checked (decode_item)."""
        return decode_item(item, self.input_kind)

    def seen(self, decoded: Decoded) -> None:
        """Record the dark image's size (patches are planned from it)."""
        self.dark_shapes.append(decoded.dark.shape[:2])

    def check_patch(self, patch: int) -> None:
        """Every dark image must be at least patch x patch (input pixels) to crop training patches."""
        for item, (height, width) in zip(self.items, self.dark_shapes):
            if height < patch or width < patch:
                unit = "packed raw pixels" if self.input_kind == "raw" else "pixels"
                raise TransferError(f"image {item.name!r} is {width}x{height} {unit}, smaller than the "
                                    f"training patch {patch}; use a smaller --patch", item.dark)


# ------------------------------------------------------------------------------------------ patches

@dataclass(frozen=True)
class PatchPlan:
    """Where and how one training patch is cut: image index, top-left corner, flips and transpose."""

    index: int
    top: int
    left: int
    flip_v: bool
    flip_h: bool
    transpose: bool


@lru_cache(maxsize=8)
def _cycle_order(seed: int, cycle: int, n_images: int) -> np.ndarray:
    """The image order of one pass over the training set: a seeded permutation."""
    return np.random.default_rng(np.random.SeedSequence([seed, _ORDER_STREAM, cycle])).permutation(n_images)


def plan_patch(seed: int, position: int, dark_shapes: Sequence[tuple[int, int]], patch: int) -> PatchPlan:
    """The patch at stream position `position`: a pure function of (seed, position, image sizes, patch)."""
    n_images = len(dark_shapes)
    index = int(_cycle_order(seed, position // n_images, n_images)[position % n_images])
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PATCH_STREAM, position]))
    height, width = dark_shapes[index]
    top = int(rng.integers(0, height - patch + 1))
    left = int(rng.integers(0, width - patch + 1))
    flip_v, flip_h, transpose = (bool(b) for b in rng.integers(0, 2, size=3))
    return PatchPlan(index, top, left, flip_v, flip_h, transpose)


def _augment(img: np.ndarray, plan: PatchPlan) -> np.ndarray:
    """Apply the plan's flips and transpose to an (H, W, C) array (views; copied by the caller)."""
    if plan.flip_v:
        img = img[::-1]
    if plan.flip_h:
        img = img[:, ::-1]
    if plan.transpose:
        img = img.transpose(1, 0, 2)
    return img


def cut_patch(pair: Decoded, plan: PatchPlan, patch: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The (input, target) float32 HWC patch pair for a plan; the target is `scale` times larger."""
    dark = pair.dark[plan.top: plan.top + patch, plan.left: plan.left + patch]
    top, left, size = plan.top * scale, plan.left * scale, patch * scale
    bright = pair.bright[top: top + size, left: left + size]
    return (np.ascontiguousarray(_augment(dark_to_float(dark, pair.ratio), plan)),
            np.ascontiguousarray(_augment(bright_to_float(bright), plan)))


def bright_codes(pair: Decoded, plan: PatchPlan, patch: int) -> np.ndarray:
    """The stored bright codes under the plan's patch (sRGB: the bright image has the dark image's size)."""
    return pair.bright[plan.top: plan.top + patch, plan.left: plan.left + patch]


# (input, target[, alpha or whole-image view])
PatchItem = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, float | np.ndarray]


def whole_image_view(dark: np.ndarray, ratio: float, size: int) -> np.ndarray:
    """The whole dark image as the network input, adaptive-average-pooled to size x size (HWC float32): the
    pooling a model applies to a whole image at inference (torch's adaptive_avg_pool2d bins)."""
    return adaptive_average_pool(dark_to_float(dark, ratio), size)


def _pool_bins(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """adaptive_avg_pool2d's bins along one axis: [floor(i·L/n), ceil((i+1)·L/n)) for i < n."""
    i = np.arange(size)
    return (i * length) // size, -((-(i + 1) * length) // size)


def adaptive_average_pool(img: np.ndarray, size: int) -> np.ndarray:
    """torch's adaptive average pooling of an HWC image to size x size, from an integral image (numpy: in a loader
    process a torch call costs ten times more when the cores are busy)."""
    integral = np.zeros((img.shape[0] + 1, img.shape[1] + 1, img.shape[2]))
    integral[1:, 1:] = img.cumsum(0, dtype=np.float64).cumsum(1)
    (r0, r1), (c0, c1) = _pool_bins(img.shape[0], size), _pool_bins(img.shape[1], size)
    total = (integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0])
    area = ((r1 - r0)[:, None] * (c1 - c0)[None, :])[..., None]
    return (total / area).astype(np.float32)


class PatchDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by stream position; item = (input, target) float32 HWC patches, plus the
    pair's alpha when `alphas` (one per pair in the store) is given, or the whole dark image pooled to
    `view_size` a side (with the patch's flips) when that is given. With `augment` (transfer.augment.NoiseAugment)
    some patches take a synthetic dark input made from their bright patch instead."""

    def __init__(self, store: PairStore, patch: int, seed: int, scale: int,
                 alphas: Sequence[float] | None = None, view_size: int | None = None, augment: Any = None) -> None:
        store.check_patch(patch)
        if alphas is not None and len(alphas) != len(store):
            raise ValueError(f"expected one alpha per pair ({len(store)}), got {len(alphas)}")
        if alphas is not None and view_size is not None:
            raise ValueError("a patch carries one model input: alphas or a whole-image view, not both")
        self.store, self.patch, self.seed, self.scale = store, patch, seed, scale
        self.alphas = None if alphas is None else [float(a) for a in alphas]
        self.view_size, self.augment = view_size, augment
        self.views: dict[int, np.ndarray] = {}  # per loader process: each image's view is pooled once

    def __len__(self) -> int:  # positions are unbounded; the sampler decides which ones are used
        return 2**62

    def __getitem__(self, position: int) -> PatchItem:
        plan = plan_patch(self.seed, position, self.store.dark_shapes, self.patch)
        pair = self.store.get(plan.index)
        made = None if self.augment is None else self.augment.sample(position, bright_codes(pair, plan, self.patch))
        if made is not None:
            return self._augmented_item(*made, plan.index)
        dark, bright = cut_patch(pair, plan, self.patch, self.scale)
        if self.view_size is not None:
            if plan.index not in self.views:
                self.views[plan.index] = whole_image_view(pair.dark, pair.ratio, self.view_size)
            return dark, bright, np.ascontiguousarray(_augment(self.views[plan.index], plan))
        if self.alphas is None:  # models without a per-sample input: no third element, no extra tensor
            return dark, bright
        return dark, bright, self.alphas[plan.index]

    def _augmented_item(self, dark: np.ndarray, bright: np.ndarray, index: int) -> PatchItem:
        """A synthetic patch's item: its view is the patch itself pooled (its dark exists for the patch alone)."""
        if self.view_size is not None:
            return dark, bright, adaptive_average_pool(dark, self.view_size)
        if self.alphas is None:
            return dark, bright
        return dark, bright, self.alphas[index]


def collate_nhwc(batch: Sequence[PatchItem]) -> tuple[torch.Tensor, ...]:
    """Stack HWC patches into NCHW tensors whose memory is NHWC, i.e. already channels_last; patches that
    carry an alpha add an (N,) float32 tensor of them, patches that carry a whole-image view an NCHW one."""
    inputs = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2)
    targets = torch.from_numpy(np.stack([b[1] for b in batch])).permute(0, 3, 1, 2)
    if len(batch[0]) == 2:
        return inputs, targets
    if isinstance(batch[0][2], np.ndarray):
        return inputs, targets, torch.from_numpy(np.stack([b[2] for b in batch])).permute(0, 3, 1, 2)
    return inputs, targets, torch.tensor([b[2] for b in batch], dtype=torch.float32)  # type: ignore[misc]


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's positions for steps start+1..end: step s covers global positions
    [(s-1)*B, s*B) and rank r takes its contiguous share of B/world."""

    def __init__(self, start_step: int, end_step: int, global_batch: int, rank: int = 0,
                 world: int = 1) -> None:
        if global_batch % world:
            raise TransferError(f"--batch {global_batch} must be divisible by the number of processes {world}")
        self.start, self.end, self.batch, self.rank, self.world = start_step, end_step, global_batch, rank, world

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch // self.world
        for step in range(self.start + 1, self.end + 1):
            first = (step - 1) * self.batch + self.rank * per_rank
            yield list(range(first, first + per_rank))


def local_world_size() -> int:
    """Training processes on this machine: torchrun's LOCAL_WORLD_SIZE, 1 when run plainly."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_workers(fully_cached: bool, cores: int | None = None, local_world: int | None = None) -> int:
    """Loader worker processes per training process: none when everything is cached (cutting a patch costs
    microseconds and a worker would only compete with the convolutions for the cores), else up to 2 to overlap
    decoding, keeping one of this process's share of the cores (cores / processes on this machine) for
    compute; so 2 processes on 2 cores decode in the main process instead of starting 4 workers."""
    if fully_cached:
        return 0
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = cores // (local_world or local_world_size())
    return max(0, min(2, share - 1))


def make_loader(dataset: PatchDataset, sampler: StepBatchSampler, workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over the step sampler; workers prefetch a couple of batches each."""
    from transfer.interrupt import ignore_sigint

    extra = {"prefetch_factor": 4, "persistent_workers": False, "worker_init_fn": ignore_sigint} if workers > 0 \
        else {}
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       collate_fn=collate_nhwc, **extra)


def check_disjoint(train: Sequence[PairItem], val: Sequence[PairItem]) -> None:
    """Validation pairs must never be trained on: refuse a dark file that is in both lists."""
    train_files = {item.dark.resolve() for item in train}
    shared = sorted(item.name for item in val if item.dark.resolve() in train_files)
    if shared:
        raise TransferError(f"{len(shared)} validation pair(s) are also training pairs "
                            f"({', '.join(shared[:5])}); validation pairs are never trained on")

