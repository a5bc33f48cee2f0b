"""Batch runs as a shell script makes them: the real command in a child process, stopped with
SIGTERM part-way and run again, and one exit rule over many inputs (README, "Scripts")."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLI = [sys.executable, "-m", "infoedit.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args, model: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args), "--model", str(model), "--device", "cpu"], capture_output=True,
                          text=True, env=ENV, timeout=300)


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """1,200 small distinct PNGs: enough that one file at a time takes a few seconds to place."""
    from conftest import shapes_dataset

    folder = tmp_path_factory.mktemp("many")
    ds = shapes_dataset(1200, seed=3)
    for i, img in enumerate(ds.images.numpy()):
        Image.fromarray(img[0]).save(folder / f"{i:04d}.png")
    return folder


def _copy_tree(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _stop_part_way(args: list[str], listing: Path, rows: int = 20, stop=signal.SIGTERM
                   ) -> subprocess.CompletedProcess:
    """Start the command, and send it ``stop`` (SIGTERM, or SIGINT as a terminal's Ctrl-C does)
    once its listing holds ``rows`` rows."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
                            # a child of a background shell starts with SIGINT ignored; a terminal's has it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if listing.exists() and listing.read_bytes().count(b"\n") > rows:
            proc.send_signal(stop)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, None, err)


def _rows(listing: Path, json_rows: bool) -> list[dict]:
    text = listing.read_text()
    return [json.loads(line) for line in text.splitlines()] if json_rows else list(csv.DictReader(text.splitlines()))


@pytest.mark.parametrize("how, json_rows, stop, code, said", [
    ("move", False, signal.SIGTERM, 143, "terminated"), ("copy", True, signal.SIGINT, 130, "interrupted")])
def test_classify_stopped_part_way_lists_what_it_placed_and_a_rerun_finishes(tiny_model_dir, many, tmp_path, how,
                                                                           json_rows, stop, code, said):
    src, dst, listing = _copy_tree(many, tmp_path / "src"), tmp_path / "sorted", tmp_path / "list.txt"
    everything = sorted(str(p) for p in src.iterdir())
    args = ["classify", str(src), f"--{how}-to", str(dst), "-o", str(listing), "--batch-size", "1",
            "--model", str(tiny_model_dir), "--device", "cpu"] + (["--json"] if json_rows else [])
    proc = _stop_part_way(args, listing, stop=stop)
    assert proc.returncode == code, proc.stderr  # stopped part-way, not finished
    assert proc.stderr.splitlines() == [f"infoedit: error: {said}"]  # said once, in one line
    key = f"{'moved' if how == 'move' else 'copied'}_to"
    rows = _rows(listing, json_rows)
    placed = sorted(str(p) for p in dst.rglob("*.png"))
    # the listing is exactly what was placed: every placed file, each once, where it lies
    assert 20 <= len(rows) < len(everything) and sorted(r[key] for r in rows) == placed
    assert all(Path(r[key]).read_bytes() == (many / Path(r["path"]).name).read_bytes() for r in rows)
    if how == "move":
        assert not any(Path(r["path"]).exists() for r in rows)
        assert len(list(src.iterdir())) == len(everything) - len(rows)

    rerun = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = _rows(listing, json_rows)
    assert sorted(r["path"] for r in rows) == everything  # every file named once
    assert sorted(r[key] for r in rows) == sorted(str(p) for p in dst.rglob("*.png"))  # none placed twice
    assert len(rows) == len(everything)
    again = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0 and _rows(listing, json_rows) == rows  # a finished job stays finished


def test_classify_listing_of_another_kind_is_refused_and_force_starts_afresh(tiny_model_dir, many, tmp_path):
    src = _copy_tree(many, tmp_path / "src")
    listing = tmp_path / "list.csv"
    listing.write_text("name,size\nx,1\n")
    res = cli("classify", src, "--copy-to", tmp_path / "out", "-o", listing, model=tiny_model_dir)
    assert res.returncode == 2 and "is not the listing of a classify run with --copy-to" in res.stderr
    assert listing.read_text() == "name,size\nx,1\n"
    res = cli("classify", src, "--copy-to", tmp_path / "out", "-o", listing, "--force", model=tiny_model_dir)
    assert res.returncode == 0, res.stderr
    assert len(_rows(listing, False)) == len(list(src.iterdir()))


