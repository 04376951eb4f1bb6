"""Two CPU processes under torchrun (DDP over gloo): both ranks hold the same weights, equal to one process; the
DDP wrapper passes a per-sample alpha through to models that take one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_transfer_fixtures import lol_tiny  # noqa: F401
from transfer.models import create_model


def transfer_args(pairs: Path, run_dir: Path) -> list[str]:
    return ["train", "--pairs", str(pairs), "--no-val-split", "--run-dir", str(run_dir), "--iters", "3",
            "--width", "4", "--patch", "32", "--batch", "4", "--quiet"]


@pytest.mark.timeout(180)
def test_torchrun_two_processes_agree_with_each_other_and_with_one(tmp_path: Path, lol_tiny: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "transfer",
           *transfer_args(lol_tiny, tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "config.json").read_text())["metrics"]
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    checksums = metrics["rank_weight_sha256"]  # gathered from each rank after the last step
    assert len(checksums) == 2 and checksums[0] == checksums[1]

    single = subprocess.run([sys.executable, "-m", "transfer", *transfer_args(lol_tiny, tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp, one = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors")), \
        load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    # same global batches, gradients averaged over the two halves: equal up to summation order
    worst = max(float((ddp[k] - one[k]).abs().max()) for k in one)
    torch.manual_seed(0)  # the seeded initial weights: training must have moved far more than `worst`
    init = create_model("sid_unet", width=4).state_dict()
    moved = max(float((one[k] - init[k]).abs().max()) for k in one)
    assert worst < 1e-5 and moved > 100 * worst, (worst, moved)


def test_ddp_wrapper_passes_the_alpha_keyword(tmp_path: Path) -> None:
    import torch.distributed as dist

    from transfer.models import takes_alpha

    torch.manual_seed(0)
    model = create_model("estimate_enhance", width=4).eval()
    x, alpha = torch.rand(2, 3, 16, 16), torch.tensor([0.25, 1.75])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        assert takes_alpha(wrapped)
        with torch.no_grad():
            assert torch.equal(wrapped(x, alpha=alpha), model(x, alpha=alpha))
            assert not torch.equal(wrapped(x, alpha=alpha), wrapped(x))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_torchrun_pretrain_on_a_manifest_with_per_row_alpha(tmp_path: Path) -> None:
    """`torchrun … transfer pretrain`: the README's recipe, with a batch-norm model that takes alpha per patch."""
    from test_transfer_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "synthetic", splits={"train": 4, "val": 1}, alphas=[0.2, 0.6, 1.0, 1.4, 0.8])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "transfer",
           "pretrain", "--manifest", str(manifest), "--model", "estimate_enhance", "--run-dir", str(tmp_path / "run"),
           "--iters", "3", "--width", "4", "--patch", "32", "--batch", "4", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = config["metrics"]
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    assert metrics["rank_weight_sha256"][0] == metrics["rank_weight_sha256"][1]
