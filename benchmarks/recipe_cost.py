"""What each paper recipe's heavy stages cost in FLOPs, and the time that implies on one 8-GPU node.

FLOPs are counted, not guessed: ``torch.utils.flop_counter.FlopCounterMode`` over one training
micro-batch (forward and backward) or one sampling call, run on the meta device, so every tensor has
the recipe's real shape and nothing is allocated or computed. The generators and SSL methods are
the suite's own modules, built from the recipe files in configs/papers/. The Stable Diffusion
families need a local SD folder to build; their rows count diffusers' modules built from SD 1.5's
published configuration instead (UNet, VAE encoder, CLIP ViT-L/14 text encoder; LoRA adapters
add < 1 %). The PGGAN's WGAN-GP step is not counted: FlopCounterMode cannot follow the
``autograd.grad`` of its gradient penalty.

Time is an estimate: total FLOPs / (GPUs x sustained FLOP/s per GPU), with sustained = peak x
utilisation. The defaults (312 TFLOP/s, an A100's dense bf16 peak, at 35 %) are assumptions, to be
replaced by a measured utilisation (``--peak-tflops``, ``--utilization``). Step-based stages
(generators) run ``max_steps`` on every GPU with the per-GPU batch, so their time does not fall
with more GPUs; epoch-based ones (SSL) split a fixed number of images across the GPUs.

    python benchmarks/recipe_cost.py                 # every recipe's stages, 8 GPUs
    python benchmarks/recipe_cost.py --gpus 1 --utilization 0.4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from suite.config import load_config  # noqa: E402
from suite.schema import SuiteConfig  # noqa: E402

PAPERS = REPO / "configs" / "papers"


@dataclass(frozen=True)
class Stage:
    """One heavy stage: FLOPs per unit of work, and how many units the recipe does."""

    paper: str
    stage: str
    source: str  # the recipe file, or what the count is built from
    per_unit: Callable[[], float]  # FLOPs of one unit (a micro-batch, an image)
    units: float  # micro-batches per GPU (steps x grad_accum), or images in all
    per_gpu: bool  # True: every GPU does ``units`` (step-based); False: split over the GPUs
    note: str


def count(fn: Callable[[], None]) -> float:
    import torch.fx.experimental._config as fx_config

    counter = FlopCounterMode(display=False)
    # lightly's NT-Xent indexes with nonzero(), which has no shape on meta tensors without this
    with counter, fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        fn()
    return float(counter.get_total_flops())


def suite_config(path: Path, *overrides: str) -> SuiteConfig:
    return load_config(path, list(overrides), schema=SuiteConfig)


# -- the suite's generators ------------------------------------------------------------------------


def generator_step(path: Path, *overrides: str) -> Callable[[], float]:
    """FLOPs of one micro-batch of every objective (a GAN's generator and discriminator)."""

    def flops() -> float:
        from suite.generative.families import build_generator

        cfg = suite_config(path, *overrides)
        with torch.device("meta"):
            gen = build_generator(cfg.model)
        m = cfg.model
        b = cfg.train.batch_size
        batch = {"image": torch.empty(b, m.channels, m.image_size, m.image_size, device="meta")}
        if getattr(m, "num_classes", 0):
            batch["label"] = torch.zeros(b, dtype=torch.long, device="meta")
        # a GAN's step: a discriminator and a generator objective; else one per optimizer
        gan = hasattr(gen, "discriminator_loss")
        objectives = ("discriminator", "generator") if gan else gen.configure_optimizers(cfg.train)
        return sum(count(lambda o=o: gen.loss(batch, o).backward()) for o in objectives)

    return flops


def ddpm_image(path: Path, calls: int, *overrides: str) -> Callable[[], float]:
    """FLOPs of one image of a denoising-diffusion-pytorch DDPM: ``calls`` calls of its Unet."""

    def flops() -> float:
        from suite.generative.families import build_generator

        cfg = suite_config(path, *overrides)
        with torch.device("meta"):
            gen = build_generator(cfg.model)
        m = cfg.model
        x = torch.empty(1, m.channels, m.image_size, m.image_size, device="meta")
        t = torch.zeros(1, dtype=torch.long, device="meta")
        with torch.no_grad():
            return calls * count(lambda: gen.diffusion.model(x, t))

    return flops


# -- the suite's SSL methods -----------------------------------------------------------------------


def ssl_image(path: Path) -> Callable[[], float]:
    """FLOPs per training image: every view through student (forward and backward) and teacher."""

    def flops() -> float:
        from suite.models.backbones import build_backbone
        from suite.ssl.method import Progress
        from suite.ssl.registry import method_class
        from suite.ssl.train import backbone_spec

        cfg = suite_config(path)
        pc = cfg.pretrain
        spec = backbone_spec(pc, pc.backbone.in_channels or 3)
        with torch.device("meta"):
            method = method_class(pc.method)(build_backbone(spec), spec, pc.method)
        b = cfg.train.batch_size
        size, channels = spec.image_size, spec.in_channels
        views = [torch.empty(b, channels, size, size, device="meta") for _ in range(2)]
        local = getattr(pc.method, "n_local_views", 0)
        crop = getattr(pc.method, "local_crop_size", size)
        views += [torch.empty(b, channels, crop, crop, device="meta") for _ in range(local)]
        progress = Progress(step=0, max_steps=1, steps_per_epoch=1)
        return count(lambda: method(views, progress).backward()) / b

    return flops


# -- Stable Diffusion 1.5, from its published configuration -----------------------------------------

SD15_UNET = {"cross_attention_dim": 768, "sample_size": 64}  # else UNet2DConditionModel's defaults
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
}


