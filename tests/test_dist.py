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
    from trainer.loop import TrainConfig, fit

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
