"""Stable Diffusion fine-tuned with LoRA adapters on per-class prompts or per-image captions.

The training step is diffusers' ``examples/text_to_image/train_text_to_image_lora.py``: frozen
VAE and text encoder, ``unet.add_adapter(LoraConfig(...))`` (peft), MSE on the scheduler's target
with the optional noise offset and Min-SNR weighting (suite/generative/stable_diffusion.py).
Only the adapters train: :class:`AdapterSet` holds the adapter parameters themselves (shared
with the UNet, not copies), so the loop's EMA, checkpoints and optimizers see a few megabytes and
never the base. The export is diffusers' LoRA format (``pytorch_lora_weights.safetensors``, what
``StableDiffusionPipeline.load_lora_weights`` reads) and names the base folder by digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from suite.errors import ConfigError, DataError
from suite.generative.configs import SDLoRAConfig
from suite.generative.stable_diffusion import StableDiffusionFamily

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE


class AdapterSet(nn.Module):
    """The LoRA parameters of one module, as parameters of their own (the same tensors).

    Its ``state_dict`` is the adapters alone; loading one writes into the wrapped model. A
    deep copy (the EMA's) copies only the adapters.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = [n for n, p in model.named_parameters() if "lora_" in n]
        self.weights = nn.ParameterDict(
            {n.replace(".", "/"): p for n, p in model.named_parameters() if "lora_" in n}
        )
        if not self.weights:
            raise ConfigError(
                f"no LoRA layers were added to the {type(model).__name__}",
                "check model.lora_targets / model.text_encoder_targets name its linear layers",
            )


class SDLoRA(StableDiffusionFamily):
    config_class: ClassVar[type] = SDLoRAConfig
    weights_key = "adapter_sha256"

    def __init__(self, config: SDLoRAConfig) -> None:
        super().__init__(config)
        self.unet.add_adapter(self.lora_config(config.lora_targets))
        self.unet_lora = AdapterSet(self.unet)
        self.text_lora: AdapterSet | None = None
        if config.train_text_encoder:
            self.text_encoder.add_adapter(self.lora_config(config.text_encoder_targets))
            self.text_lora = AdapterSet(self.text_encoder)

    def lora_config(self, targets: Sequence[str]) -> Any:
        """peft's adapter settings from ``model.lora_*`` for the linear layers ``targets``."""
        from peft import LoraConfig

        cfg = self.config
        return LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            init_lora_weights="gaussian" if cfg.lora_init == "gaussian" else True,
            target_modules=list(targets),
        )

    @property
    def trains_text_encoder(self) -> bool:
        return self.text_lora is not None

    def modules_in_training(self) -> list[nn.Module]:
        return [self.unet] + ([self.text_encoder] if self.text_lora is not None else [])

    def trainable_modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"unet_lora": self.unet_lora}
        if self.text_lora is not None:
            modules["text_lora"] = self.text_lora
        return modules

    # -- export ------------------------------------------------------------------------------------

    def lora_layers(self) -> dict[str, dict[str, torch.Tensor]]:
        """The adapters in diffusers' key format, as ``save_lora_weights`` takes them."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = {
            "unet_lora_layers": convert_state_dict_to_diffusers(
                get_peft_model_state_dict(self.unet)
            )
        }
        if self.text_lora is not None:
            layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
                get_peft_model_state_dict(self.text_encoder)
            )
        return layers

    def export_files(self, directory: Path) -> None:
        from diffusers import StableDiffusionPipeline

        StableDiffusionPipeline.save_lora_weights(
            directory, **self.lora_layers(), weight_name=LORA_WEIGHTS, safe_serialization=True
        )

    def load_lora_file(self, directory: Path) -> None:
        """Load ``pytorch_lora_weights.safetensors`` into the adapters, refusing any key that
        does not land (a file from another base or rank)."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import (
            convert_state_dict_to_diffusers,
            convert_state_dict_to_peft,
            convert_unet_state_dict_to_peft,
        )
        from peft.utils import set_peft_model_state_dict

        state, _ = StableDiffusionPipeline.lora_state_dict(directory, weight_name=LORA_WEIGHTS)
        parts: dict[str, tuple[nn.Module, dict[str, torch.Tensor]]] = {
            "unet": (self.unet, {}),
            "text_encoder": (self.text_encoder, {}),
        }
        for key, value in state.items():
            prefix, _, rest = key.partition(".")
            if prefix not in parts:
                raise DataError(f"{directory / LORA_WEIGHTS} holds an unknown key {key!r}",
                                "re-export the generator with this synmed")  # fmt: skip
            parts[prefix][1][rest] = value
        for prefix, (module, weights) in parts.items():
            if not weights:
                continue
            if prefix == "unet":
                weights = convert_unet_state_dict_to_peft(weights)
            else:  # as diffusers.training_utils._set_state_dict_into_text_encoder
                weights = convert_state_dict_to_peft(convert_state_dict_to_diffusers(weights))
            result = set_peft_model_state_dict(module, weights, adapter_name="default")
            unexpected = getattr(result, "unexpected_keys", []) or []
            if unexpected:
                raise DataError(
                    f"{directory / LORA_WEIGHTS} does not fit model.base's {prefix} "
                    f"({len(unexpected)} keys land nowhere, e.g. {unexpected[0]})",
                    "sample with the base and LoRA settings the export was trained with",
                )

    @classmethod
    def load_exported(cls, directory: Path, config: SDLoRAConfig) -> SDLoRA:
        model = cls(config)
        model.load_lora_file(directory)
        return model.exported()
