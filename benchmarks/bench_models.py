"""Speed of every registered model, side by side: training steps and full-image inference on the CPU.

For each model at the same width: parameters, training images/s (batch of random sRGB patches, L1 loss, Adam,
channels_last as `transfer` trains), and the time to enhance one full image (LOL size, 600x400, padded to the
model's multiple). Rounds are interleaved (model A, B, ... then again) and each number is the best round, so
a burst of load from another process slows one round, not one model. Ratios are to the first model.

    .venv/bin/python benchmarks/bench_models.py                  # width 16, batch 16, 64^2 patches
    .venv/bin/python benchmarks/bench_models.py --models sid_unet,plain_cnn --rounds 3
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_train import cpu_busy_share  # noqa: E402

from transfer.infer import run_padded  # noqa: E402
from transfer.models import count_parameters, create_model, list_models  # noqa: E402


def train_images_per_s(model: torch.nn.Module, batch: int, patch: int, steps: int, warmup: int) -> float:
    """Images/s of `steps` optimizer steps on random patches, after `warmup` steps."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch, 3, patch, patch, generator=generator).contiguous(memory_format=torch.channels_last)
    targets = torch.rand(batch, 3, patch, patch, generator=generator).contiguous(memory_format=torch.channels_last)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = F.l1_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def inference_seconds(model: torch.nn.Module, height: int, width: int) -> float:
    """Seconds to enhance one height x width image (padded to the model's multiple, cropped back)."""
    model.eval()
    image = torch.rand(1, 3, height, width)
    with torch.inference_mode():
        run_padded(model, image)  # warm-up
        start = time.perf_counter()
        run_padded(model, image)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(["sid_unet"] + [m for m in list_models() if m != "sid_unet"]))
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image", default="400x600", help="HxW of the inference image (LOL: 400x600)")
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    height, width = (int(v) for v in args.image.lower().split("x"))
    torch.manual_seed(0)
    models = {m: create_model(m, width=args.width).to(memory_format=torch.channels_last) for m in names}
    speed: dict[str, float] = {m: 0.0 for m in names}
    infer: dict[str, float] = {m: float("inf") for m in names}
    busy = cpu_busy_share()
    for _ in range(args.rounds):
        for m in names:
            speed[m] = max(speed[m], train_images_per_s(models[m], args.batch, args.patch, args.steps, args.warmup))
            infer[m] = min(infer[m], inference_seconds(models[m], height, width))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, width "
          f"{args.width}, batch {args.batch}, {args.patch}² patches, best of {args.rounds} interleaved rounds; "
          f"CPU busy before start: {busy:.0%}\n")
    base = names[0]
    print(f"| model | parameters | train img/s | × {base} | inference {height}x{width} (s) | × {base} |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in names:
        print(f"| {m} | {count_parameters(models[m])[1]:,} | {speed[m]:.1f} | {speed[m] / speed[base]:.2f} | "
              f"{infer[m]:.3f} | {infer[m] / infer[base]:.2f} |")


if __name__ == "__main__":
    main()
