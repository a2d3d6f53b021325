"""How close sampling and SSL training come to the machine: model FLOP/s over dense-matmul FLOP/s.

    .venv/bin/python benchmarks/bench_flops.py              # the small recipes' sizes (CPU here)
    .venv/bin/python benchmarks/bench_flops.py --tiny       # a dry pass in seconds
    .venv/bin/python benchmarks/bench_flops.py --levers     # + inference mode, channels_last, bf16
    .venv/bin/python benchmarks/bench_flops.py --sizes paper   # the papers' sizes (a GPU's job)

The peer, measured in the same run: a square fp32 matmul (``torch.mm``, 2 n^3 FLOPs) on the same
device and threads, the most a dense kernel gets from it. Each case's FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` over one real call (the sampling call of a
generator, the forward and backward of an SSL step), then the call is timed alone; the fraction is
(counted FLOPs / seconds) / matmul FLOP/s. Generators are built from configs/generator/ with
random weights (speed does not depend on them) and sampled through the family's own ``sample``,
as ``synmed sample`` calls it; the SSL steps are the suite's methods on the small recipes'
ResNet-18 (configs/papers/medcls/small_simclr.yaml, configs/papers/i-synmed/small.yaml).

``--sizes paper`` takes the papers' configs instead: the I-SynMed DDPM at 256 px
(configs/papers/i-synmed/ddpm.yaml), medcls' DCGAN and ACGAN at 224 px, DINO ViT-S/16 at 224 px with
its 6 local 96 px views (configs/papers/i-synmed/dino_vit_s16.yaml) and SimCLR ResNet-18 at 224 px
(configs/papers/medcls/simclr_resnet18.yaml). For the LoRA family it times one denoising call of a
UNet of Stable Diffusion 1.5's shape (random weights: none can be fetched here) on 512 px latents
with classifier-free guidance's doubled batch, the call that makes up sampling's cost (LoRA's
adapters add well under 1 % of its FLOPs).

Levers (``--levers``): the same call under ``torch.inference_mode`` rather than the family's
``no_grad``, with the weights in ``channels_last``, and under bf16 autocast; each prints its
speed-up over the plain call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.recipe_cost import count as counted  # noqa: E402
from suite.config import load_config  # noqa: E402
from suite.schema import SuiteConfig  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    config: Path
    overrides: tuple[str, ...]
    batch: int  # images per sampling call / per SSL step
    steps: int = 0  # sampler steps (generators)
    sampler: str = ""
    local_views: int = 0  # DINO's small crops per image (SSL steps)
    local_size: int = 0


GEN = REPO / "configs" / "generator"
PAPERS = REPO / "configs" / "papers"


def cases(sizes: str) -> tuple[list[Case], list[Case]]:
    """(generators, SSL steps) at ``sizes``: tiny (a dry pass), small (the small recipes') or
    paper (the papers' configs)."""
    if sizes == "paper":
        return paper_cases()
    tiny = sizes == "tiny"
    size, batch = (16, 4) if tiny else (32, 100)
    lucid = (
        ("model.dim=8", "model.dim_mults=[1,2]")
        if tiny
        else ("model.dim=16", "model.dim_mults=[1,2,4]")
    )
    generators = [
        Case("ddpm_lucidrains (i-synmed small)", GEN / "tiny_lucidrains.yaml",
             (f"model.image_size={size}", "model.timesteps=500", *lucid), batch, 2 if tiny else 10,
             "dpm-solver"),
        Case("ddpm_diffusers", GEN / "tiny_diffusers.yaml", (f"model.image_size={size}",), batch,
             2 if tiny else 10, "dpm-solver"),
        Case("dcgan", GEN / "tiny_dcgan.yaml",
             (f"model.image_size={size}",) + (() if tiny else ("model.ngf=16", "model.ndf=16")),
             batch if tiny else 512),
        Case("acgan", GEN / "tiny_acgan.yaml", (f"model.image_size={size}",), batch if tiny else 512),
    ]  # fmt: skip
    ssl_batch = 8 if tiny else 256
    ssl = [
        Case("simclr resnet18 (medcls small_simclr)", REPO / "configs/ssl/tiny_simclr.yaml",
             ("pretrain.backbone.arch=resnet18", f"pretrain.backbone.image_size={size}",
              "pretrain.backbone.stem=imagenet"), ssl_batch),
        Case("dino resnet18 (i-synmed small)", REPO / "configs/ssl/tiny_dino_vit.yaml",
             ("pretrain.backbone.arch=resnet18", f"pretrain.backbone.image_size={size}",
              "pretrain.backbone.stem=imagenet", "pretrain.method.n_local_views=0",
              "pretrain.method.head_output_dim=1024", "pretrain.method.head_batch_norm=true"),
             8 if tiny else 64),
    ]  # fmt: skip
    return generators, ssl


SD15_UNET = "sd15-unet"  # a Case.config that is no file: the LoRA family's UNet, built here


def paper_cases() -> tuple[list[Case], list[Case]]:
    generators = [
        Case("ddpm_lucidrains (i-synmed ddpm, 256 px)", PAPERS / "i-synmed/ddpm.yaml", (), 32, 2,
             "dpm-solver"),
        Case("dcgan (medcls, 224 px)", PAPERS / "medcls/dcgan_per_class.yaml", (), 512),
        Case("acgan (medcls, 224 px)", PAPERS / "medcls/acgan.yaml", (), 512),
        Case("sd15 UNet call (LoRA family, 512 px, CFG)", Path(SD15_UNET), (), 16),
    ]  # fmt: skip
    ssl = [
        Case("dino vit_small/16 (i-synmed, 224 + 6 x 96 px)", PAPERS / "i-synmed/dino_vit_s16.yaml",
             (), 32, local_views=6, local_size=96),
        Case("simclr resnet18 (medcls, 224 px)", PAPERS / "medcls/simclr_resnet18.yaml", (), 64),
    ]  # fmt: skip
    return generators, ssl


def sd15_unet_call(
    device: torch.device, batch: int
) -> tuple[torch.nn.Module, Callable[[], object]]:
    """One denoising call of a UNet2DConditionModel in SD 1.5's published shape (its
    unet/config.json: 4 latent channels, blocks 320/640/1280/1280, 2 layers per block, 8 heads,
    768-wide text states), on 64 x 64 latents (512 px) and 77 random text tokens."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
    ).to(device).eval()  # fmt: skip
    latents = torch.randn(batch, 4, 64, 64, device=device)
    text = torch.randn(batch, 77, 768, device=device)
    t = torch.full((batch,), 500, device=device)

    def call() -> object:
        with torch.no_grad():
            return unet(latents, t, encoder_hidden_states=text).sample

    return unet, call


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds per call: the best of ``repeats`` after one warm-up (the least disturbed run on a
    shared machine)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops(device: torch.device, n: int, repeats: int) -> float:
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    return 2 * n**3 / timed(lambda: torch.mm(a, b), device, repeats)


def sampling_call(case: Case, device: torch.device) -> tuple[torch.nn.Module, Callable[[], object]]:
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.families import build_generator

    if str(case.config) == SD15_UNET:
        return sd15_unet_call(device, case.batch)
    cfg = load_config(case.config, list(case.overrides), schema=SuiteConfig)
    gen = build_generator(cfg.model).to(device).eval()
    classes = getattr(cfg.model, "num_classes", 0) or 0
    conditions = None
    if classes:
        gen.bind_data([f"class{i}" for i in range(classes)], list(range(classes)))
        conditions = Conditions(labels=torch.arange(case.batch).remainder(classes).numpy())
    options = SampleOptions(sampler=case.sampler or gen.samplers[0], steps=case.steps or 1)
    return gen, lambda: gen.sample(range(case.batch), 0, conditions, options, device)


def ssl_step(case: Case, device: torch.device) -> tuple[torch.nn.Module, Callable[[], object]]:
    from suite.models.backbones import build_backbone
    from suite.ssl.method import Progress
    from suite.ssl.registry import method_class
    from suite.ssl.train import backbone_spec

    pc = load_config(case.config, list(case.overrides), schema=SuiteConfig).pretrain
    spec = backbone_spec(pc, pc.backbone.in_channels or 1)
    method = method_class(pc.method)(build_backbone(spec), spec, pc.method).to(device).train()
    optimizer = torch.optim.SGD(method.parameters(), lr=1e-3, momentum=0.9)
    size, channels = spec.image_size, spec.in_channels
    views = [torch.randn(case.batch, channels, size, size, device=device) for _ in range(2)]
    views += [
        torch.randn(case.batch, channels, case.local_size, case.local_size, device=device)
        for _ in range(case.local_views)
    ]
    progress = Progress(step=0, max_steps=1, steps_per_epoch=1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        method(views, progress).backward()
        optimizer.step()

    return method, step


def levers(
    module: torch.nn.Module, call: Callable[[], object], device: torch.device, *, training: bool
) -> dict:
    """Each lever's call, applied alone to the same module (inference mode for sampling only)."""

    def inference() -> object:
        with torch.inference_mode():
            return call()

    def bf16() -> object:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return call()

    out: dict[str, Callable[[], object]] = {"bf16 autocast": bf16}
    if not training:
        out["inference_mode"] = inference

    def with_channels_last() -> object:
        module.to(memory_format=torch.channels_last)
        try:
            return call()
        finally:
            module.to(memory_format=torch.contiguous_format)

    out["channels_last"] = with_channels_last
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        choices=("tiny", "small", "paper"),
        default="small",
        help="tiny: a dry pass in seconds; small: the small recipes'; paper: the papers' configs",
    )
    p.add_argument("--tiny", action="store_true", help="the same as --sizes tiny")
    p.add_argument("--levers", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    sizes = "tiny" if args.tiny else args.sizes
    device = torch.device(args.device)
    torch.manual_seed(0)
    peak = matmul_flops(device, 256 if sizes == "tiny" else (8192 if device.type == "cuda" else 2048),
                        args.repeats)  # fmt: skip
    print(f"device {device}, {torch.get_num_threads()} threads; dense fp32 matmul "
          f"{peak / 1e9:.1f} GFLOP/s (the peer)\n")  # fmt: skip
    print("| case | batch | GFLOP per call | s per call | GFLOP/s | fraction of matmul |")
    print("|---|---|---|---|---|---|")
    generators, ssl = cases(sizes)
    lever_rows: list[str] = []
    for case, build in [(c, sampling_call) for c in generators] + [(c, ssl_step) for c in ssl]:
        module, call = build(case, device)
        flops = counted(call)
        seconds = timed(call, device, args.repeats)
        print(f"| {case.name} | {case.batch} | {flops / 1e9:.3g} | {seconds:.3g} | "
              f"{flops / seconds / 1e9:.3g} | {flops / seconds / peak:.3f} |")  # fmt: skip
        if args.levers:
            for lever, fn in levers(module, call, device, training=build is ssl_step).items():
                try:
                    faster = seconds / timed(fn, device, args.repeats)
                except RuntimeError as err:  # a lever the device or model cannot take
                    lever_rows.append(f"| {case.name} | {lever} | n/a: {str(err)[:60]} |")
                    continue
                lever_rows.append(f"| {case.name} | {lever} | {faster:.2f}x |")
    if lever_rows:
        print("\n| case | lever | speed-up over the plain call |\n|---|---|---|")
        print("\n".join(lever_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
