"""engine: swap / traverse / render plumbing on a stub model whose codes can be read back exactly,
plus shapes on the tiny trained model and the bounded-memory classify stream."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from infoedit import decoding, engine, hub


class StubModel(nn.Module):
    """generate() writes (s, c) into pixels and encode() reads them back, so encode(generate(s, c))
    returns exactly s and c: a test can see which image each code of an edit came from.

    Pixel [0, 0] holds category / 10 (PNG-exact for K <= 10); pixels [1, 0..c_dim-1] hold
    (c + 1) / 2 so c in [-1, 1] survives a PNG round trip to within 1/255.
    """

    class_names = None

    def __init__(self, n_classes: int = 3, c_dim: int = 2, size: int = 4):
        super().__init__()
        self.config = SimpleNamespace(image_size=size, channels=1, background="dark", dataset="stub", z_dim=5,
                                      n_classes=n_classes, c_dim=c_dim, c_prior="uniform", crop=1.0)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the stub a device
        self.noise_seen: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @staticmethod
    def image(k: int, c: list[float], size: int = 4) -> torch.Tensor:
        x = torch.zeros(1, size, size)
        x[0, 0, 0] = k / 10
        x[0, 1, :len(c)] = (torch.tensor(c) + 1) / 2
        return x

    def encode(self, x):
        k = self.config.n_classes
        cls = (x[:, 0, 0, 0] * 10).round().long().clamp(0, k - 1)
        logits = torch.nn.functional.one_hot(cls, k).float() * 8
        mu = x[:, 0, 1, :self.config.c_dim] * 2 - 1
        return mu, torch.full_like(mu, 0.1), logits

    def paint(self, s, c):
        return torch.stack([self.image(int(si.argmax()), ci.tolist(), self.config.image_size)
                            for si, ci in zip(s, c)])

    def generate(self, z, s, c):
        self.noise_seen.append(z.clone())
        return self.paint(s, c)

    def sample_prior(self, n, generator=None):
        z = torch.rand(n, self.config.z_dim, generator=generator)
        s = torch.nn.functional.one_hot(torch.randint(self.config.n_classes, (n,), generator=generator),
                                        self.config.n_classes).float()
        return z, s, torch.rand(n, self.config.c_dim, generator=generator) * 2 - 1


class StubModel2(StubModel):
    """An InfoVAEGAN2-like model: has G2(s, c); G must not be used for edits."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.g2_calls = 0

    def generate(self, z, s, c):
        raise AssertionError("edits must use generate2 when the model has it")

    def generate2(self, s, c):
        self.g2_calls += 1
        return self.paint(s, c)


def _codes(model, images):
    found = engine.encode(model, images)
    return found.cluster.tolist(), found.mu


def test_swap_takes_each_code_from_the_chosen_side():
    m = StubModel()
    a = StubModel.image(0, [0.5, -0.5]).unsqueeze(0)
    b = StubModel.image(2, [-0.25, 0.75]).unsqueeze(0)
    cls, mu = _codes(m, engine.swap(m, a, b))  # defaults: discrete from B, continuous from A
    assert cls == [2] and torch.allclose(mu, torch.tensor([[0.5, -0.5]]))
    cls, mu = _codes(m, engine.swap(m, a, b, discrete_from="a", continuous_from="b"))
    assert cls == [0] and torch.allclose(mu, torch.tensor([[-0.25, 0.75]]))
    with pytest.raises(ValueError, match="discrete_from"):
        engine.swap(m, a, b, discrete_from="c")


def test_render_shares_one_fixed_noise_vector_per_seed():
    m = StubModel()
    s, c = torch.eye(3), torch.zeros(3, 2)
    engine.render(m, s, c, seed=7)
    engine.render(m, s, c, seed=8)
    z7, z8 = m.noise_seen
    assert torch.equal(z7, engine.fixed_noise(m, 1, 7).expand(3, -1))
    assert not torch.equal(z7, z8)


