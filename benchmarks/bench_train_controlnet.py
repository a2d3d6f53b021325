"""ControlNet training step of the suite's ``controlnet`` family against the loop of diffusers'
``examples/controlnet/train_controlnet.py`` on the same tiny Stable Diffusion.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_train_controlnet.py

Same for both: the pipeline of ``synmed models tiny-sd`` (UNet, VAE, CLIP text encoder, SD 1.5's
scheduler config), a ControlNet ``ControlNetModel.from_unet(unet, ...)`` with a one-channel hint
embedded by (16, 32) channels (the tiny VAE downsamples 2x; the script's default embedding
downsamples 8x and reads RGB hints, so both loops build the same smaller one), frozen UNet, VAE
and text encoder, one prompt for every row, the same shard set of pseudo chest X-rays with masks
(grey, fed to the VAE as three equal channels in [-1, 1]) and its edge maps of ``synmed data
edges`` (hints in [0, 1], the script's ``ToTensor`` without ``Normalize``), batch, AdamW (lr 5e-6,
betas (0.9, 0.999), weight decay 1e-2, eps 1e-8: the script's defaults), grad-norm clip 1.0,
constant LR, conditioning scale 1, no AMP, no DataLoader workers (the script's default), one
torch thread. The suite runs ``GeneratorTrainer.fit`` (what ``synmed train generator`` runs) on
``configs/generator/tiny_controlnet.yaml`` with the printed overrides; its EMA is put off (the
script has none) and it logs every step (the script reads ``loss.item()`` for its progress bar
and logs to TensorBoard every step, as the suite then does).

The diffusers side is the script's loop written out here: ``ControlNetModel.from_unet``, the base
``requires_grad_(False)``, ``controlnet.train()``, ``Accelerator.prepare`` of the ControlNet,
optimizer, loader and scheduler, then per step ``vae.encode(...).latent_dist.sample() *
scaling_factor``, noise, random timesteps, ``noise_scheduler.add_noise``, the text encoder on
``input_ids`` (tokenized in the dataset, as its ``preprocess_train``), ``controlnet(...)`` and its
residuals into ``unet(...)``, MSE on epsilon (v for a v-prediction scheduler),
``accelerator.backward``, ``clip_grad_norm_``, ``optimizer.step()``, ``lr_scheduler.step()``,
``zero_grad(set_to_none=False)`` (the script's default ``--set_grads_to_none`` off), and its
``accelerator.log`` of loss and LR.

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

import numpy as np
import report  # benchmarks/report.py: a script's folder is on sys.path
from bench_shards import pseudo_xray
from step_clock import (
    REPO,
    StepClock,
    print_result,
    run_in_tmp,
    run_script,
    script_train_overrides,
    timed_generator_trainer,
    tiny_sd,
)

BASE_CONFIG = REPO / "configs" / "generator" / "tiny_controlnet.yaml"
LOOPS = ("suite", "diffusers")
PROMPT = "a chest x-ray"
EMBEDDING = (16, 32)  # the hint embedding's channels: two levels, as the tiny VAE's 2x
ADAMW = {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}  # the script's defaults
WARMUP_STEPS = 500  # the script's --lr_warmup_steps (the constant schedule ignores it)


def pseudo_xray_pairs(root: Path, n: int, size: int, seed: int) -> None:
    """``n`` pseudo X-rays with masks (the darker half of each image) in ``root/shards`` and
    their edge maps in ``root/edges``."""
    from suite.data.edges import write_edge_set
    from suite.data.writer import ShardSetWriter

    rng = np.random.default_rng(seed)
    out = root / "shards"
    out.mkdir(parents=True)
    attrs = {"class_names": [], "label_kind": "none", "source": "benchmarks"}
    writer = ShardSetWriter(out, attrs, shard_size=n)
    for i in range(n):
        image = pseudo_xray(rng, size, int(rng.integers(0, 4)))
        mask = (image < np.median(image)).astype(np.uint8)
        writer.add({"images": image[None], "masks": mask[None], "index": i, "split": 0})
    writer.close()
    write_edge_set(out, root / "edges", progress=False)


# --------------------------------------------------------------------------------------------------
# one loop (child process)


def suite_overrides(args: argparse.Namespace, root: Path, out_dir: Path) -> list[str]:
    """Overrides on ``tiny_controlnet.yaml`` that make the suite's run the script's."""
    return [
        f"data.shards={root / 'shards'}",
        "data.split=train",
        f"run.out_dir={out_dir}",
        "run.name=bench",
        f"run.seed={args.seed}",
        f"model.base={root / 'tiny-sd'}",
        f"model.hints={root / 'edges'}",
        f"model.image_size={args.image_size}",
        "model.channels=1",
        "model.num_classes=0",
        f"model.prompt='{PROMPT}'",
        "model.conditioning_channels=1",
        f"model.conditioning_embedding_out_channels=[{', '.join(map(str, EMBEDDING))}]",
        "model.conditioning_scale=1.0",
        "model.noise_offset=0.0",
        "model.snr_gamma=0.0",
        f"model.adam_eps={ADAMW['eps']:.1e}",
    ] + script_train_overrides(args, ADAMW)


def run_suite(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    overrides = suite_overrides(args, args.data, out_dir)
    timed_generator_trainer(BASE_CONFIG, overrides, clock).fit()


def run_diffusers(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    """train_controlnet.py's training loop on the tiny pipeline and the same shards."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from transformers import AutoTokenizer, CLIPTextModel

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
    tokenizer = AutoTokenizer.from_pretrained(base, subfolder="tokenizer", use_fast=False)
    noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_channels=1, conditioning_embedding_out_channels=EMBEDDING
    )
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    controlnet.train()
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=args.lr, **ADAMW)

    shards = ShardDataset(args.data / "shards", split="train", transform=to_float)
    edges = ShardDataset(args.data / "edges", transform=to_float)
    edge_row = {int(s): i for i, s in enumerate(edges.read_column("source_index"))}

    class TrainDataset(torch.utils.data.Dataset):
        """The shard rows and their hints as the script's ``preprocess_train`` yields them."""

        def __len__(self) -> int:
            return len(shards)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            row = shards[i]
            image = row["image"] * 2 - 1  # the script's Normalize([0.5], [0.5])
            hint = edges[edge_row[int(row["index"])]]["image"]  # ToTensor: [0, 1]
            ids = tokenizer([PROMPT], max_length=tokenizer.model_max_length,
                            padding="max_length", truncation=True, return_tensors="pt").input_ids  # fmt: skip
            return {"pixel_values": image.expand(3, -1, -1), "conditioning_pixel_values": hint,
                    "input_ids": ids[0]}  # fmt: skip

    def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        pixel_values = pixel_values.to(memory_format=torch.contiguous_format).float()
        conditioning = torch.stack([example["conditioning_pixel_values"] for example in examples])
        conditioning = conditioning.to(memory_format=torch.contiguous_format).float()
        input_ids = torch.stack([example["input_ids"] for example in examples])
        return {"pixel_values": pixel_values, "conditioning_pixel_values": conditioning,
                "input_ids": input_ids}  # fmt: skip

    train_dataloader = torch.utils.data.DataLoader(
        TrainDataset(), shuffle=True, collate_fn=collate_fn, batch_size=args.batch_size,
        num_workers=0,
    )  # fmt: skip
    lr_scheduler = get_scheduler(
        "constant",
        optimizer=optimizer,
        num_warmup_steps=WARMUP_STEPS * accelerator.num_processes,
        num_training_steps=args.steps * accelerator.num_processes,
        num_cycles=1,
        power=1.0,
    )
    controlnet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        controlnet, optimizer, train_dataloader, lr_scheduler
    )
    weight_dtype = torch.float32
    vae.to(accelerator.device, dtype=weight_dtype)
    unet.to(accelerator.device, dtype=weight_dtype)
    text_encoder.to(accelerator.device, dtype=weight_dtype)
    accelerator.init_trackers("train_controlnet", config={"lr": args.lr})
    global_step = 0
    while global_step < args.steps:
        for batch in train_dataloader:
            with accelerator.accumulate(controlnet):
                latents = vae.encode(
                    batch["pixel_values"].to(dtype=weight_dtype)
                ).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                bsz = latents.shape[0]
                timesteps = torch.randint(
                    0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device
                )
                timesteps = timesteps.long()
                noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
                encoder_hidden_states = text_encoder(batch["input_ids"])[0]
                controlnet_image = batch["conditioning_pixel_values"].to(dtype=weight_dtype)
                down_block_res_samples, mid_block_res_sample = controlnet(
                    noisy_latents,
                    timesteps,
                    encoder_hidden_states=encoder_hidden_states,
                    controlnet_cond=controlnet_image,
                    return_dict=False,
                )
                model_pred = unet(
                    noisy_latents,
                    timesteps,
                    encoder_hidden_states=encoder_hidden_states,
                    down_block_additional_residuals=[
                        sample.to(dtype=weight_dtype) for sample in down_block_res_samples
                    ],
                    mid_block_additional_residual=mid_block_res_sample.to(dtype=weight_dtype),
                ).sample
                if noise_scheduler.config.prediction_type == "epsilon":
                    target = noise
                else:
                    target = noise_scheduler.get_velocity(latents, noise, timesteps)
                loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    params_to_clip = controlnet.parameters()
                    accelerator.clip_grad_norm_(params_to_clip, 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=False)
            if accelerator.sync_gradients:
                global_step += 1
            logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
            accelerator.log(logs, step=global_step)
            clock.tick()
            if global_step >= args.steps:
                break
    accelerator.end_training()


