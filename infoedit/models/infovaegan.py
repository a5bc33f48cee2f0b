"""InfoVAEGAN (Ye & Bors 2021, Sec. 4, Alg. 1): G(z, s, c), E(x) -> q(s, c | x), joint D(x, s, c)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch

from infoedit import codes
from infoedit.models.config import CodeModel, ConfigMixin
from infoedit.models.nets import LAYOUTS, Encoder, Generator, JointDiscriminator

FORMAT_VERSION = 1
OPTIMISERS = ("per-loss", "per-network")
RECON_CRITICS = ("D", "own")
G2_SCHEDULES = ("authors", "joint")
# settings of G2: InfoVAEGAN2 only
G2_FIELDS = ("g2_schedule", "style_dim", "style_kl_weight", "edit_weight", "recon_adv_weight", "recon_critic",
             "recon_ssim_weight", "refine_steps", "d_every")
AUGMENT_PARTS = ("affine", "flip", "shear", "stroke", "contrast", "centre", "spin")
CRITIC_AUGMENT_PARTS = ("colour", "translation", "cutout")
LIKELIHOODS = ("gaussian", "bernoulli")


@dataclass
class InfoVAEGANConfig(ConfigMixin):
    image_size: int = 28
    channels: int = 1
    background: str = "dark"  # 1 channel: what the training images show (config.BACKGROUNDS)
    z_dim: int = 62           # noise: 62 for 28px, 100 for 64px (paper Sec. 5.2)
    n_classes: int = 10       # K, categories of the discrete code s
    c_dim: int = 2            # continuous code: 2 for MNIST, 10 for 64px
    c_prior: str = "uniform"  # "uniform" U(-1,1) or "normal" N(0,1); see codes.prior_std for the KL
    tau: float = 0.1          # Gumbel-softmax temperature of the VAE loss (authors: 0.1)
    kl_s_weight: float = 1e-3  # w_s in Eq. 31 (authors: 0.001)
    # Not in the paper (a lever): beta on KL(q(c|x) || p(c)) in Eq. 31/32, as in beta-VAE. Above 1
    # it presses the continuous code towards the factorised prior, so each of its dims tends to
    # follow one factor of variation (dSprites' FactorVAE score); 1 is the paper's loss.
    kl_c_weight: float = 1.0
    # Not in the paper (a lever): extra weight on the total correlation of the continuous code,
    # the part of that KL which ties its dims together (beta-TCVAE; trainer.losses.total_correlation):
    # a code whose dims vary independently over the data. 0 is the paper's loss.
    tc_weight: float = 0.0
    mi_continuous: str = "mse"  # "mse" (authors' code) or "nll" (Gaussian log-likelihood, Eq. 30)
    # log p(x | s, c) of the VAE loss (Eq. 31/32; the paper leaves it open): "gaussian", unit
    # variance, i.e. the squared error (the authors' code), or "bernoulli", the cross-entropy
    # (a lever: the usual likelihood of binary images such as dSprites, and the baselines').
    likelihood: str = "gaussian"
    mi_weight_s: float = 1.0
    mi_weight_c: float = 1.0
    width: float = 1.0        # multiplies every hidden width; 1.0 = the paper's networks
    # The 64 px networks (models/nets.py): "authors", as their code builds them (3x3 kernels,
    # stride-1 transposed convolutions between the upsampling ones); "dcgan" (ours, the cpu-fast
    # preset and every folder before the field): DCGAN's 4x4 stride-2 ones, 3-6x cheaper a step.
    # At 28 px both are InfoGAN's networks, as the authors' MNIST code.
    nets: str = "authors"
    # What a folder of images (CelebA, chairs) is cut to before it is scaled to image_size: the
    # centre square's central share (training, and the commands' framing of a user's image).
    # 1 = the whole centre square (ours); the authors' CelebA crops 128 of its 178 px, 0.72
    # (the paper preset on celeba).
    crop: float = 1.0
    # s in D's real pair (x, s ~ q(s|x)): "onehot" samples Cat(q(s|x)) exactly, as Eq. 16 reads
    # and with the same support as the fake pair's one-hot s; "gumbel" is the authors' code
    # (a tau-relaxed sample, which D can tell from an exact one-hot by its softness alone).
    d_real_s: str = "onehot"
    # Not in the paper (a lever): E reads D's convolutional trunk, as InfoGAN's Q does. The
    # trunk then learns only from the D loss; E's own layers from the MI and VAE losses.
    shared_trunk: bool = False
    # Not in the paper (a lever): weight of the information between the codes q(s|x) gives two
    # random affine views of each real image (trainer.losses.paired_information_loss). 0 = off.
    real_mi_weight: float = 0.0
    real_mi_balance: float = 1.0  # IIC's lambda: > 1 weighs the codes' balance more
    # Not in the paper (a lever, with real_mi_weight): an auxiliary head of E over this many
    # categories (> n_classes), trained only by the same real-data MI (IIC's over-clustering
    # head). Its finer partition shapes E's features to keep apart modes the K categories
    # could merge. Training-only: model folders leave it out. 0 = off.
    overcluster: int = 0
    # Not in the paper (a lever): after each epoch, when one category holds over 1.5/K of the
    # images and another under 0.5/K (two classes merged into one category), the small one is
    # re-seeded as a copy of the large one so the two split it (trainer.infovaegan.reseed_categories).
    reseed: bool = False
    # The views' warps (trainer.augment): "affine" (rotation, scale, shift), then optional parts
    # joined by '+': "flip" (mirrored: for data whose classes are mirror-symmetric, such as
    # clothes; not for digits), "shear" (slant and width), "stroke" (stroke thickness),
    # "contrast" (shade: gamma and gain of the intensities), "centre" (each view moved to its centre
    # of mass and scaled to one size, as MNIST's own preprocessing: position and size stop
    # mattering), "spin" (any rotation, not only +-15 degrees).
    augment: str = "affine"
    # Not in the paper (a lever): z ~ U(-z_scale, z_scale). A small noise range (ClusterGAN's
    # sigma 0.1) leaves each category a narrow mode, so the 10 categories must cover the data's
    # 10 largest modes instead of z carrying the identity.
    z_scale: float = 1.0
    # Not in the paper (a lever): False leaves out every BatchNorm of G, G2, E and D. On dSprites
    # it takes a beta-VAE from 0.37 to 0.65 (FactorVAE score); InfoVAEGAN2 gained nothing (README).
    batchnorm: bool = True
    # Not in the paper (ours, InfoVAEGAN2 only; docs/model.md): E also infers a style code w of
    # this many dims, with a N(0, 1) prior, and G2 draws from (s, c, w). The paper keeps
    # everything but s and c random, so an edit redraws a user's image from 12 numbers and keeps
    # its category only; w carries what s and c leave out (stroke width, slant, size, position),
    # so an edit keeps the writer. 0 = the paper's G2(s, c).
    style_dim: int = 0
    style_kl_weight: float = 1.0  # weight of KL(q(w|x) || N(0, 1)) in the loss of Eq. 32
    # Not in the paper (ours, InfoVAEGAN2 only): G2 draws random codes (s, c) with a real image's
    # style w; E must read those codes back off the result (Eq. 30's information term, applied to
    # G2; trains G2 only) and D takes the drawings as fakes (G2 gets Eq. 29's loss on them).
    # Without it w may carry the category too, and a category edit would keep the old digit. 0 = off.
    edit_weight: float = 0.0
    # Not in the paper (ours, InfoVAEGAN2 only): D also takes G2's reconstructions of real images
    # (with their codes) as fakes, and G2 gets Eq. 29's loss on them, as VAE-GAN (Larsen et al.
    # 2016) sharpens a VAE's drawings: a pixel likelihood alone draws the mean of what the codes
    # leave open, a blur. Weighed against Eq. 32's reconstruction, a sum over pixels. 0 = off.
    recon_adv_weight: float = 0.0
    # Who judges those reconstructions (with recon_adv_weight): "D", the joint D that also judges
    # G's samples; or "own", a second discriminator of the same build (D2, training-only) that
    # sees real images against reconstructions alone, so what D learns of G2's blur does not
    # push G's samples towards noise (bench/results/faces-validation-recon-adv-*.md).
    recon_critic: str = "D"
    # Not in the paper (ours, InfoVAEGAN2 only): Eq. 32's reconstruction is also scored by its
    # structural dissimilarity to the real image, 1 - SSIM summed over pixels
    # (losses.structural_dissimilarity), with this weight beside the likelihood's per-pixel sum.
    # A pixel likelihood pays as much for a misplaced edge as for a blurred one, so the codes drift
    # to the blur; SSIM scores local structure (as Zhao et al. 2017 train image restoration). 0 = off.
    recon_ssim_weight: float = 0.0
    # How the losses step the networks. "per-loss", the authors' code: one Adam per loss (D: Eq. 28;
    # G: Eq. 29; G and E: Eq. 30; E: Eq. 31, or E and G2: Eq. 32), each loss's gradient normalised
    # by its own Adam. "per-network" (ours): one Adam per network on the sum of its losses, where
    # the VAE loss, far the largest, sets the scale of E's steps and the MI term barely moves it.
    optimisers: str = "per-loss"
    # What InfoVAEGAN2's Eq. 32 trains. "authors" (their InfoVAE_Celeba_AdditionalGenerator.py):
    # G2 alone, from E(x)'s codes held fixed, while Eq. 31 still trains E on G's images. "joint"
    # (ours, the cpu-fast preset and both bundles): Eq. 32 trains E and G2 and replaces Eq. 31, so
    # E learns its codes from real images; the style code (style_dim) needs it.
    g2_schedule: str = "authors"
    # InfoVAEGAN2 only: the discriminators step on one iteration in d_every (on the others their
    # loss is only computed, for the log). The authors' InfoVAEGAN2 run, which continues a trained
    # InfoVAEGAN (`--init-from`), steps D on every 16th iteration (InfoVAE_Celeba_AdditionalGenerator.py):
    # --preset paper sets 16 for --family infovaegan2. 1: every iteration, as Alg. 1 does.
    d_every: int = 1
    # Not in the paper (ours): G's weights as the model folder holds them are an exponential
    # moving average of G's over the steps (as progressive GANs and StyleGAN sample), with this
    # decay, warmed up as (1 + t) / (10 + t) so a short run does not keep its first steps. G
    # itself trains as before; the average only draws samples (`infoedit sample`). 0 = off: G.
    g_average: float = 0.0
    # Not in the paper (ours): every image a discriminator judges, real or drawn, in its own step
    # and in the generators' adversarial terms, is first warped at random by these parts joined
    # by '+' ("colour", "translation", "cutout"): DiffAugment (Zhao et al. 2020). On a few
    # thousand faces D otherwise learns the training images by heart over tens of epochs and G's
    # samples turn to noise; the warp is differentiable, so G still learns from D. "" = off.
    critic_augment: str = ""
    # Not training: how many refinement steps (engine.refine) the editing commands take by default
    # for this model (their --refine), chosen on validation images for a model that ships, where
    # the encoder's codes alone redraw its images too loosely. 0 = E's codes as they are.
    refine_steps: int = 0
    model: str = "infovaegan"
    dataset: str = ""
    format_version: int = FORMAT_VERSION
    # the levers came after format 1's first folders, which trained as these values do
    ADDED_FIELDS: ClassVar[dict] = {"d_real_s": "gumbel", "shared_trunk": False, "real_mi_weight": 0.0,
                                    "z_scale": 1.0, "augment": "affine", "real_mi_balance": 1.0,
                                    "overcluster": 0, "reseed": False, "kl_c_weight": 1.0,
                                    "tc_weight": 0.0, "background": "dark", "batchnorm": True,
                                    "likelihood": "gaussian", "style_dim": 0, "style_kl_weight": 1.0,
                                    "edit_weight": 0.0, "recon_adv_weight": 0.0,
                                    "recon_ssim_weight": 0.0, "optimisers": "per-network",
                                    "g2_schedule": "joint", "recon_critic": "D",
                                    "refine_steps": 0, "nets": "dcgan", "g_average": 0.0,
                                    "crop": 1.0, "critic_augment": "", "d_every": 1}

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot build a model."""
        self.check_field_types()
        self.check_format_version(FORMAT_VERSION)
        self.check_image_format()
        for name in ("z_dim", "n_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.c_dim < 0:
            raise ValueError("c_dim must be >= 0")
        if self.c_prior not in codes.PRIORS:
            raise ValueError(f"c_prior must be one of {codes.PRIORS}, got {self.c_prior!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        if self.mi_continuous not in ("mse", "nll"):
            raise ValueError(f"mi_continuous must be 'mse' or 'nll', got {self.mi_continuous!r}")
        if self.optimisers not in OPTIMISERS:
            raise ValueError(f"optimisers must be one of {', '.join(OPTIMISERS)}, got {self.optimisers!r}")
        if self.g2_schedule not in G2_SCHEDULES:
            raise ValueError(f"g2_schedule must be one of {', '.join(G2_SCHEDULES)}, got {self.g2_schedule!r}")
        if self.d_every < 1:
            raise ValueError(f"d_every must be >= 1, got {self.d_every}")
        if self.style_dim and self.g2_schedule != "joint":
            raise ValueError("style_dim needs g2_schedule 'joint': under the authors' schedule E takes no "
                             "gradient from Eq. 32, so nothing would train the style code")
        if self.nets not in LAYOUTS:
            raise ValueError(f"nets must be one of {', '.join(LAYOUTS)}, got {self.nets!r}")
        if self.recon_critic not in RECON_CRITICS:
            raise ValueError(f"recon_critic must be one of {', '.join(RECON_CRITICS)}, got {self.recon_critic!r}")
        if self.d_real_s not in ("onehot", "gumbel"):
            raise ValueError(f"d_real_s must be 'onehot' or 'gumbel', got {self.d_real_s!r}")
        augment_parts(self.augment)
        critic_augment_parts(self.critic_augment)
        if not self.z_scale > 0:
            raise ValueError(f"z_scale must be > 0, got {self.z_scale}")
        if not self.real_mi_balance >= 1:
            raise ValueError(f"real_mi_balance must be >= 1, got {self.real_mi_balance}")
        if not self.real_mi_weight >= 0:
            raise ValueError(f"real_mi_weight must be >= 0, got {self.real_mi_weight}")
        if self.overcluster and (self.overcluster <= self.n_classes or not self.real_mi_weight > 0):
            raise ValueError(f"overcluster must be 0, or > n_classes ({self.n_classes}) with real_mi_weight > 0, "
                             f"got {self.overcluster}")
        for name in ("style_dim", "refine_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("kl_c_weight", "tc_weight", "style_kl_weight", "edit_weight", "recon_adv_weight",
                     "recon_ssim_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop must be in (0, 1], got {self.crop}")
        if not 0 <= self.g_average < 1:
            raise ValueError(f"g_average must be in [0, 1), got {self.g_average}")
        if not self.tau > 0 or not self.width > 0:
            raise ValueError("tau and width must be > 0")


def augment_parts(augment: str) -> set[str]:
    """The parts of InfoVAEGANConfig.augment; ValueError unless it reads 'affine[+part...]'."""
    parts = augment.split("+")
    if parts[0] != "affine" or not set(parts) <= set(AUGMENT_PARTS) or len(set(parts)) < len(parts):
        raise ValueError(f"augment must be 'affine' optionally followed by "
                         f"{', '.join('+' + p for p in AUGMENT_PARTS[1:])}, got {augment!r}")
    return set(parts)


def critic_augment_parts(critic_augment: str) -> list[str]:
    """The parts of InfoVAEGANConfig.critic_augment, in the order given ([] when off); ValueError
    unless each is one of CRITIC_AUGMENT_PARTS, once."""
    parts = critic_augment.split("+") if critic_augment else []
    if not set(parts) <= set(CRITIC_AUGMENT_PARTS) or len(set(parts)) < len(parts):
        raise ValueError(f"critic_augment must be '' or parts of {'+'.join(CRITIC_AUGMENT_PARTS)} joined by '+', "
                         f"got {critic_augment!r}")
    return parts


class InfoVAEGAN(CodeModel):
    def __init__(self, config: InfoVAEGANConfig):
        super().__init__()
        config.validate()
        self.config = config
        cfg = config
        self.G = Generator(cfg.z_dim + cfg.code_dim, cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm,
                           cfg.nets)
        self.D = JointDiscriminator(cfg.image_size, cfg.channels, cfg.code_dim, cfg.width, cfg.batchnorm, cfg.nets)
        shared = (self.D.trunk, self.D.trunk_features) if cfg.shared_trunk else None
        if (cfg.style_dim or cfg.edit_weight or cfg.recon_adv_weight) and type(self) is InfoVAEGAN:
            raise ValueError("style_dim, edit_weight and recon_adv_weight need G2: use --model infovaegan2")
        self.E = Encoder(cfg.image_size, cfg.channels, cfg.n_classes, cfg.c_dim, cfg.width, shared,
                         cfg.overcluster, cfg.batchnorm, cfg.style_dim, cfg.nets)
        if cfg.g_average:  # training-only: the folder's G (folder_state); see average_generator
            self.G_average = copy.deepcopy(self.G).requires_grad_(False)
            self.G_average.register_buffer("steps", torch.zeros((), dtype=torch.long))  # averaged so far

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        z, s, c = super().sample_prior(n, generator)
        return z * self.config.z_scale, s, c

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_c, sigma_c, logits_s) of q(s, c | x)."""
        return self.E(x)

    def discriminate(self, x: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.D(x, torch.cat([s, c], dim=1))

    def training_only(self) -> tuple[str, ...]:
        d = "D.head." if self.config.shared_trunk else "D."  # E may read D's trunk
        return d, "E.aux.", "G_average."

    def folder_state(self) -> dict[str, torch.Tensor]:
        """The folder's weights, G's taken from its moving average when the config keeps one and
        it has averaged any step (a model loaded from its folder has not: its G is the average)."""
        state = super().folder_state()
        if hasattr(self, "G_average") and int(self.G_average.steps) > 0:
            average = self.G_average.state_dict()
            state.update({f"G.{k}": average[k] for k in self.G.state_dict()})
        return state

    @torch.no_grad()
    def average_generator(self) -> None:
        """After a training step: G_average moves towards G by 1 - decay, the decay
        min(g_average, (1 + t) / (10 + t)) at its t-th step; BatchNorm's running statistics are G's."""
        if not hasattr(self, "G_average"):
            return
        t = int(self.G_average.steps)
        decay = min(self.config.g_average, (1 + t) / (10 + t))
        for avg, now in zip(self.G_average.parameters(), self.G.parameters()):
            avg.lerp_(now, 1 - decay)
        averaged = dict(self.G_average.named_buffers())
        for name, now in self.G.named_buffers():
            averaged[name].copy_(now)
        self.G_average.steps += 1


class InfoVAEGAN2(InfoVAEGAN):
    """InfoVAEGAN2 (Sec. 4.4): adds G2(s, c), the inverse of E, trained on real images with
    L_VAE2 (Eq. 32), which replaces the VAE loss of Eq. 31. Reconstructions use G2."""

    def __init__(self, config: InfoVAEGANConfig):
        super().__init__(config)
        cfg = config
        # Same builder as G with no noise input: G2 sees only the codes E infers ([s, c], then
        # the style code w when the config has one).
        self.G2 = Generator(cfg.code_dim + cfg.style_dim, cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm,
                            cfg.nets)
        if cfg.recon_adv_weight and cfg.recon_critic == "own":
            self.D2 = JointDiscriminator(cfg.image_size, cfg.channels, cfg.code_dim, cfg.width, cfg.batchnorm,
                                         cfg.nets)

    def reconstruction_discriminator(self) -> torch.nn.Module:
        """The discriminator that judges G2's reconstructions (recon_adv_weight): D2 or D."""
        return getattr(self, "D2", self.D)

    def training_only(self) -> tuple[str, ...]:
        return (*super().training_only(), "D2.")

    def encode_with_style(self, x: torch.Tensor) -> tuple:
        """(mu_c, sigma_c, logits_s, mu_w): encode's codes and the mean style code (None without one)."""
        if not self.config.style_dim:
            return super().encode_with_style(x)
        mu, sigma, logits, _, style = self.E.forward_with_aux(x)
        return mu, sigma, logits, style[0]

    def generate2(self, s: torch.Tensor, c: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.generate2_logits(s, c, w))

    def generate2_logits(self, s: torch.Tensor, c: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """G2's output before its sigmoid. ``w`` None: the style prior's mean, 0 (when the model
        has a style code)."""
        if w is None:
            w = s.new_zeros(s.shape[0], self.config.style_dim)
        return self.G2.logits(s.new_zeros(s.shape[0], 0), torch.cat([s, c, w], dim=1))
