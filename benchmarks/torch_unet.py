r"""A PyTorch peer of the library's U-Net training step, for a side-by-side throughput figure.

The same network as `eqx_impl.models.UNet` (same widths, residual blocks, attention levels,
group norms, sinusoidal λ-embedding, nearest-neighbour upsampling, stride-2 downsampling)
and a comparable step: $z = \alpha x + \sigma\epsilon$ at stratified λ, the weighted ε-MSE,
backward, gradient clipping, AdamW and an EMA of the weights. Written the way a PyTorch user
would run it fast: bf16 autocast, channels-last memory format, `torch.compile`, fused AdamW.

torch is an optional benchmark dependency: the library and the tests never import it.

    python -m benchmarks.torch_unet --config configs/cifar10.yaml --batch 128
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn


def sinusoidal(logsnr: torch.Tensor, num_features: int, min_period=1.0, max_period=200.0) -> torch.Tensor:
    periods = torch.tensor(np.geomspace(min_period, max_period, num_features // 2), device=logsnr.device)
    phase = logsnr[:, None].float() * (2 * math.pi / periods.float())
    return torch.cat([phase.sin(), phase.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, embed_dim, groups, dropout):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.embed = nn.Linear(embed_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c, heads, groups):
        super().__init__()
        self.norm, self.qkv, self.out, self.heads = (
            nn.GroupNorm(groups, c),
            nn.Conv2d(c, 3 * c, 1),
            nn.Conv2d(c, c, 1),
            heads,
        )

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(
        self,
        in_channels,
        channels,
        num_res_blocks,
        attention_levels=(),
        mid_attention=True,
        num_heads=1,
        groups=8,
        dropout=0.0,
        **_unused,
    ):
        super().__init__()
        embed_dim, self.num_features = 4 * channels[0], channels[0]
        self.embed = nn.Sequential(nn.Linear(self.num_features, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down, skips, width = nn.ModuleList(), [channels[0]], channels[0]
        for level, c in enumerate(channels):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(width, c, embed_dim, groups, dropout))
                if level in attention_levels:
                    self.down.append(Attention(c, num_heads, groups))
                width = c
                skips.append(width)
            if level < len(channels) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(width)
        self.mid = nn.ModuleList(
            [ResBlock(width, width, embed_dim, groups, dropout)]
            + ([Attention(width, num_heads, groups)] if mid_attention else [])
            + [ResBlock(width, width, embed_dim, groups, dropout)]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            c = channels[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(width + skips.pop(), c, embed_dim, groups, dropout))
                if level in attention_levels:
                    self.up.append(Attention(c, num_heads, groups))
                width = c
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out, self.conv_out = (
            nn.GroupNorm(groups, channels[0]),
            nn.Conv2d(channels[0], in_channels, 3, padding=1),
        )

    def forward(self, z, logsnr):
        emb = self.embed(sinusoidal(logsnr, self.num_features))
        h = self.conv_in(z)
        skips = [h]
        for layer in self.down:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            else:
                h = layer(h)
            if not isinstance(layer, Attention):
                skips.append(h)
            else:
                skips[-1] = h
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(config_path: str, batch: int | None, steps: int = 20, warmup: int = 5, compile: bool = True) -> dict:
    """Images/s of the training step on the first CUDA device (or the CPU)."""
    config = yaml.safe_load(open(config_path))
    args = config["model"]["args"]
    batch = batch or config["train"]["batch_size"]
    shape = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "mnist": (1, 28, 28)}[config["data"]["name"]]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = UNet(shape[0], **{**args, "attention_levels": tuple(args.get("attention_levels", ()))})
    model = model.to(device, memory_format=torch.channels_last)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0, fused=device == "cuda")
    lo, hi = config["objective"]["logsnr_min"], config["objective"]["logsnr_max"]

    def step(x):
        u = (torch.rand((), device=device) + torch.arange(batch, device=device) / batch) % 1.0
        logsnr = lo + (hi - lo) * u
        alpha, sigma = torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
        eps = torch.randn_like(x)
        z = (alpha[:, None, None, None] * x + sigma[:, None, None, None] * eps).contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast(device, dtype=torch.bfloat16):
            pred = model(z, logsnr)
        weight = torch.sigmoid(2.0 - logsnr)  # Sigmoid(2), as in the library's step
        loss = 0.5 * (weight * ((pred.float() - eps) ** 2).flatten(1).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, list(model.parameters()), 1 - 0.9999)
        return loss

    compile_s = 0.0
    if compile:
        step = torch.compile(step)
    x = torch.randn((batch, *shape), device=device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(x)
    if device == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step(x)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    seconds = float(np.median(times))
    return {
        "config": config_path,
        "framework": f"torch {torch.__version__}",
        "device": str(torch.cuda.get_device_name() if device == "cuda" else "cpu"),
        "params": count_params(model),
        "batch": batch,
        "seconds_per_step": seconds,
        "images_per_second": batch / seconds,
        "warmup_and_compile_seconds": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cifar10.yaml")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = measure(args.config, args.batch, args.steps, compile=not args.no_compile)
    print(
        f"torch peer {result['config']}: U-Net {result['params']:,} parameters, batch {result['batch']} on "
        f"{result['device']}: {1e3 * result['seconds_per_step']:.2f} ms/step, {result['images_per_second']:,.0f} images/s "
        f"(warm-up incl. compile {result['warmup_and_compile_seconds']:.0f} s)",
        flush=True,
    )
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
