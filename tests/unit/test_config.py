"""The config loader: schema validation, overrides, one clear error per mistake."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml

from suite.config import RegistryName, RegistryUnion, config_digest, dump_yaml, from_dict
from suite.errors import ConfigError
from suite.registry import Registry
from suite.schema import SuiteConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_and_typed_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "data:\n  image_size: 128\n  clip_percentiles: [1, 99]\n"))
    assert isinstance(cfg, SuiteConfig)
    assert cfg.data.image_size == 128
    assert cfg.data.clip_percentiles == (1.0, 99.0)  # ints accepted where floats are expected
    assert cfg.data.aspect == "pad"  # default kept
    assert cfg.run.out_dir == Path("runs")


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  image_size: 128\n")
    cfg = load_config(path, ["data.image_size=64", "data.class_names=[a, b]", "run.name=x"])
    assert cfg.data.image_size == 64
    assert cfg.data.class_names == ["a", "b"]
    assert cfg.run.name == "x"


def test_unknown_key_names_key_file_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  image_sise: 128\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "data.image_sise" in message and str(path) in message
    assert "did you mean 'image_size'" in message and "allowed keys" in message


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'modle'.*allowed keys here: run, data"):
        load_config(write(tmp_path, "modle: {}\n"))


def test_wrong_type_names_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "data:\n  image_size: big\n"))
    assert "data.image_size" in str(err.value) and "expected int or null" in str(err.value)
    with pytest.raises(ConfigError, match="bool"):
        load_config(None, ["data.seed=true"])  # a bool is not an int


def test_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.aspect=squash"])
    assert "'pad', 'crop', 'stretch'" in str(err.value)


def test_tuple_length_checked() -> None:
    with pytest.raises(ConfigError, match="expected exactly 3"):
        load_config(None, ["data.split_fractions=[0.8, 0.2]"])


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, [f"data.images_dir={tmp_path / 'nope'}"])
    assert load_config(None, [f"data.images_dir={tmp_path}"]).data.images_dir == tmp_path


def test_unknown_override_key_and_bad_syntax() -> None:
    with pytest.raises(ConfigError, match="<command line>.*data.nope"):
        load_config(None, ["data.nope=1"])
    with pytest.raises(ConfigError, match="has no '='"):
        load_config(None, ["data.seed"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_safe_loaded(tmp_path: Path) -> None:
    # a python tag must not construct objects: safe_load refuses it
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "run:\n  name: !!python/object/apply:os.system ['true']\n"))


def test_round_trip_and_digest(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.image_size=32"])
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg
    assert config_digest(again) == config_digest(cfg)
    assert config_digest(load_config(None, ["data.image_size=33"])) != config_digest(cfg)


def _schema(path: Path) -> type:
    """Which schema a shipped config is read with: by folder or by its top-level sections."""
    from suite.evaluation.classify.config import ClassifyConfig
    from suite.evaluation.segment.config import SegmentEvalConfig
    from suite.pipeline.config import PipelineConfig

    if path.parent.name == "evaluate":
        return ClassifyConfig if path.name.startswith("classify") else SegmentEvalConfig
    sections = set(yaml.safe_load(path.read_text()) or {})
    return PipelineConfig if "stages" in sections else SuiteConfig


REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(REPO.glob("configs/**/*.yaml"))


def _load_shipped(path: Path) -> object:
    # data paths are placeholders a user fills in: only the keys and types are checked here
    data = yaml.safe_load(path.read_text()) or {}
    for section in ("data", "ingest"):
        if isinstance(data.get(section), dict):
            data[section] = {
                k: None if k in ("shards", "test_shards", "synthetic") else v
                for k, v in data[section].items()
            }
    return from_dict(_schema(path), data, source=str(path))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path: Path) -> None:
    _load_shipped(path)


# The digest of every shipped config (loaded as above), computed before the root schema moved out
# of suite/config.py and the kind unions moved onto registries. A stage records its config's digest
# to know when its outputs are stale, so a refactor of the engine must never change one.
SHIPPED_DIGESTS = {
    "configs/papers/aiding-diagnosis/run_pathmnist.yaml": "d36be4727b7b8ecfdd47ba9ca5080bf2779ca298c5eba344cd26c6b0cdbb49b7",
    "configs/papers/aiding-diagnosis/small.yaml": "8fc12d7403db9b82023841641580e3639676e13f71c576f116e1d223aba0da4f",
    "configs/papers/ort-thesis/run_chongqing.yaml": "587d05b5fb850eff687a1a8f5032e3449bff44e70f54f53a59ac0dd85cc60ba7",
    "configs/papers/ort-thesis/small.yaml": "5b3fcb3d0ba00dc9acfb22d3d2fcf0a1a81d9ae417dc28227306343a418d1bed",
    "configs/papers/diffboost/small.yaml": "2b9a627c17e92dedcb469c20c9f5283702d2044c017c377f69e5ffd4b4eea298",
    "configs/papers/diffboost/run_prostate_mri.yaml": "c7f27176a26b3bdb4bec642c5cff58d38c855512621d9eccbe9764755b438617",
    "configs/papers/diffboost/run_spleen_ct.yaml": "5af6a2716de5bdf157610d204967ea01eb731c0f0893c0746b1fb4928ed6d7c4",
    "configs/papers/diffboost/run_busi.yaml": "8f7a8342b907398162fed0b14e0d22e23b89aabc491d9eecbcae469c8c5bbd20",
    "configs/data/chest_dicom.yaml": "b282089ecf32513972732012e497e620d62644dcbe521677f31b6c2917b653fe",
    "configs/data/covid_radiography.yaml": "1489a22f36eb48506b0a4855f2ea5a5f820d4bb88d21bf91dd0bec2edaab3a98",
    "configs/data/covidx_cxr4.yaml": "3a29fa1c9e33ec7df043686d1141e42557eafee0af6874d9b82436053317197a",
    "configs/data/fashion_mnist.yaml": "3c1dfea7beefcadde8c43b6aaff29e7a06f73dcef7ead512e2b83b93e23f0070",
    "configs/data/mni152.yaml": "0bdb86296768afa4371ce45546b33f055d7d47d34d2f803fb0f5208857997fe6",
    "configs/data/nih_chestxray14.yaml": "7947ea176725608f04a0f92bc9b99044eb0daf0cf88568873ef3550e25081561",
    "configs/data/pathmnist.yaml": "8a33c74b23eeba677fca79c94ceed665ed1fa46cbeadfbd1e253a40181499d6f",
    "configs/evaluate/classify_fashion_mnist.yaml": "0d891730990bc79233a2855293d7a6350c15b2508c4ec33aac210bd4b2c1fc2e",
    "configs/evaluate/segment_merging.yaml": "05883d0e4e893b84feaacc34e950f1e78d00c7c8929d7e22563d74a97bf69a2b",
    "configs/evaluate/segment_mni152.yaml": "b6152cd3edf1dc54ca021ad299c2e01efb7f1439de182fe4c0b5ef1f8125d584",
    "configs/evaluate/segment_ssl_resnet.yaml": "8d7c37b3129be85aac26b7bd2af3b9dffd72887043e51125bfd64ce8eef64715",
    "configs/generator/tiny_acgan.yaml": "e8d79671b062aa832a95354a954bb57c9aa0abde80bfe338139452f8b0e50534",
    "configs/generator/tiny_dcgan.yaml": "111f2b186576035d641cc5a874b8d3f855bd27001af7d44fa29eddc4fc1df30f",
    "configs/generator/tiny_diffusers.yaml": "d38adfebb8e5694b4fc65a1c294edc7f869261dcae077adfdd154cc698554f0f",
    "configs/generator/tiny_lucidrains.yaml": "c6f55a1d548576c066a6169dee796648c77fce996597c8bbeaa285162c99b8bb",
    "configs/generator/tiny_sd_lora.yaml": "68bc73d3639f0757e26a0a55fe8291a1fe8e351e6b68a3b7f5793d18b3332078",
    "configs/generator/tiny_controlnet.yaml": "148111c6c6aa9dc5d659ca0eae2ee936318b3ee983c85a9fffdf20cfe1845569",
    "configs/generator/tiny_mask_ddpm.yaml": "aee80074b51b4024a13198cda9c1fb8f75204071a2fd4c1382fcf0cf2b8aabb7",
    "configs/generator/mask_ddpm_mni152.yaml": "60c878a34fda140d7adcf779091e6175c5768d0845dac41a4fc58d961f32cc8e",
    "configs/papers/diffboost/controlnet.yaml": "40ec1c42eaa4b30c69dc041399d169323cd1d21994057f7ab12e28b6a3d3ff11",
    "configs/generator/tiny_pggan.yaml": "5a97c547b9e61777b2027b87b0e46317cd840db3a2912fed529c57acbc195839",
    "configs/papers/aiding-diagnosis/sd15_lora_pathmnist.yaml": "a34a1d6897555a8d4a3743d9a961844012325a5a228dbe3d040374cc920a72dc",
    "configs/papers/i-synmed/ddpm.yaml": "fd98bf23ef10dda6ed59dc0ba6732c5b91aada9e0840e26913dd930c2ce252e5",
    "configs/papers/i-synmed/dino_vit_s16.yaml": "b1bb0e833998e5df5706e1e17639b1fff14a2db7046ddbbbedc0c54dcc4f7844",
    "configs/papers/i-synmed/small.yaml": "ed457bfd7622490c26c9da14f8a5caa672e98f355e36ad63a65eff520638638f",
    "configs/papers/medcls/acgan.yaml": "571eb8a1f6a5ea91d15da2e0e12ca8d98b49c0b3034f2b1d86ef2c0734d55eb1",
    "configs/papers/medcls/dcgan_per_class.yaml": "0933ddeb89d2013943c85859e5d7e80b477b56e5564e407d9a20e837283311d2",
    "configs/papers/medcls/dino_vit_s16.yaml": "6430fd315658733df40ddf2952fc29ccfcc3e9797aea2b80ef4fa8857c0f4896",
    "configs/papers/medcls/run_dino_vit_s16.yaml": "47f2201007f2bfac42749bbf4463700e3b61db39fecab61412599023099417f4",
    "configs/papers/medcls/run_simclr_resnet18.yaml": "55ed11508d9502d47eabcd24f544f7fc575a1bbf872402ee1d4474f48d6a018b",
    "configs/papers/medcls/simclr_resnet18.yaml": "9956749d92e60acd257f876ccdde0e569a423fd5285c1e162194dcc2794131df",
    "configs/papers/medcls/small_acgan.yaml": "bddae42bca2cfe39ef0e8fdcaa96dea9f5aa718fad0034bd168213e976e6cb29",
    "configs/papers/medcls/small_dcgan.yaml": "f31ad3e6b8723d085de387c6c4a3e9817de10c28c85f0b79c0c42a5358ca9137",
    "configs/papers/medcls/small_ddpm.yaml": "9084cd83bf3d116a74581ece4dbb7b0eb10c42a1386bb884f37a0af86665467a",
    "configs/papers/medcls/small_simclr.yaml": "74032ec5269e4be596f9f2f7f4d6ae88c3c46510cc12b8d7e964d87bef9f24cf",
    "configs/papers/medcls/small_real.yaml": "7e8dcae570cacc800244b11bb8eec0a8df2230d7bb85ad9ffadb4cd410f23aaa",
    "configs/papers/ort-thesis/pggan.yaml": "be2bd872f01000d4905ea9188d375fb1e8d0561a6e4ae98e88a17ad976a5c51c",
    "configs/papers/ort-thesis/pggan_thesis.yaml": "e10504d4c79346ac66ad7b66548f242f3cf1c478ac8ebe8dc51276ea0fa4a960",
    "configs/papers/ort-thesis/sd15_dreambooth.yaml": "1d6d55f1e51afc24def512f18cb7bebf634cdb36132c84307c2064b46b095feb",
    "configs/papers/ort-thesis/sd15_lora.yaml": "489910385edb09137eb7e7fe0d9cea2c07756be3818250b565e1ac5631f24892",
    "configs/papers/ort-thesis/sd21_dreambooth_lora.yaml": "12d1fbe27761a4199daf4649c7be362f3fd3459794d395880a7faba6b300e059",
    "configs/quickstart.yaml": "ff958f37da35e1ae4da2f2ab0dad3d1996dddf05b1f31fefcb8054483d2a9670",
    "configs/ssl/tiny_dino_vit.yaml": "3c8c269e51cb3639fdfb19793985ae6d49c6b38106f42f9df6e2f1a802b08857",
    "configs/ssl/tiny_simclr.yaml": "a4e78285842f5168e55d85ccbc07d4b55ddd60dc0d3c29995e3f91c99cd64bf4",
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_digests_are_unchanged(path: Path) -> None:
    assert config_digest(_load_shipped(path)) == SHIPPED_DIGESTS[str(path.relative_to(REPO))]


def test_default_config_digest_is_unchanged() -> None:
    assert config_digest(SuiteConfig()) == (
        "d8a89ac903c9b5b13cf1757076343d06fdbcc481e59655ceda30835e16f84af9"
    )


def test_tagged_union_picks_the_schema_by_kind(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "model:\n  kind: ddpm_diffusers\n  block_out_channels: [8, 16]\n")
    )
    assert type(cfg.model).__name__ == "DiffusersDDPMConfig"
    assert cfg.model.block_out_channels == (8, 16)
    cfg = load_config(write(tmp_path, "model:\n  kind: ddpm_lucidrains\n"), ["model.dim=32"])
    assert cfg.model.dim == 32


def test_tagged_union_errors_name_the_kind_and_its_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.kind.*'ddpm_lucidrains', 'ddpm_diffusers'"):
        load_config(write(tmp_path, "model:\n  kind: gan\n"))
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "model:\n  kind: ddpm_lucidrains\n  block_out_channels: [8]\n"))
    assert "model.block_out_channels" in str(err.value) and "dim_mults" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key .model.block_out_channels.*dim_mults"):
        load_config(
            write(tmp_path, "model:\n  kind: ddpm_lucidrains\n"), ["model.block_out_channels=[8]"]
        )


# -- registry-backed unions and names ----------------------------------------------------------------


def test_registry_union_picks_the_method_config_by_kind() -> None:
    cfg = load_config(None, ["pretrain.method.kind=simclr", "pretrain.method.temperature=0.2"])
    assert type(cfg.pretrain.method).__name__ == "SimCLRConfig"
    assert cfg.pretrain.method.temperature == 0.2
    assert type(load_config(None, ["pretrain.epochs=1"]).pretrain.method).__name__ == "DINOConfig"


def test_registry_union_errors_name_the_kind_and_its_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pretrain.method.kind.*'dino', 'simclr'"):
        load_config(None, ["pretrain.method.kind=byol"])
    with pytest.raises(ConfigError, match="unknown key 'pretrain.method.n_local_views'"):
        load_config(None, ["pretrain.method.kind=simclr", "pretrain.method.n_local_views=2"])
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "pretrain:\n  method: {kind: simclr, n_local_views: 2}\n"))
    assert "pretrain.method.n_local_views" in str(err.value) and "temperature" in str(err.value)
    with pytest.raises(ConfigError, match="expected a mapping whose kind is one of 'dino'"):
        load_config(write(tmp_path, "pretrain:\n  method: null\n"))
    with pytest.raises(ConfigError, match="expected float"):
        load_config(None, ["pretrain.method.kind=simclr", "pretrain.method.temperature=hot"])


@dataclass(kw_only=True, slots=True)
class _TinyConfig:
    kind: Literal["tiny"] = "tiny"
    width: int = 4


class _Tiny:
    """An implementation that names its config class (the ``attr="config_class"`` style)."""

    config_class = _TinyConfig


_TINY = Registry("toy", {"tiny": f"{__name__}:_Tiny"})


@dataclass(kw_only=True, slots=True)
class _ToySchema:
    toy: Annotated[Any, RegistryUnion(_TINY, attr="config_class")] | None = None
    name: Annotated[str, RegistryName(_TINY, extra=("none",))] = "none"


def test_registry_union_with_an_attr_and_registry_names() -> None:
    cfg = load_config(None, ["toy.kind=tiny", "toy.width=8", "name=tiny"], schema=_ToySchema)
    assert cfg.toy == _TinyConfig(width=8) and cfg.name == "tiny"
    assert load_config(None, schema=_ToySchema).toy is None
    with pytest.raises(ConfigError, match="allowed values: 'none', 'tiny'"):
        load_config(None, ["name=big"], schema=_ToySchema)
    with pytest.raises(ConfigError, match="set toy.kind to one of: 'tiny'"):
        load_config(None, ["toy.width=8"], schema=_ToySchema)


# -- value ranges and float literals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("train.batch_size", "0", "an integer >= 1"),
        ("train.checkpoint_every", "0", "an integer >= 1"),
        ("model.image_size", "0", "an integer >= 1"),
        ("data.image_size", "0", "an integer >= 1"),
        ("data.shard_size", "0", "an integer >= 1"),
        ("train.lr", "0", "a finite number > 0"),
        ("train.lr", "-1e-3", "a finite number > 0"),
        ("data.split_fractions", "[0, 0, 0]", "sum is above 0"),
        ("data.split_fractions", "[0.9, -0.1, 0.2]", "a finite number >= 0"),
    ],
)
def test_out_of_range_is_one_error_naming_key_value_file_and_range(
    tmp_path: Path, key: str, value: str, allowed: str
) -> None:
    path = write(tmp_path, "model:\n  kind: ddpm_diffusers\n")
    with pytest.raises(ConfigError) as err:  # as an override
        load_config(path, [f"{key}={value}"])
    text = str(err.value)
    assert str(path) in text and f"'{key}" in text and "out of range" in text and allowed in text
    section, name = key.split(".")
    kind = "" if section == "model" else "model:\n  kind: ddpm_diffusers\n"
    body = f"{kind}{section}:\n  {name}: {value}\n" + (
        "  kind: ddpm_diffusers\n" if not kind else ""
    )
    with pytest.raises(ConfigError, match="out of range"):  # and in the file
        load_config(write(tmp_path, body))


def test_optional_range_field_keeps_null_and_type_errors(tmp_path: Path) -> None:
    assert load_config(None, ["data.image_size=null"]).data.image_size is None
    with pytest.raises(ConfigError, match="expected int or null"):
        load_config(None, ["data.image_size=big"])
    with pytest.raises(ConfigError, match=r"data.image_size.*out of range"):
        load_config(None, ["data.image_size=-4"])


@pytest.mark.parametrize(("text", "value"), [("1e-3", 1e-3), ("1E-4", 1e-4), (".5", 0.5),
                                             ("+2.5e+1", 25.0), ("3", 3.0)])  # fmt: skip
def test_float_fields_take_float_literals_from_overrides_and_files(
    tmp_path: Path, text: str, value: float
) -> None:
    assert load_config(None, [f"train.lr={text}"]).train.lr == value
    assert load_config(write(tmp_path, f"train:\n  lr: {text}\n")).train.lr == value


@pytest.mark.parametrize("text", ["inf", "nan", ".inf", "1e-3x", "one"])
def test_float_fields_refuse_non_finite_and_non_numbers(text: str) -> None:
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(None, [f"train.lr={text}"])


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--shard-size", "0"], "data.shard_size"),
        (["--image-size", "0"], "data.image_size"),
        (["--split-fractions", "0,0,0"], "data.split_fractions"),
    ],
)
def test_ingest_flags_out_of_range_exit_2_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], key: str
) -> None:
    from suite.cli import main
    from tests.unit.data.helpers import make_class_folders

    source = make_class_folders(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    assert main(["data", "ingest", str(source), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and key in err and "out of range" in err and "fix: set" in err
    assert not out.exists() and "Traceback" not in err


@pytest.mark.parametrize(
    "override", ["train.batch_size=0", "train.checkpoint_every=0", "model.image_size=0"]
)
def test_train_generator_out_of_range_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str
) -> None:
    from suite.cli import main

    repo = Path(__file__).resolve().parents[2]
    config = str(repo / "configs/generator/tiny_diffusers.yaml")
    argv = ["train", "generator", config, f"run.out_dir={tmp_path}", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert override.split("=")[0] in err and "out of range" in err
    assert not any(tmp_path.iterdir())


def test_pretrain_out_of_range_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from suite.cli import main

    repo = Path(__file__).resolve().parents[2]
    config = next((repo / "configs/ssl").glob("*.yaml"))
    assert main(["pretrain", str(config), f"run.out_dir={tmp_path}", "train.batch_size=0"]) == 2
    assert "train.batch_size" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_an_added_option_enters_the_digest_only_off_its_default() -> None:
    """``added_field`` options (train.lr_restart_steps joined after configs had digests) leave
    every older config's digest as it was until a config sets them."""
    from suite.config import apply_override

    base = config_digest(SuiteConfig())
    data: dict = {}
    apply_override(data, "train.lr_restart_steps=500", SuiteConfig)
    assert config_digest(from_dict(SuiteConfig, data, source="test")) == base
    apply_override(data, "train.lr_restart_steps=300", SuiteConfig)
    assert config_digest(from_dict(SuiteConfig, data, source="test")) != base
