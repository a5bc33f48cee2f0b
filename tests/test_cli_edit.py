"""The editing commands end to end: encode, swap, traverse, sample, classify."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from infoedit import hub
from infoedit.cli import app
from infoedit.images import load_image, save_png
from test_engine import StubModel, StubModel2

runner = CliRunner()


def run(*args: str, model: Path | None = None):
    argv = [str(a) for a in args] + (["--model", str(model)] if model else [])
    return runner.invoke(app, argv)


def grid_size(rows: int, cols: int, size: int, pad: int = 2) -> tuple[int, int]:
    """(width, height) of images.make_grid's output, as PIL reports it."""
    return cols * (size + pad) + pad, rows * (size + pad) + pad


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> list[Path]:
    """Six 28px toy-shape PNGs (white on black, like the tiny model's training data)."""
    from conftest import shapes_dataset

    folder = tmp_path_factory.mktemp("shapes")
    ds = shapes_dataset(6, seed=1)
    paths = []
    for i in range(6):
        paths.append(folder / f"s{i}.png")
        save_png(ds.images[i].float() / 255, paths[-1])
    return paths


# -- encode ------------------------------------------------------------------------------------
def test_encode_json_one_object_per_image(tiny_model_dir, shapes):
    res = run("encode", *shapes[:3], "--json", model=tiny_model_dir)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in shapes[:3]]
    for r in rows:
        assert len(r["probabilities"]) == 3 and abs(sum(r["probabilities"]) - 1) < 1e-4
        assert r["cluster"] == int(np.argmax(r["probabilities"])) and r["confidence"] == max(r["probabilities"])
        assert len(r["mu"]) == 2 and all(s > 0 for s in r["sigma"])
    assert res.stderr == ""


def test_encode_table_names_each_image(tiny_model_dir, shapes):
    res = run("encode", *shapes[:2], model=tiny_model_dir)
    assert res.exit_code == 0
    assert all(str(p) in res.stdout for p in shapes[:2]) and "cluster" in res.stdout


