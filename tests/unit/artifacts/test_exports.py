"""Export folders: one metadata file names the kind and the digest of every file, and loaders
check it before they touch a weight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite.artifacts.digests import sha256_file, sha256_json
from suite.artifacts.exports import EXPORT_META, folder_digests, read_export, write_export
from suite.errors import DataError


def _write(folder: Path, **kw) -> str:
    def files(tmp: Path) -> None:
        (tmp / "weights.bin").write_bytes(b"\x01\x02\x03")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"width": 4}')

    args = {"kind": "backbone", "family": "resnet18", "provenance": {"run": "r", "step": 3}}
    return write_export(folder, write_files=files, **{**args, **kw})


def test_round_trip_and_a_run_folder_finds_its_export(tmp_path: Path) -> None:
    digest = _write(tmp_path / "run" / "export", body={"spec": {"arch": "resnet18"}})
    for path in (tmp_path / "run" / "export", tmp_path / "run"):
        folder, meta, got = read_export(path, "backbone")
        assert folder == tmp_path / "run" / "export" and got == digest
        assert got == sha256_file(folder / EXPORT_META)  # the identity is the metadata's digest
        assert (meta.kind, meta.family, meta.version) == ("backbone", "resnet18", 1)
        assert meta.provenance == {"run": "r", "step": 3} and meta.body == {
            "spec": {"arch": "resnet18"}
        }
        assert meta.files == {
            "sub/config.json": sha256_file(folder / "sub" / "config.json"),
            "weights.bin": sha256_file(folder / "weights.bin"),
        }
    # writing again replaces the export whole: no leftover from the older one, no staging folder
    (tmp_path / "run" / "export" / "stale").write_text("x")
    _write(tmp_path / "run" / "export")
    assert not (tmp_path / "run" / "export" / "stale").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["export"]


def test_kind_mismatch_is_refused_before_loading(tmp_path: Path) -> None:
    _write(tmp_path / "e", kind="classifier", family="finetune")
    with pytest.raises(DataError, match="is a classifier export, not a backbone export") as err:
        read_export(tmp_path / "e", "backbone")
    assert "synmed pretrain" in (err.value.fix or "")


def test_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "e")
    (tmp_path / "e" / "weights.bin").write_bytes(b"\x01\x02\x04")
    with pytest.raises(DataError, match="weights.bin is missing or does not match the digest"):
        read_export(tmp_path / "e", "backbone")
    read_export(tmp_path / "e", "backbone", verify=False)  # a loader that already verified it
    _write(tmp_path / "e")
    (tmp_path / "e" / "sub" / "config.json").unlink()
    with pytest.raises(DataError, match="config.json is missing"):
        read_export(tmp_path / "e", "backbone")


def test_a_folder_without_metadata_or_with_a_bad_one_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "backbone.safetensors").write_bytes(b"")
    (tmp_path / "old" / "config.json").write_text('{"arch": "resnet18"}')  # the layout before
    with pytest.raises(
        DataError, match=f"not a synmed backbone export \\(no {EXPORT_META}\\)"
    ) as e:
        read_export(tmp_path / "old", "backbone")
    assert "re-export" in (e.value.fix or "")
    (tmp_path / "old" / EXPORT_META).write_text(json.dumps({"kind": "backbone", "colour": 1}))
    with pytest.raises(DataError, match="not a valid export metadata file"):
        read_export(tmp_path / "old", "backbone")
    _write(tmp_path / "new")
    meta = json.loads((tmp_path / "new" / EXPORT_META).read_text())
    (tmp_path / "new" / EXPORT_META).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DataError, match="export version 99") as e:
        read_export(tmp_path / "new", "backbone")
    assert "upgrade" in (e.value.fix or "")


def test_a_moved_or_changed_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "sd-base"
    (base / "unet").mkdir(parents=True)
    (base / "unet" / "w.bin").write_bytes(b"base")
    bases = {"sd": {"path": str(base), "sha256": sha256_json(folder_digests(base))}}
    _write(tmp_path / "e", kind="generator", family="sd_lora", bases=bases)
    assert read_export(tmp_path / "e", "generator")[1].bases == bases
    base.rename(tmp_path / "moved")
    with pytest.raises(DataError, match="sd base model .* does not exist"):
        read_export(tmp_path / "e", "generator")
    (tmp_path / "moved").rename(base)
    (base / "unet" / "w.bin").write_bytes(b"other")
    with pytest.raises(DataError, match="changed since the export was made"):
        read_export(tmp_path / "e", "generator")


def test_backbone_and_classifier_exports_load_through_the_metadata(tmp_path: Path) -> None:
    from suite.evaluation.classify.backbone import ResolvedBackbone
    from suite.evaluation.classify.finetune import (
        Classifier,
        export_classifier,
        load_classifier,
        make_preprocess,
    )
    from suite.models.backbones import BackboneSpec, build_backbone, load_backbone, save_backbone

    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    torch.manual_seed(0)
    net = build_backbone(spec).eval()
    save_backbone(net, spec, tmp_path / "bb", {"method": "dino"})
    assert sorted(p.name for p in (tmp_path / "bb").iterdir()) == [
        "backbone.safetensors",
        EXPORT_META,
    ]
    _, meta, _ = read_export(tmp_path / "bb", "backbone")
    assert meta.family == "resnet18" and meta.provenance == {"method": "dino"}
    loaded, loaded_spec = load_backbone(tmp_path / "bb")
    assert loaded_spec == spec
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(DataError, match="is a backbone export, not a classifier export"):
        load_classifier(tmp_path / "bb")

    resolved = ResolvedBackbone(spec, 16, False, {"kind": "export"}, source=tmp_path / "bb")
    model = Classifier(make_preprocess(resolved), net, spec.dim, 3).eval()
    export_classifier(model, resolved, tmp_path / "clf", class_names=["a", "b", "c"],
                      multilabel=False, data_shape=(1, 16, 16), provenance={"seed": 0},
                      history=[{"epoch": 0, "val_loss": 1.0}])  # fmt: skip
    again, body, digest = load_classifier(tmp_path / "clf")
    assert digest == read_export(tmp_path / "clf", "classifier")[2]
    assert body["class_names"] == ["a", "b", "c"] and body["provenance"] == {"seed": 0}
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(again(images), model(images))
    with pytest.raises(DataError, match="is a classifier export, not a backbone export"):
        load_backbone(tmp_path / "clf")
