"""Experiment workflow: a Hydra multirun, wandb offline without a login, the contact sheet, loggers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint
from fast_style.config import CONFIG_DIR
from fast_style.contact_sheet import figure_lines, find_checkpoints, load_run, make_contact_sheet, run_figures
from fast_style.train.loggers import choose_wandb_mode, swept_overrides, wandb_api_key_available
from fast_style.train.training import train

from .conftest import ROOT, assert_one_line_error, compose_train, run_script, tiny_train_overrides

STYLE_WEIGHTS = ("0.1", "1.0")


def offline_env(home: Path) -> dict[str, str]:
    """The environment of a machine that never logged in to wandb: no WANDB_* variables at all
    (WANDB_MODE unset), no API key, an empty home without a .netrc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    return env


@pytest.fixture(scope="module")
def multirun(photos_dir, tmp_path_factory):
    """``python train.py -m ... loss.style_weight=0.1,1.0`` with the default (wandb) logger, offline
    by itself: WANDB_MODE unset, no key, stdin closed (a login prompt would fail, not hang)."""
    tmp = tmp_path_factory.mktemp("multirun")
    painting = tmp / "painting.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).resize((96, 96)).save(painting)
    sweep_dir = tmp / "sweep"
    overrides = [o for o in tiny_train_overrides(photos_dir, steps=3) if not o.startswith("logger=")]
    args = [
        "-m",
        "sweep=style_weight",  # the ready grid; the command line replaces its values
        f"loss.style_weight={','.join(STYLE_WEIGHTS)}",
        "style=custom",
        f"style.image={painting}",
        "style.size=64",
        "samples.every_n_steps=2",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=offline_env(tmp / "home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return sweep_dir, result


@pytest.mark.slow
def test_multirun_gives_each_job_its_own_run_dir_and_checkpoint(multirun):
    sweep_dir, result = multirun
    job_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in job_dirs] == ["0", "1"]
    for job_dir, weight in zip(job_dirs, STYLE_WEIGHTS, strict=True):
        checkpoint = read_checkpoint(job_dir / "final.ckpt")
        config = checkpoint["fast_style"]["config"]
        assert config["run_dir"] == str(job_dir)  # each job writes into its own folder
        assert config["loss"]["style_weight"] == float(weight)
        assert list((job_dir / "samples").glob("step_*.png"))
    lines = result.stdout.strip().splitlines()
    assert [line for line in lines if line.startswith("final checkpoint:")] == [
        f"final checkpoint: {d / 'final.ckpt'}" for d in job_dirs
    ]
    assert lines[-1] == f"final checkpoint: {job_dirs[-1] / 'final.ckpt'}"


@pytest.mark.slow
def test_wandb_logs_offline_by_itself_with_images(multirun):
    sweep_dir, result = multirun
    assert "no API key" in result.stderr and "logging offline" in result.stderr
    run_ids = set()
    for job, weight in enumerate(STYLE_WEIGHTS):
        runs = list((sweep_dir / str(job) / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs  # one wandb run per job, not one shared run
        run_ids.add(runs[0].name.rsplit("-", 1)[-1])
        images = sorted(p.name for p in (runs[0] / "files" / "media" / "images").glob("*.png"))
        assert any(n.startswith("samples_") for n in images) and any(n.startswith("final_") for n in images), images
        records = next(runs[0].glob("run-*.wandb")).read_bytes()
        for metric in ("loss/content", "loss/style", "loss/tv", "loss/total", "lr-Adam", "perf/images_per_sec"):
            assert metric.encode() in records, metric
        assert b"content_weight" in records  # the config
        assert sweep_dir.name.encode() in records  # group: the sweep
        assert f"{job}: loss.style_weight={weight}".encode() in records  # name: the job's swept overrides
    assert len(run_ids) == 2


@pytest.mark.slow
def test_contact_sheet_of_the_multirun(multirun, tmp_path):
    sweep_dir, _ = multirun
    photos = []
    for i, size in enumerate([(50, 40), (40, 64)]):
        photos.append(tmp_path / f"photo{i}.png")
        Image.new("RGB", size, (200, 60 * i, 90)).save(photos[-1])
    out = tmp_path / "sheet.png"
    result = run_script(
        "scripts/contact_sheet.py",
        f"runs=[{sweep_dir}]",
        f"photos=[{','.join(map(str, photos))}]",
        "size=32",
        f"out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"contact sheet (2 runs x 2 photos): {out}"

    checkpoints = find_checkpoints([sweep_dir])
    assert checkpoints == [sweep_dir / "0" / "final.ckpt", sweep_dir / "1" / "final.ckpt"]
    loaded = [load_run(c) for c in checkpoints]
    tiles = [torch.rand(3, 32, 32) for _ in range(2)]
    sheet = make_contact_sheet([r for r, _ in loaded], [s for _, s in loaded], tiles, pad=8, font_size=12)
    assert sheet.labels == [["loss.style_weight=0.1"], ["loss.style_weight=1.0"]]
    assert (sheet.rows, sheet.cols) == (3, 2)  # the content row + one row per run, one column per photo
    assert sheet.image.height == 3 * 32 + 4 * 8
    assert sheet.image.width == sheet.cells[0][-1][2] + 8
    assert Image.open(out).size == (sheet.image.width, sheet.image.height)  # same layout at size=32
    # the cells hold the photos and what each run makes of them
    stylized = loaded[1][1](torch.stack(tiles))[1]
    cell = np.asarray(sheet.image.crop(sheet.cells[2][1]), dtype=np.float32) / 255
    assert np.abs(cell - stylized.permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6
    content = np.asarray(sheet.image.crop(sheet.cells[0][0]), dtype=np.float32) / 255
    assert np.abs(content - tiles[0].permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6
    # With the quality figures (scripts/evaluate.py's) under each label, a sweep is ranked by numbers.
    figures = run_figures([r for r, _ in loaded], [s for _, s in loaded], tiles)
    ranked = make_contact_sheet([r for r, _ in loaded], [s for _, s in loaded], tiles, figures=figures)
    assert ranked.labels[1][0] == "loss.style_weight=1.0"
    assert ranked.labels[1][1:] == figure_lines(figures[1])
    assert ranked.labels[1][1].startswith("style gain ") and ranked.labels[1][3].startswith("artifacts ")
    # Rows named by the user (runs whose configs differ in many keys, e.g. another trainer's).
    named = run_script(
        "scripts/contact_sheet.py",
        f"runs=[{sweep_dir}]",
        "size=32",
        "labels=[weak,strong]",
        f"out={tmp_path / 'n.png'}",
    )
    assert named.returncode == 0, named.stderr[-3000:]
    renamed = make_contact_sheet([r for r, _ in loaded], [s for _, s in loaded], tiles, labels=["weak", "strong"])
    assert renamed.labels == [["weak"], ["strong"]]
    wrong = run_script("scripts/contact_sheet.py", f"runs=[{sweep_dir}]", "labels=[one]", f"out={tmp_path / 'w.png'}")
    assert_one_line_error(wrong, "1 labels for 2 runs")
    assert not (tmp_path / "w.png").exists()


@pytest.mark.slow
def test_contact_sheet_labels_from_configs_when_overrides_are_missing(multirun, tmp_path):
    """Loose checkpoints (no .hydra folder next to them) are told apart by their saved configs."""
    sweep_dir, _ = multirun
    copies = []
    for job in ("0", "1"):
        copies.append(tmp_path / f"run{job}.ckpt")
        copies[-1].write_bytes((sweep_dir / job / "final.ckpt").read_bytes())
    runs = [load_run(c)[0] for c in copies]
    from fast_style.contact_sheet import run_labels

    assert run_labels(runs) == [["loss.style_weight=0.1"], ["loss.style_weight=1.0"]]


def test_contact_sheet_bad_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("scripts/contact_sheet.py", f"runs=[{empty}]")
    assert_one_line_error(result, "no final.ckpt or last.ckpt", str(empty))
    assert not (empty / "contact_sheet.png").exists()


def test_csv_logger_writes_every_loss_term(photos_dir, tmp_path):
    cfg = compose_train(
        [
            *tiny_train_overrides(photos_dir, steps=3),
            "style=custom",
            f"style.image={_painting(tmp_path)}",
            "style.size=64",
        ],
        tmp_path / "run",
    )
    train(cfg)
    header = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("loss/content", "loss/style", "loss/tv", "loss/total", "lr-Adam", "perf/images_per_sec"):
        assert column in header, header
    assert "style_weight" in (tmp_path / "run" / "logs" / "hparams.yaml").read_text()  # the config


def _painting(folder: Path) -> Path:
    path = folder / "painting.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("logger", ["wandb", "tensorboard", "csv", "none"])
def test_logger_choices_instantiate(logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train([f"logger={logger}"], tmp_path)
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    expected = {"wandb": ["WandbLogger"], "tensorboard": ["TensorBoardLogger"], "csv": ["CSVLogger"], "none": []}
    assert [type(lg).__name__ for lg in loggers] == expected[logger]
    for lg in loggers:
        assert Path(lg.save_dir) == tmp_path


def test_default_logger_is_wandb_and_sweep_config_sets_the_grid(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["sweep=style_weight", f"run_dir={tmp_path}"], return_hydra_config=True)
    assert list(cfg.logger) == ["wandb"]
    assert cfg.hydra.sweeper.params["loss.style_weight"] == "3.0e9,1.0e10,3.0e10"


def test_wandb_mode_choice(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    probes = []
    monkeypatch.setattr(
        "fast_style.train.loggers.wandb_host_reachable", lambda timeout: probes.append(timeout) or False
    )
    assert not wandb_api_key_available()
    assert choose_wandb_mode(None)[0] == "offline" and probes == []  # no key: no network attempt at all
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_api_key_available()
    assert choose_wandb_mode(None)[0] == "offline" and probes  # key, server unreachable: offline too
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_wandb_mode(None) == (None, None)  # the user's WANDB_MODE is left to wandb
    assert choose_wandb_mode("online") == ("online", None)  # logger.wandb.mode=online wins


def test_swept_overrides_name_the_job():
    argv = ["-m", "sweep=style_weight", "loss.style_weight=0.1,1.0", "trainer.enable_progress_bar=false", "data=folder"]
    job = [
        "loss.style_weight=1.0",
        "sweep=style_weight",
        "trainer.enable_progress_bar=False",
        "data=folder",
        "style=wave",
    ]
    # swept on the command line, or chosen by the sweeper's params (style=wave here)
    assert swept_overrides(job, argv) == ["loss.style_weight=1.0", "style=wave"]
