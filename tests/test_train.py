"""Training: the MI loss falls on real digits, and `infoedit train` writes a loadable folder."""

import json
import subprocess
import sys

import pytest
from pathlib import Path
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import require_data, shapes_dataset
from infoedit import hub
from infoedit.cli import app
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
from trainer import data, loop
from trainer.infovaegan import make_optimizers, train_step
from trainer.config import TrainConfig

runner = CliRunner()


def test_mi_loss_falls_on_mnist():
    root = require_data("mnist")
    ds = data.load("mnist", root, limit=512)
    assert ds.images.shape == (512, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(width=0.25))
    opt, gen = make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
    mi = []
    for step in range(20):
        idx = torch.randint(512, (32,), generator=gen)
        values = train_step(model, opt, ds.batch(idx), gen)
        mi.append(values["mi_s"] + values["mi_c"])
    assert sum(mi[-5:]) / 5 < 0.8 * sum(mi[:5]) / 5


def _write_pngs(folder, n=80):
    folder.mkdir()
    ds = shapes_dataset(n, size=40)
    for i in range(n):
        Image.fromarray(ds.images[i, 0].numpy()).convert("RGB").save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")


def test_cli_train_folder_writes_loadable_model(tmp_path):
    _write_pngs(tmp_path / "imgs")
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(out), "--max-steps", "3",
                                 "--batch-size", "16", "--width", "0.125", "--quiet"])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "README.md", "samples.png", "loss_curve.png",
                 "metrics.jsonl"):
        assert (out / name).is_file(), name
    model = hub.from_pretrained(str(out))
    assert model.config.image_size == 64 and model.config.channels == 3
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3
    grid = Image.open(out / "samples.png")  # 10 rows x K columns of 64px images
    assert grid.size[0] > 10 * 64 and grid.size[1] > 10 * 64


def test_cli_train_to_a_log_says_each_epoch(tmp_path):
    """stderr not a terminal (nohup, CI): no bar is drawn, so a line per epoch tells how far it is."""
    _write_pngs(tmp_path / "imgs")
    args = ["train", f"folder:{tmp_path / 'imgs'}", "--epochs", "2", "--batch-size", "16", "--width", "0.125",
            "--set", "image_size=28", "--set", "channels=1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split(",")[0] for line in lines] == ["1/2", "2/2"]
    quiet = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--quiet"])
    assert quiet.exit_code == 0 and ": epoch " not in quiet.stderr


def test_train_to_a_log_says_how_long_then_a_line_every_while(tmp_path, monkeypatch):
    """A long epoch (dSprites: 737,280 images) logs to a file long before its epoch line: first
    the speed and how long the run will take, then a line with the time left every LOG_SECONDS."""
    monkeypatch.setattr(loop, "LOG_SECONDS", 0.0)  # every step, so a few steps show both kinds
    _write_pngs(tmp_path / "imgs")
    result = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--epochs", "1", "--batch-size", "4",
                                 "--width", "0.125", "--set", "image_size=28", "--set", "channels=1",
                                 "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    estimate = [i for i, line in enumerate(lines) if "will take about" in line]
    ticks = [i for i, line in enumerate(lines) if line.endswith(" left") and ", epoch 1, " in line]
    assert len(estimate) == 1 and ticks and estimate[0] < ticks[0] < [i for i, line in enumerate(lines)
                                                                      if ": epoch 1/1" in line][0]
    assert "img/s" in lines[estimate[0]] and lines[estimate[0]].endswith(" s (20 steps)")


def test_cli_train_folder_at_the_size_and_channels_the_model_is_set_to(tmp_path):
    _write_pngs(tmp_path / "imgs", n=40)
    out = tmp_path / "gray28"
    result = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(out), "--max-steps", "2",
                                 "--batch-size", "16", "--width", "0.125", "--quiet",
                                 "--set", "image_size=28", "--set", "channels=1"])
    assert result.exit_code == 0, result.output
    model = hub.from_pretrained(str(out))
    assert (model.config.image_size, model.config.channels) == (28, 1)
    assert model.encode(torch.rand(2, 1, 28, 28))[0].shape == (2, model.config.c_dim)


