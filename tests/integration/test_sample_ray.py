"""`synmed sample` on a real local Ray: determinism across worker counts, resume after a killed
driver (keeping only shards that match their writer's record), a changed shard of a finished set
sampled again to its original bytes, a SIGKILLed worker retried by Ray, refusal of another job's
folder.

The commands join the session's Ray (``joined_ray``); the one-worker run of the first test and the
killed-worker tests start a Ray of their own, as a user's command does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from suite.generative.export import load_generator
from suite.sampling.job import plan_from_dict, sample_rows
from tests.integration.helpers import ENV, own_ray_env, synmed, synmed_here, wait_until
from tests.unit.sampling.test_job import flip_byte, rewrite_valid

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("joined_ray")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def generator(tiny_generator: Path) -> Path:
    return tiny_generator


def images_by_index(directory: Path) -> dict[int, bytes]:
    data = ShardDataset(directory)
    return {int(data[i]["index"]): data[i]["image"].numpy().tobytes() for i in range(len(data))}


def sample_args(generator: Path, out: Path, n: int = 24, *extra: str) -> list[str]:
    return ["sample", "--checkpoint", str(generator), "--num-images", str(n), "--shard-size", "4",
            "--batch-size", "2", "--sampler", "ddim", "--sampling-steps", "4", "--out", str(out), *extra]  # fmt: skip


def test_one_and_two_workers_give_identical_images(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a process with a Ray of its own (the path a user's command takes), then the session's
    # from this process (the actors sample either way): the same bytes
    one = synmed(*sample_args(generator, tmp_path / "one", 16, "--workers", "1"), env=own_ray_env())
    assert one.returncode == 0, one.stderr
    two = synmed_here(capsys, *sample_args(generator, tmp_path / "two", 16, "--workers", "2"))
    assert two.returncode == 0, two.stderr
    for out in ("one", "two"):
        report = verify_shard_set(tmp_path / out)
        assert report.count == 16 and report.shards == 4
    a, b = images_by_index(tmp_path / "one"), images_by_index(tmp_path / "two")
    assert sorted(a) == list(range(16)) and a == b  # byte-identical, index by index
    summary = json.loads((tmp_path / "two" / "sample_summary.json").read_text())
    assert (
        summary["images"] == 16 and summary["sampler"] == "ddim" and summary["sampling_steps"] == 4
    )
    assert sum(summary["images_per_worker"].values()) == 16
    assert (tmp_path / "two" / "samples.png").is_file()
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["attrs"]["source"] == "synthetic" and manifest["attrs"]["generator_digest"]


def kill_session(leader: int) -> None:
    """SIGKILL every process of the session ``leader`` started (start_new_session=True): Ray's
    workers sit in process groups of their own, but stay in the driver's session."""
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == leader:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    wait_until(
        lambda: not any(_in_session(p, leader) for p in psutil.pids()), 30, "the session to die"
    )


def _in_session(pid: int, leader: int) -> bool:
    try:
        return os.getsid(pid) == leader and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
        return False


