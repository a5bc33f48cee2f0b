"""Resumable checkpoints: exact resume, atomic writes under kill -9, signals, NaN, no pickle."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, shapes_dataset
from infoedit import hub
from infoedit.cli import app
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
from trainer import checkpoint, infovaegan, loop
from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainer.infovaegan import make_optimizers, train_step
from trainer.config import TrainConfig
from trainer.loop import fit

runner = CliRunner()


def tiny(**kw) -> InfoVAEGAN:
    torch.manual_seed(0)
    return InfoVAEGAN(InfoVAEGANConfig(**{"n_classes": 3, "c_dim": 2, "z_dim": 8, "width": 0.125, "dataset": "shapes",
                                          **kw}))


def tc(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 32, "device": "cpu", **kw})


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    sa, sb = ({k: v for k, v in m.state_dict().items() if not k.startswith(skip)} for m in (a, b))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


# -- save / load -------------------------------------------------------------------------------
def _trained_pair():
    """A model and its optimizers after two steps (so Adam has state), and the step generator."""
    model, gen = tiny(), torch.Generator().manual_seed(3)
    opt = make_optimizers(model, tc())
    ds = shapes_dataset(64)
    for i in range(2):
        train_step(model, opt, ds.batch(torch.arange(i * 32, i * 32 + 32)), gen)
    return model, opt, gen


def test_round_trip_restores_weights_optimizers_and_every_rng(tmp_path):
    model, opt, gen = _trained_pair()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, model, opt, {"epoch": 4, "note": "hi"}, {"rank0": gen})
    expected = (random.random(), np.random.rand(), torch.rand(3), torch.rand(3, generator=gen))

    other, other_gen = tiny(), torch.Generator()
    other_opt = make_optimizers(other, tc())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(tmp_path, other, other_opt, {"rank0": other_gen})
    assert state["epoch"] == 4 and state["note"] == "hi"
    assert_same_weights(model, other)
    for name in opt:
        a, b = opt[name].state_dict(), other_opt[name].state_dict()
        assert a["param_groups"] == b["param_groups"]
        for index, entry in a["state"].items():
            for key, value in entry.items():
                assert torch.equal(value, b["state"][index][key]), (name, index, key)
    got = (random.random(), np.random.rand(), torch.rand(3), torch.rand(3, generator=other_gen))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_checkpoint_is_safetensors_and_json_and_never_pickles(tmp_path, monkeypatch):
    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    for mod, name in [(torch, "save"), (torch, "load"), (pickle, "dumps"), (pickle, "loads"),
                      (pickle, "dump"), (pickle, "load")]:
        monkeypatch.setattr(mod, name, no_pickle)
    model, opt, gen = _trained_pair()
    folder = save_checkpoint(tmp_path, model, opt, {"epoch": 1}, {"rank0": gen})
    assert sorted(p.name for p in folder.iterdir()) == sorted(checkpoint.FILES)
    assert json.loads((folder / "state.json").read_text())["format_version"] == checkpoint.FORMAT_VERSION
    assert any(k.startswith("adv/state/0/exp_avg") for k in checkpoint._read_tensors(folder / "optimizer.safetensors"))
    load_checkpoint(tmp_path, tiny(), make_optimizers(tiny(), tc()), {"rank0": torch.Generator()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temp or backup left


def test_a_kill_between_the_two_renames_leaves_the_backup(tmp_path):
    model, opt, gen = _trained_pair()
    save_checkpoint(tmp_path, model, opt, {"epoch": 1})
    os.rename(tmp_path / "checkpoint", tmp_path / "checkpoint.old")  # the moment between the renames
    (tmp_path / "checkpoint.tmp-dead").mkdir()                       # and a half-written new one
    assert checkpoint.find_checkpoint(tmp_path).name == "checkpoint.old"
    assert load_checkpoint(tmp_path, tiny(), make_optimizers(tiny(), tc()))["epoch"] == 1
    save_checkpoint(tmp_path, model, opt, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert checkpoint.read_state(tmp_path)["epoch"] == 2


def _reshape_a_moment(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "optimizer.safetensors")
    tensors["adv/state/0/exp_avg"] = torch.zeros(3)
    save_file(tensors, folder / "optimizer.safetensors")


def test_a_new_run_sweeps_up_the_temp_files_of_a_killed_one(tmp_path):
    (tmp_path / ".model.safetensors.k1ll3d.tmp").write_bytes(b"half")
    (tmp_path / ".mine.tmp").write_text("not ours")
    (tmp_path / "checkpoint.tmp-k1ll3d").mkdir()
    fit(tiny(), shapes_dataset(64), tc(epochs=1), tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.glob(".*")) == [".mine.tmp"]
    assert not list(tmp_path.glob("checkpoint.*"))


@pytest.mark.parametrize("damage, message", [
    (_reshape_a_moment, "exp_avg has shape"),
    (lambda f: (f / "weights.safetensors").write_bytes((f / "weights.safetensors").read_bytes()[:500]), "truncated"),
    (lambda f: (f / "state.json").write_text('{"format_version": 99}'), "format_version 99"),
    (lambda f: (f / "state.json").write_text("{not json"), "not valid JSON"),
    (lambda f: (f / "rng.safetensors").unlink(), "incomplete checkpoint"),
    (lambda f: (f / "optimizer.safetensors").write_bytes(pickle.dumps({"a": 1})), "unreadable"),
])
def test_damaged_checkpoint_is_one_line(tmp_path, damage, message):
    model, opt, gen = _trained_pair()
    damage(save_checkpoint(tmp_path, model, opt, {"epoch": 1}))
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(tmp_path, tiny(), make_optimizers(tiny(), tc()))
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    model, opt, _ = _trained_pair()
    save_checkpoint(tmp_path, model, opt, {})
    wide = tiny(z_dim=9)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path, wide, make_optimizers(wide, tc()))


# -- resume in fit -------------------------------------------------------------------------------
def test_resume_after_epoch_1_equals_an_uninterrupted_run(tmp_path, deterministic):
    ds = shapes_dataset(128)
    straight = tiny()
    fit(straight, ds, tc(epochs=2), tmp_path / "a", progress=False)
    fit(tiny(), ds, tc(epochs=1), tmp_path / "b", progress=False)
    resumed = tiny()
    record = fit(resumed, ds, tc(epochs=2, resume=tmp_path / "b"), tmp_path / "b", progress=False)
    assert_same_weights(straight, resumed)
    assert record["step"] == 8 and [r["epoch"] for r in records(tmp_path / "b")] == [1, 2]
    assert records(tmp_path / "b")[-1]["d"] == records(tmp_path / "a")[-1]["d"]  # epoch means match too
    hub.from_pretrained(str(tmp_path / "b"))


@pytest.mark.parametrize("lever", [{}, {"g_average": 0.9}])  # G's moving average resumes too
def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path, deterministic, lever):
    ds = shapes_dataset(128)
    straight = tiny(**lever)
    fit(straight, ds, tc(epochs=2), tmp_path / "a", progress=False)
    # stop at step 6 of 8 (checkpoints at 3 and at the stop), then continue
    fit(tiny(**lever), ds, tc(epochs=2, max_steps=6, checkpoint_every=3), tmp_path / "b", progress=False)
    assert checkpoint.read_state(tmp_path / "b")["index"] == 2  # epoch 2, batch 3 is next
    resumed = tiny(**lever)
    fit(resumed, ds, tc(epochs=2, resume=tmp_path / "b"), tmp_path / "c", progress=False)
    assert_same_weights(straight, resumed)
    assert records(tmp_path / "c")[-1]["d"] == pytest.approx(records(tmp_path / "a")[-1]["d"], rel=1e-12)
    assert (tmp_path / "b" / "config.json").is_file() and (tmp_path / "c" / "checkpoint").is_dir()


def test_a_run_from_before_a_config_field_resumes(tmp_path):
    """A checkpoint written before a field existed resumes: the field reads as the run trained."""
    import json

    ds = shapes_dataset(128)
    fit(tiny(), ds, tc(epochs=2, max_steps=3, checkpoint_every=3), tmp_path / "b", progress=False)
    path = tmp_path / "b" / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    for field in ("g_average", "refine_steps"):
        del state["model_config"][field]
    path.write_text(json.dumps(state))
    record = fit(tiny(), ds, tc(epochs=2, resume=tmp_path / "b"), tmp_path / "b", progress=False)
    assert record["step"] == 8
    state["model_config"]["width"] = 0.5  # a real difference is still refused
    path.write_text(json.dumps({**state, "step": 3}))
    with pytest.raises(ValueError, match="width"):
        fit(tiny(), ds, tc(epochs=3, resume=tmp_path / "b"), tmp_path / "b", progress=False)


def test_reseed_checks_each_inner_epoch_boundary_once_also_across_a_resume(tmp_path, monkeypatch):
    checked = []  # (epoch, step) of every reseed check
    monkeypatch.setattr(infovaegan, "reseed_categories",
                        lambda model, ds, seed, epoch: checked.append((epoch, model.E.logits.weight.sum().item())))
    ds = shapes_dataset(128)  # 4 steps per epoch
    fit(tiny(reseed=True), ds, tc(epochs=3), tmp_path / "whole", progress=False)
    whole, checked[:] = checked[:], []
    assert [epoch for epoch, _ in whole] == [1, 2]  # not after the last epoch: nothing would train the split
    # a --restarts probe ends on a boundary without checking; its continuation checks there first
    fit(tiny(reseed=True), ds, tc(epochs=3, max_steps=4), tmp_path / "probe", progress=False)
    assert checked == []
    fit(tiny(reseed=True), ds, tc(epochs=3, resume=tmp_path / "probe"), tmp_path / "probe", progress=False)
    assert [epoch for epoch, _ in checked] == [1, 2] and checked[0][1] == whole[0][1]  # same weights when checked
    assert checkpoint.read_state(tmp_path / "probe")["hook_step"] == 8
    checked.clear()  # stopped (Ctrl-C) right after a check: resumed, it does not check there again

    def check_then_interrupt(model, ds, seed, epoch):
        checked.append((epoch, None))
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(infovaegan, "reseed_categories", check_then_interrupt)
    with pytest.raises(loop.TrainingStopped):
        fit(tiny(reseed=True), ds, tc(epochs=3), tmp_path / "stopped", progress=False)
    monkeypatch.setattr(infovaegan, "reseed_categories", lambda model, ds, seed, epoch: checked.append((epoch, None)))
    fit(tiny(reseed=True), ds, tc(epochs=3, resume=tmp_path / "stopped"), tmp_path / "stopped", progress=False)
    assert [epoch for epoch, _ in checked] == [1, 2]


@pytest.mark.parametrize("model_kw, tc_kw, ds_name, message", [
    ({"width": 0.25}, {}, "shapes", "width=0.125"),
    ({}, {"batch_size": 16}, "shapes", "batch_size=32"),
    ({}, {"seed": 5}, "shapes", "seed=0"),
    ({}, {}, "other", "trained on shapes"),
    ({}, {"epochs": 1}, "shapes", "done 1 of 1 epoch"),
])
def test_resume_refuses_another_run(tmp_path, model_kw, tc_kw, ds_name, message):
    ds = shapes_dataset(64)
    fit(tiny(), ds, tc(epochs=1), tmp_path, progress=False)
    ds.name = ds_name
    model = tiny(**model_kw)
    with pytest.raises(ValueError, match=message) as err:
        fit(model, ds, tc(**{"epochs": 2, "resume": tmp_path, **tc_kw}), tmp_path, progress=False)
    assert "\n" not in str(err.value)


def test_nan_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step, calls = infovaegan.train_step, []

    def step(*args, **kw):
        calls.append(1)
        values = real_step(*args, **kw)
        return {**values, "vae": float("inf")} if len(calls) == 7 else values

    monkeypatch.setattr(infovaegan, "train_step", step)
    with pytest.raises(loop.TrainingStopped, match="loss vae is inf at step 7") as err:
        fit(tiny(), shapes_dataset(256), tc(epochs=3, checkpoint_every=3), tmp_path, progress=False)
    assert err.value.exit_code == 2 and str(tmp_path) in str(err.value)
    state = load_checkpoint(tmp_path, tiny(), make_optimizers(tiny(), tc()))
    assert state["step"] == 6  # the checkpoint before the bad step, not the bad weights
    monkeypatch.setattr(infovaegan, "train_step", real_step)
    resumed = tiny()
    fit(resumed, shapes_dataset(256), tc(epochs=1, resume=tmp_path), tmp_path, progress=False)
    assert all(torch.isfinite(p).all() for p in resumed.parameters())


# -- the CLI -------------------------------------------------------------------------------------
def fake_mnist(root: Path, n_train: int = 64, n_test: int = 16) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    ds = shapes_dataset(n_train + n_test, seed=2)

    def idx(path, arr):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        path.write_bytes(header + arr.astype("uint8").tobytes())

    imgs, labels = ds.images[:, 0].numpy(), np.arange(n_train + n_test) % 10
    idx(raw / "train-images-idx3-ubyte", imgs[:n_train])
    idx(raw / "train-labels-idx1-ubyte", labels[:n_train])
    idx(raw / "t10k-images-idx3-ubyte", imgs[n_train:])
    idx(raw / "t10k-labels-idx1-ubyte", labels[n_train:])
    return root


TINY_FLAGS = ["--width", "0.125", "--z-dim", "4", "--classes", "3", "--batch-size", "16", "--device", "cpu", "--quiet"]


def test_cli_resume_continues_into_the_same_folder(tmp_path, deterministic):
    data = str(fake_mnist(tmp_path / "data"))
    a, b = tmp_path / "a", tmp_path / "b"
    for out, epochs in ((a, "2"), (b, "1")):
        res = runner.invoke(app, ["train", "mnist", "--data", data, "--epochs", epochs, "-o", str(out), *TINY_FLAGS])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--epochs", "2", "--resume", str(b), "--quiet"])
    assert res.exit_code == 0, res.output
    loaded = hub.from_pretrained(str(a))  # a model folder holds no D (it lives in checkpoint/)
    assert_same_weights(loaded, hub.from_pretrained(str(b)), skip=loaded.training_only())
    assert [r["epoch"] for r in records(b)] == [1, 2]
    # a flag that contradicts the run is one line, exit 2; the same value is fine
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--epochs", "3", "--resume", str(b), "--width", "0.5"])
    assert res.exit_code == 2 and "width=0.125" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--epochs", "2", "--resume", str(b)])
    assert res.exit_code == 2 and "--epochs" in res.stderr


def test_paper_preset_steps_infovaegan2s_d_one_in_16_and_resumes_each_family(tmp_path):
    """--preset paper gives --family infovaegan2 the authors' D schedule (d_every 16, a G2 field),
    InfoVAEGAN and the baselines none of it; a run of each resumes under the same preset."""
    from trainer.train import preset_model

    assert preset_model("paper", "mnist", "infovaegan2")["d_every"] == 16
    assert "d_every" not in preset_model("paper", "mnist", "infovaegan")
    assert "d_every" not in preset_model("paper", "mnist", "beta-vae")
    assert "d_every" not in preset_model("cpu-fast", "mnist", "infovaegan2")
    data = str(fake_mnist(tmp_path / "data"))
    for family, d_every in (("infovaegan2", 16), ("infovaegan", 1)):
        out = tmp_path / family
        args = ["train", "mnist", "--data", data, "--family", family, "--preset", "paper", "-o", str(out), *TINY_FLAGS]
        res = runner.invoke(app, [*args, "--max-steps", "2", "--checkpoint-every", "2"])
        assert res.exit_code == 0, res.output
        assert hub.from_pretrained(str(out)).config.d_every == d_every
        res = runner.invoke(app, ["train", "mnist", "--data", data, "--preset", "paper", "--resume", str(out),
                                  "--max-steps", "3", "--quiet"])
        assert res.exit_code == 0, res.output


def test_cli_resume_keeps_the_runs_step_limit(tmp_path, monkeypatch):
    """--resume once forgot --max-steps: a step-limited run trained on to the default epochs."""
    data = str(fake_mnist(tmp_path / "data"))
    out = tmp_path / "run"

    def train(*args):
        monkeypatch.setattr(sys, "argv", ["infoedit", "train", *args])  # what the card records
        return runner.invoke(app, ["train", *args])

    assert train("mnist", "--data", data, "--epochs", "5", "-o", str(out), *TINY_FLAGS, "--max-steps", "3").exit_code == 0
    res = train("mnist", "--data", data, "--resume", str(out), "--max-steps", "5", "--quiet")
    assert res.exit_code == 0, res.output
    assert records(out)[-1]["step"] == 5
    card = (out / "README.md").read_text()  # how the run began, then how it went on
    assert "--max-steps 3" in card.split("- command:")[1].splitlines()[0]
    assert "--resume" in card.split("- resumed with:")[1].splitlines()[0]
    res = train("mnist", "--data", data, "--resume", str(out), "--quiet")
    assert res.exit_code == 2 and "done 5 of 5 step(s)" in res.stderr, res.output
    assert records(out)[-1]["step"] == 5


def test_a_resumed_warm_started_run_still_says_where_it_started(tmp_path):
    data = str(fake_mnist(tmp_path / "data"))
    first, out = tmp_path / "first", tmp_path / "run"
    assert runner.invoke(app, ["train", "mnist", "--data", data, "--max-steps", "1", "-o", str(first),
                               *TINY_FLAGS]).exit_code == 0
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--epochs", "2", "--max-steps", "2", "-o", str(out),
                              "--init-from", str(first), *TINY_FLAGS])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--resume", str(out), "--max-steps", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"started from the weights of `{first}`" in (out / "README.md").read_text()


def test_cli_train_never_overwrites_a_model_without_force(tmp_path):
    data = str(fake_mnist(tmp_path / "data"))
    out = tmp_path / "run"
    args = ["train", "mnist", "--data", data, "--epochs", "1", "-o", str(out), *TINY_FLAGS]
    assert runner.invoke(app, args).exit_code == 0
    before = (out / "model.safetensors").read_bytes()
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--force" in res.stderr and "--resume" in res.stderr
    assert (out / "model.safetensors").read_bytes() == before
    assert runner.invoke(app, [*args, "--seed", "1", "--force"]).exit_code == 0
    assert (out / "model.safetensors").read_bytes() != before


# -- signals and kill -9, in child processes -----------------------------------------------------
def _wait_for_step(folder: Path, after: int, proc: subprocess.Popen, model: bool = True, timeout: float = 60) -> int:
    """Poll until the checkpoint in folder is past step ``after`` (and, if ``model``, the model folder exists)."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            step = checkpoint.read_state(folder)["step"]
            if step > after and (not model or (folder / "model.safetensors").is_file()):
                return step
        except CheckpointError:
            pass  # not there yet, or caught mid-swap
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint past step {after} in {timeout} s")


CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from conftest import shapes_dataset
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
from trainer.config import TrainConfig
from trainer.loop import fit
ds = shapes_dataset(64)
ds.test_images = None  # no held-out evaluation: epoch ends stay quick
torch.manual_seed(0)
model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, dataset="shapes"))
fit(model, ds, TrainConfig(epochs=10**6, batch_size=16, device="cpu", checkpoint_every=1, resume={resume!r}),
    {out!r}, progress=False)
"""


def test_kill_9_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    out, rng, step = tmp_path / "run", random.Random(), 0
    for round_ in range(2):  # the first run, then a resume of the killed run
        code = CHILD.format(tests=str(REPO / "tests"), out=str(out), resume=str(out) if round_ else None)
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        step = _wait_for_step(out, step, proc)
        delay = rng.uniform(0, 0.4)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, dataset="shapes"))
        state = load_checkpoint(out, model, make_optimizers(model, tc()), {"rank0": torch.Generator()})
        assert state["step"] >= step, f"round {round_}, killed {delay:.3f} s after step {step}"
        step = state["step"]
        hub.from_pretrained(str(out))
        if round_:  # the resumed run swept up the temp files the first kill left
            assert all(p.stat().st_mtime > started for p in out.glob(".*.tmp"))


def test_sigint_finishes_the_step_saves_and_exits_130_with_one_line(tmp_path):
    data, out = str(fake_mnist(tmp_path / "data")), tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "infoedit.cli", "train", "mnist", "--data", data, "-o", str(out),
                             "--epochs", "100000", "--checkpoint-every", "1", *TINY_FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny ops: threads only stall
    _wait_for_step(out, 0, proc, model=False)  # mid-epoch: the stop writes the model folder too
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout == "" and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    state = checkpoint.read_state(out)
    assert f"interrupted at step {state['step']};" in stderr and f"--resume {out}" in stderr
    model = hub.from_pretrained(str(out))
    load_checkpoint(out, model.train(), make_optimizers(model, tc()))


def test_sigterm_mid_epoch_saves_where_it_stopped_and_resumes(tmp_path, monkeypatch):
    """In process: the step that receives SIGTERM completes, is saved, and the CLI exits 143."""
    data, out, calls = str(fake_mnist(tmp_path / "data")), tmp_path / "run", []
    real_step = infovaegan.train_step

    def step(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, as a real one would
        return real_step(*args, **kw)

    monkeypatch.setattr(infovaegan, "train_step", step)
    res = runner.invoke(app, ["train", "mnist", "--data", data, "-o", str(out), "--epochs", "5", *TINY_FLAGS])
    assert res.exit_code == 143 and len(res.stderr.strip().splitlines()) == 1
    assert "interrupted at step 3;" in res.stderr
    state = checkpoint.read_state(out)
    assert (state["epoch"], state["index"], state["step"]) == (0, 3, 3)
    res = runner.invoke(app, ["train", "mnist", "--data", data, "--resume", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert checkpoint.read_state(out)["step"] == 5 * 4  # the run's own --epochs 5 (64 images / 16)