def test_a_gray_model_of_ink_on_paper_takes_ink_on_paper_as_it_is(tmp_path):
    """Training records the images' background; --invert auto then matches inputs to it."""
    folder = tmp_path / "paper"
    folder.mkdir()
    ds = shapes_dataset(40, size=28)
    for i in range(40):  # dark shapes on white
        Image.fromarray(255 - ds.images[i, 0].numpy()).save(folder / f"{i:03d}.png")
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", f"folder:{folder}", "--out", str(out), "--max-steps", "2",
                                 "--batch-size", "16", "--width", "0.125", "--quiet",
                                 "--set", "image_size=28", "--set", "channels=1"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["background"] == "light"
    assert "light background" in (out / "README.md").read_text()
    codes = {}
    for mode in ("auto", "no", "yes"):
        result = runner.invoke(app, ["encode", str(folder / "000.png"), "--model", str(out), "--json",
                                     "--invert", mode])
        assert result.exit_code == 0, result.output
        codes[mode] = json.loads(result.stdout)["mu"]
    assert codes["auto"] == codes["no"] != codes["yes"]
    told = runner.invoke(app, ["train", f"folder:{folder}", "--out", str(tmp_path / "told"), "--max-steps", "1",
                               "--batch-size", "16", "--width", "0.125", "--quiet", "--set", "image_size=28",
                               "--set", "channels=1", "--set", "background=dark"])
    assert told.exit_code == 0 and hub.from_pretrained(str(tmp_path / "told")).config.background == "dark"
    # an MNIST-style model keeps inverting ink on paper
    assert data.background(shapes_dataset(40, size=28)) == "dark"


def test_cli_train_refuses_a_size_a_fixed_dataset_does_not_have(tmp_path):
    root = require_data("mnist")
    result = runner.invoke(app, ["train", "mnist", "--data", root, "--out", str(tmp_path / "m"), "--max-steps", "1",
                                 "--quiet", "--set", "image_size=64"])
    assert result.exit_code == 2
    assert result.output.strip() == "infoedit: error: mnist: has 28 px images, not the 64 the model is set to take"
    assert not (tmp_path / "m").exists()


