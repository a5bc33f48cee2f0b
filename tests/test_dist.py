"""Two gloo processes on CPU train in lockstep: both ranks end with identical weights."""

import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import shapes_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
    from trainer.config import TrainConfig
    from trainer.loop import fit

    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, z_dim=4, width=0.125))
    record = fit(model, shapes_dataset(128), TrainConfig(epochs=1, batch_size=16, seed=0, device="cpu"),
                 os.path.join(out, "model"), progress=False)
    assert record["world_size"] == world
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.safetensors"))
    dist.destroy_process_group()


def test_two_ranks_end_identical(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # trained: the weights moved away from the shared initialisation
    torch.manual_seed(0)
    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig

    init = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, z_dim=4, width=0.125)).state_dict()
    assert not torch.equal(init["G.fc.0.weight"], a["G.fc.0.weight"])
    assert (tmp_path / "model" / "model.safetensors").is_file()  # written by rank 0


def _signalled_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 alone gets SIGTERM during its third step (a scheduler killing one worker)."""
    import json
    import signal

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
    from trainer import infovaegan
    from trainer.config import TrainConfig
    from trainer.loop import TrainingStopped, fit

    real_step, calls = infovaegan.train_step, []

    def step(*args, **kw):
        calls.append(1)
        if rank == 1 and len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args, **kw)

    infovaegan.train_step = step
    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, z_dim=4, width=0.125))
    try:
        fit(model, shapes_dataset(256), TrainConfig(epochs=1, batch_size=16, seed=0, device="cpu"),
            os.path.join(out, "model"), progress=False)
        exit_code = 0
    except TrainingStopped as stop:
        exit_code = stop.exit_code
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"steps": len(calls), "exit_code": exit_code}, f)
    dist.destroy_process_group()


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    import json

    from trainer.checkpoint import read_state

    ctx = mp.spawn(_signalled_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    for p in ctx.processes:
        p.join(120)
    hung = [p for p in ctx.processes if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a rank still waits for the other"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3  # of an epoch of 8
    assert [r["exit_code"] for r in ranks] == [0, 143]  # the signalled rank says it was stopped
    assert read_state(tmp_path / "model")["step"] == 3


def test_cli_nproc_trains_exits_0_and_records_the_typed_command(tmp_path):
    """`infoedit train --nproc 2` relaunches under torchrun; the ranks' teardown once aborted
    (SIGABRT, exit 1) after the model was written, and the card lost `train` and `--nproc`."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(32):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", f"folder:{tmp_path / 'imgs'}", "--nproc", "2", "--max-steps", "2", "--batch-size", "4",
            "--width", "0.125", "--set", "image_size=28", "--set", "channels=1", "-o", str(out), "-q"]
    res = subprocess.run([sys.executable, "-c", "from infoedit.cli import main; main()", *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    card = (out / "README.md").read_text()
    assert f"train folder:{tmp_path / 'imgs'} --nproc 2" in card


def test_train_nproc_on_bad_input_says_one_line_and_exits_2(tmp_path):
    """Both ranks fail alike: rank 0 alone says it, and torchrun's failure report is left out."""
    import subprocess
    import sys

    args = ["train", f"folder:{tmp_path / 'nothing'}", "--nproc", "2", "-o", str(tmp_path / "run")]
    res = subprocess.run([sys.executable, "-c", "from infoedit.cli import main; main()", *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"infoedit: error: {tmp_path / 'nothing'}: no such folder"]


def test_the_training_package_imports_no_command_line_and_python_m_trainer_still_trains(tmp_path):
    """torchrun's ranks run `-m infoedit.cli train`; `python -m trainer`, the entry torchrun
    commands used to name, runs that command in its place instead of importing the CLI."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    code = ("import sys, trainer.dist, trainer.train, trainer.loop, trainer.evaluate.command; "
            "assert 'infoedit.cli' not in sys.modules, 'the trainer imported the CLI'")
    subprocess.run([sys.executable, "-c", code], check=True)
    (tmp_path / "imgs").mkdir()
    for i in range(16):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png")
    out = tmp_path / "run"
    args = [f"folder:{tmp_path / 'imgs'}", "--max-steps", "1", "--batch-size", "4", "--width", "0.125",
            "--set", "image_size=28", "--set", "channels=1", "--device", "cpu", "-o", str(out), "-q"]
    res = subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"infoedit train folder:{tmp_path / 'imgs'} --max-steps 1" in (out / "README.md").read_text()