def wait_for_actors_to_end(out: Path) -> None:
    """Wait until Ray has ended the actors of a killed driver (their pids are in ``.workers``): an
    actor outliving its driver by a moment could add a shard under the test's feet."""
    pids = [int(p.name.rsplit("_", 1)[1]) for p in (out / ".workers").iterdir()]
    assert pids, "no actor recorded itself"
    wait_until(
        lambda: not any(_alive(pid) for pid in pids), 60, "the killed driver's actors to end"
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recorded_shards(out: Path) -> list[str]:
    """Shards whose writer also left its record (a kill can fall between the two)."""
    return sorted(
        p.name
        for p in out.glob("shard-*.h5")
        if (out / ".records" / p.name.replace(".h5", ".json")).is_file()
    )


def test_killed_driver_resumes_writing_only_missing_shards(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    args = sample_args(generator, out, 40)
    proc = subprocess.Popen([sys.executable, "-m", "suite", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    wait_until(lambda: len(recorded_shards(out)) >= 4, 300, "four shards")
    kill_session(proc.pid)  # the driver (its actors run in the session's Ray)
    proc.wait()
    wait_for_actors_to_end(out)
    recorded = recorded_shards(out)
    assert 4 <= len(recorded) < 10 and not (out / "manifest.json").exists()
    # one shard changed after it was written, one whose record is lost: both are made again
    changed, unrecorded, *kept = recorded
    original = {name: (out / name).read_bytes() for name in (changed, unrecorded)}
    rewrite_valid(out / changed)
    (out / ".records" / unrecorded.replace(".h5", ".json")).unlink()
    before = {name: (out / name).stat().st_mtime_ns for name in kept}
    again = synmed_here(capsys, *args)  # the rerun from this process, on the same Ray
    assert again.returncode == 0, again.stderr
    assert f"{out / changed} differs from the sha256 recorded" in again.stdout
    assert f"{out / unrecorded} has no record of its writer" in again.stdout
    assert f"{len(kept)} of 10 shards already complete" in again.stdout
    for name, mtime in before.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not rewritten
    for name, data in original.items():
        assert (out / name).read_bytes() == data  # sampled again to the same bytes
    summary = json.loads((out / "sample_summary.json").read_text())
    assert summary["sampled_this_run"] == 40 - 4 * len(kept)
    assert verify_shard_set(out).count == 40
    assert sorted(images_by_index(out)) == list(range(40))
    assert not (out / ".records").exists()  # the manifest holds the records now


def test_changed_shard_of_a_finished_set_is_sampled_again(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a rerun re-hashed whatever was on disk into the manifest, and verify then passed.
    The commands run in this process (the actors sample either way; a fresh interpreter's imports
    would be most of their time)."""
    out = tmp_path / "s"
    args = sample_args(generator, out, 12)
    assert synmed_here(capsys, *args).returncode == 0
    manifest_bytes = (out / "manifest.json").read_bytes()
    whole = synmed_here(
        capsys, *args
    )  # every shard verified, nothing to do: the manifest stays as it was
    assert whole.returncode == 0 and "sampling it again" not in whole.stdout
    assert (out / "manifest.json").read_bytes() == manifest_bytes
    original = {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.h5"))}
    digests = {s["file"]: s["sha256"] for s in json.loads((out / "manifest.json").read_text())["shards"]}  # fmt: skip
    flip_byte(out / "shard-00000.h5")
    rewrite_valid(out / "shard-00002.h5")  # a valid shard of the right job and count
    refused = synmed_here(capsys, "data", "verify", str(out))
    assert refused.returncode == 2 and "shard-00000.h5" in refused.stderr
    again = synmed_here(capsys, *args)
    assert again.returncode == 0, again.stderr
    redone = [line for line in again.stdout.splitlines() if "sampling it again" in line]
    assert len(redone) == 2 and "shard-00000.h5" in redone[0] and "shard-00002.h5" in redone[1]
    assert {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.h5"))} == original
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["file"]: s["sha256"] for s in manifest["shards"]} == digests  # the original digests
    assert synmed_here(capsys, "data", "verify", str(out)).returncode == 0
    assert json.loads((out / "sample_summary.json").read_text())["sampled_this_run"] == 8


def test_sigkilled_worker_is_retried_and_every_index_lands_once(
    generator: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    # a Ray of its own: the suite's local Ray, whose actors run at nice 0 (checked below)
    proc = subprocess.Popen([sys.executable, "-m", "suite", *sample_args(generator, out, 40, "--workers", "2")],
                            env=own_ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    workers = out / ".workers"
    wait_until(lambda: workers.is_dir() and any(workers.iterdir()) and len(list(out.glob("shard-*.h5"))) >= 1,
              300, "a worker at work")  # fmt: skip
    victim = int(sorted(workers.iterdir())[0].name.rsplit("_", 1)[1])  # "<node>_<pid>"
    # the suite's own local Ray runs its actors at nice 0 (Ray's default 15 halves their share of
    # a machine shared with other work)
    assert psutil.Process(victim).nice() == 0
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "sample_summary.json").read_text())
    assert set(summary["images_per_node"]) == {"127.0.0.1"}
    assert sum(summary["images_per_worker"].values()) == 40  # each shard counted once
    assert verify_shard_set(out).count == 40
    index = sorted(images_by_index(out))
    assert index == list(range(40))  # exactly N images, each index once
    assert not list(out.glob("*.tmp"))


def test_folder_of_another_job_is_refused(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synmed_here(capsys, *sample_args(generator, tmp_path / "s", 8)).returncode == 0
    # the refusals in this process: a fresh interpreter's imports would be most of their time
    other = synmed_here(capsys, *sample_args(generator, tmp_path / "s", 8, "--seed", "3"))
    assert other.returncode == 2
    assert "another sampling job" in other.stderr and "seed 0 != 3" in other.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    refused = synmed_here(capsys, *sample_args(generator, tmp_path / "mine", 8))
    assert refused.returncode == 2 and "not empty" in refused.stderr


def test_bad_arguments(generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # refused in this process: a fresh interpreter's imports would be most of each command's time
    proc = synmed_here(capsys, *sample_args(generator, tmp_path / "a", 8, "--per-class", "2"))
    assert proc.returncode == 2 and "class-conditional" in proc.stderr
    proc = synmed_here(capsys, "sample", "--checkpoint", str(generator), "--num-images", "4",
                       "--sampling-steps", "999", "--out", str(tmp_path / "b"))  # fmt: skip
    assert proc.returncode == 2 and "outside 1..50" in proc.stderr
    (tmp_path / "not-a-run").mkdir()
    proc = synmed_here(capsys, "sample", "--checkpoint", str(tmp_path / "not-a-run"),
                       "--num-images", "4", "--out", str(tmp_path / "c"))  # fmt: skip
    assert proc.returncode == 2 and "not a synmed generator export" in proc.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_a_diverged_export_is_one_error_through_ray_and_writes_no_set(
    generator: Path, tmp_path: Path
) -> None:
    """An export whose weights exploded (saved by a synmed without the training-side check) samples
    NaN: the worker's error reaches the user as one message, not black images with exit 0."""
    import torch

    from suite.generative.export import export_generator, load_generator

    model, _ = load_generator(generator)
    with torch.no_grad():
        for module in model.trainable_modules().values():
            for p in module.parameters():
                p.fill_(1e30)
    diverged = tmp_path / "diverged"
    export_generator(model, diverged, {"note": "weights set to 1e30"}, model.class_names)
    proc = synmed(*sample_args(diverged, tmp_path / "out", 8))
    assert proc.returncode == 2, proc.stderr
    assert "produced NaN/inf pixels" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_labels_follow_the_class_plan() -> None:
    from suite.sampling.job import make_plan

    plan = make_plan("d", ["a", "b", "c"], 3, samplers=("ddim",), num_images=None, per_class=4, class_weights=None, shard_size=5,
                     batch_size=2, sampler="ddim", steps=5, seed=0, guidance_scale=2.0)  # fmt: skip
    assert plan.num_images == 12 and plan.labels(0, 6).tolist() == [0, 1, 2, 0, 1, 2]
    weighted = make_plan("d", ["a", "b"], 2, samplers=("ddim",), num_images=2000, per_class=None, class_weights=[3.0, 1.0],
                         shard_size=500, batch_size=8, sampler="ddim", steps=5, seed=0, guidance_scale=1.0)  # fmt: skip
    labels = np.concatenate([weighted.labels(s, e) for _, s, e in weighted.shards()])
    assert 0.70 < (labels == 0).mean() < 0.80
    assert np.array_equal(
        weighted.labels(500, 510), labels[500:510]
    )  # a shard's labels need no other shard


def test_conditioned_sampling_pairs_each_row_with_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A class-conditional DDPM conditioned row by row on a labelled set, 2 outputs per row, on
    Ray: every output carries its conditioning row's label and index."""
    from tests.unit.data.helpers import make_shard_set

    labelled = make_shard_set(tmp_path / "labelled", n=18, shard_size=6)
    train = synmed("train", "generator", str(REPO / "configs/generator/tiny_diffusers.yaml"),
                   f"data.shards={labelled}", f"run.out_dir={tmp_path}", "model.num_classes=3",
                   "train.max_steps=2", "train.batch_size=2")  # fmt: skip
    assert train.returncode == 0, train.stderr
    out = tmp_path / "paired"
    proc = synmed_here(capsys, "sample", "--checkpoint", str(tmp_path / "tiny-diffusers"),
                       "--conditions", str(labelled), "--per-condition", "2", "--shard-size", "4",
                       "--batch-size", "3", "--sampler", "ddim", "--sampling-steps", "2",
                       "--workers", "1", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    source = ShardDataset(labelled, split="train")
    label_of = {int(source.indices[i]): int(source.labels[i]) for i in range(len(source))}
    data = ShardDataset(out)
    assert len(data) == 2 * len(source) == 12
    pairs = data.read_column("source_index")
    assert sorted(pairs.tolist()) == sorted(2 * list(label_of))
    assert [int(data.labels[i]) for i in range(len(data))] == [label_of[int(s)] for s in pairs]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["attrs"]["conditions_digest"] and manifest["schema_version"] == 2
    summary = json.loads((out / "sample_summary.json").read_text())
    assert summary["per_condition"] == 2 and summary["conditions"] == str(labelled.resolve())
    # an inconsistent request fails before Ray starts or --out is made (here, in this process)
    bad = synmed_here(capsys, "sample", "--checkpoint", str(tmp_path / "tiny-diffusers"),
                      "--conditions", str(labelled), "--num-images", "5", "--sampler", "ddim",
                      "--sampling-steps", "2", "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode == 2 and "--num-images 5 differs" in bad.stderr
    assert not (tmp_path / "bad").exists()


FILE_SIZE_LIMIT = 64 * 1024  # below one shard of 300 noisy 16 px images (~90 KB)


def limit_file_size() -> None:
    """A Ray worker setup hook: a file-size limit stands in for a full disk. Ray starts its workers
    without the driver's limits, so `ulimit -f` around the command would not reach them."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.RLIM_INFINITY))


LIMITED_DRIVER = (
    "import sys, ray, suite.launch.ray_runtime; ray.init(address='local', num_cpus=2, "
    "include_dashboard=False, _node_ip_address='127.0.0.1', runtime_env={'worker_process_setup_hook': "
    "'tests.integration.test_sample_ray.limit_file_size'}); from suite.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def test_full_disk_in_a_worker_is_one_error_and_the_rerun_completes(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(generator), "--num-images", "300", "--shard-size", "300",
            "--batch-size", "100", "--sampler", "ddim", "--sampling-steps", "2", "--workers", "1",
            "--out", str(out)]  # fmt: skip
    # the workers import the setup hook from this file: the repo must be on their path (the
    # suite is installed, the tests are not)
    # (its Ray is its own, started by LIMITED_DRIVER; the rerun joins the session's)
    env = {
        **own_ray_env(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), ENV.get("PYTHONPATH")])),
    }
    full = subprocess.run([sys.executable, "-c", LIMITED_DRIVER, *args], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert full.returncode == 2, full.stderr[-3000:]
    driver = [line for line in full.stderr.splitlines() if "(MapWorker" not in line]
    errors = [line for line in driver if line.startswith("error: ")]
    assert len(errors) == 1 and f"writing {out}/shard-00000.h5 failed: file too large" in errors[0]
    assert "fix: raise the file-size limit" in full.stderr
    assert not any("Traceback" in line for line in driver)  # no Ray dump from the driver
    assert not list(out.glob("*.tmp")) and not (out / "manifest.json").exists()
    again = synmed_here(capsys, *args)  # the rerun from this process, on the session's Ray
    assert again.returncode == 0, again.stderr
    assert verify_shard_set(out).count == 300


def train_tiny_gan(root: Path, config: str, *extra: str) -> Path:
    """A tiny GAN trained 2 steps on 18 labelled rows in 3 classes (its run folder)."""
    from tests.unit.data.helpers import make_shard_set

    labelled = make_shard_set(root / "labelled", n=18, shard_size=6)
    # every row (this set's splits each hold one class): each per-class pair trains
    train = synmed("train", "generator", str(REPO / "configs/generator" / config),
                   f"data.shards={labelled}", "data.split=null", f"run.out_dir={root}",
                   "model.num_classes=3", "train.max_steps=2", "train.batch_size=2", *extra)  # fmt: skip
    assert train.returncode == 0, train.stderr
    return root / config.removesuffix(".yaml").replace("_", "-")


@pytest.fixture(scope="module")
def tiny_acgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_gan(tmp_path_factory.mktemp("acgan"), "tiny_acgan.yaml")


@pytest.mark.parametrize(
    ("config", "extra", "workers"),
    [
        ("tiny_dcgan.yaml", ["model.mode=per_class"], ("1", "2")),
        ("tiny_acgan.yaml", [], ("2",)),  # one Ray run: the same sample() path
    ],
    ids=["dcgan-per-class", "acgan"],
)
def test_gans_sample_per_class_counts_identically_on_one_and_two_workers(
    tmp_path: Path, request: pytest.FixtureRequest, config: str, extra: list[str],
    workers: tuple[str, ...], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if config == "tiny_acgan.yaml":
        run = request.getfixturevalue("tiny_acgan")
    else:
        run = train_tiny_gan(tmp_path, config, *extra)
    outs = {}
    for n in workers:
        outs[n] = tmp_path / f"w{n}"
        # --sampler defaults to the family's own ("gan"): the first run names it, the others not
        named = ["--sampler", "gan"] if n == workers[0] else []
        # from this process: the actors sample either way
        proc = synmed_here(capsys, "sample", "--checkpoint", str(run), "--per-class", "4",
                           "--shard-size", "4", "--batch-size", "3", *named, "--workers", n,
                           "--out", str(outs[n]))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    images = [images_by_index(out) for out in outs.values()]
    assert sorted(images[0]) == list(range(12))
    assert all(other == images[0] for other in images[1:])  # byte-identical, index by index
    data = ShardDataset(outs["2"])
    assert np.bincount(data.labels, minlength=3).tolist() == [4, 4, 4]
    assert verify_shard_set(outs["2"]).count == 12


def kill_first_writer() -> None:
    """A Ray worker setup hook: the first worker about to write a shard (the marker file
    SYNMED_TEST_KILL_MARK does not exist yet) SIGKILLs itself, its rows sampled and nothing
    written; a GAN samples too fast for a kill from outside to land mid-job."""
    import suite.sampling.job as job

    write = job.write_sampled_shard

    def write_or_die(*args, **kwargs):
        try:
            os.close(os.open(os.environ["SYNMED_TEST_KILL_MARK"], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    job.write_sampled_shard = write_or_die


def test_a_gan_worker_killed_mid_sampling_is_retried_and_every_index_lands_once(
    tiny_acgan: Path, tmp_path: Path
) -> None:
    out, mark = tmp_path / "s", tmp_path / "killed"
    driver = LIMITED_DRIVER.replace("limit_file_size'", "kill_first_writer', 'env_vars': "
                                    f"{{'SYNMED_TEST_KILL_MARK': '{mark}'}}")  # fmt: skip
    # a Ray of its own (the workers import the hook from this file, so the repo is on their path)
    env = {
        **own_ray_env(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), ENV.get("PYTHONPATH")])),
    }
    args = ["sample", "--checkpoint", str(tiny_acgan), "--per-class", "8", "--shard-size", "4",
            "--batch-size", "2", "--workers", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", driver, *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert mark.is_file()  # a worker did die mid-job
    summary = json.loads((out / "sample_summary.json").read_text())
    assert sum(summary["images_per_worker"].values()) == 24  # each shard counted once
    assert verify_shard_set(out).count == 24
    images = images_by_index(out)
    assert sorted(images) == list(range(24))  # exactly N images, each index once
    # the bytes of an unkilled run: every row sampled in-process from the job's own plan
    model, _ = load_generator(tiny_acgan)
    plan = plan_from_dict(json.loads((out / "job.json").read_text())["plan"])
    rows = sample_rows(model, plan, 0, 24, None, "cpu")
    assert {i: rows["images"][i].tobytes() for i in range(24)} == images
    assert not list(out.glob("*.tmp"))
