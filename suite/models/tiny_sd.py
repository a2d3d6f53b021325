"""A tiny Stable-Diffusion-shaped diffusers pipeline with random weights, in SD 1.5's folder layout.

``StableDiffusionPipeline.from_pretrained(DIR, local_files_only=True)`` loads it, so every test of
the latent-diffusion family runs the real diffusers/transformers code path on it in seconds on a
CPU; a user with the real SD 1.5 folder points the same config at that folder.

Sizes are diffusers' own test dummies (``get_dummy_components`` of
huggingface/diffusers:tests/pipelines/stable_diffusion/test_stable_diffusion.py): UNet blocks (4, 8), one layer per
block, 2 norm groups, cross-attention 32; VAE blocks (4, 8), 4 latent channels; a 32-wide CLIP
text encoder (5 layers, 4 heads, MLP 37). Two differences: the text encoder has CLIP's full
49,408-token vocabulary (the tokenizer is the real one, :mod:`suite.models.clip_bpe`), and the
scheduler is SD 1.5's (PNDM, scaled-linear betas 0.00085..0.012, PRK steps skipped). The two-block
VAE downsamples by 2 (SD 1.5's by 8), so the UNet's ``sample_size`` is ``image_size // 2``. No
safety checker or feature extractor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.errors import ConfigError

DEFAULT_SEED = 0
DEFAULT_IMAGE_SIZE = 32
LATENT_CHANNELS = 4
BLOCKS = (4, 8)
NORM_GROUPS = 2
TEXT_WIDTH = 32
# VAE with len(BLOCKS) blocks: one downsampling per block but the last
LATENT_FACTOR = 2 ** (len(BLOCKS) - 1)
# StableDiffusionPipeline.check_inputs wants height and width divisible by 8
SIZE_MULTIPLE = 8
# SD 1.5's scheduler/scheduler_config.json
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def check_image_size(image_size: int) -> None:
    if image_size < SIZE_MULTIPLE or image_size % SIZE_MULTIPLE:
        raise ConfigError(
            f"--image-size {image_size}: Stable Diffusion pipelines need a positive multiple of "
            f"{SIZE_MULTIPLE}",
            f"pass e.g. --image-size {max(SIZE_MULTIPLE, round(image_size / SIZE_MULTIPLE) * SIZE_MULTIPLE)}",
        )


def build_pipeline(
    tokenizer_dir: Path, *, seed: int = DEFAULT_SEED, image_size: int = DEFAULT_IMAGE_SIZE
) -> Any:
    """The random-weight ``StableDiffusionPipeline``; the same seed gives the same weights.

    The CLIP tokenizer files are written into ``tokenizer_dir`` and loaded from there.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from suite.models.clip_bpe import (
        MAX_LENGTH,
        VOCAB_SIZE,
        load_clip_tokenizer,
        write_tokenizer_files,
    )

    check_image_size(image_size)
    tokenizer = load_clip_tokenizer(write_tokenizer_files(tokenizer_dir))
    # one seed per component (as diffusers' dummies do), so changing one part leaves the others
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // LATENT_FACTOR,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=BLOCKS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=NORM_GROUPS,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(BLOCKS),
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=NORM_GROUPS,
        sample_size=image_size,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_hidden_layers=5,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            projection_dim=TEXT_WIDTH,
            layer_norm_eps=1e-5,
            # the real ids (SD 1.5's config keeps CLIP's placeholder 0/1/2; the pooled output is
            # then found by argmax, which lands on the same end-of-text token)
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_tiny_sd(
    out: Path,
    *,
    seed: int = DEFAULT_SEED,
    image_size: int = DEFAULT_IMAGE_SIZE,
    overwrite: bool = False,
) -> Path:
    """Save the tiny pipeline into ``out`` (all or nothing); returns ``out``.

    tokenizer/ keeps the vocab.json and merges.txt it was loaded from beside what
    ``save_pretrained`` adds, as SD 1.5's does: transformers 5 saves only tokenizer.json, and the
    slow tokenizer of older releases needs the pair.
    """
    from suite.data.writer import staged_output
    from suite.models.clip_bpe import bpe_vocab_path

    out = Path(out)
    check_image_size(image_size)
    bpe_vocab_path()  # a missing open-clip-torch fails before the heavy imports
    with staged_output(out, overwrite=overwrite) as stage:
        pipeline = build_pipeline(stage / "tokenizer", seed=seed, image_size=image_size)
        pipeline.save_pretrained(stage, safe_serialization=True)
    return out
