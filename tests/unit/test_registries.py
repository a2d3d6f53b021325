"""Every registry of the suite: its entries import, their names match what configs and specs say,
and each entry builds from its default config (tiny sizes where the default is big)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np
import pytest
import torch
from PIL import Image

from suite.data.ingest.adapters import ADAPTERS
from suite.data.ingest.base import SourceAdapter
from suite.data.ingest.options import IngestOptions
from suite.errors import ConfigError, DataError
from suite.features.encoders import ENCODERS, EncoderKind, build_encoder, resolve_encoder
from suite.generative.families import GENERATORS
from suite.models.backbones import FAMILIES, BackboneSpec, build_backbone, family_of, save_backbone
from suite.registry import Registry
from suite.ssl.method import Progress, SSLMethod
from suite.ssl.registry import CONFIGS, METHODS

REGISTRIES: dict[str, Registry[Any]] = {
    "ssl configs": CONFIGS,
    "ssl methods": METHODS,
    "backbone families": FAMILIES,
    "ingest formats": ADAPTERS,
    "encoders": ENCODERS,
    "generators": GENERATORS,
}


@pytest.mark.parametrize("registry", REGISTRIES.values(), ids=list(REGISTRIES))
def test_every_entry_imports(registry: Registry[Any]) -> None:
    assert registry.names()
    for name in registry.names():
        assert registry.get(name) is registry[name]  # imported once, then cached
    assert list(dict(registry)) == registry.names()


@pytest.mark.parametrize("registry", REGISTRIES.values(), ids=list(REGISTRIES))
def test_an_unknown_name_lists_the_known_ones(registry: Registry[Any]) -> None:
    with pytest.raises(ConfigError) as err:
        registry.get("no-such-entry")
    assert f"unknown {registry.what} 'no-such-entry'" in str(err.value)
    assert ", ".join(registry.names()) in str(err.value)


def _kind_literal(cls: type) -> Any:
    kind = get_type_hints(cls)["kind"]
    assert get_origin(kind) is Literal, f"{cls.__name__}.kind is not a Literal"
    return get_args(kind)


@pytest.mark.parametrize("registry", [CONFIGS, GENERATORS], ids=["ssl", "generators"])
def test_config_entries_are_dataclasses_of_their_kind(registry: Registry[Any]) -> None:
    for name in registry.names():
        cls = registry.get(name)
        assert dataclasses.is_dataclass(cls)
        assert _kind_literal(cls) == (name,)
        assert cls().kind == name  # the default config is of its own kind


def test_config_loading_imports_no_torch() -> None:
    # the registries that configs read list config classes, so loading a config stays torch-free
    code = (
        "import sys\n"
        "from suite.schema import load_config\n"
        "load_config(None, ['model.kind=ddpm_diffusers', 'pretrain.method.kind=simclr'])\n"
        "import suite.cli; suite.cli.build_parser()\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_config_engine_imports_no_stage() -> None:
    code = (
        "import sys, suite.config\nprint(sorted(m for m in sys.modules if m.startswith('suite')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # leaf modules only (standard library inside): the errors, the registry and the digest helper
    assert out.stdout.strip() == (
        "['suite', 'suite.artifacts', 'suite.artifacts.digests', 'suite.config', 'suite.errors', "
        "'suite.registry']"
    )


# -- SSL methods -----------------------------------------------------------------------------------

SSL_SPEC = BackboneSpec(arch="vit", image_size=16, patch_size=4, num_layers=1, num_heads=2,
                        hidden_dim=32, mlp_dim=64, in_channels=1)  # fmt: skip
# Fields of a method's default config that are too big for a unit test; a new method whose
# defaults are small needs no line here.
TINY_SSL: dict[str, dict[str, Any]] = {
    "dino": dict(
        head_hidden_dim=32,
        head_bottleneck_dim=8,
        head_output_dim=16,
        n_local_views=2,
        local_crop_size=8,
    ),  # fmt: skip
    "simclr": dict(head_hidden_dim=32, head_output_dim=16),
}


@pytest.mark.parametrize("name", METHODS.names())
def test_every_ssl_method_builds_from_its_default_config(name: str) -> None:
    cfg = dataclasses.replace(CONFIGS.get(name)(), **TINY_SSL.get(name, {}))
    cls = METHODS.get(name)
    assert issubclass(cls, SSLMethod)
    torch.manual_seed(0)
    method = cls(build_backbone(SSL_SPEC), SSL_SPEC, cfg)
    transform = cls.views(cfg, SSL_SPEC)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)) for _ in range(4)]
    per_image = [transform(im) for im in images]
    views = [torch.stack(v) for v in zip(*per_image)]
    loss = method(views, Progress(step=0, max_steps=10, steps_per_epoch=5))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert isinstance(method.export_backbone(), torch.nn.Module)


# -- backbones -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES.names())
def test_every_backbone_family_builds_its_first_arch(name: str) -> None:
    family = FAMILIES.get(name)
    for arch in family.archs:
        assert family_of(arch) == name  # no arch is claimed by two families
    # small enough for a CPU: 32 px, one ViT block (other families ignore the ViT sizes)
    spec = BackboneSpec(arch=family.archs[0], image_size=32, patch_size=8, num_layers=1)
    assert spec.family == name
    net = build_backbone(spec).eval()
    with torch.no_grad():
        features = net(torch.randn(2, spec.in_channels, 32, 32))
    assert features.shape == (2, spec.dim)
    assert family.state(net) and set(spec.to_json()) >= family.fields


def test_an_unknown_arch_lists_every_family_arch() -> None:
    with pytest.raises(DataError, match="arch 'vgg' is not supported") as err:
        family_of("vgg")
    for name in FAMILIES.names():
        assert ", ".join(FAMILIES.get(name).archs) in err.value.fix


# -- encoders --------------------------------------------------------------------------------------


def _default_spec(name: str, tmp_path: Path) -> str:
    """The spec an encoder kind is written as by default (``KIND`` or ``KIND:ARGUMENT``)."""
    kind: EncoderKind = ENCODERS.get(name)
    if kind.argument != "required":
        return name
    if name == "clip":  # a local CLIP folder: a tiny transformers one
        from transformers import CLIPConfig, CLIPModel

        tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1)
        tower |= dict(num_attention_heads=4)
        config = CLIPConfig(
            text_config=tower | dict(vocab_size=99, bos_token_id=0, eos_token_id=2),
            vision_config=tower | dict(image_size=32, patch_size=8),
            projection_dim=16,
        )
        CLIPModel(config).save_pretrained(tmp_path / "clip")
        return f"clip:{tmp_path / 'clip'}"
    # ssl reads a backbone export: a tiny one
    spec = BackboneSpec(arch="resnet18", image_size=32, in_channels=1, stem="cifar")
    return f"{name}:{save_backbone(build_backbone(spec), spec, tmp_path / 'export')}"


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_builds_from_its_default_spec(name: str, tmp_path: Path) -> None:
    spec = resolve_encoder(_default_spec(name, tmp_path))
    assert spec.kind == name
    encoder = build_encoder(spec)
    images = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)  # one: inception is 299 px
    assert encoder(images).shape == (1, spec.dim)


def test_an_unknown_encoder_lists_every_kind() -> None:
    with pytest.raises(DataError) as err:
        resolve_encoder("clip")
    assert err.value.fix == (
        "use inception, inception:768, random, random:SIZE, ssl:PATH (a backbone export of "
        "synmed pretrain), efficientnet_lite0, efficientnet_lite0:PATH or clip:PATH (a local "
        "transformers or open_clip CLIP folder)"
    )
    with pytest.raises(DataError, match="unknown encoder"):  # no argument where one is needed
        resolve_encoder("ssl")
    with pytest.raises(DataError, match="Inception-v3 offers 2048-d and 768-d"):  # a bad one
        resolve_encoder("inception:x")


# -- ingest formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_ingest_format_is_an_adapter_of_its_name(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS.get(name)
    assert issubclass(adapter, SourceAdapter) and adapter.name == name
    # an adapter is built from a source and the default options; on an empty folder it must fail
    # fast, with one message, and `--format auto` must not take the folder for its format
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not adapter.sniff(empty)
    with pytest.raises(DataError):
        adapter(empty, IngestOptions())


def test_data_format_accepts_auto_and_every_format() -> None:
    from suite.schema import load_config

    for name in ("auto", *ADAPTERS.names()):
        assert load_config(None, [f"data.format={name}"]).data.format == name
    with pytest.raises(ConfigError, match="'auto', " + ", ".join(repr(n) for n in ADAPTERS)):
        load_config(None, ["data.format=png"])


# -- generators ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS.names())
def test_every_generator_family_builds_from_its_default_config(
    kind: str, request: pytest.FixtureRequest
) -> None:
    from suite.generative.base import Conditions, Generator, SampleOptions
    from suite.generative.families import FAMILIES, build_generator

    cls = GENERATORS.get(kind)
    names = {f.name for f in dataclasses.fields(cls)}
    fast = {"timesteps": 4} if "timesteps" in names else {}
    if "base" in names:  # a frozen base model: the tiny Stable Diffusion folder
        fast["base"] = str(request.getfixturevalue("tiny_sd"))
    if "hints" in names:  # a ControlNet: edge maps of a tiny image+mask set, at the tiny VAE's 2x
        from suite.data.edges import write_edge_set
        from tests.unit.data.helpers import make_shard_set

        tmp = request.getfixturevalue("tmp_path")
        shards = make_shard_set(tmp / "s", n=2, classes=("a", "b"), size=16, masks=True)
        write_edge_set(shards, tmp / "edges", progress=False)
        fast.update(hints=str(tmp / "edges"), conditioning_embedding_out_channels=(16, 32))
    # the defaults but for size (16 px: ACGAN's D halves four times) and a diffusion's steps
    config = cls(image_size=16, **fast)
    family = FAMILIES.get(kind)
    assert issubclass(family, Generator) and family.config_class is cls
    torch.manual_seed(0)
    model = build_generator(config)
    assert model.samplers and model.trainable_modules()
    if "hints" in names:
        from suite.data.dataset import ShardDataset

        model.bind_rows(ShardDataset(shards))
    batch = {"image": torch.rand(2, config.channels, 16, 16), "label": torch.tensor([0, 1]),
             "index": torch.tensor([0, 1])}  # fmt: skip
    if "masks" in family.conditions:
        batch["mask"] = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
    for objective in getattr(family, "step_order", ("model",)):  # a GAN's D and G objectives
        loss = model(batch, objective)
        assert loss.ndim == 0 and torch.isfinite(loss), objective
    labels = Conditions(labels=np.zeros(1, dtype=np.int64)) if model.num_classes else None
    if "images" in family.conditions:  # a conditioning image per row
        labels = Conditions(images=np.zeros((1, 1, 16, 16), dtype=np.uint8))
    elif "masks" in family.conditions:  # a mask per row (mask_ddpm)
        labels = Conditions(masks=np.zeros((1, 1, 16, 16), dtype=np.uint8))
    out = model.sample([0], 0, labels, SampleOptions(sampler=model.samplers[0], steps=2))
    assert out.images.shape == (1, config.channels, 16, 16)
