"""The stages of a run: what each reads from the run folder, what it writes, how it runs.

A stage is a :class:`Stage` with its name, the stages it reads, the settings its digest covers,
a check that runs before anything does, and ``run`` (in this process, under whatever launcher).
To add a stage: a class here, one entry in :data:`STAGES`, and its name in ``config.StageName``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.artifacts.digests import sha256_text
from suite.config import from_dict, to_dict
from suite.errors import ConfigError
from suite.pipeline.config import (
    AUGMENTED_SUFFIX,
    CONVENTIONAL_SUFFIX,
    AugmentStage,
    EdgesStage,
    EvalSelfValidateStage,
    FoldsStage,
    PipelineConfig,
)
from suite.schema import RunConfig, SuiteConfig


def slug(text: str) -> str:
    """A folder name for a variant like ``real:0.5,synthetic:0.5``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


@dataclass(frozen=True, slots=True)
class Context:
    """What a stage sees: the config and the run folder."""

    cfg: PipelineConfig
    run_dir: Path
    resume: str = "auto"  # training stages continue a checkpointed run of the same stage

    def folder(self, stage: str) -> Path:
        return self.run_dir / stage

    def real_shards(self) -> Path:
        return Path(self.cfg.ingest.shards) if self.cfg.ingest.shards else self.folder("ingest")

    def synthetic_shards(self) -> Path:
        if self.cfg.generator.clusters is not None:  # the per-cluster parts, joined
            from suite.pipeline.clusters import SYNTHETIC_DIR

            return self.folder("sample") / SYNTHETIC_DIR
        return self.folder("sample")

    def pretrain_seeds(self) -> list[int]:
        return list(self.cfg.pretrain.seeds) or [self.cfg.run.seed]

    def export(self, variant: str, seed: int) -> Path:
        return self.folder("pretrain") / f"{slug(variant)}-seed{seed}" / "export"


class Stage:
    name: str = ""
    #: "train": multi-process training (Submitit on SLURM); "ray": a Ray Data job
    #: (slurm/sample_ray.sbatch); "task": one process
    kind: str = "task"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return []

    def settings(self, cfg: PipelineConfig) -> Any:
        """What the stage's digest covers (besides the digests of the stages it reads)."""
        return to_dict(getattr(cfg, self.name))

    def parts(self, cfg: PipelineConfig) -> list[int] | None:
        """A stage made of independent parts (one SLURM array task each): their ids, else None."""
        return None

    def check(self, ctx: Context) -> None:
        """Validate the stage's config before any stage runs (no input need exist yet)."""

    def run(self, ctx: Context) -> dict[str, Any] | None:
        """Run in this process; return the outputs recorded for the stage, or None when a
        training stage was stopped by a signal (it is then not complete)."""
        raise NotImplementedError

    def run_part(self, ctx: Context, part: int) -> dict[str, Any] | None:
        """Run one of :meth:`parts` (an array task); :meth:`run` then finds it done."""
        raise NotImplementedError


def settings_without(section: Any, added: tuple[str, ...]) -> dict[str, Any]:
    """``to_dict(section)`` less the ``added`` options at their defaults: the digest of a run
    made before those options existed still matches."""
    import dataclasses

    body = to_dict(section)
    for f in dataclasses.fields(section):
        if f.name in added and getattr(section, f.name) == f.default:
            del body[f.name]
    return body


def digest(name: str, settings: Any, seed: int, upstream: list[str]) -> str:
    return sha256_text(repr((name, to_dict(settings), seed, upstream)))


# -- stages ----------------------------------------------------------------------------------------


class Ingest(Stage):
    name = "ingest"

    def check(self, ctx: Context) -> None:
        if not ctx.cfg.ingest.source and not ctx.cfg.ingest.shards:
            raise ConfigError(
                "ingest: neither ingest.source nor ingest.shards is set",
                "set ingest.source (a path or demo:NAME) or ingest.shards (an existing shard set)",
            )

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.data.demo import resolve_source
        from suite.data.ingest.options import IngestOptions
        from suite.data.ingest.pipeline import ingest
        from suite.data.verify import verify_shard_set

        cfg = ctx.cfg.ingest
        if cfg.shards:
            verify_shard_set(cfg.shards)
            return {"shards": str(Path(cfg.shards).resolve())}
        assert cfg.source is not None
        source, defaults = resolve_source(cfg.source)
        given = {k: v for k, v in to_dict(cfg).items() if k not in ("source", "shards")}
        base = to_dict(IngestOptions())
        # the demo's own options (format, mask files...) unless the config sets them
        options = {**given, **{k: v for k, v in defaults.items() if given.get(k) == base.get(k)}}
        out = ctx.folder("ingest")
        ingest(source, out, from_dict(IngestOptions, options, source="ingest"), overwrite=True)
        return {"shards": str(out.resolve())}


