"""Every shipped run config runs end to end, shrunk by dotted overrides: tiny images, a few steps,
a few images, one seed, ViTs as ViT-Tiny; the recipe's own stages, generators, methods, variants
and protocols.

Run configs are found by glob (any YAML under configs/ with a ``stages:`` key), so a new recipe is
covered without touching this file; :func:`shrink` derives the overrides from what the recipe
holds. A recipe whose real data is not on this machine (the COVID-19 Radiography folder of the
medcls recipes, Fashion-MNIST when its Debian package is missing) runs on the real MNI152 slices
shipped with nilearn (``demo:mni152``, labelled by plane), and ImageNet rows with no weights file
here start from a file in torchvision's format written by the test (real loading code; no ImageNet
weights for ResNet-18 or ViT-S/16 can be had on this machine). One recipe also runs on the local
SLURM, one job per stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from suite.data.demo import resolve_source
from suite.errors import DataError
from suite.pipeline.stages import slug
from tests.integration.helpers import REPO, synmed, synmed_here, wait_until
from tests.integration.slurm_jobs import job_state, run

RUN_CONFIGS = sorted(
    p for p in REPO.glob("configs/**/*.yaml") if "stages" in (yaml.safe_load(p.read_text()) or {})
)
ON_SLURM = REPO / "configs" / "papers" / "medcls" / "run_simclr_resnet18.yaml"
# seed 003's small run: its eval_self_validate stage reads another job's classifier exports
SELF_VALIDATE_ON_SLURM = REPO / "configs" / "papers" / "aiding-diagnosis" / "small.yaml"
# Run once each: the quickstart in tests/integration/test_run.py (with skip, refuse and --force),
# ON_SLURM and SELF_VALIDATE_ON_SLURM in test_medcls_recipe_runs_on_slurm (every stage a SLURM job,
# the same checks).
# Seed 002's three settings are one chain on three datasets: one runs end to end, the others are
# checked to be it but for their data, prompt, step count and case unit (test_same_chain_...).
DIFFBOOST = REPO / "configs" / "papers" / "diffboost"
SAME_CHAIN = {
    DIFFBOOST / "run_spleen_ct.yaml": DIFFBOOST / "run_busi.yaml",
    DIFFBOOST / "run_prostate_mri.yaml": DIFFBOOST / "run_busi.yaml",
}
END_TO_END = [
    p
    for p in RUN_CONFIGS
    if p
    not in (REPO / "configs" / "quickstart.yaml", ON_SLURM, SELF_VALIDATE_ON_SLURM, *SAME_CHAIN)
]
SHRUNK_FOLDS = 2  # a cross-validated recipe runs 2 folds: the per-fold path at half of 3's cost
FALLBACK = "demo:mni152"  # real images with real labels (the slice plane), on every machine
FALLBACK_CLASSES = 3  # sagittal, coronal, axial


def recipe_id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


def source_here(source: str | None) -> bool:
    if source is None:
        return True
    try:
        path, _ = resolve_source(source)
    except DataError:  # a demo whose package is not installed
        return False
    return path.exists()


def standin_imagenet_weights(arch: str, patch_size: int, out: Path) -> Path:
    """A freshly initialised ``arch`` at ImageNet's input (3 x 224) saved as torchvision saves
    its weights: the file format and the loading path (a ViT's position embeddings resampled
    from 14 x 14 patches to the run's grid) are the real ones, the values are not."""
    import torch

    from suite.models.backbones import BackboneSpec, backbone_state, build_backbone

    spec = BackboneSpec(arch=arch, image_size=224, in_channels=3, patch_size=patch_size or 16)
    torch.manual_seed(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone_state(build_backbone(spec), spec), out)
    return out


def under(prefix: str, **values: object) -> list[str]:
    """``under("sample", steps=2)`` -> ``["sample.steps=2"]``."""
    return [f"{prefix}.{key}={value}" for key, value in values.items()]


SD_FAMILIES = ("sd_lora", "sd_dreambooth", "controlnet")


def shrink(cfg: dict[str, Any], out_dir: Path, sd_base: Path | None = None) -> list[str]:
    """Dotted overrides that keep a run config's structure and make it take about a minute on
    2 CPU cores. Only sections the recipe has are touched; sizes follow one rule so the plan-time
    checks (generator = ingest size, per-class counts) hold. ``sd_base``: the tiny Stable
    Diffusion the latent families run on (planning alone needs none)."""
    stages = cfg["stages"]
    o = [f"run.out_dir={out_dir}"]
    pre = cfg.get("pretrain", {}).get("pretrain", {})
    backbone = pre.get("backbone", {})
    patch = backbone.get("patch_size", 16) if backbone.get("arch", "").startswith("vit") else 0
    size = max(16, 2 * patch)  # a ViT needs a 2 x 2 patch grid on a global view, 1 x 1 on a local
    ingest = cfg.get("ingest", {})
    classes = len(ingest["class_names"]) if ingest.get("class_names") else None
    source = ingest.get("source")
    if "ingest" in stages:
        o.append(f"ingest.image_size={size}")
        source = ingest.get("source")
        if not source_here(source):
            source, classes = FALLBACK, FALLBACK_CLASSES
            o += under("ingest", source=FALLBACK, format="auto", plane_labels="true",
                       class_names="null", limit="null")  # fmt: skip
        elif ingest.get("limit"):
            o.append("ingest.limit=300")
        if source == FALLBACK and "mask_names" in ingest:
            # an image+mask recipe: the template's axial slices with its own GM/WM masks, in
            # contiguous slabs (the groups that folds keep whole)
            o += under("ingest", plane_labels="false", axis=2, mask_names="null",
                       min_mask_pixels=0, nifti_volume="null")  # fmt: skip
        elif source == FALLBACK:  # slices at least 30% tissue: 230 of the 435, all three planes
            o.append("ingest.min_foreground=0.3")
    if "cluster" in stages:
        o += under("cluster", encoder="random:16", k=2, representatives=3, workers=1)
        if cfg["cluster"].get("classes") and source == FALLBACK:  # the plane labels' classes
            o.append("cluster.classes=[axial]")
        if cfg["cluster"].get("keep"):
            o.append("cluster.keep={top: 1}")
    if "generator" in stages:
        model = cfg["generator"]["model"]
        o.append(f"generator.model.image_size={size}")
        if (
            classes is None and source != FALLBACK
        ):  # a source whose classes only its generator names
            classes = model.get("num_classes") or None
        if model["kind"] == "ddpm_lucidrains":
            o += under("generator.model", timesteps=20, dim=8, dim_mults="[1,2]")
        elif model["kind"] == "ddpm_diffusers":
            o += under("generator.model", timesteps=20, block_out_channels="[8,16]",
                       layers_per_block=1, attention="[false,true]", norm_num_groups=4)  # fmt: skip
        elif model["kind"] == "mask_ddpm":
            o += under("generator.model", timesteps=20, block_out_channels="[8,16]",
                       attention="[false,true]", norm_num_groups=4)  # fmt: skip
        elif model["kind"] in SD_FAMILIES:  # the tiny SD downsamples 2x: two hint levels
            o.append(f"generator.model.base={sd_base or out_dir / 'tiny-sd'}")
            if model.get("class_images"):  # the prior set is drawn by the user beforehand
                o.append("generator.model.class_images=null")
            if model["kind"] == "controlnet":
                o.append("generator.model.conditioning_embedding_out_channels=[16,32]")
            if "prompt_blend_phrases" in model:  # the seed's list is the user's to supply
                phrases = out_dir / "phrases.txt"
                out_dir.mkdir(parents=True, exist_ok=True)
                phrases.write_text("ultrasound, speckle\nlow contrast\n")
                o.append(f"generator.model.prompt_blend_phrases={phrases}")
        elif model["kind"] == "dcgan":
            o += under("generator.model", latent_dim=8, ngf=4, ndf=4)
            if model.get("architecture") == "seed":  # it makes 16 x seed_base px, then resizes
                o.append(f"generator.model.seed_base={size // 16}")
        else:  # acgan
            o.append("generator.model.latent_dim=8")
        if model.get("num_classes") and classes:
            o.append(f"generator.model.num_classes={classes}")
        # a per-cluster generator may train on a cluster's 3 representatives
        batch = 2 if cfg["generator"].get("clusters") else 8
        o += under("generator.train", max_steps=4, batch_size=batch, grad_accum=1, num_workers=0,
                   checkpoint_every=4, sample_every=4, sample_steps=2,
                   ema_update_after_step=0)  # fmt: skip
    if "sample" in stages:
        per_class = cfg["sample"].get("per_class")
        if per_class:
            o.append("sample.per_class=4")
        count = 4 * classes if per_class and classes else 24
        o += under("sample", num_images=count, shard_size=12, batch_size=12, steps=2, workers=1)
        if cfg["sample"].get("per_condition"):
            o.append("sample.per_condition=1")
    if "pretrain" in stages:
        o += under("pretrain.pretrain", epochs=1, warmup_epochs=0)
        if pre.get("epoch_size"):  # the recipe's is its full train split's
            o.append("pretrain.pretrain.epoch_size=32")
        o += under("pretrain.pretrain.backbone", image_size=size)
        arch = backbone.get("arch", "resnet18")
        if patch:  # ViT-Tiny: the same family, patch and depth at a quarter of ViT-S's weights
            arch = "vit_tiny"
            o.append(f"pretrain.pretrain.backbone.arch={arch}")
        o += under("pretrain", seeds="[0]")
        o += under("pretrain.train", batch_size=8, num_workers=0)
        if pre.get("method", {}).get("kind") == "dino":
            o += under("pretrain.pretrain.method", local_crop_size=size // 2, n_local_views=2,
                       head_hidden_dim=64, head_bottleneck_dim=32, head_output_dim=128,
                       warmup_teacher_temp_epochs=1)  # fmt: skip
        else:
            o += under("pretrain.pretrain.method", head_hidden_dim=32, head_output_dim=32)
        rows = cfg["pretrain"].get("variants", []) + cfg.get("eval_classify", {}).get(
            "backbones", []
        )
        # efficientnet_lite0's ImageNet file ships with a package; the other archs need one here
        needs_file = arch != "efficientnet_lite0" and not cfg["pretrain"].get("imagenet_weights")
        if needs_file and any(r.startswith("imagenet") for r in rows):
            weights = standin_imagenet_weights(arch, patch, out_dir / "imagenet.pth")
            o.append(f"pretrain.imagenet_weights={weights}")
    elif any(r.startswith("imagenet") for r in cfg.get("eval_classify", {}).get("backbones", [])):
        # an ImageNet classifier without pretraining (seed 003's ResNet-18): the row's arch at
        # the shrunk size, from a stand-in file unless it ships with a package
        arch = backbone.get("arch", "resnet18")
        if arch != "efficientnet_lite0":
            o.append(f"pretrain.pretrain.backbone.image_size={size}")
            if not cfg.get("pretrain", {}).get("imagenet_weights"):
                weights = standin_imagenet_weights(arch, patch, out_dir / "imagenet.pth")
                o.append(f"pretrain.imagenet_weights={weights}")
    if "eval_generator" in stages:
        o.append("eval_generator.encoders=[random:32]")  # Inception is 15 min of CPU here
    if "folds" in stages:
        o.append(f"folds.folds={SHRUNK_FOLDS}")
    if "eval_segment" in stages:
        o += under("eval_segment.config.train", epochs=1, seeds="[0]", batch_size=8)
        seg = cfg["eval_segment"].get("config", {})
        if seg.get("model", {}).get("encoder", "").startswith("monai"):
            o.append("eval_segment.config.model.channels=[8,16]")  # 2 levels fit 16 px
        if "merge_patch" in seg.get("train", {}):
            o.append(f"eval_segment.config.train.merge_patch={size // 4}")
    if "eval_classify" in stages:
        protocols = cfg["eval_classify"].get("config", {}).get("protocols", [])
        o.append("eval_classify.config.seeds=[0]")
        if "linear_probe" in protocols:
            o.append("eval_classify.config.linear_probe.epochs=2")
        if "finetune" in protocols:
            o += under("eval_classify.config.finetune", epochs=1, batch_size=8, patience=1)
        if "knn" in protocols:
            o.append("eval_classify.config.knn.k=3")
        synthetic = cfg["eval_classify"].get("synthetic", {})
        if synthetic.get("backbones") and "cluster" in stages:
            # one class doubled: its 24 sampled images cover its training rows (fewer here)
            o += under("eval_classify.synthetic", mode="ratio", ratio=0.02, classes="[]")
        elif synthetic.get("backbones"):
            # a few percent of ~200 real training images: within the 4 sampled per class
            o += under("eval_classify.synthetic", mode="ratio", ratio=0.02, per_class="{}")
    return o


def check_run(cfg: dict[str, Any], run_dir: Path) -> None:
    """Every stage recorded as complete (in each fold's run for the per-fold stages of a
    cross-validated run), every evaluation row with metrics, the report."""
    folds = cfg.get("folds", {}).get("folds", 3) if "folds" in cfg["stages"] else 0
    folds = min(folds, SHRUNK_FOLDS) if folds else 0
    once = ("ingest", "folds", "report") if folds else tuple(cfg["stages"])
    for stage in cfg["stages"]:
        dirs = [run_dir] if stage in once else [run_dir / f"fold{k}" for k in range(folds)]
        for d in dirs:
            record = json.loads((d / "stages" / f"{stage}.json").read_text())
            assert record["stage"] == stage and record["outputs"], (stage, record)
            if stage == "sample":
                assert record["outputs"]["images"] > 0
    if "pretrain" in cfg["stages"]:
        exports = json.loads((run_dir / "stages" / "pretrain.json").read_text())["outputs"]
        assert set(exports["exports"]) == {f"{v}-seed0" for v in cfg["pretrain"]["variants"]}
        for path in exports["exports"].values():
            assert (Path(path) / "synmed-export.json").is_file(), path
        if cfg["pretrain"].get("knn_monitor_real"):  # the epochs curve, one point per epoch
            for metrics in (run_dir / "pretrain").glob("*/metrics.jsonl"):
                records = [json.loads(line) for line in metrics.read_text().splitlines()]
                assert any(0 <= r.get("knn_accuracy", -1) <= 1 for r in records), metrics
            assert len(list((run_dir / "pretrain").glob("*/metrics.jsonl"))) == len(
                cfg["pretrain"]["variants"]
            )
    for task in ("eval_segment", "eval_classify"):
        if task in cfg["stages"]:
            rows = cfg[task].get("backbones", ["none", "synthetic", "real"])
            variants = cfg[task].get("variants") or {}
            if variants:  # eval_segment: every backbone under every training-data variant
                rows = [f"{b}-{v}" for b in rows for v in variants]
            augmented = cfg[task].get("synthetic", {}).get("backbones", [])
            conventional = (cfg[task].get("conventional") or {}).get("backbones", [])
            added = [f"{b}+synthetic-aug" for b in augmented]
            added += [f"{b}+conventional-aug" for b in conventional]
            for backbone in rows + added:
                folder = run_dir / task / slug(backbone)
                result = json.loads((folder / "result.json").read_text())
                assert result["metrics"], (task, backbone)
                if folds:  # merged over the folds: one value per fold (one seed, shrunk)
                    assert [f["fold"] for f in result["context"]["folds"]] == list(range(folds))
                    metric = next(iter(result["metrics"].values()))
                    assert len(metric["values"]) == folds, (task, backbone, metric)
    if "eval_self_validate" in cfg["stages"]:  # one classifier per eval_classify seed (1, shrunk)
        result = json.loads((run_dir / "eval_self_validate" / "result.json").read_text())
        assert result["task"] == "self_validate"
        assert len(result["metrics"]["self_validation.f1_macro"]["values"]) == 1
        assert result["per_class"]["self_validation"], result["per_class"]
        assert result["context"]["images"] > 0
    if "eval_generator" in cfg["stages"]:
        result = json.loads((run_dir / "eval_generator" / "result.json").read_text())
        assert result["metrics"]["fd_random_32"] >= 0
    if "report" in cfg["stages"]:
        report = (run_dir / "report" / "report.md").read_text()
        if "eval_self_validate" in cfg["stages"]:  # the merged result's row, not its seeds'
            assert "| self_validation |" in report and "classifier imagenet" in report
            assert "seeds/seed0" not in report.split("## Classification")[1].split("##")[0]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("path", END_TO_END, ids=recipe_id)
@pytest.mark.usefixtures("joined_ray")  # the Ray stages join the session's Ray
def test_recipe_runs_end_to_end(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cfg = yaml.safe_load(path.read_text())
    model = cfg.get("generator", {}).get("model", {})
    sd_base = request.getfixturevalue("tiny_sd") if model.get("kind") in SD_FAMILIES else None
    proc = synmed("run", str(path), *shrink(cfg, tmp_path, sd_base), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_run(cfg, tmp_path / cfg["run"]["name"])
    assert "report:" in proc.stdout or "report" not in cfg["stages"]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=recipe_id)
def test_every_shrunk_recipe_plans(path: Path, tmp_path: Path) -> None:
    """The overrides fit every recipe's generator and rows (cheap: planned, not run)."""
    from suite.config import load_config
    from suite.pipeline.config import PipelineConfig
    from suite.pipeline.runner import plan

    cfg = yaml.safe_load(path.read_text())
    _, steps = plan(load_config(path, shrink(cfg, tmp_path), schema=PipelineConfig))
    # a cross-validated recipe plans its per-fold stages once per fold
    assert list(dict.fromkeys(s.stage for s in steps)) == cfg["stages"]


def test_the_shipped_recipes_are_all_found() -> None:
    found = {recipe_id(p) for p in RUN_CONFIGS}
    named = {"quickstart.yaml"} | {
        recipe_id(p)
        for pattern in ("configs/papers/**/run*.yaml", "configs/papers/**/small.yaml")
        for p in REPO.glob(pattern)
    }
    assert named <= found and "papers/medcls/run_simclr_resnet18.yaml" in found
    # each one run by a test: here, on SLURM, or the quickstart's in test_run.py
    covered = {
        recipe_id(p) for p in (*END_TO_END, ON_SLURM, SELF_VALIDATE_ON_SLURM, *SAME_CHAIN)
    } | {"quickstart.yaml"}
    assert found == covered


DATA_KEYS = ("ingest", "run.name", "generator.model.prompt", "generator.train.max_steps",
             "eval_segment.config.data.cases")  # fmt: skip


@pytest.mark.parametrize("path", sorted(SAME_CHAIN), ids=recipe_id)
def test_same_chain_recipes_differ_only_in_their_data(path: Path) -> None:
    """What test_recipe_runs_end_to_end shows of the recipe it runs holds for these: the stages,
    the generator, the sampling and every evaluation row are its own."""
    mine, ran = (yaml.safe_load(p.read_text()) for p in (path, SAME_CHAIN[path]))
    assert SAME_CHAIN[path] in END_TO_END
    for cfg in (mine, ran):
        for dotted in DATA_KEYS:
            *parents, leaf = dotted.split(".")
            node = cfg
            for part in parents:
                node = node[part]
            del node[leaf]
    assert mine == ran


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parametrize("recipe", [ON_SLURM, SELF_VALIDATE_ON_SLURM], ids=recipe_id)
def test_medcls_recipe_runs_on_slurm(
    recipe: Path, slurm: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe the issue found stuck, as a cluster runs it: one job per stage, each after the
    last, nothing left in the queue, and a second submission that finds every stage complete."""
    cfg = yaml.safe_load(recipe.read_text())
    resources = under("slurm", partition=slurm["partition"], cpus_per_task=1, time_min=15, mem_gb=3)
    args = ["run", str(recipe), *shrink(cfg, tmp_path), *resources, "--on", "slurm"]
    proc = synmed(*args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    submitted = [line for line in proc.stdout.splitlines() if "submitted as job" in line]
    assert len(submitted) == len(cfg["stages"]), proc.stdout
    ids = [line.split("as job ")[1].split()[0] for line in submitted]
    wait_until(lambda: job_state(ids[-1], timeout=5) not in {"", "UNKNOWN", "PENDING", "RUNNING",
                                                             "REQUEUED", "COMPLETING"}, 1200,
               "the report job to end", poll=2)  # fmt: skip
    run_dir = tmp_path / cfg["run"]["name"]
    states = {i: job_state(i) for i in ids}
    logs = "\n".join(
        f"{p}:\n{p.read_text()[-2000:]}"
        for p in sorted((run_dir / "submitit").rglob("*"))
        if p.suffix in {".out", ".err"}
    )
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    check_run(cfg, run_dir)
    assert "(after " in submitted[1]
    assert run(["squeue", "-h", "-j", ",".join(ids)]).stdout.strip() == ""
    # planning only, in this process (a fresh interpreter's imports would be most of its time)
    again = synmed_here(capsys, *args)
    assert again.returncode == 0 and "submitted as job" not in again.stdout  # all complete
