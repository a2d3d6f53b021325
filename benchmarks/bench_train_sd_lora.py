"""LoRA training step of the suite's ``sd_lora`` family against the loop of diffusers'
``examples/text_to_image/train_text_to_image_lora.py`` on the same tiny Stable Diffusion.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_train_sd_lora.py

Same for both: the pipeline of ``synmed models tiny-sd`` (UNet, VAE, CLIP text encoder, SD 1.5's
scheduler config), LoRA rank 4 / alpha 4 with Gaussian init on ``to_k, to_q, to_v, to_out.0``
(the script's ``LoraConfig``), frozen VAE and text encoder, one prompt for every row, the same
shard set of pseudo chest X-rays (grey, fed to the VAE as three equal channels in [-1, 1]), batch,
AdamW (lr 1e-4, betas (0.9, 0.999), weight decay 1e-2, eps 1e-8: the script's defaults), grad-norm
clip 1.0, constant LR, no noise offset or SNR weighting, no AMP, no DataLoader workers (the
script's default), one torch thread. The suite runs ``GeneratorTrainer.fit`` (what ``synmed
train generator`` runs) on ``configs/generator/tiny_sd_lora.yaml`` with the printed overrides;
its EMA is put off (the script has none) and it logs every step (the script reads
``loss.item()`` for its progress bar and logs to TensorBoard every step, as the suite then does).

The diffusers side is the script's loop written out here: ``unet.add_adapter(LoraConfig(...))``,
``Accelerator.prepare``, then per step ``vae.encode(...).latent_dist.sample() * scaling_factor``,
noise, random timesteps, ``noise_scheduler.add_noise``, the text encoder on ``input_ids``
(tokenized in the dataset, as its ``preprocess_train``), MSE, ``accelerator.backward``,
``clip_grad_norm_``, ``optimizer.step()``, ``lr_scheduler.step()``, ``zero_grad()``. One change:
the script hands the optimizer ``filter(lambda p: p.requires_grad, unet.parameters())`` and later
clips that same, by then exhausted, iterator (so it clips nothing); here a list, so both loops clip.

Timing as ``bench_train_ddpm.py``: one clock read at the end of every step (after the suite's
``after_step``; after the script's per-step ``loss.item()``), images/s over steps
``warmup+1..steps``; each loop in its own subprocess, rounds alternating the order; medians.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import report  # benchmarks/report.py: a script's folder is on sys.path
from step_clock import (
    REPO,
    StepClock,
    print_result,
    pseudo_xray_shards,
    run_in_tmp,
    run_script,
    script_train_overrides,
    timed_generator_trainer,
    tiny_sd,
)

BASE_CONFIG = REPO / "configs" / "generator" / "tiny_sd_lora.yaml"
LOOPS = ("suite", "diffusers")
PROMPT = "a chest x-ray"
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # the script's
ADAMW = {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}  # the script's defaults


# --------------------------------------------------------------------------------------------------
# one loop (child process)


def suite_overrides(args: argparse.Namespace, root: Path, out_dir: Path) -> list[str]:
    """Overrides on ``tiny_sd_lora.yaml`` that make the suite's run the script's."""
    return [
        f"data.shards={root / 'shards'}",
        "data.split=train",
        f"run.out_dir={out_dir}",
        "run.name=bench",
        f"run.seed={args.seed}",
        f"model.base={root / 'tiny-sd'}",
        f"model.image_size={args.image_size}",
        "model.channels=1",
        "model.num_classes=0",
        f"model.prompt='{PROMPT}'",
        f"model.lora_rank={args.rank}",
        f"model.lora_alpha={args.rank}",
        "model.lora_init=gaussian",
        f"model.lora_targets=[{', '.join(LORA_TARGETS)}]",
        "model.noise_offset=0.0",
        "model.snr_gamma=0.0",
        f"model.adam_eps={ADAMW['eps']:.1e}",
    ] + script_train_overrides(args, ADAMW)


def run_suite(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    overrides = suite_overrides(args, args.data, out_dir)
    timed_generator_trainer(BASE_CONFIG, overrides, clock).fit()


def run_diffusers(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    """train_text_to_image_lora.py's training loop on the tiny pipeline and the same shards."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    from suite.data.dataset import ShardDataset
    from suite.data.transforms import to_float

    base = str(args.data / "tiny-sd")
    accelerator = Accelerator(
        gradient_accumulation_steps=1,
        mixed_precision="no",
        log_with="tensorboard",  # the script's default --report_to
        project_config=ProjectConfiguration(
            project_dir=str(out_dir), logging_dir=str(out_dir / "logs")
        ),
    )
    set_seed(args.seed)
    noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet_lora_config = LoraConfig(
        r=args.rank,
        lora_alpha=args.rank,
        init_lora_weights="gaussian",
        target_modules=LORA_TARGETS,
    )
    weight_dtype = torch.float32
    unet.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=weight_dtype)
    text_encoder.to(accelerator.device, dtype=weight_dtype)
    unet.add_adapter(unet_lora_config)
    lora_layers = [p for p in unet.parameters() if p.requires_grad]  # the script: filter(...)
    optimizer = torch.optim.AdamW(lora_layers, lr=args.lr, **ADAMW)

    shards = ShardDataset(args.data / "shards", split="train", transform=to_float)

    class TrainDataset(torch.utils.data.Dataset):
        """The shard rows as the script's ``preprocess_train`` yields them."""

        def __len__(self) -> int:
            return len(shards)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            image = shards[i]["image"] * 2 - 1  # the script's Normalize([0.5], [0.5])
            ids = tokenizer([PROMPT], max_length=tokenizer.model_max_length,
                            padding="max_length", truncation=True, return_tensors="pt").input_ids  # fmt: skip
            return {"pixel_values": image.expand(3, -1, -1), "input_ids": ids[0]}

    def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        pixel_values = pixel_values.to(memory_format=torch.contiguous_format).float()
        input_ids = torch.stack([example["input_ids"] for example in examples])
        return {"pixel_values": pixel_values, "input_ids": input_ids}

    train_dataloader = torch.utils.data.DataLoader(
        TrainDataset(), shuffle=True, collate_fn=collate_fn, batch_size=args.batch_size,
        num_workers=0,
    )  # fmt: skip
    lr_scheduler = get_scheduler(
        "constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=args.steps
    )
    unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        unet, optimizer, train_dataloader, lr_scheduler
    )
    accelerator.init_trackers("text2image-fine-tune", config={"rank": args.rank, "lr": args.lr})
    global_step = 0
    while global_step < args.steps:
        unet.train()
        train_loss = 0.0
        for batch in train_dataloader:
            with accelerator.accumulate(unet):
                latents = vae.encode(
                    batch["pixel_values"].to(dtype=weight_dtype)
                ).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                bsz = latents.shape[0]
                timesteps = torch.randint(
                    0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device
                ).long()
                noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
                encoder_hidden_states = text_encoder(batch["input_ids"], return_dict=False)[0]
                target = noise  # prediction_type "epsilon"
                model_pred = unet(noisy_latents, timesteps, encoder_hidden_states,
                                  return_dict=False)[0]  # fmt: skip
                loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
                avg_loss = accelerator.gather(loss.repeat(args.batch_size)).mean()
                train_loss += avg_loss.item()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(lora_layers, 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                accelerator.log({"train_loss": train_loss}, step=global_step)
                train_loss = 0.0
            logs = {"step_loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
            del logs  # the script's progress-bar postfix
            clock.tick()
            if global_step >= args.steps:
                break
    accelerator.end_training()


def child(args: argparse.Namespace) -> int:
    clock = StepClock(args.warmup, args.steps, args.cprofile)
    run = run_suite if args.run == "suite" else run_diffusers
    run_in_tmp(f"bench_train_sd_lora-{args.run}-", run, args, clock)
    return print_result(clock, args)


# --------------------------------------------------------------------------------------------------
# parent


def child_argv(loop: str, args: argparse.Namespace, root: Path, profile: bool) -> list[str]:
    names = ("image_size", "rank", "batch_size", "steps", "warmup", "lr", "seed", "log_every")
    argv = ["--run", loop, "--data", str(root), *report.forward(args, names)]
    return argv + (["--cprofile"] if profile else [])


def bench(args: argparse.Namespace, root: Path) -> None:
    print(
        f"tiny SD LoRA rank {args.rank}, 1x{args.image_size}x{args.image_size} pseudo X-rays, "
        f"batch {args.batch_size}, lr {args.lr}, {args.steps} steps ({args.warmup} warm-up not "
        f"timed), {args.threads} torch thread(s)"
    )
    shown = suite_overrides(args, Path("<root>"), Path("<tmp>"))
    report.print_start(BASE_CONFIG, shown)

    def one(loop: str, profile: bool) -> dict[str, Any]:
        return run_script(__file__, child_argv(loop, args, root, profile), args.threads)

    report.compare_train_loops(args, LOOPS, lambda loop, profile: one(loop, profile))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (alpha the same)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps, not timed")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both loops")
    parser.add_argument(
        "--log-every", type=int, default=1, help="the suite's train.log_every (the script: 1)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop; medians")
    report.add_loop_options(parser, LOOPS)
    args = report.parse_loop_args(parser, argv)
    if args.steps * args.batch_size > args.num_images:
        parser.error("need --steps x --batch-size <= --num-images (one epoch, no reshuffle)")
    if args.run is not None:
        return child(args)

    os.environ.setdefault("TQDM_DISABLE", "1")
    with report.bench_root("bench_train_sd_lora-", args.keep) as root:
        start = time.perf_counter()
        if (root / "shards" / "manifest.json").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
        else:
            pseudo_xray_shards(root / "shards", args.num_images, args.image_size, args.seed)
        tiny_sd(root, args.image_size)
        print(
            f"data: {args.num_images} pseudo-X-rays in one shard set and `synmed models tiny-sd` "
            f"({time.perf_counter() - start:.1f} s)\n"
        )
        bench(args, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