def sd15_step(
    size: int, batch: int, *, controlnet: bool = False, text_encoder: bool = False
) -> Callable[[], float]:
    """FLOPs of one SD 1.5 micro-batch at ``size`` px: the VAE encodes the images, the frozen
    UNet runs forward and backward to its inputs (LoRA, DreamBooth-LoRA) or a ControlNet copy
    trains beside it; a trained text encoder adds its own forward and backward."""

    def flops() -> float:
        from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        with torch.device("meta"):
            unet = UNet2DConditionModel(**SD15_UNET).requires_grad_(False)
            vae = AutoencoderKL(**SD15_VAE).requires_grad_(False)
            text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12,
                                                projection_dim=768))  # fmt: skip
            net = ControlNetModel.from_unet(unet) if controlnet else None
        text.requires_grad_(text_encoder)
        image = torch.empty(batch, 3, size, size, device="meta")
        tokens = torch.zeros(batch, 77, dtype=torch.long, device="meta")
        t = torch.zeros(batch, dtype=torch.long, device="meta")

        def step() -> None:
            with torch.no_grad():
                latents = vae.encode(image).latent_dist.mean
            states = text(tokens)[0]
            noisy = latents.detach().requires_grad_(not controlnet)
            extra = {}
            if net is not None:
                hint = torch.empty(batch, 3, size, size, device="meta")
                down, mid = net(noisy, t, states, controlnet_cond=hint, return_dict=False)
                extra = {"down_block_additional_residuals": down,
                         "mid_block_additional_residual": mid}  # fmt: skip
            unet(noisy, t, states, **extra).sample.float().mean().backward()

        return count(step)

    return flops


