"""The nbadam command line, run as ``python -m nbadam`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nbadam import cli
from nbadam.datasets import load_mnist
from nbadam.nn import MLP

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["mnist", "--subset", "2000", "--epochs", "1", "--no-progress"]


def run(args, cwd, extra_path=None):
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    if extra_path:
        paths.reverse()
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, "-m", "nbadam", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_trains_saves_and_plots(tmp_path):
    result = run(QUICK + ["--save", "model.npz", "--plot", "curves.png", "--seed", "3"],
                 tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy: 0." in result.stdout
    assert "epoch 1/1: loss" in result.stdout
    assert result.stderr == ""
    model = MLP.load(tmp_path / "model.npz")
    assert model.seed == 3 and model.sizes == (784, 256, 128, 10)
    reported = float(result.stdout.split("test accuracy: ")[1].split()[0])
    _, (x_test, y_test) = load_mnist()
    assert model.evaluate(x_test, y_test)["accuracy"] == pytest.approx(reported, abs=1e-4)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_and_resume(tmp_path):
    common = ["--epochs", "2", "--dtype", "float64", "--hidden", "32", "--schedule", "cosine",
              "--checkpoint", "run.npz"]
    first = run(QUICK + common + ["--save", "one.npz"], tmp_path)
    assert first.returncode == 0, first.stderr
    again = run(QUICK + common + ["--resume", "--save", "two.npz"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "epoch 1/2" not in again.stdout  # nothing left to train
    np.testing.assert_array_equal(MLP.load(tmp_path / "one.npz").params,
                                  MLP.load(tmp_path / "two.npz").params)


def test_prodigy_trains_and_resumes_bit_for_bit(tmp_path):
    """A rule with a reduction (two passes a step, running scalars in the checkpoint)
    through the command line: one epoch, a checkpoint, a resumed second epoch, equal to
    two epochs in one run."""
    common = ["mnist", "--subset", "1000", "--no-progress", "--hidden", "16", "--optimizer",
              "prodigy", "--schedule", "constant", "--dtype", "float64"]
    straight = run(common + ["--epochs", "2", "--save", "straight.npz"], tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert ": prodigy (constant lr)" in straight.stdout and straight.stderr == ""
    assert float(straight.stdout.split("test accuracy: ")[1].split()[0]) > 0.3  # chance: 0.1
    first = run(common + ["--epochs", "1", "--checkpoint", "run.npz"], tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = run(common + ["--epochs", "2", "--checkpoint", "run.npz", "--resume",
                            "--save", "resumed.npz"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 1/2" not in resumed.stdout and "epoch 2/2" in resumed.stdout
    np.testing.assert_array_equal(MLP.load(tmp_path / "straight.npz").params,
                                  MLP.load(tmp_path / "resumed.npz").params)


def test_early_stopping_on_a_validation_split(tmp_path):
    result = run(["mnist", "--subset", "1500", "--epochs", "6", "--no-progress", "--hidden",
                  "16", "--early-stopping", "2", "--plot", "curves.png", "--save", "m.npz"],
                 tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "on 1500 images, 0.1 held out for validation" in out
    assert "early stopping on val_loss (patience 2)" in out
    assert "val loss" in out and "val accuracy" in out and "test accuracy 0." in out
    kept = int(out.split("(kept epoch ")[1].split(",")[0])
    val_losses = [float(line.split("val loss ")[1].split(",")[0])
                  for line in out.splitlines() if line.startswith("epoch ")]
    assert kept == int(np.argmin(val_losses)) + 1
    reported = float(out.split("test accuracy: ")[1].split()[0])
    _, (x_test, y_test) = load_mnist()
    model = MLP.load(tmp_path / "m.npz")
    assert model.evaluate(x_test, y_test)["accuracy"] == pytest.approx(reported, abs=1e-4)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["mnist", "--validation-split", "1.5"], "--validation-split: must be a number in [0, 1)"),
    (["mnist", "--early-stopping", "0"], "--early-stopping: must be >= 1"),
    (["mnist", "--label-smoothing", "-0.1"], "--label-smoothing: must be a number in [0, 1)"),
    (["mnist", "--min-delta", "-1"], "--min-delta: must be a finite number >= 0"),
    (["mnist", "--monitor", "f1"], "invalid choice: 'f1'"),
    (["mnist", "--schedule", "linear"], "invalid choice: 'linear'"),
    (["mnist", "--epochs", "x"], "--epochs: invalid integer value: 'x'"),
    (["mnist", "--epochs", "0"], "--epochs: must be >= 1"),
    (["mnist", "--lr", "-1"], "--lr: must be a finite number > 0"),
    (["mnist", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["mnist", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["mnist", "--hidden", "a,b"], "--hidden"),
    (["mnist", "--bogus"], "unrecognized arguments: --bogus"),
    (["mnist", "--resume"], "--resume needs --checkpoint"),
    (["mnist", "--save", "no/such/folder/m.npz"], "does not exist"),
    (["mnist", "--save", ""], "--save needs a file name"),
    (["mnist", "--plot", "curves.bmpx"], "cannot write .bmpx images"),
    (["mnist", "--checkpoint", "run.npz", "--resume", "--overwrite"], "pass one of them"),
    (["mnist", "--plot", "."], "is a folder"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "choose a command"),
])
def test_bad_arguments_exit_with_one_line(tmp_path, args, message):
    result = run(args, tmp_path)
    line = assert_one_line_error(result)
    assert message in line
    assert not list(tmp_path.iterdir())


def test_a_bad_checkpoint_is_one_line(tmp_path):
    (tmp_path / "run.npz").write_text("not a checkpoint")
    result = run(QUICK + ["--checkpoint", "run.npz", "--resume"], tmp_path)
    line = assert_one_line_error(result)
    assert "run.npz" in line and "not a readable" in line


def test_plot_without_matplotlib_fails_before_training(tmp_path):
    blocker = tmp_path / "blocker"
    (blocker / "matplotlib").mkdir(parents=True)
    (blocker / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run(QUICK + ["--plot", "curves.png"], work, extra_path=blocker)
    line = assert_one_line_error(result)
    assert 'pip install "nbadam[plot]"' in line
    assert "training" not in result.stdout
    assert not list(work.iterdir())


def test_help_lists_the_flags(tmp_path):
    result = run(["mnist", "--help"], tmp_path)
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--lr", "--optimizer", "--schedule", "--save",
                 "--plot", "--seed", "--dtype", "--no-progress", "--subset", "--checkpoint",
                 "--resume", "--early-stopping", "--validation-split", "--monitor",
                 "--min-delta", "--label-smoothing"):
        assert flag in result.stdout


# -- output files are checked before training ---------------------------------------------------

def unwritable_folder(tmp_path):
    """A folder where no file can be created, even by root (or skip)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no folder here refuses new files to root")


