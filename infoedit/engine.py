"""Operations on a loaded model: encode, swap, traverse, sample, classify, grids.

Shared by the CLI and the trainer. Functions take a loaded model and tensors in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from infoedit import codes, decoding, images


def fixed_noise(model, n: int, seed: int = 0) -> torch.Tensor:
    """Noise z for rendering: drawn from the prior with a fixed seed, so outputs are repeatable."""
    return model.sample_prior(n, torch.Generator().manual_seed(seed))[0]  # z is drawn first


def _in_batches(fn: Callable[..., torch.Tensor | tuple], *tensors: torch.Tensor, size: int = 256
                ) -> torch.Tensor | tuple:
    """fn over the tensors' first dimension, ``size`` rows at a time: a large grid costs the
    memory of its images, not of the networks' activations for all of them at once. A fn that
    returns a tuple of tensors gives the tuple of their concatenations."""
    parts = [fn(*(t[i:i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)]
    if parts and isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts))
    return torch.cat(parts)


@torch.inference_mode()
def encode_in_batches(model, images: torch.Tensor, read: Callable[..., torch.Tensor | tuple],
                      scale: float = 255.0, batch_size: int = 500) -> torch.Tensor | tuple:
    """read(mu, sigma, logits) of stored images / scale, batch by batch in eval mode (the model's mode kept)."""
    was_training = model.training
    model.eval()
    out = _in_batches(lambda x: read(*model.encode(x.to(model.device).float().div_(scale))), images,
                      size=batch_size)
    model.train(was_training)
    return out


@torch.inference_mode()
def class_grid(model, rows: int = 10, seed: int = 0) -> torch.Tensor:
    """Images [rows * K, C, H, W]: columns = the K categories, rows = continuous variation.

    Row r sets the first continuous code to the r-th of ``rows`` values evenly spaced over
    [-1, 1] (other codes 0), with one fixed noise vector per row (paper Fig. 12/15).
    """
    cfg = model.config
    k = cfg.n_classes
    z = fixed_noise(model, rows, seed).repeat_interleave(k, dim=0)
    s = torch.eye(k, device=model.device).repeat(rows, 1)
    c = torch.zeros(rows * k, cfg.c_dim, device=model.device)
    if cfg.c_dim:
        c[:, 0] = codes.traversal_values(-1, 1, rows).to(model.device).repeat_interleave(k)
    return _in_batches(model.generate, z, s, c)


# -- edits of real images: codes come from E, deterministically ------------------------------
@dataclass
class Codes:
    """What E infers for a batch: q(s | x) as probabilities, q(c | x) as (mu, sigma), and the
    mean style code of a model whose G2 reads one (InfoVAEGANConfig.style_dim)."""

    probs: torch.Tensor  # [N, K]
    mu: torch.Tensor     # [N, c_dim]
    sigma: torch.Tensor  # [N, c_dim]
    style: torch.Tensor | None = None  # [N, style_dim]

    @property
    def cluster(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @property
    def confidence(self) -> torch.Tensor:
        return self.probs.max(dim=1).values

    def onehot(self) -> torch.Tensor:
        """argmax as a one-hot s, not a Gumbel sample, so an edit gives the same image every time."""
        return F.one_hot(self.cluster, self.probs.shape[1]).to(self.probs.dtype)


def rounded(values: torch.Tensor) -> list[list[float]]:
    """Rows of values at 6 decimals, as printed results carry them: one tensor operation for a
    batch, not a Python round() per number."""
    return values.double().round(decimals=6).tolist()


@torch.inference_mode()
def encode(model, x: torch.Tensor) -> Codes:
    """Codes of images [N, C, H, W] in [0, 1]."""
    x = x.to(model.device, memory_format=torch.channels_last)
    with_style = getattr(model, "encode_with_style", None)  # CodeModel's; a duck-typed model has encode only
    mu, sigma, logits, style = with_style(x) if with_style else (*model.encode(x), None)
    return Codes(F.softmax(logits.float(), dim=1), mu.float(), sigma.float(),
                 None if style is None else style.float())


@torch.inference_mode()
def render(model, s: torch.Tensor, c: torch.Tensor, seed: int = 0, style: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Images for codes (s, c) of real images: G2(s, c[, style]) when the model has one, else G(z, s, c).

    InfoVAEGAN2 (Sec. 4.4) adds G2, trained as the inverse of E, so it needs no noise. With G
    every image shares the one noise vector ``fixed_noise(model, 1, seed)``: the edit then
    depends on the codes alone, and rows of a traversal are comparable.
    """
    s, c = s.to(model.device), c.to(model.device)
    if callable(getattr(model, "generate2", None)):
        if style is None:
            return _in_batches(model.generate2, s, c)
        return _in_batches(model.generate2, s, c, style.to(model.device))
    z = fixed_noise(model, 1, seed).expand(len(s), -1)
    return _in_batches(model.generate, z, s, c)


def refine(model, x: torch.Tensor, found: Codes, steps: int | None, lr: float = 0.1) -> Codes:
    """Ours (docs/model.md; in-domain GAN inversion, Zhu et al. 2020): E's continuous and style
    codes of images x, improved by ``steps`` Adam steps on G2's redrawing of x, starting from E's
    answer. The category stays E's. Each step is one G2 forward and backward, so ``steps`` = 20
    costs about 60 decodes an image.

    The loss is the one G2 was trained with: the model's likelihood, summed over pixels, plus the
    codes' priors -log p(c) and -log p(w) (Gaussians; the uniform prior's moment-matched one) at
    the weights its KL terms had (kl_c_weight, style_kl_weight). A MAP estimate: the priors keep
    the codes where G2 was trained. Images do not interact (Adam is
    elementwise, the networks are in eval mode), so a batch refines as its images would one by one.
    Models without G2 (no decoder to invert without noise) and ``steps`` 0 return ``found``;
    ``steps`` None takes the model's own default (its config's refine_steps; 0 without one).
    """
    if steps is None:
        steps = getattr(model.config, "refine_steps", 0)
    if steps <= 0 or not callable(getattr(model, "generate2_logits", None)):
        return found
    cfg = model.config
    bernoulli = getattr(cfg, "likelihood", "gaussian") == "bernoulli"
    prior_var = codes.prior_std(cfg.c_prior) ** 2
    with torch.inference_mode(False), torch.enable_grad():
        # clones: tensors made under inference mode cannot enter autograd
        x, s = x.to(model.device).float().clone(), found.onehot().to(model.device).clone()
        c = found.mu.to(model.device).clone().requires_grad_(True)
        w = None if found.style is None else found.style.to(model.device).clone().requires_grad_(True)
        params = [c] if w is None else [c, w]
        opt = torch.optim.Adam(params, lr)
        for _ in range(steps):
            logits = model.generate2_logits(s, c, w)
            if bernoulli:
                rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            else:
                rec = ((torch.sigmoid(logits) - x) ** 2).sum()
            prior = cfg.kl_c_weight * (c ** 2).sum() / (2 * prior_var)
            if w is not None:
                prior = prior + cfg.style_kl_weight * (w ** 2).sum() / 2
            # only the codes' gradients: the weights' would be computed and thrown away
            grads = torch.autograd.grad(rec + prior, params)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
    return Codes(found.probs, c.detach().to(found.mu.device), found.sigma,
                 None if w is None else w.detach().to(found.style.device))


@torch.inference_mode()
def edit(model, x: torch.Tensor, found: Codes, s: torch.Tensor, c: torch.Tensor, seed: int = 0,
         keep_detail: bool = True) -> torch.Tensor:
    """Images x [N, C, H, W] redrawn with codes (s, c) in place of their own (``found``, E's codes
    of x); every code not given stays as found, the style code included.

    ``keep_detail`` (ours, docs/model.md): the decoder draws from a dozen numbers and cannot redraw
    a stroke's exact edge, so what it leaves out of x, x minus its redrawing from x's own codes,
    is added back onto the edit: an edit that changes no code returns x, and one that moves a
    continuous code moves what the decoder moves and keeps the rest of x sharp. A new category
    is drawn without it: the old category's detail would stay as a ghost of the old shape.

    A new category is drawn with the continuous code held to its prior's support (ours): G2 learnt
    to draw any category from codes drawn from the prior (the edit terms), while E puts some
    images' codes outside it (a steep slant at -2.4 on MNIST). Past it, a new category's drawing
    drifts from its class: the judge of bench/edits.py read 98.5% of MNIST category edits as their
    class with the code as E found it, 99.2% with it held to [-1, 1] (the last 1,000 training
    images). The image's own category keeps the code as found: that is the drawing of the image.
    """
    own_category = s.to(c.device).argmax(dim=1) == found.cluster.to(c.device)
    support = codes.prior_support(getattr(model.config, "c_prior", "normal"))
    if support is not None and not own_category.all():
        c = torch.where(own_category.unsqueeze(1), c, c.clamp(*support))
    out = render(model, s, c, seed, found.style)
    rows = own_category.nonzero().squeeze(1).to(out.device)
    if not keep_detail or len(rows) == 0:
        return out
    style = None if found.style is None else found.style[rows]
    own = render(model, found.onehot()[rows], found.mu[rows], seed, style)
    out[rows] = (out[rows] + x.to(out.device)[rows] - own).clamp(0, 1)
    return out


@torch.inference_mode()
def swap(model, a: torch.Tensor, b: torch.Tensor, discrete_from: str = "b",
         continuous_from: str = "a", seed: int = 0, keep_detail: bool = True, refine_steps: int | None = 0
         ) -> torch.Tensor:
    """Generate from the discrete code of one image and the continuous code of the other (Fig. 3/6).

    ``a`` and ``b`` are batches [N, C, H, W] of pairs, or one image on either side paired with
    every image of the other (encoded once); ``*_from`` is "a" or "b". The result is an edit of
    the image whose continuous code is used: it keeps that image's style code and, with
    ``keep_detail``, its detail while the category stays its own (``edit``). ``refine_steps``
    refines that image's codes first (``refine``).
    """
    for name, side in (("discrete_from", discrete_from), ("continuous_from", continuous_from)):
        if side not in ("a", "b"):
            raise ValueError(f"{name} must be 'a' or 'b', got {side!r}")
    images = {"a": a, "b": b}
    codes_ab = {side: encode(model, images[side]) for side in images}
    n = max(len(a), len(b))
    for side in images:
        if len(images[side]) == 1 < n:
            images[side], codes_ab[side] = images[side].expand(n, -1, -1, -1), _repeat(codes_ab[side], n)
    base = refine(model, images[continuous_from], codes_ab[continuous_from], refine_steps)
    return edit(model, images[continuous_from], base, codes_ab[discrete_from].onehot(), base.mu, seed,
                keep_detail)


@torch.inference_mode()
def reconstruct(model, x: torch.Tensor, seed: int = 0, keep_detail: bool = False, refine_steps: int | None = 0
                ) -> torch.Tensor:
    """Images [N, C, H, W] regenerated from their own codes (argmax s, mean c, mean style code):
    G2 when present (InfoVAEGAN2, Sec. 4.4 / Fig. 11e), else G with the fixed noise, else a VAE's
    decoder. ``keep_detail`` adds back what the decoder leaves out (``edit``), which returns x itself;
    ``refine_steps`` > 0 fits the codes to x first (``refine``)."""
    found = refine(model, x, encode(model, x), refine_steps)
    return edit(model, x, found, found.onehot(), found.mu, seed, keep_detail)


def check_code(model, index: int) -> None:
    c_dim = model.config.c_dim
    if c_dim == 0:
        raise ValueError(f"continuous code {index}: this model has no continuous codes")
    if not 0 <= index < c_dim:
        raise ValueError(f"continuous code {index} is out of range: this model has codes 0..{c_dim - 1}")


@torch.inference_mode()
def traverse(model, x: torch.Tensor, code_indices: list[int], low: float = -1.0, high: float = 1.0,
             steps: int = 10, seed: int = 0, keep_detail: bool = True, refine_steps: int | None = 0) -> torch.Tensor:
    """Images [len(code_indices) * steps, C, H, W]: row i sweeps continuous code i over [low, high].

    One image x [C, H, W]; every other code stays at what E infers for it (Fig. 9/13/17/19), and
    with ``keep_detail`` what the codes do not explain stays too (``edit``).
    """
    if not code_indices:
        raise ValueError("traverse needs at least one continuous code index")
    for i in code_indices:
        check_code(model, i)
    found = refine(model, x.unsqueeze(0), encode(model, x.unsqueeze(0)), refine_steps)
    values = codes.traversal_values(low, high, steps).to(found.mu)
    c = found.mu.repeat(len(code_indices) * steps, 1)
    for row, i in enumerate(code_indices):
        c[row * steps:(row + 1) * steps, i] = values
    return edit(model, x.expand(len(c), -1, -1, -1), _repeat(found, len(c)), found.onehot().expand(len(c), -1),
                c, seed, keep_detail)


def _repeat(found: Codes, n: int) -> Codes:
    """One image's codes as a batch of n identical rows."""
    rows = [t.expand(n, -1) for t in (found.probs, found.mu, found.sigma)]
    return Codes(*rows, None if found.style is None else found.style.expand(n, -1))


@torch.inference_mode()
def traverse_discrete(model, x: torch.Tensor, seed: int = 0, keep_detail: bool = True, refine_steps: int | None = 0
                      ) -> torch.Tensor:
    """Images [K, C, H, W]: image x [C, H, W] rendered with each of the K categories in turn
    (its own category with its detail kept, see ``edit``)."""
    found = refine(model, x.unsqueeze(0), encode(model, x.unsqueeze(0)), refine_steps)
    k = found.probs.shape[1]
    return edit(model, x.expand(k, -1, -1, -1), _repeat(found, k), torch.eye(k, device=found.mu.device),
                found.mu.expand(k, -1), seed, keep_detail)


@torch.inference_mode()
def sample(model, n: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """n images [n, C, H, W] from the priors of z, s and c, repeatable for a given seed.

    Pass a torch.Generator instead of a seed to draw several batches of one sequence.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    z, s, c = model.sample_prior(n, gen)
    return model.generate(z, s, c)


# -- classify: stream any number of files in bounded memory ---------------------------------
@dataclass
class Batch:
    paths: list[Path]                # the files that decoded, in input order
    codes: Codes | None              # their codes (None when none decoded)
    failed: list[tuple[Path, str]]   # (file, one-line reason)
    ood: tuple[list, list] | None = None  # (ood_score, flagged) per file, when the model has a reference


def out_of_domain(model, x: torch.Tensor, found: Codes) -> tuple[list, list] | None:
    """(ood_score, flagged) of images x whose codes are ``found``, against the model's training
    images (infoedit.ood); None for a model folder without that reference."""
    from infoedit import ood

    ref = getattr(model, "ood", None)
    return None if ref is None else ood.score(ref, x, *ood.measures(model, x, found))


def classify_files(model, paths: Iterable[Path], load: Callable[[Path], np.ndarray],
                   batch_size: int = 256, workers: int = 2) -> Iterator[Batch]:
    """Codes for every file, one Batch at a time; a file that fails to load goes in ``failed``.

    ``load`` gives a file's uint8 pixels [C, H, W] (images.load_pixels). ``paths`` is consumed
    lazily; the next batch decodes while the model runs on this one (infoedit.decoding), so at
    most two batches of images are in memory, however many files.
    """
    for loaded in decoding.batches(paths, load, batch_size, workers):
        yield _encode_batch(model, loaded)


def _encode_batch(model, loaded: decoding.Loaded) -> Batch:
    ok = [(path, pixels) for path, pixels in loaded if not isinstance(pixels, str)]
    failed = [(path, why) for path, why in loaded if isinstance(why, str)]
    found, odd = None, None
    if ok:
        x = images.to_unit(np.stack([pixels for _, pixels in ok]))
        found = encode(model, x)
        odd = out_of_domain(model, x, found)
        found = Codes(found.probs.cpu(), found.mu.cpu(), found.sigma.cpu())
    return Batch([path for path, _ in ok], found, failed, odd)