def sd15_image(size: int, steps: int, *, guidance: bool = True) -> Callable[[], float]:
    """FLOPs of one SD 1.5 image: ``steps`` UNet calls (two with classifier-free guidance) and
    the VAE decoder once."""

    def flops() -> float:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        with torch.device("meta"):
            unet = UNet2DConditionModel(**SD15_UNET)
            vae = AutoencoderKL(**SD15_VAE)
        k = 2 if guidance else 1
        latent = torch.empty(k, 4, size // 8, size // 8, device="meta")
        states = torch.empty(k, 77, 768, device="meta")
        t = torch.zeros(k, dtype=torch.long, device="meta")
        with torch.no_grad():
            per_call = count(lambda: unet(latent, t, states))
            decode = count(lambda: vae.decode(latent[:1]))
        return steps * per_call + decode

    return flops


# -- the recipes -----------------------------------------------------------------------------------


def stages() -> list[Stage]:
    i, m, d, a, o = (PAPERS / p for p in ("i-synmed", "medcls", "diffboost",
                                           "aiding-diagnosis", "ort-thesis"))  # fmt: skip
    ddpm = i / "ddpm.yaml"
    ddpm_cfg = suite_config(ddpm)
    return [
        Stage(
            "000 i-synmed",
            "DDPM training",
            "i-synmed/ddpm.yaml",
            generator_step(ddpm, "model.flash_attn=false"),
            ddpm_cfg.train.max_steps * ddpm_cfg.train.grad_accum,
            True,
            "300k steps of batch 8 x 2 at 256 px",
        ),
        Stage(
            "000 i-synmed",
            "sampling 120k",
            "i-synmed/ddpm.yaml",
            ddpm_image(ddpm, 1000, "model.flash_attn=false"),
            120_000,
            False,
            "the seed's 1000-step ancestral sampler",
        ),
        Stage(
            "000 i-synmed",
            "DINO ViT-S/16 500 ep",
            "i-synmed/dino_vit_s16.yaml",
            ssl_image(i / "dino_vit_s16.yaml"),
            500 * 120_000,
            False,
            "2 x 224 + 6 x 96 px views, 120k images",
        ),
        Stage(
            "001 medcls",
            "DCGAN per class x 4",
            "medcls/dcgan_per_class.yaml",
            generator_step(
                m / "dcgan_per_class.yaml", "model.mode=unconditional", "model.num_classes=0"
            ),
            4 * 10_000,
            True,
            "one pair per class, 10k steps of batch 64 at 224 px each",
        ),
        Stage(
            "001 medcls",
            "ACGAN",
            "medcls/acgan.yaml",
            generator_step(m / "acgan.yaml"),
            10_000,
            True,
            "10k steps of batch 64 at 224 px",
        ),
        Stage(
            "001 medcls",
            "SimCLR ResNet-18 100 ep",
            "medcls/simclr_resnet18.yaml",
            ssl_image(m / "simclr_resnet18.yaml"),
            100 * 16_932,
            False,
            "2 x 224 px views, one variant: COVID-19 Radiography's 80 % train split (16,932)",
        ),
        Stage(
            "001 medcls",
            "DINO ViT-S/16 120 ep",
            "medcls/dino_vit_s16.yaml",
            ssl_image(m / "dino_vit_s16.yaml"),
            120 * 16_932,
            False,
            "2 x 224 + 8 x 96 px views, one variant",
        ),
        Stage(
            "002 diffboost",
            "ControlNet training",
            "SD 1.5 config + ControlNet",
            sd15_step(384, 32, controlnet=True),
            22_400,
            True,
            "22.4k steps of batch 32 at 384 px (diffboost/controlnet.yaml)",
        ),
        Stage(
            "002 diffboost",
            "sampling 50 / slice",
            "SD 1.5 config",
            sd15_image(384, 20, guidance=False),
            50 * 700,
            False,
            "20 DDIM calls, about 700 training slices (BUSI)",
        ),
        Stage(
            "003 aiding-diagnosis",
            "SD 1.5 LoRA",
            "SD 1.5 config",
            sd15_step(224, 24),
            2000 * 4,
            True,
            "2,000 updates of 24 x 4 at 224 px (sd15_lora_pathmnist.yaml)",
        ),
        Stage(
            "003 aiding-diagnosis",
            "sampling 900",
            "SD 1.5 config",
            sd15_image(224, 30),
            900,
            False,
            "30 calls with guidance 7.5",
        ),
        Stage(
            "004 ort-thesis",
            "DreamBooth x 2 clusters",
            "SD 1.5 config",
            sd15_step(512, 4, text_encoder=True),
            2 * 142,
            True,
            "142 steps of batch 4 at 512 px per kept cluster, text encoder trained",
        ),
        Stage(
            "004 ort-thesis",
            "sampling 140",
            "SD 1.5 config",
            sd15_image(512, 24),
            140,
            False,
            "24 calls with guidance",
        ),
    ]


def meta_over_real() -> float:
    """The meta-device count over the count on real tensors, for one ResNet-18 step (two 224 px
    images, forward and backward): the peer that says the meta counts are the real ones."""
    from torchvision.models import resnet18

    def step(device: str) -> float:
        with torch.device(device):
            net = resnet18(num_classes=10)
            x = torch.zeros(2, 3, 224, 224)
        return count(lambda: net(x).sum().backward())

    return step("meta") / step("cpu")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--peak-tflops", type=float, default=312.0, help="per GPU (A100 bf16 dense)")
    p.add_argument("--utilization", type=float, default=0.35, help="sustained / peak (assumed)")
    p.add_argument("--only", default="", help="papers whose name contains this")
    args = p.parse_args(argv)
    sustained = args.peak_tflops * 1e12 * args.utilization
    print(f"meta-device count / real-tensor count, ResNet-18 step: {meta_over_real():.4f}x\n")
    print(f"| paper | stage | FLOPs per unit | units | total PFLOP | hours on {args.gpus} GPU(s) "
          f"at {args.peak_tflops:g} x {args.utilization:g} TFLOP/s | counted on |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for s in stages():
        if args.only not in s.paper:
            continue
        per_unit = s.per_unit()
        total = per_unit * s.units * (args.gpus if s.per_gpu else 1)
        hours = total / (args.gpus * sustained) / 3600
        print(f"| {s.paper} | {s.stage} | {per_unit:.3g} | {s.units:.3g}"
              f"{' per GPU' if s.per_gpu else ''} | {total / 1e15:.3g} | {hours:.3g} | "
              f"{s.source}: {s.note} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