@pytest.mark.parametrize("flag, name", [("--save", "model.npz"), ("--checkpoint", "run.npz"),
                                        ("--plot", "curves.png")])
def test_an_unwritable_output_fails_before_training(tmp_path, flag, name):
    target = unwritable_folder(tmp_path) / name
    work = tmp_path / "work"
    work.mkdir()
    result = run(QUICK + [flag, str(target)], work)
    line = assert_one_line_error(result)
    assert flag in line and str(target) in line and "cannot create a file" in line
    assert "training" not in result.stdout
    assert not list(work.iterdir())


def test_an_existing_checkpoint_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "run.npz").write_bytes(b"a previous run")
    result = run(QUICK + ["--checkpoint", "run.npz"], tmp_path)
    line = assert_one_line_error(result)
    assert "already exists" in line and "--resume" in line and "--overwrite" in line
    assert (tmp_path / "run.npz").read_bytes() == b"a previous run"
    result = run(QUICK + ["--hidden", "8", "--checkpoint", "run.npz", "--overwrite"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.npz").read_bytes()[:2] == b"PK"   # this run's checkpoint


@pytest.mark.parametrize("content", ["npy", "crafted"])
def test_a_hostile_checkpoint_to_resume_is_one_line(tmp_path, content):
    path = tmp_path / "run.npz"
    if content == "npy":
        with open(path, "wb") as handle:
            np.save(handle, np.zeros(3))
    else:   # JSON nested far beyond Python's recursion limit
        text = '{"format": "mlp-training", "version": 1, "model": ' + "[" * 100_000 + \
            "]" * 100_000 + "}"
        np.savez(path, __meta__=np.array(text))
    result = run(QUICK + ["--checkpoint", "run.npz", "--resume"], tmp_path)
    line = assert_one_line_error(result)
    assert "run.npz" in line


def test_ctrl_c_before_the_first_epoch_does_not_claim_a_checkpoint(tmp_path, monkeypatch,
                                                                  capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MLP, "fit", interrupted)
    monkeypatch.chdir(tmp_path)
    status = cli.main(QUICK + ["--checkpoint", "run.npz"])
    assert status == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "no epoch finished, so the checkpoint run.npz was not written" in err
    assert "holds" not in err and not (tmp_path / "run.npz").exists()


def test_ctrl_c_after_an_epoch_points_to_the_checkpoint(tmp_path, monkeypatch, capsys):
    def one_epoch_then_interrupted(self, *args, callback=None, checkpoint=None, **kwargs):
        open(checkpoint, "wb").close()
        callback(1, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5})
        raise KeyboardInterrupt

    monkeypatch.setattr(MLP, "fit", one_epoch_then_interrupted)
    monkeypatch.chdir(tmp_path)
    assert cli.main(QUICK + ["--checkpoint", "run.npz"]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "the checkpoint run.npz holds the last finished epoch (continue with --resume)" in err


def test_a_model_too_large_for_memory_is_one_line(tmp_path):
    result = run(["mnist", "--hidden", "100000000,100000000"], tmp_path)
    line = assert_one_line_error(result)
    assert "sizes=(784, 100000000, 100000000, 10)" in line and "narrower" in line
    assert "training" not in result.stdout