def test_cli_train_missing_data_is_one_line(tmp_path):
    result = runner.invoke(app, ["train", f"folder:{tmp_path / 'nothing'}", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "nothing" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    """No empty MNIST/raw folders nor half a file: the next run tries the download again."""
    import torchvision.datasets

    keep = tmp_path / "mnist" / "notes.txt"  # the user's, there before: stays
    keep.parent.mkdir()
    keep.write_text("mine")

    def half_download(root, train=True, download=False):
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    monkeypatch.setattr(torchvision.datasets, "MNIST", half_download)
    with pytest.raises(data.DataError, match="download failed"):
        data.load("mnist", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["mnist", "mnist/notes.txt"]
    keep.unlink()
    with pytest.raises(data.DataError, match="download failed"):
        data.load("mnist", tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "mnist"]  # the folder was there before this attempt


def test_mnist_reader_without_download(tmp_path):
    """The official IDX layout is read in place; nothing is written next to it."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def idx(path, arr):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        path.write_bytes(header + arr.astype("uint8").tobytes())

    imgs = torch.randint(256, (70, 28, 28)).numpy()
    for prefix, n in (("train", 50), ("t10k", 20)):
        idx(raw / f"{prefix}-images-idx3-ubyte", imgs[:n])
        idx(raw / f"{prefix}-labels-idx1-ubyte", (torch.arange(n) % 10).numpy())
    before = sorted(p.name for p in raw.iterdir())
    ds = data.load("mnist", tmp_path)
    assert len(ds) == 50 and ds.test_labels.tolist()[:3] == [0, 1, 2]
    assert torch.equal(ds.images[0, 0], torch.from_numpy(imgs[0]).to(torch.uint8))
    assert sorted(p.name for p in raw.iterdir()) == before


def test_help_lists_commands_without_torch():
    code = ("import sys; from typer.testing import CliRunner; from infoedit.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); print(r.output); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "train" in out and "NO-TORCH" in out


def test_celeba_preset_reads_the_aligned_faces():
    root = require_data("celeba-subset")
    ds = data.load("celeba", root, limit=200, progress=False)
    held, total = ds.held_out
    assert total == 200 and 10 <= held <= 30 and ds.test_images.shape == (held, 3, 64, 64)  # ~10% (Sec. 5)
    assert ds.images.shape == (200 - held, 3, 64, 64) and ds.images.dtype == torch.uint8
    assert ds.images.float().std() > 10  # real faces, not blank
    every = torch.cat([ds.images, ds.test_images]).flatten(1)
    assert len(torch.unique(every, dim=0)) == 200  # none both trained on and held out
    fewer = data.load("celeba", root, limit=100, progress=False)  # a smaller --limit holds out the same faces
    assert all((fewer.test_images[i] == ds.test_images).flatten(1).all(1).any() for i in range(len(fewer.test_images)))


def test_the_card_records_the_held_out_split_and_what_is_not_the_papers():
    from infoedit.models.infovaegan import InfoVAEGAN2, InfoVAEGANConfig
    from trainer.config import TrainConfig
    from trainer.loop import model_card

    model = InfoVAEGAN2(InfoVAEGANConfig(model="infovaegan2", dataset="celeba", image_size=64, channels=3,
                                         width=0.125, style_dim=8, g2_schedule="joint"))
    card = model_card(model, TrainConfig(), {"steps": 1}, held_out=(900, 9000))
    assert "held out: 900 of 9000 images, not trained on" in card
    assert "settings that are not the paper's" in card and "style_dim 8" in card
    paper = model_card(InfoVAEGAN2(InfoVAEGANConfig(model="infovaegan2")), TrainConfig(), {"steps": 1})
    assert "as its paper states it (infoedit's defaults" in paper


def test_chairs_preset_crops_the_white_margin(tmp_path):
    renders = tmp_path / "rendered_chairs" / "chair_1" / "renders"
    renders.mkdir(parents=True)
    img = Image.new("RGB", (600, 600), "white")
    img.paste((200, 30, 30), (250, 250, 350, 350))  # a 100 px red "chair" in a white field
    img.save(renders / "image_000.png")
    ds = data.load("chairs", tmp_path, progress=False)
    # after cropping the margin the object fills the frame: the image is red, not white
    assert ds.images.shape == (1, 3, 64, 64)
    assert ds.images[0, 0].float().mean() > 150 and ds.images[0, 1].float().mean() < 60


def test_non_finite_loss_stops_and_names_it(tmp_path, monkeypatch):
    from trainer import infovaegan, loop

    real_step, calls = infovaegan.train_step, []

    def step(*args, **kw):
        values = real_step(*args, **kw)
        calls.append(1)
        return {**values, "mi_c": float("nan")} if len(calls) == 12 else values

    monkeypatch.setattr(infovaegan, "train_step", step)
    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, z_dim=4, width=0.125))
    with pytest.raises(loop.TrainingStopped, match="mi_c is nan at step 12") as err:
        loop.fit(model, shapes_dataset(256), TrainConfig(epochs=3, batch_size=32, device="cpu"), tmp_path, progress=False)
    assert err.value.exit_code == 2
    # epoch 1 (8 steps) was saved and is kept intact
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    hub.from_pretrained(str(tmp_path))


def test_a_time_budget_without_epochs_trains_until_the_time_is_up(tmp_path):
    from trainer.train import UNTIL_TIME_EPOCHS

    _write_pngs(tmp_path / "imgs", n=40)
    common = ["--batch-size", "16", "--width", "0.125", "--quiet"]
    for name, args in (("timed", ["--max-minutes", "0"]), ("both", ["--max-minutes", "0", "--epochs", "3"]),
                       ("plain", ["--max-steps", "1"])):
        result = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / name),
                                     *args, *common])
        assert result.exit_code == 0, result.output
    epochs = {name: json.loads((tmp_path / name / "train_config.json").read_text())["epochs"]
              for name in ("timed", "both", "plain")}
    assert epochs == {"timed": UNTIL_TIME_EPOCHS, "both": 3, "plain": 20}  # 20: a folder's default


def test_eval_every_and_time_budget(tmp_path):
    from trainer import loop

    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, z_dim=4, width=0.125))
    tc = TrainConfig(epochs=50, batch_size=32, device="cpu", eval_every=4, max_seconds=1.0)
    record = loop.fit(model, shapes_dataset(256), tc, tmp_path, progress=False)
    assert record["steps"] < 50 * 8  # the budget, not the epochs, ended the run
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    mid = [r for r in records if "epoch" not in r]
    assert mid and all(r["step"] % 4 == 0 and 0 <= r["test_acc"] <= 1 for r in mid)
    assert records[-1]["steps"] == record["steps"]
    hub.from_pretrained(str(tmp_path))


def test_cli_set_overrides_any_config_field(tmp_path):
    _write_pngs(tmp_path / "imgs", n=40)
    out = tmp_path / "m"
    args = ["train", f"folder:{tmp_path / 'imgs'}", "--model", "beta-vae", "--set", "beta=8", "--set",
            "capacity=true", "--max-steps", "1", "--batch-size", "16", "--width", "0.125", "--quiet", "--out"]
    assert runner.invoke(app, args + [str(out)]).exit_code == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["beta"] == 8 and cfg["capacity"] is True
    bad = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--set", "beta", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "FIELD=VALUE" in bad.output


def test_presets_pick_their_family_and_levers_unless_told(tmp_path):
    _write_pngs(tmp_path / "imgs")
    common = ["--max-steps", "2", "--batch-size", "16", "--quiet", "--set", "width=0.125"]
    fast, paper, mine = tmp_path / "fast", tmp_path / "paper", tmp_path / "mine"
    for out, extra in ((fast, ["--preset", "cpu-fast"]), (paper, []), (mine, ["--preset", "cpu-fast", "--model", "infovaegan"])):
        result = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(out), *common, *extra])
        assert result.exit_code == 0, result.output
    fast_cfg, paper_cfg, mine_cfg = (hub.from_pretrained(str(p)).config for p in (fast, paper, mine))
    assert fast_cfg.model == "infovaegan2" and fast_cfg.real_mi_weight > 0 and fast_cfg.z_scale < 1
    assert paper_cfg.model == "infovaegan" and paper_cfg.real_mi_weight == 0 and paper_cfg.z_scale == 1
    assert mine_cfg.model == "infovaegan" and mine_cfg.real_mi_weight > 0  # the family typed wins, levers stay
    assert all(c.width == 0.125 for c in (fast_cfg, paper_cfg, mine_cfg))  # --set wins over the preset
    assert "mi_real" in (fast / "metrics.jsonl").read_text()


def test_cpu_fast_has_fashion_settings_a_flag_still_overrides(tmp_path):
    roots = {"fashion-mnist": require_data("fashion-mnist"), "mnist": require_data("mnist")}
    common = ["--limit", "64", "--max-steps", "1", "--quiet", "--preset", "cpu-fast", "--set", "width=0.125"]
    for name, dataset, extra in (("fashion", "fashion-mnist", []), ("mine", "fashion-mnist", ["--set", "augment=affine"]),
                                 ("mnist", "mnist", [])):
        result = runner.invoke(app, ["train", dataset, "--data", str(roots[dataset]), "--out", str(tmp_path / name),
                                     *common, *extra])
        assert result.exit_code == 0, result.output
    fashion, mine, mnist = (hub.from_pretrained(str(tmp_path / n)).config for n in ("fashion", "mine", "mnist"))
    assert (fashion.augment, fashion.real_mi_balance, fashion.mi_weight_s) == ("affine+contrast", 2.0, 5.0)
    assert (mine.augment, mine.real_mi_balance) == ("affine", 2.0)  # the flag wins, the rest of the preset stays
    assert (mnist.augment, mnist.real_mi_balance, mnist.mi_weight_s) == ("affine", 1.0, 1.0)
    assert fashion.reseed and mnist.reseed and fashion.width == mnist.width == 0.125


def test_restarts_continue_the_most_informative_probe(tmp_path):
    _write_pngs(tmp_path / "imgs")  # 80 images, batch 16: 5 steps an epoch, probes of 10 steps
    out = tmp_path / "m"
    args = ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(out), "--preset", "cpu-fast", "--set", "width=0.125",
            "--batch-size", "16", "--restarts", "2", "--seed", "3", "--max-steps", "13", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    choice = json.loads((out / "restarts" / "choice.json").read_text())
    assert set(choice) == {"3", "4"} and sum(c["chosen"] for c in choice.values()) == 1
    best = min(choice, key=lambda s: choice[s]["mi_real"])
    assert choice[best]["chosen"]
    card = (out / "README.md").read_text()
    assert f"seed: {best} (the probe --restarts continued: of seeds 3-4" in card
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 13  # continued from the probe's 10 steps
    resumed = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--resume", str(out), "--max-steps", "15",
                                  "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert f"seed: {best} (the probe --restarts continued: of seeds 3-4" in (out / "README.md").read_text()
    short = tmp_path / "short"  # a run shorter than the probes: the probes stop at its end
    assert runner.invoke(app, args[:3] + [str(short)] + args[4:-3] + ["--max-steps", "3", "--quiet"]).exit_code == 0
    probe = [json.loads(line) for line in (short / "restarts" / "seed3" / "metrics.jsonl").read_text().splitlines()]
    assert probe[-1]["step"] == 3
    no_mi = runner.invoke(app, ["train", f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / "x"), "--restarts", "2",
                                "--set", "width=0.125", "--max-steps", "2", "--quiet"])  # the paper preset: no real MI
    assert no_mi.exit_code == 2 and "real_mi_weight > 0" in no_mi.output


# InfoVAEGAN2 with the real-data MI (cpu-fast's family) also calls E outside its forward
@pytest.mark.parametrize("family, levers", [("infovaegan", {}), ("infovaegan2", {"real_mi_weight": 1.0})])
def test_compile_gives_the_eager_losses_and_the_same_model_folder(tmp_path, family, levers):
    from torch._dynamo.utils import counters

    from conftest import shapes_dataset
    from infoedit.models import build
    from infoedit.models.infovaegan import InfoVAEGANConfig
    from trainer.checkpoint import read_state
    from trainer.config import TrainConfig
    from trainer.loop import fit

    ds, first_losses, weights = shapes_dataset(64), {}, {}
    for compiled in (False, True):
        graphs = counters["stats"]["unique_graphs"]
        torch.manual_seed(0)
        model = build(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=8, width=0.125, dataset="shapes", model=family,
                                       **levers))
        out = tmp_path / ("compiled" if compiled else "eager")
        fit(model, ds, TrainConfig(epochs=1, batch_size=32, device="cpu", compile=compiled, log_every=1), out,
            progress=False)
        assert (counters["stats"]["unique_graphs"] > graphs) == compiled  # compiled, and only when asked
        first_losses[compiled] = {k: v[0] for k, v in read_state(out)["history"].items()}
        weights[compiled] = hub.from_pretrained(str(out)).state_dict()
    # step 1 starts from the same weights and draws: the same losses up to float reordering
    assert first_losses[True].keys() == first_losses[False].keys()
    for name, (step, value) in first_losses[False].items():
        assert first_losses[True][name] == [step, pytest.approx(value, rel=1e-4, abs=1e-5)], name
    assert weights[True].keys() == weights[False].keys()  # no _orig_mod. prefix: the folder loads anywhere


def test_family_picks_the_model_and_model_is_still_its_old_name(tmp_path):
    """`train --family`; `--model`, the option's name before, still works (hidden from --help):
    model cards and scripts record commands with it."""
    _write_pngs(tmp_path / "imgs", n=40)
    common = ["train", f"folder:{tmp_path / 'imgs'}", "--max-steps", "1", "--batch-size", "16", "--width", "0.125",
              "--quiet", "--out"]
    for flag in ("--family", "--model"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(app, [*common, str(out), flag, "beta-vae"])
        assert result.exit_code == 0, result.output
        assert hub.from_pretrained(str(out)).config.model == "beta-vae", flag
    both = runner.invoke(app, [*common, str(tmp_path / "x"), "--family", "beta-vae", "--model", "jointvae"])
    assert both.exit_code == 2 and "--model is the old name of --family" in both.stderr, both.output
    assert len(both.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    help_text = runner.invoke(app, ["train", "--help"]).stdout
    assert "--family" in help_text and "--model" not in help_text


def test_celeba_cpu_fast_scores_reconstructions_by_ssim_where_there_is_a_g2():
    """The face preset's G2 terms (the SSIM term, the reconstruction critic) reach InfoVAEGAN2,
    its family, and are left out for a family without G2, which would refuse them."""
    from trainer.train import preset_model

    faces = preset_model("cpu-fast", "celeba", "infovaegan2")
    assert faces["recon_ssim_weight"] == 0.2 and faces["recon_adv_weight"] == 30.0
    assert "recon_ssim_weight" not in preset_model("cpu-fast", "celeba", "infovaegan")
    assert "recon_ssim_weight" not in preset_model("cpu-fast", "mnist", "infovaegan2")


def test_the_paper_preset_crops_celeba_as_the_authors_and_framed_datasets_refuse_a_crop(tmp_path):
    from trainer.train import preset_model

    assert preset_model("paper", "celeba")["crop"] == pytest.approx(128 / 178)
    assert "crop" not in preset_model("paper", "mnist") and "crop" not in preset_model("cpu-fast", "celeba")
    with pytest.raises(data.DataError, match="crop applies to folders"):
        data.load("dsprites", tmp_path, crop=0.5, progress=False)