def test_generate2_is_used_when_present():
    m = StubModel2()
    a = StubModel.image(1, [0.1, 0.2]).unsqueeze(0)
    b = StubModel.image(2, [0.3, 0.4]).unsqueeze(0)
    cls, _ = _codes(m, engine.swap(m, a, b))
    assert cls == [2]
    engine.traverse(m, a[0], [0], steps=3)
    engine.traverse_discrete(m, a[0])
    assert m.g2_calls >= 3  # at least once per edit (twice where the image's detail is kept)


def test_traverse_rows_sweep_one_code_and_keep_the_rest():
    m = StubModel()
    x = StubModel.image(1, [0.3, -0.6])
    out = engine.traverse(m, x, [1, 0], low=-1, high=0.5, steps=4)
    assert out.shape == (8, 1, 4, 4)
    cls, mu = _codes(m, out)
    assert cls == [1] * 8
    sweep = torch.linspace(-1, 0.5, 4)
    assert torch.allclose(mu[:4, 1], sweep) and torch.allclose(mu[:4, 0], torch.full((4,), 0.3))
    assert torch.allclose(mu[4:, 0], sweep) and torch.allclose(mu[4:, 1], torch.full((4,), -0.6))


def test_traverse_discrete_sweeps_every_category():
    m = StubModel(n_classes=5)
    out = engine.traverse_discrete(m, StubModel.image(3, [0.2, 0.2]))
    cls, mu = _codes(m, out)
    assert cls == [0, 1, 2, 3, 4] and torch.allclose(mu, torch.full((5, 2), 0.2))


@pytest.mark.parametrize("index", [2, -1])
def test_traverse_bad_code_names_the_valid_range(index):
    with pytest.raises(ValueError, match=r"0\.\.1"):
        engine.traverse(StubModel(), StubModel.image(0, [0, 0]), [index])
    with pytest.raises(ValueError, match="no continuous codes"):
        engine.check_code(StubModel(c_dim=0), 0)