class Folds(Stage):
    name = "folds"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["ingest"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return to_dict(cfg.folds or FoldsStage())

    def check(self, ctx: Context) -> None:
        from suite.data.folds import check_fold_settings

        f = ctx.cfg.folds or FoldsStage()
        check_fold_settings(f.folds, f.val_fraction, where="folds.folds")

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.data.folds import fold_name, write_fold_sets

        f = ctx.cfg.folds or FoldsStage()
        out = ctx.folder("folds")
        body = write_fold_sets(
            ctx.real_shards(), out, folds=f.folds, val_fraction=f.val_fraction,
            shuffle_seed=f.shuffle_seed, overwrite=True,
        )  # fmt: skip
        sets = [str((out / fold_name(k)).resolve()) for k in range(f.folds)]
        return {"sets": sets, "per_fold": [{s: p[s]["count"] for s in p} for p in body["per_fold"]]}


class Edges(Stage):
    name = "edges"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["ingest"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return to_dict(cfg.edges or EdgesStage())

    def check(self, ctx: Context) -> None:
        from suite.data.edges import CannySettings

        e = ctx.cfg.edges or EdgesStage()
        try:
            CannySettings(e.canny_sigma, e.canny_low, e.canny_high).check()
        except ConfigError as err:  # the CLI's flag names -> this section's keys
            raise ConfigError(
                f"edges: canny_low={e.canny_low} and canny_high={e.canny_high} are not "
                "0 <= low <= high",
                "set edges.canny_low <= edges.canny_high, e.g. 0.1 and 0.2",
            ) from err

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.data.edges import CannySettings, write_edge_set

        e = ctx.cfg.edges or EdgesStage()
        manifest = write_edge_set(
            ctx.real_shards(), ctx.folder("edges"),
            canny=CannySettings(e.canny_sigma, e.canny_low, e.canny_high), hed=e.hed,
            overwrite=True, progress=False,
        )  # fmt: skip
        return {"shards": str(ctx.folder("edges").resolve()), "rows": manifest.count}


def _reads_edges(cfg: PipelineConfig) -> bool:
    """A ControlNet without its own ``model.hints`` trains on the edges stage's set."""
    model = cfg.generator.model
    return model is not None and hasattr(model, "hints") and model.hints is None


def _suite_config(ctx: Context, name: str, out_dir: Path, **sections: Any) -> SuiteConfig:
    run = RunConfig(name=name, out_dir=out_dir, seed=ctx.cfg.run.seed)
    return SuiteConfig(run=run, **sections)


class Generator(Stage):
    name = "generator"
    kind = "train"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        data = ["cluster"] if cfg.generator.clusters else ["ingest"]
        return [*data, "edges"] if _reads_edges(cfg) else data

    def settings(self, cfg: PipelineConfig) -> Any:
        return settings_without(cfg.generator, ("clusters", "cluster_rows"))

    def parts(self, cfg: PipelineConfig) -> list[int] | None:
        # every cluster id: which are kept is known only once the cluster stage has run
        return list(range(cfg.cluster.k)) if cfg.generator.clusters == "each" else None

    def check(self, ctx: Context) -> None:
        g = ctx.cfg.generator
        if g.model is None:
            raise ConfigError(
                "generator: generator.model is not set",
                "add generator.model.kind: ddpm_lucidrains or ddpm_diffusers",
            )
        if _reads_edges(ctx.cfg) and "edges" not in ctx.cfg.stages:
            raise ConfigError(
                f"generator: {g.model.kind} trains on hints, but "
                "generator.model.hints is not set and the run has no edges stage",
                "add edges to stages (before generator), or set generator.model.hints=HINTS",
            )
        if g.clusters is not None:
            self._check_clusters(ctx.cfg)

    def _check_clusters(self, cfg: PipelineConfig) -> None:
        g = cfg.generator
        if "cluster" not in cfg.stages or cfg.cluster.shards != "real":
            raise ConfigError(
                f"generator.clusters={g.clusters} trains on the clusters of the real images, and "
                + ("the run has no cluster stage" if "cluster" not in cfg.stages
                   else "cluster.shards is synthetic"),
                "add cluster to stages with cluster.shards: real",
            )  # fmt: skip
        num_classes = getattr(g.model, "num_classes", None)
        if g.clusters == "conditioned" and num_classes != cfg.cluster.k:
            raise ConfigError(
                "generator.clusters=conditioned takes the cluster id as the class label, and "
                + (f"{g.model.kind} has no classes" if num_classes is None
                   else f"generator.model.num_classes={num_classes} but cluster.k={cfg.cluster.k}"),
                f"set generator.model.num_classes={cfg.cluster.k}"
                if num_classes is not None
                else "use a class-conditional family, or generator.clusters: each",
            )  # fmt: skip

    def _config(self, ctx: Context, name: str, out_dir: Path, **data: Any) -> SuiteConfig:
        from dataclasses import replace

        from suite.schema import DataConfig

        g = ctx.cfg.generator
        model = (
            replace(g.model, hints=str(ctx.folder("edges"))) if _reads_edges(ctx.cfg) else g.model
        )
        if g.clusters:
            data = {"shards": ctx.folder("cluster"),
                    "representatives_only": g.cluster_rows == "representatives", **data}  # fmt: skip
        else:
            data = {"shards": ctx.real_shards(), **data}
        return _suite_config(
            ctx, name, out_dir, data=DataConfig(split=g.split, **data), model=model, train=g.train
        )

    def run(self, ctx: Context) -> dict[str, Any] | None:
        from suite.generative.train import train_generator
        from suite.pipeline.clusters import ClusterPlan

        g = ctx.cfg.generator
        if g.clusters == "each":
            runs = {}
            for c in ClusterPlan.read(ctx.folder("cluster")).kept:
                outputs = self.run_part(ctx, c)
                if outputs is None:
                    return None
                runs[str(c)] = outputs
            return {"clusters": runs}
        extra = {}
        if g.clusters == "conditioned":
            extra = {"clusters": ClusterPlan.read(ctx.folder("cluster")).kept,
                     "labels_from": "cluster"}  # fmt: skip
        result = train_generator(
            self._config(ctx, "generator", ctx.run_dir, **extra), resume=ctx.resume
        )  # type: ignore[arg-type]
        if result.get("stopped_at") is not None:
            return None  # stopped by a signal: not complete; a requeue or a rerun continues it
        return {"run": str(ctx.folder("generator")), "export": result.get("export")}

    def run_part(self, ctx: Context, part: int) -> dict[str, Any] | None:
        """Cluster ``part``'s generator, on its rows only; a cluster not kept trains nothing."""
        from suite.generative.train import train_generator
        from suite.pipeline.clusters import CLUSTERS_DIR, ClusterPlan, part_name

        if part not in ClusterPlan.read(ctx.folder("cluster")).kept:
            return {"kept": False}
        folder = ctx.folder("generator") / CLUSTERS_DIR
        cfg = self._config(ctx, part_name(part), folder, clusters=[part])
        run = folder / part_name(part)
        if _exported_at_the_end(cfg, run):  # an array task trained it: the join only records
            return {"run": str(run), "export": str(run / "export")}
        result = train_generator(cfg, resume=ctx.resume)  # type: ignore[arg-type]
        if result.get("stopped_at") is not None:
            return None
        return {"run": str(run), "export": result.get("export")}


def _exported_at_the_end(cfg: SuiteConfig, run: Path) -> bool:
    """Whether ``run`` holds the export of this very config and data at its last step, so that
    resuming it would only load the model (on the join job's CPU) to write the same export."""
    import json

    from suite.artifacts.digests import sha256_file
    from suite.config import config_digest
    from suite.data.shards import MANIFEST

    meta = run / "export" / "synmed-export.json"
    if not meta.is_file():
        return False
    provenance = json.loads(meta.read_text()).get("provenance", {})
    assert cfg.data.shards is not None
    return (
        provenance.get("step") == cfg.train.max_steps
        and provenance.get("config_digest") == config_digest(cfg)
        and provenance.get("data_digest") == sha256_file(Path(cfg.data.shards) / MANIFEST)
    )


class Sample(Stage):
    name = "sample"
    kind = "ray"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        if cfg.generator.clusters:  # the cluster stage's record: counts and classes per cluster
            return ["generator", "cluster"]
        if cfg.sample.conditions == "real":
            return ["generator", "ingest"]
        return ["generator", "edges"] if cfg.sample.conditions == "edges" else ["generator"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return settings_without(cfg.sample, ("cluster_counts",))

    def check(self, ctx: Context) -> None:
        model = ctx.cfg.generator.model
        if model is None:
            return
        from suite.generative.families import generator_class

        family = generator_class(model.kind)
        if ctx.cfg.sample.sampler not in family.samplers:
            raise ConfigError(
                f"sample.sampler {ctx.cfg.sample.sampler!r} is not a sampler of {model.kind}",
                f"use one of: {', '.join(family.samplers)}",
            )
        if ctx.cfg.sample.conditions and not family.conditions:
            raise ConfigError(
                f"sample.conditions is set but {model.kind} reads no conditions",
                "drop sample.conditions, or use a conditioned generator",
            )
        if ctx.cfg.sample.conditions == "edges" and "edges" not in ctx.cfg.stages:
            raise ConfigError(
                "sample.conditions=edges reads the edges stage's set, and the run has no edges "
                "stage",
                "add edges to stages (before generator), or set sample.conditions=real",
            )
        s = ctx.cfg.sample
        if ctx.cfg.generator.clusters:
            given = [k for k, v in (("conditions", s.conditions), ("per_class", s.per_class),
                                    ("accept", s.accept)) if v is not None]  # fmt: skip
            if given:
                raise ConfigError(
                    f"generator.clusters={ctx.cfg.generator.clusters} samples sample.num_images "
                    f"over the clusters, and sample.{given[0]} is set",
                    f"drop sample.{given[0]}",
                )

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.sampling.job import run_sampling

        s = ctx.cfg.sample
        if ctx.cfg.generator.clusters:
            return self._run_clusters(ctx)
        conditions = {"real": ctx.real_shards(), "edges": ctx.folder("edges"), None: None}[
            s.conditions
        ]
        summary = run_sampling(
            ctx.folder("generator"), ctx.folder("sample"),
            num_images=None if conditions else s.num_images, per_class=s.per_class,
            shard_size=s.shard_size, batch_size=s.batch_size, sampler=s.sampler, steps=s.steps,
            seed=ctx.cfg.run.seed, guidance_scale=s.guidance_scale, workers=s.workers,
            conditions=conditions, conditions_split=s.conditions_split,
            per_condition=s.per_condition, accept=s.accept, min_confidence=s.min_confidence,
            max_attempts=s.max_attempts, prompt=s.prompt, negative_prompt=s.negative_prompt,
        )  # fmt: skip
        return {"shards": str(ctx.folder("sample").resolve()), "images": summary.get("images")}

    def _run_clusters(self, ctx: Context) -> dict[str, Any]:
        """Each kept cluster's images (from its generator, or the conditioned one), then the
        one labelled set of them all."""
        from suite.pipeline.clusters import (
            CLUSTERS_DIR,
            CONDITIONED_PART,
            ClusterPlan,
            cluster_seed,
            part_name,
            write_cluster_synthetic_set,
        )
        from suite.sampling.job import run_sampling

        s, seed = ctx.cfg.sample, ctx.cfg.run.seed
        plan = ClusterPlan.read(ctx.folder("cluster"))
        parts_dir = ctx.folder("sample") / CLUSTERS_DIR
        common = dict(shard_size=s.shard_size, batch_size=s.batch_size, sampler=s.sampler,
                      steps=s.steps, guidance_scale=s.guidance_scale, workers=s.workers,
                      prompt=s.prompt, negative_prompt=s.negative_prompt)  # fmt: skip
        parts: list[tuple[Path, int | None]] = []
        counts: dict[int, int] = {}
        if ctx.cfg.generator.clusters == "each":
            counts = plan.counts(s.num_images, s.cluster_counts)
            for c, n in counts.items():
                if n == 0:
                    continue
                out = parts_dir / part_name(c)
                run_sampling(
                    ctx.folder("generator") / CLUSTERS_DIR / part_name(c), out, num_images=n,
                    seed=cluster_seed(seed, c), **common,
                )  # fmt: skip
                parts.append((out, c))
        else:
            out = parts_dir / CONDITIONED_PART
            run_sampling(
                ctx.folder("generator"), out, num_images=s.num_images,
                class_weights=plan.class_weights(s.cluster_counts), seed=seed, **common,
            )  # fmt: skip
            parts.append((out, None))
        images = write_cluster_synthetic_set(
            parts, ctx.synthetic_shards(), plan, shard_size=s.shard_size
        )
        return {"shards": str(ctx.synthetic_shards().resolve()), "images": images,
                "per_cluster": {str(c): n for c, n in counts.items()}}  # fmt: skip


class Cluster(Stage):
    name = "cluster"
    kind = "ray"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["sample"] if cfg.cluster.shards == "synthetic" else ["ingest"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return settings_without(cfg.cluster, ("classes", "split", "keep"))

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.features.cluster import KeepRule, cluster_shard_set

        c = ctx.cfg.cluster
        source = ctx.synthetic_shards() if c.shards == "synthetic" else ctx.real_shards()
        keep = KeepRule(**to_dict(c.keep)) if c.keep else None
        summary = cluster_shard_set(
            source, ctx.folder("cluster"), c.encoder, c.k, representatives=c.representatives,
            workers=c.workers, seed=ctx.cfg.run.seed, classes=c.classes, split=c.split,
            keep=keep, overwrite=True,
        )  # fmt: skip
        return {"shards": str(ctx.folder("cluster").resolve()), "sizes": summary["cluster_sizes"],
                "kept": summary["kept"]}  # fmt: skip


class Augment(Stage):
    name = "augment"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["ingest"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return to_dict(cfg.augment or AugmentStage())

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.data.augmented_set import write_augmented_set

        out = ctx.folder("augment")
        written = write_augmented_set(
            ctx.real_shards(), out, ctx.cfg.augment or AugmentStage(), ctx.cfg.run.seed,
            overwrite=True,
        )  # fmt: skip
        return {"shards": str(out.resolve()), **written}


def _uses_synthetic(variants: list[str]) -> bool:
    return any("synthetic" in v for v in variants)


IMAGENET_PREFIX = "imagenet+"


def split_variant(variant: str) -> tuple[str, bool]:
    """``imagenet+real`` -> (``real``, True): the mix, and whether to start from ImageNet."""
    if variant.startswith(IMAGENET_PREFIX):
        return variant.removeprefix(IMAGENET_PREFIX), True
    return variant, False


def imagenet_weights(cfg: PipelineConfig) -> Path:
    p = cfg.pretrain
    if p.imagenet_weights is not None:
        return Path(p.imagenet_weights)
    if p.pretrain.backbone.arch == "efficientnet_lite0":
        from suite.models.efficientnet_lite import imagenet_weights_path

        return imagenet_weights_path()
    raise ConfigError(
        f"an imagenet variant or backbone needs ImageNet weights for {p.pretrain.backbone.arch}",
        "set pretrain.imagenet_weights to a torchvision state_dict file on a local disk",
    )


class Pretrain(Stage):
    name = "pretrain"
    kind = "train"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["ingest"] + (["sample"] if _uses_synthetic(cfg.pretrain.variants) else [])

    def check(self, ctx: Context) -> None:
        from suite.ssl.data import parse_mix

        if not ctx.cfg.pretrain.variants:
            raise ConfigError(
                "pretrain.variants is empty", "e.g. pretrain.variants=[synthetic,real]"
            )
        if ctx.cfg.pretrain.knn_monitor_real and ctx.cfg.pretrain.pretrain.knn.shards:
            # two monitors were asked for and one would be dropped without a word
            raise ConfigError(
                "pretrain.knn_monitor_real is set and so is pretrain.pretrain.knn.shards "
                f"({ctx.cfg.pretrain.pretrain.knn.shards})",
                "keep one: knn_monitor_real monitors on the ingested real set, knn.shards on "
                "another shard set",
            )
        for variant in ctx.cfg.pretrain.variants:
            mix, from_imagenet = split_variant(variant)
            parse_mix(mix, {"real": "", "synthetic": ""})
            if from_imagenet:
                imagenet_weights(ctx.cfg)

    def run(self, ctx: Context) -> dict[str, Any] | None:
        from suite.ssl.train import pretrain

        p = ctx.cfg.pretrain
        exports: dict[str, str] = {}
        for variant in p.variants:
            for seed in ctx.pretrain_seeds():
                section = from_dict(type(p.pretrain), to_dict(p.pretrain), source="pretrain")
                section.sources = {"real": str(ctx.real_shards())}
                if _uses_synthetic(p.variants):
                    section.sources["synthetic"] = str(ctx.synthetic_shards())
                if p.knn_monitor_real:
                    section.knn.shards = str(ctx.real_shards())
                section.mix, from_imagenet = split_variant(variant)
                if from_imagenet:
                    section.backbone.init = f"imagenet:{imagenet_weights(ctx.cfg)}"
                cfg = SuiteConfig(
                    run=RunConfig(name=f"{slug(variant)}-seed{seed}", out_dir=ctx.folder("pretrain"),
                                  seed=seed),
                    pretrain=section, train=p.train,
                )  # fmt: skip
                result = pretrain(cfg, resume=ctx.resume)  # type: ignore[arg-type]
                if result.get("stopped_at") is not None:
                    return None
                exports[f"{variant}-seed{seed}"] = str(ctx.export(variant, seed))
        return {"exports": exports}


class EvalGenerator(Stage):
    name = "eval_generator"
    kind = "ray"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["ingest", "sample"]

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.evaluation.generator.job import GeneratorEvalOptions, evaluate_generator

        e = ctx.cfg.eval_generator
        options = GeneratorEvalOptions(
            encoders=tuple(e.encoders), real_split=e.real_split, workers=e.workers,
            seed=ctx.cfg.run.seed, overwrite=True,
        )  # fmt: skip
        result = evaluate_generator(
            ctx.real_shards(), ctx.synthetic_shards(), ctx.folder("eval_generator"), options
        )
        return {"result": str(ctx.folder("eval_generator") / "result.json"),
                "fid": result["metrics"].get("fid")}  # fmt: skip


class _EvalBackbones(Stage):
    """Shared by the classify and segment stages: one evaluation per backbone."""

    schema: Any = None
    backbone_keys: tuple[str, ...] = ()

    def backbones(self, cfg: PipelineConfig) -> list[str]:
        """Every backbone the stage evaluates (a row may evaluate one more than once)."""
        return list(getattr(cfg, self.name).backbones)

    def rows(self, cfg: PipelineConfig) -> list[str]:
        return list(getattr(cfg, self.name).backbones)

    def needs(self, cfg: PipelineConfig) -> list[str]:
        stage = getattr(cfg, self.name)
        pretrained = [b for b in self.backbones(cfg) if b not in ("none", "imagenet")]
        needs = [] if stage.shards else ["ingest"]
        return needs + (["pretrain"] if pretrained else [])

    def check(self, ctx: Context) -> None:
        stage = getattr(ctx.cfg, self.name)
        fixed = ("none", "imagenet") if self.name == "eval_classify" else ("none",)
        unknown = [
            b
            for b in self.backbones(ctx.cfg)
            if b not in fixed and b not in ctx.cfg.pretrain.variants
        ]
        if unknown:
            raise ConfigError(
                f"{self.name}.backbones names {unknown}, which are not pretrain variants",
                f"use {' or '.join(fixed)}, or one of pretrain.variants "
                f"({', '.join(ctx.cfg.pretrain.variants)})",
            )
        if "imagenet" in self.backbones(ctx.cfg):
            imagenet_weights(ctx.cfg)
        for key in self.backbone_keys:
            section, _, leaf = key.partition(".")
            if leaf in stage.config.get(section, {}):
                raise ConfigError(
                    f"{self.name}.config.{key} is set by the run",
                    f"remove {self.name}.config.{key}",
                )
        self.build(ctx, "none", check_only=True)

    def build(
        self, ctx: Context, backbone: str, seed: int | None = None, *, check_only: bool = False
    ) -> Any:
        raise NotImplementedError

    def run(self, ctx: Context) -> dict[str, Any]:
        seeds = ctx.pretrain_seeds()
        results = {}
        for backbone in self.rows(ctx.cfg):
            out = ctx.folder(self.name) / slug(backbone)
            if len(seeds) == 1:
                self.evaluate(self.build(ctx, backbone, seeds[0]), out)
            else:
                runs = [out / SEEDS_DIR / f"seed{seed}" for seed in seeds]
                for seed, folder in zip(seeds, runs):
                    self.evaluate(self.build(ctx, backbone, seed), folder)
                merge_seed_results(runs, out, seeds)
            results[backbone] = str(out / "result.json")
        return {"results": results}

    def evaluate(self, cfg: Any, out: Path) -> None:
        raise NotImplementedError

    def _data(self, ctx: Context) -> Path:
        stage = getattr(ctx.cfg, self.name)
        return Path(stage.shards) if stage.shards else ctx.real_shards()


def _pretrained_arch(ctx: Context) -> dict[str, Any]:
    """The pretrained network's shape: the random-init floor must be the same network."""
    b = ctx.cfg.pretrain.pretrain.backbone
    return {"arch": b.arch, "stem": b.stem, "image_size": b.image_size,
            "patch_size": b.patch_size, "num_layers": b.num_layers, "num_heads": b.num_heads,
            "hidden_dim": b.hidden_dim, "mlp_dim": b.mlp_dim}  # fmt: skip


SEEDS_DIR = "seeds"  # per-seed results below a merged result.json (reports read the merged one)


def merge_seed_results(runs: list[Path], out: Path, seeds: list[int]) -> dict[str, Any]:
    """One result.json over every pretraining seed (:func:`merge_results`)."""
    return merge_results(
        runs, out, [f"seed{s}" for s in seeds],
        context={"pretrain_seeds": seeds, "seed_runs": [str(r) for r in runs]},
    )  # fmt: skip


def _merged_metrics(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    from suite.artifacts.results import summarize

    merged: dict[str, Any] = {}
    for name, value in metrics[0].items():
        if not isinstance(value, dict) or "values" not in value:
            continue
        # a run's undefined value (None) is left out, not counted as a run
        values = [v for m in metrics for v in m[name]["values"] if v is not None]
        merged[name] = summarize(values)
    return merged


def _merged_per_class(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-class metrics merged at whatever depth they sit: ``{class: {metric}}`` (segmentation)
    or ``{protocol: {class: {metric}}}`` (classification, self-validation)."""
    merged: dict[str, Any] = {}
    for name, value in entries[0].items():
        if not all(isinstance(e.get(name), dict) for e in entries):
            continue
        if "values" in value:
            merged[name] = _merged_metrics([{name: e[name]} for e in entries])[name]
        else:
            merged[name] = _merged_per_class([e[name] for e in entries])
    return merged


def _merged_confusion(results: list[Any], labels: list[str]) -> dict[str, Any] | None:
    """Each protocol's confusion matrix summed over the runs (the report draws it "summed over
    seeds"), the runs' own per-seed matrices named ``LABEL.SEED``; None where a run has none."""
    import numpy as np

    tables = [r.extra.get("confusion") for r in results]
    if not all(isinstance(t, dict) for t in tables):
        return None
    merged: dict[str, Any] = {}
    for protocol, entry in tables[0].items():
        entries = [t.get(protocol) for t in tables]
        if not all(isinstance(e, dict) and "total" in e for e in entries):
            continue
        if any(e.get("classes") != entry.get("classes") for e in entries):
            continue
        merged[protocol] = {
            **entry,
            "total": np.sum([np.asarray(e["total"]) for e in entries], axis=0).tolist(),
            "per_seed": {
                f"{lab}.{seed}": m
                for lab, e in zip(labels, entries)
                for seed, m in (e.get("per_seed") or {}).items()
            },
        }
    return merged


def merge_results(
    runs: list[Path], out: Path, labels: list[str], *, context: dict[str, Any]
) -> dict[str, Any]:
    """One result.json whose metrics hold every run's values (mean +- std over them): the runs
    of one row over seeds, or over folds. Per-class metrics are merged alike and confusion
    matrices summed; the context is the first run's plus ``context``, and each run's inputs are
    named by its label."""
    from dataclasses import replace

    from suite.artifacts.results import read_result, write_result

    results = [read_result(run) for run in runs]
    first = results[0]
    confusion = _merged_confusion(results, labels)
    merged = replace(
        first,
        metrics=_merged_metrics([r.metrics for r in results]),
        per_class=_merged_per_class([r.per_class for r in results]),
        extra=first.extra if confusion is None else {**first.extra, "confusion": confusion},
        inputs={
            f"{lab}.{k}": ref for lab, r in zip(labels, results) for k, ref in r.inputs.items()
        },
        context={**first.context, **context},
    )
    return write_result(out, merged)


class EvalSegment(_EvalBackbones):
    name = "eval_segment"
    backbone_keys = ("data.shards", "model.backbone")

    def rows(self, cfg: PipelineConfig) -> list[str]:
        return cfg.eval_segment.rows()

    def row_parts(self, cfg: PipelineConfig, row: str) -> tuple[str, dict[str, Any]]:
        """A row's backbone and its ``train:`` overlay (empty without variants)."""
        e = cfg.eval_segment
        for backbone in e.backbones:
            for variant, overlay in (e.variants or {}).items():
                if row == f"{backbone}-{variant}":
                    return backbone, overlay
        return row, {}

    def settings(self, cfg: PipelineConfig) -> Any:
        from suite.config import digest_body

        return digest_body(cfg.eval_segment)

    def _trains_on_synthetic(self, cfg: PipelineConfig) -> bool:
        overlays = (cfg.eval_segment.variants or {}).values()
        kinds = [o.get("training_data", "real") for o in overlays]
        kinds.append(cfg.eval_segment.config.get("train", {}).get("training_data", "real"))
        return any(k != "real" for k in kinds)

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return super().needs(cfg) + (["sample"] if self._trains_on_synthetic(cfg) else [])

    def check(self, ctx: Context) -> None:
        e = ctx.cfg.eval_segment
        if self._trains_on_synthetic(ctx.cfg) and "synthetic" in e.config.get("data", {}):
            raise ConfigError(
                "eval_segment.config.data.synthetic is set, and a variant trains on synthetic "
                "pairs, which the run takes from its sample stage",
                "remove eval_segment.config.data.synthetic",
            )
        super().check(ctx)
        for row in self.rows(ctx.cfg)[1:]:
            self.build(ctx, row, check_only=True)

    def build(
        self, ctx: Context, row: str, seed: int | None = None, *, check_only: bool = False
    ) -> Any:
        from suite.evaluation.segment.config import SegmentEvalConfig, check_config

        seed = ctx.cfg.run.seed if seed is None else seed
        if row == "none" and ctx.cfg.eval_segment.variants:  # the plan's first check: any row
            row = self.rows(ctx.cfg)[0]
        backbone, overlay = self.row_parts(ctx.cfg, row)
        data = dict(getattr(ctx.cfg, self.name).config)
        data["run"] = {"name": slug(row), "out_dir": str(ctx.folder(self.name)), "seed": seed}
        model = dict(data.get("model", {}))
        if backbone == "none":
            arch = _pretrained_arch(ctx)
            model.setdefault("encoder", "resnet")
            if model["encoder"] == "resnet":
                model.setdefault("arch", arch["arch"])
                model.setdefault("stem", arch["stem"])
        else:
            model["encoder"] = "resnet"
            model["backbone"] = None if check_only else str(ctx.export(backbone, seed))
        data["model"] = model
        data["train"] = {**data.get("train", {}), **overlay}
        data["data"] = {
            **data.get("data", {}),
            "shards": None if check_only else str(self._data(ctx)),
        }
        if data["train"].get("training_data", "real") != "real":
            data["data"]["synthetic"] = None if check_only else str(ctx.synthetic_shards())
        source = f"{self.name}.variants.{row}" if overlay else f"{self.name}.config"
        cfg = from_dict(SegmentEvalConfig, data, source=source)
        if not check_only:
            check_config(cfg)
        return cfg

    def evaluate(self, cfg: Any, out: Path) -> None:
        from suite.evaluation.segment.run import evaluate_segmentation

        evaluate_segmentation(cfg, out, overwrite=True)


class EvalClassify(_EvalBackbones):
    name = "eval_classify"
    backbone_keys = ("data.shards",)

    def backbones(self, cfg: PipelineConfig) -> list[str]:
        e = cfg.eval_classify
        named = [*e.backbones, *e.synthetic.backbones, *e.conventional_backbones()]
        return list(dict.fromkeys(named))

    def rows(self, cfg: PipelineConfig) -> list[str]:
        return cfg.eval_classify.rows()

    def settings(self, cfg: PipelineConfig) -> Any:
        settings = settings_without(cfg.eval_classify, ("conventional",))
        e = cfg.eval_classify
        if not e.synthetic.backbones and not e.conventional_backbones():
            del settings["synthetic"]  # no such rows: the digest of runs made before they existed
        return settings

    def needs(self, cfg: PipelineConfig) -> list[str]:
        s = cfg.eval_classify.synthetic
        from_sample = bool(s.backbones) and s.shards is None
        augmented = bool(cfg.eval_classify.conventional_backbones())
        return (
            super().needs(cfg)
            + (["sample"] if from_sample else [])
            + (["augment"] if augmented else [])
        )

    def check(self, ctx: Context) -> None:
        e = ctx.cfg.eval_classify
        added = e.synthetic.backbones or e.conventional_backbones()
        if added and "synthetic" in e.config.get("data", {}):
            raise ConfigError(
                "eval_classify.config.data.synthetic is set, and eval_classify.synthetic.backbones "
                "names rows whose synthetic images the run sets",
                "move the settings to eval_classify.synthetic (mode, ratio, per_class, classes, "
                "shards), or empty eval_classify.synthetic.backbones",
            )
        super().check(ctx)
        if e.synthetic.backbones:
            self.build(ctx, e.synthetic.backbones[0] + AUGMENTED_SUFFIX, check_only=True)
        if e.conventional_backbones():
            row = e.conventional_backbones()[0] + CONVENTIONAL_SUFFIX
            self.check_conventional(ctx, self.build(ctx, row, check_only=True).data.label_fraction)

    def check_conventional(self, ctx: Context, label_fraction: float) -> None:
        """The rule of ``eval_classify.synthetic`` must ask for copies the augment stage makes."""
        rule = ctx.cfg.eval_classify.synthetic
        copied = (ctx.cfg.augment or AugmentStage()).classes
        fix = "list the same classes in augment.classes and eval_classify.synthetic.classes"
        if rule.mode == "double" and set(rule.classes) != set(copied):
            raise ConfigError(
                f"eval_classify.conventional doubles {rule.classes or 'the rarest class'}, and "
                f"the augment stage copies {copied or 'the rarest class'}",
                fix,
            )
        if rule.mode == "per_class" and not set(rule.per_class) <= set(copied):
            raise ConfigError(
                f"eval_classify.synthetic.per_class names {sorted(rule.per_class)}, and the "
                f"augment stage copies {copied or 'the rarest class'} only",
                "list those classes in augment.classes",
            )
        if label_fraction != 1.0:
            raise ConfigError(
                "eval_classify.conventional with a label_fraction below 1: the augment stage "
                "copies training images the evaluation does not train on",
                "drop eval_classify.conventional, or evaluate at label_fraction 1",
            )

    def synthetic(self, ctx: Context, *, check_only: bool) -> dict[str, Any]:
        """The evaluation's ``data.synthetic`` for an augmented row."""
        s = to_dict(ctx.cfg.eval_classify.synthetic)
        del s["backbones"]
        shards = ctx.cfg.eval_classify.synthetic.shards or ctx.synthetic_shards()
        return {**s, "shards": None if check_only else str(shards)}

    def build(
        self, ctx: Context, backbone: str, seed: int | None = None, *, check_only: bool = False
    ) -> Any:
        from suite.evaluation.classify.config import ClassifyConfig

        seed = ctx.cfg.run.seed if seed is None else seed
        data = dict(getattr(ctx.cfg, self.name).config)
        if "backbone" in data:
            raise ConfigError(f"{self.name}.config.backbone is set by the run", "remove it")
        data["run"] = {"name": slug(backbone), "out_dir": str(ctx.folder(self.name)), "seed": seed}
        augmented = backbone.endswith(AUGMENTED_SUFFIX)
        conventional = backbone.endswith(CONVENTIONAL_SUFFIX)
        backbone = backbone.removesuffix(AUGMENTED_SUFFIX).removesuffix(CONVENTIONAL_SUFFIX)
        arch = _pretrained_arch(ctx)
        if backbone == "none":
            data["backbone"] = {"kind": "random", **arch}
        elif backbone == "imagenet":
            weights = imagenet_weights(ctx.cfg)
            data["backbone"] = {
                "kind": "imagenet", "arch": arch["arch"], "image_size": arch["image_size"],
                "patch_size": arch["patch_size"],
                "weights": None if arch["arch"] == "efficientnet_lite0" else str(weights),
                "adapt_channels": True,
            }  # fmt: skip
        else:
            data["backbone"] = {
                "kind": "export",
                "path": None if check_only else str(ctx.export(backbone, seed)),
            }
        data["data"] = {
            **data.get("data", {}),
            "shards": None if check_only else str(self._data(ctx)),
        }
        if augmented:
            data["data"]["synthetic"] = self.synthetic(ctx, check_only=check_only)
        if conventional:
            copies = None if check_only else str(ctx.folder("augment"))
            data["data"]["synthetic"] = {**self.synthetic(ctx, check_only=True), "shards": copies}
        return from_dict(ClassifyConfig, data, source=f"{self.name}.config")

    def evaluate(self, cfg: Any, out: Path) -> None:
        from suite.evaluation.classify.run import run_classify

        run_classify(cfg, out, overwrite=True)


class EvalSelfValidate(Stage):
    """Seed 003's self-validation as a stage: every classifier seed of an ``eval_classify`` row
    (its fine-tuned classifier exports) scores the run's sampled set against the intended classes
    (:func:`suite.evaluation.classify.self_validation.self_validate`); the per-seed results
    (``seeds/seed<N>``) are merged into one result.json, mean +- std over the classifier seeds."""

    name = "eval_self_validate"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return ["eval_classify", "sample"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return to_dict(cfg.eval_self_validate or EvalSelfValidateStage())

    def _classify_config(self, ctx: Context) -> Any:
        """The row's ``synmed evaluate classify`` config, as eval_classify builds it (its
        protocols, seeds and ``finetune`` section, defaults filled in)."""
        s = ctx.cfg.eval_self_validate or EvalSelfValidateStage()
        classify = STAGES["eval_classify"]
        assert isinstance(classify, EvalClassify)
        return classify.build(ctx, s.classifier, check_only=True)

    def check(self, ctx: Context) -> None:
        s = ctx.cfg.eval_self_validate or EvalSelfValidateStage()
        e = ctx.cfg.eval_classify
        if "eval_classify" not in ctx.cfg.stages:
            raise ConfigError(
                "eval_self_validate scores the sampled images with the classifiers that "
                "eval_classify fine-tunes, and the run has no eval_classify stage",
                "add eval_classify to stages (with protocol finetune), before eval_self_validate",
            )
        if s.classifier not in e.backbones:
            raise ConfigError(
                f"eval_self_validate.classifier={s.classifier!r} is not a row of "
                f"eval_classify.backbones ({', '.join(e.backbones) or 'none'})",
                f"set eval_self_validate.classifier to one of eval_classify.backbones, or add "
                f"{s.classifier} to eval_classify.backbones",
            )
        classify = self._classify_config(ctx)
        if "finetune" not in classify.protocols:
            raise ConfigError(
                "eval_self_validate needs fine-tuned classifiers, and eval_classify.config."
                f"protocols ({', '.join(classify.protocols)}) has no finetune",
                "add finetune to eval_classify.config.protocols",
            )
        if not classify.finetune.export:
            raise ConfigError(
                "eval_self_validate reads the fine-tuned classifiers eval_classify exports, and "
                "eval_classify.config.finetune.export is false",
                "set eval_classify.config.finetune.export=true",
            )

    def classifiers(self, ctx: Context) -> list[tuple[str, Path]]:
        """(label, export folder) of every classifier of the row: one per eval_classify seed
        (``<row>/finetune/seed-<N>``, as ``run_classify`` writes them), and per pretraining seed
        where eval_classify ran the row once per pretraining seed (``<row>/seeds/seed<P>/``)."""
        s = ctx.cfg.eval_self_validate or EvalSelfValidateStage()
        row = ctx.folder("eval_classify") / slug(s.classifier)
        seeds = list(self._classify_config(ctx).seeds)
        pretrain = ctx.pretrain_seeds()
        if len(pretrain) == 1:
            return [(f"seed{n}", row / "finetune" / f"seed-{n}") for n in seeds]
        return [
            (f"pretrain{p}-seed{n}", row / SEEDS_DIR / f"seed{p}" / "finetune" / f"seed-{n}")
            for p in pretrain
            for n in seeds
        ]

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.artifacts.results import read_result
        from suite.evaluation.classify.self_validation import self_validate

        s = ctx.cfg.eval_self_validate or EvalSelfValidateStage()
        out = ctx.folder(self.name)
        classifiers = self.classifiers(ctx)
        runs = [out / SEEDS_DIR / label for label, _ in classifiers]
        hashed: set[Path] = set()  # the sampled set's digests, checked by the first classifier
        for (_, classifier), folder in zip(classifiers, runs):
            self_validate(
                classifier, ctx.synthetic_shards(), folder, batch_size=s.batch_size,
                overwrite=True, hashed=hashed,
            )  # fmt: skip
        contexts = [read_result(folder).context for folder in runs]
        labels = [label for label, _ in classifiers]
        seeds = list(self._classify_config(ctx).seeds)
        pretrain = ctx.pretrain_seeds()
        merged = merge_results(
            runs, out, labels,
            context={
                "classifier": str((ctx.folder("eval_classify") / slug(s.classifier)).resolve()),
                "classifier_row": s.classifier,
                "classifier_sha256": {
                    lab: c.get("classifier_sha256") for lab, c in zip(labels, contexts)
                },
                "classifier_provenance": {
                    lab: c.get("classifier_provenance") for lab, c in zip(labels, contexts)
                },
                "classifiers": {lab: str(path.resolve()) for lab, path in classifiers},
                "seeds": seeds,
                **({"pretrain_seeds": pretrain} if len(pretrain) > 1 else {}),
                "seed_runs": [str(r) for r in runs],
            },
        )  # fmt: skip
        f1 = merged["metrics"].get("self_validation.f1_macro", {})
        return {"result": str(out / "result.json"), "classifiers": len(classifiers),
                "f1_macro": f1.get("mean")}  # fmt: skip


class Report(Stage):
    name = "report"

    def needs(self, cfg: PipelineConfig) -> list[str]:
        return [s for s in cfg.stages if s != "report"]

    def settings(self, cfg: PipelineConfig) -> Any:
        return {}

    def run(self, ctx: Context) -> dict[str, Any]:
        from suite.pipeline.folds import folds_of, merge_fold_results
        from suite.report.cli import write_report

        # a cross-validated run: each evaluation row over the folds, beside the fold runs' own
        merged = merge_fold_results(ctx.cfg, ctx.run_dir) if folds_of(ctx.cfg) else {}
        path = write_report(ctx.run_dir, ctx.folder("report"))
        return {"report": str(path), **({"merged": merged} if merged else {})}


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Ingest(),
        Folds(),
        Edges(),
        Generator(),
        Sample(),
        Cluster(),
        Augment(),
        Pretrain(),
        EvalGenerator(),
        EvalSegment(),
        EvalClassify(),
        EvalSelfValidate(),
        Report(),
    )
}
