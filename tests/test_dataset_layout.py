"""A generated dataset loads anywhere: per-split folders for Hugging Face's imagefolder, the dataset card, the
Parquet footer (params and command), 16-bit images at full depth, and a warning for an empty split."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from lowsim.generate import generate
from lowsim.generate.publish import EmptySplitWarning
from lowsim.imageio import read_image
from lowsim.manifest import COMMAND_KEY, PARAMS_KEY, read_manifest
from lowsim.params import V2_PARAM_NAMES
from lowsim.project import shipped_params
from transfer.data import load_manifest

datasets = pytest.importorskip("datasets", reason="`datasets` is in the dev extra (pip install -e '.[dev]')")
FRACTIONS = "train=0.6,val=0.2,test=0.2"  # 24 photos: every split gets some


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, clean_dir: Path):
    out = tmp_path_factory.mktemp("ds") / "kodak"
    return generate(src=clean_dir / "kodak24", n=24, params=shipped_params("lol"), out=out, size=32,
                    split_fractions=FRACTIONS, progress=False)


def test_imagefolder_loads_three_splits_with_images_and_every_parameter(dataset, tmp_path: Path) -> None:
    loaded = datasets.load_dataset("imagefolder", data_dir=str(dataset.out), cache_dir=str(tmp_path / "hf"))
    frame, _ = read_manifest(dataset.manifest)
    counts = frame.groupby("split").size().to_dict()
    assert set(loaded) == {"train", "validation", "test"}
    assert {name: len(loaded[name]) for name in loaded} == {"train": counts["train"],
                                                            "validation": counts["val"], "test": counts["test"]}
    item = loaded["validation"][0]
    assert item["clean"].size == (32, 32) and item["dark"].size == (32, 32)
    assert set(V2_PARAM_NAMES) <= set(loaded["test"].column_names)
    row = frame.set_index("key").loc[item["key"]]
    assert item["split"] == "val" and item["exposure"] == pytest.approx(row["exposure"])
    assert np.array_equal(np.asarray(item["dark"]), read_image(dataset.out / row["dark_file_name"]))


def test_transfer_and_the_manifest_read_the_split_folders(dataset) -> None:
    train = load_manifest(dataset.manifest, "train")
    assert train and all(item.dark.is_file() and item.dark.parent.parent.name == "train" for item in train)


def test_card_has_the_hub_header_and_what_made_it(dataset) -> None:
    text = (dataset.out / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    frame, _ = read_manifest(dataset.manifest)
    assert splits == {"train": int((frame.split == "train").sum()), "validation": int((frame.split == "val").sum()),
                      "test": int((frame.split == "test").sum())}
    features = {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}
    assert features["dark"] == features["clean"] == "image" and features["exposure"] == "float64"
    assert {"split": "validation", "path": "val/**"} in header["configs"][0]["data_files"]
    assert "lowsim generate --src" in text and "| exposure |" in text and "kodak24" in text


def test_footer_holds_the_full_params_and_the_command(dataset) -> None:
    for path in (dataset.manifest, dataset.out / "train" / "metadata.parquet"):
        meta = {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}
        params = json.loads(meta[PARAMS_KEY])
        assert params == json.loads(shipped_params("lol").read_text())
        assert params["schema_version"] == 2 and "cov" in params and "mean" in params
        assert meta[COMMAND_KEY].startswith("lowsim generate --src ") and "--n 24" in meta[COMMAND_KEY]


def test_sixteen_bit_images_read_at_full_depth(tmp_path: Path, clean_dir: Path) -> None:
    result = generate(src=clean_dir / "set5", n=3, params=shipped_params("lol"), out=tmp_path / "d16", size=32,
                      bit_depth=16, split_fractions="train=1", progress=False)
    name = result.rows[0]["dark_file_name"]
    via_cv2 = cv2.imread(str(result.out / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert via_cv2.dtype == np.uint16 and np.array_equal(via_cv2, read_image(result.out / name))
    # the loader the dataset card documents: undecoded, then OpenCV
    loaded = datasets.load_dataset("imagefolder", data_dir=str(result.out), cache_dir=str(tmp_path / "hf"))
    item = loaded["train"].cast_column("dark", datasets.Image(decode=False))[0]["dark"]
    data = item["bytes"] or Path(item["path"]).read_bytes()
    dark = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    key = loaded["train"][0]["key"]
    expected = read_image(result.out / next(r["dark_file_name"] for r in result.rows if r["key"] == key))
    assert dark.dtype == np.uint16 and np.array_equal(dark, expected)


def test_an_empty_split_is_warned_about(tmp_path: Path, clean_dir: Path) -> None:
    with pytest.warns(EmptySplitWarning, match="split 'val' is empty"):
        generate(src=clean_dir / "set5", n=2, params=shipped_params("lol"), out=tmp_path / "few", size=32,
                 progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptySplitWarning)  # a split asked to be empty is no surprise
        generate(src=clean_dir / "set5", n=2, params=shipped_params("lol"), out=tmp_path / "one", size=32,
                 split_fractions="train=1,val=0", progress=False)
    proc = subprocess.run([sys.executable, "-m", "lowsim", "generate", "--src", str(clean_dir / "set5"), "--n", "2",
                           "--size", "32", "--out", str(tmp_path / "cli")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "warning: split 'val' is empty" in proc.stderr, proc.stderr


def test_webdataset_shards_hold_every_sample_and_are_deterministic(dataset, tmp_path: Path) -> None:
    import tarfile

    from lowsim.webdataset import write_shards

    shards = write_shards(dataset.manifest, shard_size=5)
    frame, _ = read_manifest(dataset.manifest)
    assert {p.name for p in shards} == {f"{split}-{i:06d}.tar" for split, rows in frame.groupby("split")
                                        for i in range((len(rows) + 4) // 5)}
    members = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    assert len(members) == 3 * len(frame)
    row = frame.iloc[3]
    assert members[f"{row.key}.dark.png"] == (dataset.out / row.dark_file_name).read_bytes()
    assert json.loads(members[f"{row.key}.json"])["exposure"] == pytest.approx(row.exposure)
    before = {p: p.read_bytes() for p in shards}
    again = write_shards(dataset.manifest, shard_size=5)
    assert {p: p.read_bytes() for p in again} == before  # byte-identical
    loaded = datasets.load_dataset("imagefolder", data_dir=str(dataset.out), cache_dir=str(tmp_path / "hf"))
    assert set(loaded) == {"train", "validation", "test"}  # the shards do not disturb the image folders
    write_shards(dataset.manifest, shard_size=100)
    assert sorted(p.name for p in (dataset.out / "webdataset").iterdir()) == ["test-000000.tar", "train-000000.tar",
                                                                             "val-000000.tar"]  # stale ones gone