def test_codes_onehot_is_the_argmax():
    found = engine.Codes(torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]), torch.zeros(2, 1), torch.ones(2, 1))
    assert found.cluster.tolist() == [1, 0]
    assert torch.equal(found.onehot(), torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    assert torch.allclose(found.confidence, torch.tensor([0.5, 0.6]))


def test_sample_is_repeatable_and_a_generator_continues():
    m = StubModel()
    assert torch.equal(engine.sample(m, 6, seed=1), engine.sample(m, 6, seed=1))
    gen = torch.Generator().manual_seed(1)
    first, second = engine.sample(m, 3, gen), engine.sample(m, 3, gen)
    assert not torch.equal(first, second)


def _fake_loader(bad: set[str]):
    def load(path: Path) -> np.ndarray:  # uint8 pixels, as images.load_pixels gives
        if path.name in bad:
            raise ValueError(f"{path}: cannot decode image")
        k = int(path.stem[1:]) % 3
        return (StubModel.image(k, [0.0, 0.0]) * 255).round().to(torch.uint8).numpy()
    return load


def test_classify_files_streams_in_order_and_keeps_failures():
    m = StubModel()
    names = [Path(f"f{i}.png") for i in range(7)]
    batches = list(engine.classify_files(m, iter(names), _fake_loader({"f3.png"}), batch_size=3, workers=2))
    assert [len(b.paths) + len(b.failed) for b in batches] == [3, 3, 1]
    assert [p.name for b in batches for p in b.paths] == [n.name for n in names if n.name != "f3.png"]
    assert [(p.name, "f3.png" in why) for b in batches for p, why in b.failed] == [("f3.png", True)]
    clusters = [c for b in batches for c in b.codes.cluster.tolist()]
    assert clusters == [int(n.stem[1:]) % 3 for n in names if n.name != "f3.png"]


def test_classify_files_reads_at_most_two_batches_ahead():
    pulled = []

    def paths():
        for i in range(1000):
            pulled.append(i)
            yield Path(f"f{i}.png")

    stream = engine.classify_files(StubModel(), paths(), _fake_loader(set()), batch_size=4, workers=2)
    next(stream)
    assert len(pulled) <= 2 * 4 + 1, "classify must not read the whole file list before working"
    stream.close()


def _slow(load, seconds: float):
    def slow_load(path: Path) -> np.ndarray:
        time.sleep(seconds)
        return load(path)
    return slow_load


@pytest.mark.parametrize("seconds, processes", [(0.0, False), (2 * decoding.SLOW_LOAD_SECONDS, True)])
def test_classify_files_decodes_slow_files_in_processes_with_the_same_results(monkeypatch, seconds, processes):
    started = []
    real_pool = decoding._process_pool
    monkeypatch.setattr(decoding, "_process_pool",
                        lambda load, workers: started.append(workers) or real_pool(load, workers))
    names = [Path(f"f{i}.png") for i in range(2 * decoding.PROBE + 5)]
    load = _slow(_fake_loader({"f3.png", f"f{decoding.PROBE + 2}.png"}), seconds)
    threads = torch.get_num_threads()
    batches = list(engine.classify_files(StubModel(), iter(names), load, batch_size=decoding.PROBE + 4, workers=2))
    assert torch.get_num_threads() == threads, "the model's threads are given back"
    assert bool(started) == processes, "processes only where decoding costs more than SLOW_LOAD_SECONDS a file"
    bad = {"f3.png", f"f{decoding.PROBE + 2}.png"}
    assert [p.name for b in batches for p in b.paths] == [n.name for n in names if n.name not in bad]
    assert sorted(p.name for b in batches for p, _ in b.failed) == sorted(bad)
    clusters = [c for b in batches for c in b.codes.cluster.tolist()]
    assert clusters == [int(n.stem[1:]) % 3 for n in names if n.name not in bad]


def test_classify_batch_of_only_failures_has_no_codes():
    batches = list(engine.classify_files(StubModel(), [Path("f0.png")], _fake_loader({"f0.png"})))
    assert batches[0].codes is None and len(batches[0].failed) == 1


def test_encode_in_batches_matches_one_pass_and_keeps_the_models_mode():
    m, modes = StubModel(), []
    stored = (torch.stack([StubModel.image(k % 3, [0.5, -0.5]) for k in range(7)]) * 255).round().to(torch.uint8)
    m.train()

    def read(mu, _sigma, logits):
        modes.append(m.training)
        return logits.argmax(1), mu

    cls, mu = engine.encode_in_batches(m, stored, read, batch_size=3)
    assert modes == [False] * 3 and m.training, "batches of 3, 3, 1 in eval mode; the caller's mode restored"
    one_mu, _, one_logits = m.encode(stored.float() / 255)
    assert torch.equal(cls, one_logits.argmax(1)) and torch.equal(mu, one_mu)
    assert engine.encode_in_batches(m.eval(), stored, lambda mu, _s, _l: mu, batch_size=2).shape == (7, 2)
    assert not m.training


def test_tiny_model_edit_shapes(tiny_model_dir):
    m = hub.from_pretrained(str(tiny_model_dir))
    cfg = m.config
    x = torch.rand(2, cfg.channels, cfg.image_size, cfg.image_size)
    found = engine.encode(m, x)
    assert found.probs.shape == (2, cfg.n_classes) and found.mu.shape == (2, cfg.c_dim)
    assert torch.allclose(found.probs.sum(1), torch.ones(2), atol=1e-5) and (found.sigma > 0).all()
    assert engine.swap(m, x[:1], x[1:]).shape == (1, cfg.channels, cfg.image_size, cfg.image_size)
    assert engine.traverse(m, x[0], [0, 1], steps=5).shape == (10, cfg.channels, cfg.image_size, cfg.image_size)
    assert engine.traverse_discrete(m, x[0]).shape[0] == cfg.n_classes
    # edits are deterministic: codes from E's argmax and mean, one fixed z
    assert torch.equal(engine.swap(m, x[:1], x[1:], seed=3), engine.swap(m, x[:1], x[1:], seed=3))
    out = engine.sample(m, 4)
    assert out.shape == (4, cfg.channels, cfg.image_size, cfg.image_size) and 0 <= out.min() <= out.max() <= 1