def test_reconstruct_and_sample_reruns_complete_and_force_rewrites(tiny_model_dir, many, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(many.iterdir())[:12]:
        (src / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "rec"
    assert cli("reconstruct", src, "-o", out, model=tiny_model_dir).returncode == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == sorted(p.name for p in src.iterdir())
    for p in sorted(out.iterdir())[5:]:  # as a run stopped after five files leaves it
        p.unlink()
    (out / "0000.png").write_bytes(b"an earlier run's")  # kept: the rerun only adds what is missing
    res = cli("reconstruct", src, "-o", out, model=tiny_model_dir)
    assert res.returncode == 0 and "kept 5 output(s)" in res.stderr
    now = {p.name: p.read_bytes() for p in out.iterdir()}
    assert now == {**first, "0000.png": b"an earlier run's"}
    assert cli("reconstruct", src, "-o", out, "--force", model=tiny_model_dir).returncode == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first

    samples = tmp_path / "samples"
    assert cli("sample", "--n", "7", "-o", samples, model=tiny_model_dir).returncode == 0
    first = {p.name: p.read_bytes() for p in samples.iterdir()}
    for p in sorted(samples.iterdir())[3:]:
        p.unlink()
    assert cli("sample", "--n", "7", "-o", samples, model=tiny_model_dir).returncode == 0
    assert {p.name: p.read_bytes() for p in samples.iterdir()} == first  # the same seed: the same samples


@pytest.mark.parametrize("command", ["encode", "reconstruct", "swap", "traverse", "classify"])
def test_one_exit_rule_over_many_inputs(tiny_model_dir, many, tmp_path, command):
    """Every input is tried, the good ones' results written, each bad one named in one line; exit 1
    when some failed, 2 when none could be done."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = [folder / name for name in ("g1.png", "g2.png", "g3.png")]
    for src, dst in zip(sorted(many.iterdir()), good):
        dst.write_bytes(src.read_bytes())
    bad = folder / "bad.png"
    bad.write_bytes(b"not a picture")
    out = tmp_path / "out"
    inputs = {"encode": [folder], "reconstruct": [folder], "swap": [*good[:2], bad, good[2]],
              "traverse": [good[0], bad, *good[1:]], "classify": [folder]}[command]
    extra = ["--json"] if command == "encode" else []
    res = cli(command, *inputs, "-o", out if command != "encode" else tmp_path / "codes.jsonl", *extra,
              model=tiny_model_dir)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert lines == [f"infoedit: error: {bad}: not an image file (or an unsupported format)"]
    if command == "encode":
        assert len((tmp_path / "codes.jsonl").read_text().splitlines()) == 3
    elif command == "classify":
        assert sorted(r["path"] for r in _rows(out, False)) == sorted(map(str, good))
    else:
        want = good[:2] if command == "swap" else good
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in want)
    if command != "classify":  # one input, and it fails: nothing done, and nothing written
        nothing = cli(command, bad, *([good[0]] if command == "swap" else []), "-o", tmp_path / "none.png",
                      model=tiny_model_dir)
        assert nothing.returncode == 2 and nothing.stderr.splitlines() == lines
        assert not (tmp_path / "none.png").exists()


def test_swap_pairs_and_folders_and_traverse_several(tiny_model_dir, many, tmp_path):
    files = sorted(many.iterdir())[:4]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\n" + "".join(f"{a},{b}\n" for a, b in zip(files, files[1:])))
    res = cli("swap", "--pairs", pairs, "-o", tmp_path / "swaps", model=tiny_model_dir)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "swaps").iterdir())
    assert names == sorted(f"{a.stem}-{b.stem}.png" for a, b in zip(files, files[1:]))
    # each pair's swap is the one a call for that pair alone draws
    single = cli("swap", files[1], files[2], "-o", tmp_path / "one.png", model=tiny_model_dir)
    assert single.returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")),
                          np.asarray(Image.open(tmp_path / "swaps" / f"{files[1].stem}-{files[2].stem}.png")))

    folder = tmp_path / "a"
    folder.mkdir()
    for p in files[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    res = cli("swap", folder, files[3], "-o", tmp_path / "fromfolder", model=tiny_model_dir)
    assert res.returncode == 0 and sorted(p.name for p in (tmp_path / "fromfolder").iterdir()) == sorted(
        p.name for p in files[:3])

    res = cli("traverse", *files[:3], "--code", "0", "--steps", "5", "-o", tmp_path / "grids", model=tiny_model_dir)
    assert res.returncode == 0, res.stderr
    grids = sorted((tmp_path / "grids").iterdir())
    assert [p.name for p in grids] == [p.name for p in files[:3]]
    res = cli("traverse", *files[:3], "--code", "0", "--steps", "5", "--strip", "-o", tmp_path / "all.png",
              model=tiny_model_dir)
    assert res.returncode == 0, res.stderr
    one, all_three = (np.asarray(Image.open(p)) for p in (grids[0], tmp_path / "all.png"))
    assert all_three.shape[0] == 3 * one.shape[0] - 4 and all_three.shape[1] == one.shape[1]  # shared padding
    assert np.array_equal(all_three[:one.shape[0]], one)


def test_encode_json_names_the_cluster_as_classify_does(tiny_model_dir, many):
    path = sorted(many.iterdir())[0]
    row = json.loads(cli("encode", path, "--json", model=tiny_model_dir).stdout)
    listed = next(csv.DictReader(cli("classify", many, model=tiny_model_dir).stdout.splitlines()))
    assert row["name"] == str(row["cluster"]) and listed["path"] == str(path) and listed["name"] == row["name"]


@pytest.mark.parametrize("stop, code, said", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_stop_sent_to_the_process_group_reaches_photo_decoders_too_and_is_said_once(tmp_path, stop, code, said):
    """A job's SIGTERM and a terminal's Ctrl-C reach the whole process group, the worker
    processes that frame a folder of photos included: one line, the stop's exit code, and no
    worker left behind."""
    from conftest import photo_of

    folder = tmp_path / "photos"
    folder.mkdir()
    digits = sorted((Path(__file__).resolve().parents[1] / "examples" / "mnist").glob("[0-9].png"))
    for i, d in enumerate(digits):
        photo_of(np.asarray(Image.open(d).convert("L")), seed=i).save(folder / f"{i}.jpg", quality=90)
    for i in range(400):  # framing them all takes seconds: long enough to be stopped part-way
        (folder / f"copy-{i:03d}.jpg").write_bytes((folder / f"{i % 10}.jpg").read_bytes())
    listing = tmp_path / "listing.csv"
    args = ["classify", str(folder), "--model", "mnist", "--batch-size", "20", "-o", str(listing),
            "--copy-to", str(tmp_path / "sorted")]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "HF_HUB_OFFLINE": "1"}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if listing.exists() and listing.read_bytes().count(b"\n") > 60:  # rows as placed; workers run by now
            os.killpg(proc.pid, stop)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err.strip().splitlines() == [f"infoedit: error: {said}"], err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone left in the command's process group?
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a worker process outlived the command")


def test_a_sigterm_once_the_command_is_done_changes_nothing():
    """A job's SIGTERM that lands in the interpreter's teardown, after the command wrote its
    files, leaves the exit code as it was and prints nothing (it printed 'terminated' and a
    traceback from inside an exit hook)."""
    code = ("import atexit, os, signal, sys\n"
            "from infoedit.cli import main\n"
            "atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
            "sys.argv = ['infoedit', '--version']\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("infoedit ") and done.stderr == "", done.stderr
