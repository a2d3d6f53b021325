"""What the generator families on a local Stable Diffusion folder share: loading the locked base
(UNet, VAE, CLIP text encoder and tokenizer, scheduler) from a diffusers folder, the prompt of
every row, the latent denoising loss of diffusers' training scripts, and sampling in the VAE's
latent space with classifier-free guidance through the shared diffusion loop
(suite/generative/diffusion.py), the positive conditioning optionally a weighted blend of text
embeddings (``model.prompt_blend``, seed 002's).

A family names what trains (:meth:`Generator.trainable_modules`: LoRA adapters, a ControlNet)
and how the UNet is called (:meth:`StableDiffusionFamily.predict`); the base is never trained,
checkpointed or exported, only named by digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from suite.artifacts.digests import sha256_text
from suite.errors import ConfigError, DataError
from suite.generative.base import Conditions, OptimizerSpec, SampleOptions, SampleOutput
from suite.generative.diffusion import DiffusionGenerator
from suite.generative.optim import lr_lambda

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset

BASE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# the scheduler arguments every sampler of the shared loop accepts
SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "steps_offset",
    "timestep_spacing",
)
# what a ``model.prompt_blend`` term's text holds in place of the row's prompt and its phrase
PROMPT_SLOT, PHRASE_SLOT = "{prompt}", "{phrase}"


def base_folder(base: str) -> Path:
    """The local diffusers folder ``model.base`` names, checked before anything loads."""
    path = Path(base).expanduser()
    fix = (
        "download the model once where there is internet (huggingface-cli download "
        "stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR), copy DIR here and set "
        "model.base=DIR; for tests, `synmed models tiny-sd --out DIR` makes a tiny one"
    )
    if not path.exists():
        looks_like_hub_id = base.count("/") == 1 and not base.startswith((".", "/", "~"))
        what = (
            f"model.base {base!r} looks like a hub id, and nothing is fetched at run time"
            if looks_like_hub_id
            else f"model.base {base!r} does not exist"
        )
        raise ConfigError(what, fix)
    missing = [part for part in BASE_PARTS if not (path / part).is_dir()]
    if missing:
        raise ConfigError(
            f"model.base {base!r} is not a Stable Diffusion folder (no {', '.join(missing)}/ in it)",
            fix,
        )
    return path.resolve()


class StableDiffusionFamily(DiffusionGenerator):
    """A generator on a locked Stable Diffusion base; subclasses add what trains."""

    samplers = ("ddim", "dpm-solver", "ddpm")  # SD's usual; ddim first, as previews use it
    conditions: ClassVar[tuple[str, ...]] = ("labels", "prompts")
    clip_sample = False  # latents are not bounded to [-1, 1]
    #: the per-row metadata key of the trained weights' digest
    weights_key: ClassVar[str] = "weights_sha256"

    def __init__(self, config: Any) -> None:
        super().__init__()
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        base = base_folder(config.base)
        # the export records the absolute folder: a sampling actor's working directory differs
        phrases_path = config.prompt_blend_phrases
        if phrases_path is not None:
            phrases_path = str(Path(phrases_path).expanduser().resolve())
        self.config = config = dataclasses.replace(
            config, base=str(base), prompt_blend_phrases=phrases_path
        )
        self._phrases = blend_phrases(config)
        # (seed, indices) of the batch being sampled: a blend's phrase is drawn per image from them
        self._sampling_rows: tuple[int, list[int]] | None = None
        self._base = base
        try:
            self.unet = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True)
            self.vae = AutoencoderKL.from_pretrained(base / "vae", local_files_only=True)
            self.text_encoder = CLIPTextModel.from_pretrained(
                base / "text_encoder", local_files_only=True
            )
            self.tokenizer = CLIPTokenizer.from_pretrained(
                base / "tokenizer", local_files_only=True
            )
            self.noise_scheduler = DDPMScheduler.from_pretrained(
                base / "scheduler", local_files_only=True
            )
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"model.base {config.base!r} could not be loaded ({str(err).splitlines()[0]})",
                "point model.base at a complete diffusers Stable Diffusion folder",
            ) from None
        self.latent_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if config.image_size % 8:
            raise ConfigError(
                f"model.image_size {config.image_size} is not a multiple of 8",
                "ingest the images at a multiple of 8 (SD 1.5 is 512; seed 003 used 224)",
            )
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        self._row_prompts: dict[int, str] = {}
        self._frozen_dtype: torch.dtype | None = None
        # the trained weights' digest, fixed once they are loaded from an export (see exported)
        self._exported_digest: str | None = None

    @property
    def trains_text_encoder(self) -> bool:
        return False

    # -- prompts -----------------------------------------------------------------------------------

    def class_prompt(self, label: int) -> str:
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        if not 0 <= label < len(names):
            raise DataError(
                f"class id {label} is outside the generator's {len(names)} classes",
                "sample with the generator's own class ids (synmed sample --per-class ...)",
            )
        name = names[label]
        if self.config.class_prompts and name in self.config.class_prompts:
            return self.config.class_prompts[name]
        return self.config.prompt_template.format(class_name=name)

    def prompts_for(self, conditions: Conditions | None, n: int) -> list[str]:
        """One prompt per sampled row: the condition's own, its class's, or ``model.prompt``."""
        if conditions is not None and conditions.prompts is not None:
            return list(conditions.prompts)
        if conditions is not None and conditions.labels is not None and self.num_classes:
            return [self.class_prompt(int(c)) for c in conditions.labels]
        return [self.config.prompt] * n

    def bind_data(self, class_names: Sequence[str], classes_present: Sequence[int]) -> None:
        self._class_names = list(class_names)
        if self.config.class_prompts:
            unknown = sorted(set(self.config.class_prompts) - set(class_names))
            if unknown:
                raise ConfigError(
                    f"model.class_prompts names {', '.join(unknown)}, which the data's classes "
                    f"({', '.join(class_names)}) do not hold",
                    "key model.class_prompts by the shard set's class names",
                )

    def bind_rows(self, dataset: ShardDataset) -> None:
        """Per-row prompts: captions matched to the rows' source files, or a prompts column."""
        indices = [int(i) for i in dataset.indices]
        if self.config.captions is not None:
            captions = read_captions(Path(self.config.captions))
            sources = dataset.read_column("source")
            if sources is None:
                raise DataError(
                    f"{dataset.directory} records no source files, so model.captions cannot be "
                    "matched to its rows",
                    "ingest the image folder with synmed data ingest (it records each row's file)",
                )
            missing = []
            for index, source in zip(indices, sources):
                caption = caption_of(str(source), captions)
                if caption is None:
                    missing.append(str(source))
                else:
                    self._row_prompts[index] = caption
            if missing:
                raise DataError(
                    f"{self.config.captions} has no caption for {len(missing)} training rows "
                    f"(e.g. {missing[0]})",
                    'add a line {"file_name": ..., "text": ...} per image, or drop model.captions',
                )
            return
        column = dataset.read_column("prompts")
        if column is not None:
            self._row_prompts = {i: str(p) for i, p in zip(indices, column)}

    def training_prompts(self, batch: dict[str, torch.Tensor]) -> list[str]:
        n = batch["image"].shape[0]
        if self._row_prompts:
            return [self._row_prompts[int(i)] for i in batch["index"]]
        labels = batch.get("label")
        if self.num_classes and labels is not None:
            return [self.class_prompt(int(c)) for c in labels]
        return [self.config.prompt] * n

    def encode_prompts(self, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        return self.text_encoder(ids, return_dict=False)[0]

    def blend_terms(
        self, prompts: Sequence[str], seed: int, indices: Sequence[int]
    ) -> list[list[dict[str, Any]]]:
        """Each row's ``model.prompt_blend`` terms as {"text", "weight"}, its prompt and phrase
        filled in; image ``indices[r]``'s phrase depends on (seed, index) alone."""
        rows = []
        for prompt, index in zip(prompts, indices):
            phrase = ""
            if self._phrases is not None:
                phrase = self._phrases[
                    phrase_line(seed, int(index), len(self._phrases), self.config.prompt_blend_pick)
                ]
            rows.append([
                {"text": t.text.replace(PROMPT_SLOT, prompt).replace(PHRASE_SLOT, phrase),
                 "weight": t.weight}
                for t in self.config.prompt_blend
            ])  # fmt: skip
        return rows

    def encode_blend(self, terms: list[list[dict[str, Any]]], device: torch.device) -> torch.Tensor:
        """The weighted sum of each term's text embeddings, terms added in order (the seed's
        ``0.045 * E(a) + 0.005 * E(b) + 0.95 * E(c)``)."""
        blended = None
        for j in range(len(self.config.prompt_blend)):
            weight = self.config.prompt_blend[j].weight
            part = weight * self.encode_prompts([row[j]["text"] for row in terms], device)
            blended = part if blended is None else blended + part
        assert blended is not None, "encode_blend() runs only with model.prompt_blend set"
        return blended

    # -- training ----------------------------------------------------------------------------------

    def modules_in_training(self) -> list[nn.Module]:
        """The modules that run in training mode while the family trains; the rest of the base
        stays in eval mode, as in diffusers' scripts."""
        return list(self.trainable_modules().values())

    def train(self, mode: bool = True) -> StableDiffusionFamily:
        """Switch only :meth:`modules_in_training`. The training loop calls this before every
        step: walking all of SD's modules each time (729 in the tiny pipeline) cost about 2 ms of
        a 50 ms step (benchmarks/bench_train_sd_lora.py), so a mode already set is left alone."""
        trained = self.modules_in_training()
        if self.training == mode and all(m.training == mode for m in trained):
            return self
        self.training = mode
        for module in trained:
            module.train(mode)
        return self

    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        params = [p for m in self.trainable_modules().values() for p in m.parameters()]
        optimizer = torch.optim.AdamW(
            params,
            lr=train_cfg.lr,
            betas=tuple(train_cfg.adam_betas),
            weight_decay=train_cfg.weight_decay,
            eps=self.config.adam_eps,
        )
        return {"model": OptimizerSpec(optimizer=optimizer, lr_lambda=lr_lambda(train_cfg))}

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, hints: torch.Tensor | None
    ) -> torch.Tensor:
        """The UNet's output at noisy latents ``x``; ``hints`` are a ControlNet's images."""
        return self.unet(x, t, states, return_dict=False)[0]

    def rgb(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the VAE's input in [-1, 1], grey repeated to RGB."""
        x = images * 2 - 1
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def per_row_loss(
        self, images: torch.Tensor, prompts: Sequence[str], hints: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (optionally SNR-weighted) denoising MSE of each row."""
        from diffusers.training_utils import compute_snr

        cfg, scheduler = self.config, self.noise_scheduler
        with torch.no_grad():
            posterior = self.vae.encode(self.rgb(images)).latent_dist
            latents = posterior.sample() * self.vae.config.scaling_factor
        noise = torch.randn_like(latents)
        if cfg.noise_offset:
            # https://www.crosslabs.org//blog/diffusion-with-offset-noise
            noise = noise + cfg.noise_offset * torch.randn(
                latents.shape[0], latents.shape[1], 1, 1, device=latents.device
            )
        b = latents.shape[0]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), device=latents.device)
        noisy = scheduler.add_noise(latents, noise, t)
        with torch.set_grad_enabled(self.trains_text_encoder and torch.is_grad_enabled()):
            states = self.encode_prompts(prompts, latents.device)
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        pred = self.predict(noisy, t, states, hints)
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if cfg.snr_gamma:
            snr = compute_snr(scheduler, t)
            weight = torch.clamp(snr, max=cfg.snr_gamma)
            weight = (
                weight / (snr + 1)
                if scheduler.config.prediction_type == "v_prediction"
                else weight / snr
            )
            loss = loss * weight
        return loss

    def training_hints(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The conditioning images of a batch's rows (a ControlNet's); None by default."""
        return None

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        hints = self.training_hints(batch)
        return self.per_row_loss(batch["image"], self.training_prompts(batch), hints).mean()

    def frozen_bases(self) -> dict[str, Path]:
        return {"stable_diffusion": self._base}

    def cast_frozen(self, dtype: torch.dtype) -> None:
        # as the diffusers scripts' weight_dtype: the base in half precision, what trains float32
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(dtype)
        for trained in self.trainable_modules().values():
            for p in trained.parameters():
                p.data = p.data.float()
        self._frozen_dtype = dtype

    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        self._sampling_rows = (seed, [int(i) for i in indices])
        try:
            if self._frozen_dtype is None:
                return super().sample(indices, seed, conditions, options, device)
            # a half-precision base (cast_frozen) reads float32 latents under autocast
            with torch.autocast(torch.device(device).type, dtype=self._frozen_dtype):
                return super().sample(indices, seed, conditions, options, device)
        finally:
            self._sampling_rows = None

    # -- sampling ----------------------------------------------------------------------------------

    def scheduler_config(self) -> dict[str, Any]:
        config = self.noise_scheduler.config
        return {k: config[k] for k in SCHEDULE_KEYS if k in config and config[k] is not None}

    def latent_shape(self) -> tuple[int, ...]:
        side = self.config.image_size // self.latent_factor
        return (int(self.unet.config.in_channels), side, side)

    def encode_conditions(
        self, conditions: Conditions | None, options: SampleOptions, n: int, device: Any
    ) -> dict[str, Any]:
        prompts = self.prompts_for(conditions, n)
        blend = None
        if self.config.prompt_blend:
            assert self._sampling_rows is not None, "encode_conditions() runs inside sample()"
            seed, indices = self._sampling_rows
            blend = self.blend_terms(prompts, seed, indices)
            cond = self.encode_blend(blend, device)
        else:
            cond = self.encode_prompts(prompts, device)
        uncond = None
        if options.guidance_scale != 1.0:
            negative = options.negative_prompt
            if negative is None:
                negative = self.config.negative_prompt
            uncond = self.encode_prompts([negative] * n, device)
        hints = None
        if conditions is not None and conditions.images is not None and "images" in self.conditions:
            hints = torch.as_tensor(conditions.images, device=device).float().div(255)
        return {"conditions": conditions, "prompts": prompts, "cond": cond, "uncond": uncond,
                "hints": hints, "blend": blend}  # fmt: skip

    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, conditions: Any, guidance_scale: float
    ) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        hints = conditions["hints"]
        if conditions["uncond"] is None:
            return self.predict(x, t, conditions["cond"], hints)
        both = self.predict(
            torch.cat([x, x]),
            torch.cat([t, t]),
            torch.cat([conditions["cond"], conditions["uncond"]]),
            torch.cat([hints, hints]) if hints is not None else None,
        )
        cond, uncond = both.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def decode(self, x: torch.Tensor, conditions: Any) -> torch.Tensor:
        images = self.vae.decode(x / self.vae.config.scaling_factor, return_dict=False)[0]
        if self.config.channels == 1:
            images = images.mean(dim=1, keepdim=True)
        return images

    def finish_output(self, output: SampleOutput, conditions: Any) -> SampleOutput:
        # an export's weights never change while it samples: hashing a ControlNet (1.4 GB for
        # SD 1.5) on every batch would cost a second each
        digest = self._exported_digest or self.trained_digest()
        output.prompts = conditions["prompts"]
        output.metadata = [
            {"prompt_sha256": sha256_text(p), self.weights_key: digest}
            for p in conditions["prompts"]
        ]
        if conditions["blend"] is not None:
            # the prompts column keeps the row's prompt; what conditioned the image is the blend
            for row, terms in zip(output.metadata, conditions["blend"]):
                row["prompt_blend"] = terms
        return output

    def exported(self) -> StableDiffusionFamily:
        """This model, loaded from an export, in eval mode, its weights' digest taken once."""
        self._exported_digest = self.trained_digest()
        return self.eval()

    def trained_digest(self) -> str:
        """sha256 over the trained weights (names and bytes), the same on every worker."""
        h = hashlib.sha256()
        for key, value in sorted(self.trainable_state().items()):
            h.update(key.encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def blend_phrases(config: Any) -> list[str] | None:
    """The phrases a ``{phrase}`` term of ``model.prompt_blend`` draws from (None: no such
    term), the blend's settings checked."""
    terms = config.prompt_blend
    uses_phrase = any(PHRASE_SLOT in t.text for t in terms)
    if terms and not any(t.weight > 0 for t in terms):
        raise ConfigError(
            "every weight of model.prompt_blend is 0, so the images would be conditioned on nothing",
            "give at least one term a weight above 0, or drop model.prompt_blend",
        )
    if config.prompt_blend_phrases is not None and not uses_phrase:
        raise ConfigError(
            f"model.prompt_blend_phrases is {config.prompt_blend_phrases}, but no term of "
            "model.prompt_blend reads it (none has {phrase} in its text)",
            "add a term {text: '{phrase}', weight: W} to model.prompt_blend, or drop "
            "model.prompt_blend_phrases",
        )
    if not uses_phrase:
        return None
    path = config.prompt_blend_phrases
    fix = (
        "set model.prompt_blend_phrases to a text file of phrases, one per line (seed 002: the "
        "diffusion/ControlNet/aug_list.txt of NUBagciLab/DiffBoost), or drop the {phrase} term"
    )
    if path is None:
        raise ConfigError("a term of model.prompt_blend has {phrase}, but "
                          "model.prompt_blend_phrases is not set", fix)  # fmt: skip
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.prompt_blend_phrases {path} does not exist", fix)
    try:
        phrases = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"model.prompt_blend_phrases {path} is not UTF-8 text", fix) from None
    if not phrases:
        raise ConfigError(f"model.prompt_blend_phrases {path} holds no phrases", fix)
    return phrases


def phrase_line(seed: int, index: int, count: int, pick: str) -> int:
    """The line of ``count`` phrases that image ``index`` of sampling ``seed`` reads: a pure
    function of its arguments (never the global RNG), so any worker draws the same."""
    if pick == "cycle":
        return index % count
    digest = hashlib.sha256(f"prompt-blend-phrase:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def read_captions(path: Path) -> dict[str, str]:
    """A diffusers imagefolder ``metadata.jsonl``: one {"file_name", "text"} object per line."""
    if not path.is_file():
        raise ConfigError(f"model.captions {path} does not exist",
                          "point model.captions at the image folder's metadata.jsonl")  # fmt: skip
    captions: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file_name"], row.get("text", row.get("caption"))
        except (ValueError, KeyError, TypeError, AttributeError):
            row, name, text = None, None, None
        if not isinstance(name, str) or not isinstance(text, str):
            raise DataError(
                f'{path} line {number} is not a {{"file_name": ..., "text": ...}} object',
                "write one JSON object per line with a file_name and its text",
            )
        captions[name] = text
    if not captions:
        raise DataError(f"{path} holds no captions", "write one line per image")
    return captions


def caption_of(source: str, captions: dict[str, str]) -> str | None:
    """The caption of a row's source file: by its path relative to the folder, else its name.
    A multi-frame source (``file#frame``) takes its file's caption."""
    file = source.split("#", 1)[0]
    for key in (source, file):
        if key in captions:
            return captions[key]
    parts = Path(file).parts
    for start in range(1, len(parts)):
        key = str(Path(*parts[start:]))
        if key in captions:
            return captions[key]
    return None
