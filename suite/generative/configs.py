"""Typed configs of the generator families (torch-free, so loading a config stays fast).

``model.kind`` selects one of these (suite/generative/families.py lists them); the loader then
accepts only that class's keys. Each names the family class it configures in ``implementation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from suite.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    added_field,
)


@dataclass(kw_only=True, slots=True)
class LucidrainsDDPMConfig:
    """denoising-diffusion-pytorch's ``Unet`` + ``GaussianDiffusion`` (seed 000, I-SynMed).

    Defaults are the library's (2.3.4) where seed 000 relied on them silently: ``pred_v`` objective
    and ``sigmoid`` beta schedule (older releases used ``pred_noise``/``cosine``; docs/papers.md).
    """

    implementation: ClassVar[str] = "suite.generative.ddpm_lucidrains:LucidrainsDDPM"
    kind: Literal["ddpm_lucidrains"] = "ddpm_lucidrains"
    image_size: PositiveInt = 64
    channels: PositiveInt = 1
    dim: PositiveInt = 64
    dim_mults: tuple[PositiveInt, ...] = (1, 2, 4, 8)
    timesteps: PositiveInt = 1000
    objective: Literal["pred_noise", "pred_x0", "pred_v"] = "pred_v"
    beta_schedule: Literal["linear", "cosine", "sigmoid"] = "sigmoid"
    # Flash attention needs a GPU; the math is the same either way.
    flash_attn: bool = False


@dataclass(kw_only=True, slots=True)
class DiffusersDDPMConfig:
    """diffusers' ``UNet2DModel`` with ``DDPMScheduler``; unconditional or class-conditional.

    Class conditioning (``num_classes > 0``) adds a class embedding with one extra "no class" id;
    labels are replaced by it with probability ``class_dropout`` during training, so one network
    learns both and sampling can use classifier-free guidance (Ho & Salimans, 2022,
    arXiv:2207.12598).
    """

    implementation: ClassVar[str] = "suite.generative.ddpm_diffusers:DiffusersDDPM"
    kind: Literal["ddpm_diffusers"] = "ddpm_diffusers"
    image_size: PositiveInt = 64
    channels: PositiveInt = 1
    block_out_channels: tuple[PositiveInt, ...] = (64, 128, 256, 256)
    layers_per_block: PositiveInt = 2
    # One flag per resolution level: True puts self-attention blocks at that level.
    attention: tuple[bool, ...] = (False, False, True, False)
    norm_num_groups: PositiveInt = 32
    timesteps: PositiveInt = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    num_classes: NonNegativeInt = 0
    class_dropout: Fraction = 0.1
    guidance_scale: NonNegativeFloat = 1.0  # default at sampling time; 1.0 = no guidance


@dataclass(kw_only=True, slots=True)
class GANConfig:
    """What every GAN family shares (suite/generative/gan.py): the image, the classes, the
    latent, the discriminator's learning rate and the rule that stops a run whose discriminator
    wins outright.

    The stop rule: ``d_wins_patience`` consecutive steps with D(real) above 1 - ``d_wins_margin``,
    D(fake) below ``d_wins_margin`` (mean sigmoid outputs) and the generator's adversarial loss above
    ``d_wins_g_loss`` end the run with one error (0 turns the check off): such a generator gets
    vanishing gradients and does not recover.
    """

    image_size: PositiveInt = 64
    channels: PositiveInt = 1
    num_classes: NonNegativeInt = 0
    latent_dim: PositiveInt = 100
    # D's learning rate is train.lr times this (TTUR-style; < 1 weakens a discriminator that wins)
    d_lr_factor: PositiveFloat = 1.0
    d_wins_patience: NonNegativeInt = 200
    d_wins_margin: Fraction = 0.01
    d_wins_g_loss: PositiveFloat = 4.0


@dataclass(kw_only=True, slots=True)
class DCGANConfig(GANConfig):
    """DCGAN (Radford et al. 2016, arXiv:1511.06434) as pytorch/examples' ``dcgan/main.py``
    builds it, or as seed 001 did (``architecture: seed``).

    ``mode``: ``unconditional`` (one pair), ``per_class`` (one generator/discriminator pair per
    class, each trained on its class's rows, as seed 001's ``DCGAN_Checkpoint_{label}.pth``), or
    ``conditional`` (one pair with a label embedding into G's input and a label plane into D's).

    ``architecture``: ``examples`` is pytorch/examples' ladder of 4x4 stride-2 (transposed)
    convolutions from 4 px up to ``image_size`` (a power of two; channels ngf*2^k); ``seed`` is
    seed 001's ``src/models/dcgan.py``: Linear(z -> 16ngf x b x b), four 5x5 stride-2 ConvT with
    BatchNorm and LeakyReLU(0.2), a 5x5 ConvT to the channels and tanh, giving 16b px
    (b = ``seed_base``, 16 there: 256 px), resized bilinearly to ``image_size`` (224 there); its
    D is five 5x5 stride-2 convolutions with Dropout2d(``dropout``) and a linear logit.
    """

    implementation: ClassVar[str] = "suite.generative.dcgan:DCGAN"
    kind: Literal["dcgan"] = "dcgan"
    mode: Literal["unconditional", "per_class", "conditional"] = "unconditional"
    architecture: Literal["examples", "seed"] = "examples"
    ngf: PositiveInt = 64
    ndf: PositiveInt = 64
    embed_dim: PositiveInt = 50  # conditional: the label embedding concatenated to z
    seed_base: PositiveInt = 16
    dropout: Fraction = 0.4  # the seed architecture's Dropout2d in D


@dataclass(kw_only=True, slots=True)
class ACGANConfig(GANConfig):
    """ACGAN (Odena et al. 2017, arXiv:1610.09585) as eriklindernoren/PyTorch-GAN's
    ``implementations/acgan/acgan.py``: G multiplies z by a label embedding, D has a real/fake
    logit and an auxiliary class head; G steps before D, as there.

    The auxiliary head outputs logits into cross-entropy: the reference's Softmax before
    ``CrossEntropyLoss`` (PyTorch-GAN issue #141) is not reproduced. ``bn_eps_0_8`` reproduces
    the reference's ``BatchNorm2d(C, 0.8)``, whose second argument is eps, not momentum
    (seed 001 kept it); off by default, eps is PyTorch's 1e-5: an eps of 0.8 swamps the batch
    variance of small activations and weakens normalisation.
    """

    implementation: ClassVar[str] = "suite.generative.acgan:ACGAN"
    kind: Literal["acgan"] = "acgan"
    image_size: PositiveInt = 32
    num_classes: NonNegativeInt = 10
    bn_eps_0_8: bool = False


# -- pggan ------------------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class PGGANConfig(GANConfig):
    """Progressive growing of GANs (Karras et al., ICLR 2018, arXiv:1710.10196) with every scale
    allocated up front; defaults are facebookresearch/pytorch_GAN_zoo's ``pgan_config.py``.

    ``image_size`` is 4 * 2**k; ``depths`` gives the feature maps of each scale from 4 px up (empty:
    the zoo's 512, 512, 512, 512, 256, 128, 64, 32, 16, cut to the scales needed). The schedule:
    ``steps_per_phase`` stable steps at 4 px, then for every further scale ``steps_per_fade``
    steps fading it in (alpha rising linearly) and ``steps_per_phase`` stable ones; the last scale
    stays stable to ``train.max_steps``. ``num_classes > 0`` conditions G on a label embedding and
    gives D an auxiliary-classifier (``ac``) or projection head. The stop rule of
    :class:`GANConfig` reads sigmoid(critic) as the other GANs read D's probability.
    """

    implementation: ClassVar[str] = "suite.generative.pggan:PGGAN"
    kind: Literal["pggan"] = "pggan"
    latent_dim: PositiveInt = 512  # the zoo's dimLatentVector
    depths: tuple[PositiveInt, ...] = ()
    class_head: Literal["ac", "projection"] = "ac"
    ac_weight: NonNegativeFloat = 1.0  # the AC cross-entropy's weight in both losses
    steps_per_phase: PositiveInt = 48000  # the zoo's maxIterAtScale[0]
    steps_per_fade: NonNegativeInt = 19200  # the zoo's 600 alpha jumps x 32 iterations
    gp_lambda: NonNegativeFloat = 10.0
    drift: NonNegativeFloat = 1e-3  # epsilon_drift: weight of E[D(real)^2]
    minibatch_group: PositiveInt = 4
    leaky_slope: Fraction = 0.2


# -- latent diffusion ---------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class PromptTerm:
    """One term of a text-embedding blend: ``weight`` times the text encoder's hidden states of
    ``text``, where ``{prompt}`` stands for the row's prompt and ``{phrase}`` for its line of
    ``prompt_blend_phrases``."""

    text: str
    weight: NonNegativeFloat


@dataclass(kw_only=True, slots=True)
class StableDiffusionConfig:
    """What the families on a local Stable Diffusion folder share (suite/generative/stable_diffusion.py).

    ``base`` is a local diffusers folder in SD 1.5's layout (SD 2.x folders load through the same
    code; ``synmed models tiny-sd`` makes a tiny one); nothing is fetched at run time. The prompt
    of a training row is, first found: its caption in ``captions`` (a diffusers imagefolder
    ``metadata.jsonl``, matched to the rows' source files), the row's ``prompts`` column (a
    sampled shard set), its class's entry in ``class_prompts``, ``prompt_template`` with the
    class name, or ``prompt``. ``noise_offset`` (Guttenberg 2023) and ``snr_gamma`` (Min-SNR
    weighting, Hang et al. 2023, arXiv:2303.09556; 0 = plain MSE) are diffusers' training
    scripts' options. ``channels: 1`` feeds grey images to the RGB VAE as three equal channels
    and returns the channel mean.

    ``prompt_blend`` (sampling only; empty: the prompt as it is) conditions each sampled image on
    the weighted sum of its terms' text embeddings (seed 002: 0.045 prompt + 0.005 phrase + 0.95
    "gray, sketch"; weights need not sum to 1). A ``{phrase}`` term reads
    ``prompt_blend_phrases`` (a text file, one phrase per line); ``prompt_blend_pick`` chooses
    image ``i``'s line: ``random`` (a hash of the sampling seed and ``i``) or ``cycle`` (line
    ``i`` mod the line count, the seed's ``aug_list[i % len(aug_list)]``).
    """

    # where `synmed models tiny-sd --out` or a copied SD 1.5 download puts it (docs/latent-diffusion.md)
    base: str = "models/stable-diffusion-v1-5"
    image_size: PositiveInt = 512
    channels: PositiveInt = 3
    num_classes: NonNegativeInt = 0
    prompt: str = ""
    prompt_template: str = "{class_name}"
    class_prompts: dict[str, str] | None = None
    captions: str | None = None
    noise_offset: NonNegativeFloat = 0.0
    snr_gamma: NonNegativeFloat = 0.0
    adam_eps: PositiveFloat = 1e-8
    # sampling defaults (``synmed sample --guidance-scale`` overrides the scale)
    guidance_scale: NonNegativeFloat = 7.5
    negative_prompt: str = ""
    prompt_blend: tuple[PromptTerm, ...] = added_field(())
    prompt_blend_phrases: str | None = added_field(None)
    prompt_blend_pick: Literal["random", "cycle"] = added_field("random")


@dataclass(kw_only=True, slots=True)
class SDLoRAConfig(StableDiffusionConfig):
    """LoRA fine-tuning of a local Stable Diffusion folder (Hu et al. 2021, arXiv:2106.09685), as
    diffusers' ``examples/text_to_image/train_text_to_image_lora.py``; seed 003's preset is
    configs/papers/aiding-diagnosis/sd15_lora_pathmnist.yaml. Adapters of ``lora_rank`` and
    ``lora_alpha`` on the UNet's ``lora_targets`` and, with ``train_text_encoder``, on the text
    encoder's ``text_encoder_targets``."""

    implementation: ClassVar[str] = "suite.generative.sd_lora:SDLoRA"
    kind: Literal["sd_lora"] = "sd_lora"
    lora_rank: PositiveInt = 4
    lora_alpha: PositiveFloat = 4.0
    lora_dropout: Fraction = 0.0
    lora_init: Literal["gaussian", "default"] = "gaussian"
    lora_targets: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    train_text_encoder: bool = False
    text_encoder_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(kw_only=True, slots=True)
class SDDreamBoothConfig(SDLoRAConfig):
    """DreamBooth (Ruiz et al. 2023, arXiv:2208.12242) with LoRA, as diffusers'
    ``examples/dreambooth/train_dreambooth_lora.py``: the training rows are the instance images
    under ``prompt`` (the instance prompt, e.g. "an image of sks pneumoconiosis xray"); with
    ``class_images`` (a shard set the base model generated for ``class_prompt`` through
    ``synmed sample``) each micro-batch adds as many class images, and their loss, times
    ``prior_loss_weight``, preserves the class prior. Defaults are the script's (lr 5e-4 is
    ``train.lr``)."""

    implementation: ClassVar[str] = "suite.generative.sd_dreambooth:SDDreamBooth"
    kind: Literal["sd_dreambooth"] = "sd_dreambooth"
    class_images: str | None = None
    class_prompt: str = ""
    prior_loss_weight: NonNegativeFloat = 1.0
    min_class_images: PositiveInt = 100


@dataclass(kw_only=True, slots=True)
class ControlNetConfig(StableDiffusionConfig):
    """ControlNet (Zhang et al. 2023, arXiv:2302.05543) on a locked local Stable Diffusion, as
    diffusers' ``examples/controlnet/train_controlnet.py``: ``ControlNetModel.from_unet`` copies
    the base UNet's encoder, with a ``conditioning_channels`` hint (seed 002's edge maps: one
    channel) embedded by ``conditioning_embedding_out_channels`` (its length sets the hint's
    downsampling, which must equal the VAE's: SD's four blocks for SD, two for the tiny one).
    The training rows' hints are the rows of ``hints`` (a conditioning set, ``synmed data edges``)
    whose ``source_index`` is the row's index; sampling reads them through ``--conditions``.
    Seed 002's preset (DDIM 20 steps, CFG 9) is configs/papers/diffboost/controlnet.yaml."""

    implementation: ClassVar[str] = "suite.generative.controlnet:ControlNet"
    kind: Literal["controlnet"] = "controlnet"
    hints: str | None = None
    conditioning_channels: PositiveInt = 1
    conditioning_embedding_out_channels: tuple[PositiveInt, ...] = (16, 32, 96, 256)
    conditioning_scale: NonNegativeFloat = 1.0
    guidance_scale: NonNegativeFloat = 9.0


# -- mask-conditioned pixel diffusion -----------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class MaskDDPMConfig:
    """A pixel-space diffusers ``UNet2DModel`` conditioned on a segmentation mask (image+mask
    pairs): the mask enters as ``mask_classes`` one-hot channels (background included) beside the
    noisy image. With probability ``mask_dropout`` a training row's one-hot is all zeros ("no
    mask"), so sampling can use classifier-free guidance (``guidance_scale``; 1 = none). The
    defaults train in minutes on a CPU at 64 px."""

    implementation: ClassVar[str] = "suite.generative.mask_ddpm:MaskDDPM"
    kind: Literal["mask_ddpm"] = "mask_ddpm"
    image_size: PositiveInt = 64
    channels: PositiveInt = 1
    # mask ids 0..mask_classes-1; a set's mask_names (e.g. background, gm, wm) must count as many
    mask_classes: PositiveInt = 3
    block_out_channels: tuple[PositiveInt, ...] = (32, 64, 128)
    layers_per_block: PositiveInt = 1
    # One flag per resolution level: True puts self-attention blocks at that level.
    attention: tuple[bool, ...] = (False, False, True)
    norm_num_groups: PositiveInt = 8
    timesteps: PositiveInt = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    mask_dropout: Fraction = 0.1
    guidance_scale: NonNegativeFloat = 1.0  # default at sampling time; 1.0 = no guidance