def child(args: argparse.Namespace) -> int:
    clock = StepClock(args.warmup, args.steps, args.cprofile)
    run = run_suite if args.run == "suite" else run_diffusers
    run_in_tmp(f"bench_train_controlnet-{args.run}-", run, args, clock)
    return print_result(clock, args)


# --------------------------------------------------------------------------------------------------
# parent


def child_argv(loop: str, args: argparse.Namespace, root: Path, profile: bool) -> list[str]:
    names = ("image_size", "batch_size", "steps", "warmup", "lr", "seed", "log_every")
    argv = ["--run", loop, "--data", str(root), *report.forward(args, names)]
    return argv + (["--cprofile"] if profile else [])


def bench(args: argparse.Namespace, root: Path) -> None:
    print(
        f"tiny SD ControlNet (1-channel hint, embedding {list(EMBEDDING)}), "
        f"1x{args.image_size}x{args.image_size} pseudo X-rays and edge maps, batch "
        f"{args.batch_size}, lr {args.lr}, {args.steps} steps ({args.warmup} warm-up not timed), "
        f"{args.threads} torch thread(s)"
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
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps, not timed")
    parser.add_argument("--lr", type=float, default=5e-6, help="the script's default")
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
    with report.bench_root("bench_train_controlnet-", args.keep) as root:
        start = time.perf_counter()
        if (root / "edges" / "manifest.json").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
        else:
            pseudo_xray_pairs(root, args.num_images, args.image_size, args.seed)
        tiny_sd(root, args.image_size)
        print(
            f"data: {args.num_images} pseudo-X-rays with masks, their edge maps and `synmed "
            f"models tiny-sd` ({time.perf_counter() - start:.1f} s)\n"
        )
        bench(args, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