def test_encode_bad_image_is_one_line_exit_2(tiny_model_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    res = run("encode", bad, model=tiny_model_dir)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("infoedit: error:") and str(bad) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr



@pytest.mark.parametrize("as_json", [True, False])
def test_encode_out_writes_the_file_and_never_overwrites_without_force(tiny_model_dir, shapes, tmp_path, as_json):
    fmt = ["--json"] if as_json else []
    printed = run("encode", *shapes[:2], *fmt, model=tiny_model_dir).stdout
    out = tmp_path / "codes" / "codes.txt"
    res = run("encode", *shapes[:2], *fmt, "-o", out, model=tiny_model_dir)
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and out.read_text() == printed  # what it would print, in the file instead
    assert [p.name for p in out.parent.iterdir()] == ["codes.txt"]  # no temp file left beside it
    out.write_text("keep")
    res = run("encode", *shapes[:2], *fmt, "--out", out, "--quiet", model=tiny_model_dir)
    assert res.exit_code == 2 and out.read_text() == "keep"
    assert len(res.stderr.strip().splitlines()) == 1 and str(out) in res.stderr and "--force" in res.stderr
    res = run("encode", *shapes[:2], *fmt, "-o", out, "--force", model=tiny_model_dir)
    assert res.exit_code == 0 and out.read_text() == printed


@pytest.mark.parametrize("json_out", [True, False])
def test_encode_writes_the_good_images_and_names_each_bad_one(tiny_model_dir, shapes, tmp_path, json_out):
    """The rule of every command over many inputs: results for the good ones, one line per bad
    one, exit 1; exit 2 when none was good, and then no file at all."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    out = tmp_path / "codes.txt"
    flags = ["--json"] if json_out else []
    res = run("encode", shapes[0], bad, shapes[1], bad, *flags, "-o", out, model=tiny_model_dir)
    assert res.exit_code == 1, res.output
    assert res.stderr.splitlines() == [f"infoedit: error: {bad}: not an image file (or an unsupported format)"]
    text = out.read_text()
    assert str(shapes[0]) in text and str(shapes[1]) in text and str(bad) not in text
    if json_out:
        assert [json.loads(line)["path"] for line in text.splitlines()] == [str(shapes[0]), str(shapes[1])]
    none = run("encode", bad, *flags, "-o", tmp_path / "none.txt", model=tiny_model_dir)
    assert none.exit_code == 2 and str(bad) in none.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "codes.txt"]  # no file, no temp file


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line(tiny_model_dir, shapes):
    res = run("encode", shapes[0], "--device", "cuda", model=tiny_model_dir)
    assert res.exit_code == 2 and res.stderr.strip() == "infoedit: error: --device cuda: no CUDA device is available"

def test_encode_inverts_ink_on_paper_for_a_1_channel_model(tiny_model_dir, shapes, tmp_path):
    paper = tmp_path / "paper.png"
    save_png(1 - load_image(shapes[0], 28, 1), paper)  # the same shape, dark on light
    codes = {}
    for path, invert in ((shapes[0], "auto"), (paper, "auto"), (paper, "no")):
        res = run("encode", path, "--json", "--invert", invert, model=tiny_model_dir)
        codes[path.name, invert] = json.loads(res.stdout)["mu"]
    assert codes[shapes[0].name, "auto"] == codes["paper.png", "auto"]
    assert codes[shapes[0].name, "auto"] != codes["paper.png", "no"]


def test_bad_model_folder_is_one_line_exit_2(tmp_path, shapes):
    res = run("encode", shapes[0], model=tmp_path / "nope")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "nope" in res.stderr


# -- swap ----------------------------------------------------------------------------------------
@pytest.fixture
def stub(monkeypatch):
    """Serve a StubModel for any --model, so a test can read the codes back from the output."""
    model = StubModel()
    monkeypatch.setattr(hub, "from_pretrained", lambda *a, **k: model)
    return model


def _stub_pair(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    save_png(StubModel.image(0, [0.6, -0.4]), a)
    save_png(StubModel.image(2, [-0.8, 0.2]), b)
    return a, b


def _read_codes(model, path: Path) -> tuple[int, torch.Tensor]:
    mu, _, logits = model.encode(load_image(path, 4, 1).unsqueeze(0))
    return int(logits.argmax()), mu[0]


@pytest.mark.parametrize("flags, want_class, want_mu", [
    ([], 2, [0.6, -0.4]),  # default: discrete code from B, continuous from A
    (["--discrete-from", "a", "--continuous-from", "b"], 0, [-0.8, 0.2]),
])
def test_swap_takes_codes_from_the_chosen_images(stub, tmp_path, flags, want_class, want_mu):
    a, b = _stub_pair(tmp_path)
    out = tmp_path / "out.png"
    res = run("swap", a, b, "-o", out, "--invert", "no", *flags, model=Path("stub"))
    assert res.exit_code == 0, res.output
    cls, mu = _read_codes(stub, out)
    assert cls == want_class and torch.allclose(mu, torch.tensor(want_mu), atol=2 / 255)
    assert res.stdout == ""


def test_swap_uses_generate2_when_the_model_has_one(monkeypatch, tmp_path):
    model = StubModel2()
    monkeypatch.setattr(hub, "from_pretrained", lambda *a, **k: model)
    a, b = _stub_pair(tmp_path)
    res = run("swap", a, b, "-o", tmp_path / "out.png", "--invert", "no", model=Path("stub"))
    assert res.exit_code == 0, res.output
    assert model.g2_calls == 1 and _read_codes(model, tmp_path / "out.png")[0] == 2


def test_swap_on_tiny_model_sizes_and_strip(tiny_model_dir, shapes, tmp_path):
    out, strip = tmp_path / "swap.png", tmp_path / "strip.png"
    assert run("swap", shapes[0], shapes[1], "-o", out, model=tiny_model_dir).exit_code == 0
    assert Image.open(out).size == (28, 28)
    assert run("swap", shapes[0], shapes[1], "-o", strip, "--strip", model=tiny_model_dir).exit_code == 0
    assert Image.open(strip).size == grid_size(1, 3, 28)


def test_outputs_are_never_overwritten_without_force(tiny_model_dir, shapes, tmp_path):
    out = tmp_path / "taken.png"
    out.write_bytes(b"keep me")
    for cmd in (["swap", shapes[0], shapes[1]], ["traverse", shapes[0]], ["sample"]):
        res = run(*cmd, "-o", out, model=tiny_model_dir)
        assert res.exit_code == 2 and str(out) in res.stderr and "--force" in res.stderr
        assert out.read_bytes() == b"keep me"
    assert run("sample", "-o", out, "--force", model=tiny_model_dir).exit_code == 0
    assert Image.open(out).size == grid_size(10, 3, 28)
    assert not list(tmp_path.glob(".*.tmp"))


# -- traverse ------------------------------------------------------------------------------------
def test_traverse_one_row_per_code(tiny_model_dir, shapes, tmp_path):
    out = tmp_path / "t.png"
    res = run("traverse", shapes[0], "--code", "1", "--code", "0", "--steps", "7", "--range", "-2", "2",
              "-o", out, model=tiny_model_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == grid_size(2, 7, 28)


def test_traverse_default_and_discrete(tiny_model_dir, shapes, tmp_path):
    assert run("traverse", shapes[0], "-o", tmp_path / "all.png", model=tiny_model_dir).exit_code == 0
    assert Image.open(tmp_path / "all.png").size == grid_size(2, 10, 28)  # every continuous code
    assert run("traverse", shapes[0], "--discrete", "-o", tmp_path / "k.png", model=tiny_model_dir).exit_code == 0
    assert Image.open(tmp_path / "k.png").size == grid_size(1, 3, 28)


@pytest.mark.parametrize("code", ["2", "-1"])
def test_traverse_bad_code_exits_2_naming_the_range(tiny_model_dir, shapes, tmp_path, code):
    res = run("traverse", shapes[0], "--code", code, "-o", tmp_path / "t.png", model=tiny_model_dir)
    assert res.exit_code == 2 and "0..1" in res.stderr and code in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.png").exists()


# -- sample --------------------------------------------------------------------------------------
def test_sample_grid_and_single_files(tiny_model_dir, tmp_path):
    assert run("sample", "--rows", "4", "-o", tmp_path / "g.png", model=tiny_model_dir).exit_code == 0
    assert Image.open(tmp_path / "g.png").size == grid_size(4, 3, 28)
    res = run("sample", "--n", "3", "-o", tmp_path / "many", model=tiny_model_dir)
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "many").iterdir())
    assert len(files) == 3 and all(Image.open(f).size == (28, 28) for f in files)
    again = run("sample", "--n", "3", "-o", tmp_path / "many", model=tiny_model_dir)  # nothing left to write
    assert again.exit_code == 0 and "kept 3 output(s)" in again.stderr


# -- classify ------------------------------------------------------------------------------------
@pytest.fixture
def messy(tmp_path, shapes) -> tuple[Path, list[Path]]:
    """A folder with good images in several formats, a nested dir, a corrupt file and a non-image."""
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    good = [root / "a.png", root / "nested" / "b.jpg", root / "nested" / "deeper" / "a.png", root / "c.bmp"]
    for src, dst in zip(shapes, good):
        Image.open(src).save(dst)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return root, good


def test_classify_csv_skips_and_lists_unreadable(tiny_model_dir, messy):
    root, good = messy
    res = run("classify", root, model=tiny_model_dir)
    assert res.exit_code == 1, res.output  # some inputs failed: the others are listed
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in good)
    assert list(rows[0]) == ["path", "cluster", "name", "confidence", "p0", "p1", "p2", "ood_score", "ood"]
    for r in rows:
        probs = [float(r[f"p{i}"]) for i in range(3)]
        assert int(r["cluster"]) == int(np.argmax(probs)) and float(r["confidence"]) == max(probs)
        assert r["ood"] in ("0", "1") and float(r["ood_score"]) >= 0
    errors = [line for line in res.stderr.splitlines() if not line.startswith("infoedit: warning: ")]
    assert errors == [f"infoedit: error: {root / 'corrupt.png'}: cannot decode image "
                      "(Truncated File Read)"]  # one line; notes.txt is not an image file
    quiet = run("classify", root, "--quiet", model=tiny_model_dir)  # errors are said even then, warnings not
    assert quiet.exit_code == 1 and quiet.stderr.splitlines() == errors and quiet.stdout == res.stdout


def test_classify_json_to_file_with_names(tiny_model_dir, messy, tmp_path):
    root, good = messy
    out = tmp_path / "clusters.jsonl"
    res = run("classify", root, "--json", "-o", out, "--names", "0=square,1=disc,2=bar", model=tiny_model_dir)
    assert res.exit_code == 1 and res.stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(good)
    assert all(r["name"] == ["square", "disc", "bar"][r["cluster"]] for r in rows)
    res = run("classify", root, "-o", out, model=tiny_model_dir)
    assert res.exit_code == 2 and "--force" in res.stderr


def test_classify_copy_to_sorts_into_cluster_folders(tiny_model_dir, messy, tmp_path):
    root, good = messy
    out = tmp_path / "sorted"
    res = run("classify", root, "--copy-to", out, "--names", "sq/uare,disc,..", "--json", model=tiny_model_dir)
    assert res.exit_code == 1, res.output  # corrupt.png
    assert all(p.exists() for p in good)  # copied, not moved
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(copied) == len(good)
    for row in map(json.loads, res.stdout.splitlines()):
        folder = {"sq/uare": "sq_uare", "..": "_"}.get(row["name"], row["name"])  # sanitised
        assert (out / folder / Path(row["path"]).name).exists()


def test_classify_copy_never_overwrites_a_name_clash_nor_copies_twice(stub, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    for sub, mu in (("x", 0.0), ("y", 0.5)):  # one name, two different pictures of one cluster
        (root / sub).mkdir(parents=True)
        save_png(StubModel.image(1, [mu, 0]), root / sub / "a.png")
    for _ in range(2):  # the second run, without -o, finds each file's copy already there
        res = run("classify", root, "--copy-to", out, "--invert", "no", model=Path("stub"))
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in (out / "1").iterdir()) == ["a-1.png", "a.png"]
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        assert sorted(r["copied_to"] for r in rows) == [str(out / "1" / "a-1.png"), str(out / "1" / "a.png")]


def test_classify_move_to_inside_the_folder(tiny_model_dir, messy):
    root, good = messy
    out = root / "sorted"
    res = run("classify", root, "--move-to", out, model=tiny_model_dir)
    assert res.exit_code == 1, res.output  # corrupt.png
    assert not any(p.exists() for p in good) and (root / "corrupt.png").exists()
    assert len([p for p in out.rglob("*") if p.is_file()]) == len(good)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert all(Path(r["moved_to"]).is_file() and Path(r["moved_to"]).name == Path(r["path"]).name for r in rows)
    assert all(p.parent.name in {"0", "1", "2"} for p in out.rglob("*.*"))


def test_classify_bad_inputs_exit_2(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    for args in (["classify", tmp_path / "missing"], ["classify", tmp_path / "empty"],
                 ["classify", tmp_path, "--names", "0=a,7=b"]):
        res = run(*args, model=tiny_model_dir)
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, args


def test_classify_only_unreadable_files_exit_2(tiny_model_dir, tmp_path):
    (tmp_path / "x.png").write_bytes(b"junk")
    res = run("classify", tmp_path, model=tiny_model_dir)
    assert res.exit_code == 2 and "x.png" in res.stderr


# -- scripts: quiet stderr, torch-free --help ------------------------------------------------------
def test_cli_imports_no_torch_and_help_lists_commands():
    code = "import sys, infoedit.cli; assert 'torch' not in sys.modules, 'cli imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    res = run("--help")
    for cmd in ("encode", "swap", "traverse", "sample", "classify"):
        assert cmd in res.stdout
    assert "seed" in run("swap", "--help").stdout


@pytest.mark.parametrize("args, option, choices", [
    (["encode", "x.png", "--frame", "maybe"], "--frame", "'auto', 'yes', 'no'"),
    (["swap", "a.png", "b.png", "--discrete-from", "c"], "--discrete-from", "'a', 'b'"),
    (["sample", "--device", "tpu"], "--device", "'auto', 'cpu', 'cuda'"),
    (["evaluate", "runs/m", "--split", "val"], "--split", "'train', 'test'"),
    (["train", "mnist", "--precision", "fp16"], "--precision", "'fp32', 'bf16'"),
])
def test_a_value_outside_an_options_choices_is_one_line_exit_2(tmp_path, args, option, choices):
    """The installed command (cli.main): typer refuses it before the command runs, in one line."""
    res = subprocess.run([sys.executable, "-c", "from infoedit.cli import main; main()", *args],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert res.stderr.startswith(f"infoedit: error: {args[0]}: Invalid value for '{option}'")
    assert choices in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing trained


def test_help_lists_the_choices_of_an_option():
    res = run("traverse", "--help")
    assert res.exit_code == 0
    frame = [line for line in res.stdout.splitlines() if "--frame" in line]
    assert frame and "auto|yes|no" in frame[0], res.stdout
    assert "auto|cpu|cuda" in res.stdout and "a|b" in run("swap", "--help").stdout
    assert "mu|mu+softmax" in run("evaluate", "--help").stdout
