"""`infoedit train`: dataset defaults, model construction and the call into the loop."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Collection

import torch

from infoedit import hub
from infoedit.datasets import rotated_names
from infoedit.models import FAMILIES
from infoedit.models.infovaegan import G2_FIELDS
from trainer import checkpoint, data
from trainer.config import TrainConfig
from trainer.loop import fit
from trainer.stopping import StopSignals, TrainingStopped

# Named settings over the dataset defaults: "paper" is the paper-faithful configuration;
# "cpu-fast" is our tuned one (bench/results/levers*.md), at 0.3 width so a laptop CPU trains
# it in minutes. Each entry: the model family used when --family is not given ("family"),
# model-config overrides ("model") and TrainConfig overrides ("train").
PRESETS = {
    # The authors' CelebA frame: the central 128 px of the aligned faces' 178 (their get_image).
    # InfoVAEGAN2 (--family infovaegan2, a G2 field, so InfoVAEGAN leaves it out): D steps on one
    # iteration in 16, as their InfoVAE_Celeba_AdditionalGenerator.py has it.
    "paper": {"family": "infovaegan", "model": {"d_every": 16}, "datasets": {"celeba": {"crop": 128 / 178}},
              "train": {}},
    # InfoVAEGAN2 (G2 reconstructs real images), narrow noise (z_scale), real-data MI between
    # two views (real_mi_weight), a weak continuous MI and re-seeding of a category that took
    # two classes (reseed): on MNIST about 2 runs in 3 give each digit its own category (97%);
    # --restarts R keeps the most informative of R: with 5, 97.4% over 5 seeds, none below 96.8%
    # (bench/results/table1-cpu-fast-reseed-r5-mnist.md).
    # real_mi_balance 2 with mi_weight_s 5 rescued one stuck seed but cost another and the
    # samples' quality, so it is not part of the preset (bench/results/levers.md).
    # Edits that keep the image (docs/model.md): a 16-d style code w that E infers and G2 draws
    # with, the edit terms that keep G2 drawing the codes it is given in any style, and the
    # Bernoulli likelihood, whose reconstructions of MNIST were sharper (SSIM 0.82 against 0.64
    # with the squared error, in one-epoch trial runs). edit_weight 3 over 1: bench/results/edits-sweep.md;
    # the shipped models: bench/results/edits.md.
    "cpu-fast": {"family": "infovaegan2",
                 # One Adam per network (ours; the bundled models were tuned and trained so), not
                 # the authors' one per loss; at 64 px DCGAN's networks, 3-6x cheaper a step than the authors'.
                 "model": {"width": 0.3, "mi_weight_c": 0.1, "z_scale": 0.1, "real_mi_weight": 20.0,
                           "reseed": True, "style_dim": 16, "edit_weight": 3.0, "likelihood": "bernoulli",
                           "optimisers": "per-network", "g2_schedule": "joint", "nets": "dcgan"},
                 # Fashion-MNIST's categories otherwise mix pullovers, coats and shirts across three
                 # categories: views that also differ in shade (+contrast) and a stronger pull to
                 # balanced, confident categories (bench/results/levers-fashion-contrast.md).
                 # The bundled model was trained 5 more epochs with --set style_kl_weight=0.1 (test SSIM
                 # 0.682 -> 0.737, traversals still moving 0.10-0.15 of the pixels end to end;
                 # bench/results/edits-fashion-style-kl-0.1.md); 0.03 and 0.01 let the style code take
                 # over the continuous code's work (0.01-0.006). Untried from scratch, so not here.
                 "datasets": {"fashion-mnist": {"real_mi_balance": 2.0, "mi_weight_s": 5.0,
                                                "augment": "affine+contrast"},
                              # faces: more detail to carry (identity, hair, background) than a
                              # digit's stroke: a 128-d style code; views mirrored (a face's mirror
                              # is a face). No reseed: on faces it fired every epoch and kept
                              # restarting a category. A critic of its own for G2's reconstructions
                              # (weight 30), or they are one blurred mean face. 1,250 steps, judged
                              # on training faces 009001 on (bench/results/faces-validation*.md):
                              # reconstructions judged faces 0.81 at 0.51x the real faces' sharpness
                              # (0.70 at 0.19x without the critic), grey SSIM 0.558 (0.585), samples
                              # 0.66 at 1.4x (0.60 at 3.5x), 10 codes that move the face. D as their
                              # critic: 0.77 / 0.518, and samples 0.39 at 9.3x. A 128-d code with its
                              # prior weighed 0.1 drew closer (0.67 / 0.612) but took the codes'
                              # work: they moved 0.006 of the pixels, no edit at all.
                              # The folder's G a moving average of G's weights (decay 0.999): over
                              # the hour G swings and its samples fell to 0.41 judged faces at 2.6x
                              # the real sharpness; averaged, 0.75 at 1.55x after 60 minutes and 0.71
                              # at 1.18x after 10 (0.55 at 1.49x), the edits (G2's) as they were
                              # (bench/results/faces-validation-g-average-0.999-*.md).
                              # Eq. 32 also scored by SSIM (weight 0.2): grey SSIM of the validation
                              # reconstructions 0.624 after 10 minutes (0.545) and 0.700 after 60
                              # (0.618), at 0.46x / 0.66x the real sharpness (0.53x / 0.62x); samples
                              # 0.68 / 0.71 (0.71 / 0.75); 0.3 and 0.1 at 10 minutes: 0.632 at 0.48x,
                              # 0.585 at 0.51x (bench/results/faces-validation-recon-ssim-*.md).
                              "celeba": {"style_dim": 128, "augment": "affine+flip", "reseed": False,
                                         "recon_adv_weight": 30.0, "recon_critic": "own", "g_average": 0.999,
                                         "recon_ssim_weight": 0.2}},
                 "train": {}},
}


UNTIL_TIME_EPOCHS = 1000  # the epochs of a run given --max-minutes and no --epochs


def preset_model(preset: str, dataset: str, family: str | None = None) -> dict:
    """The model fields a preset sets for a dataset: its own, then its dataset-specific ones;
    for ``family``, only those it has (cpu-fast's MI weight means nothing to a VAE, its style
    code nothing to an InfoVAEGAN without G2)."""
    fields_set = {**PRESETS[preset]["model"], **PRESETS[preset].get("datasets", {}).get(dataset, {})}
    if family is None:
        return fields_set
    known = {f.name for f in fields(FAMILIES[family][0])} - (set(G2_FIELDS) if family == "infovaegan" else set())
    return {k: v for k, v in fields_set.items() if k in known}


def defaults_for(dataset: str) -> dict:
    """The dataset's own defaults (infoedit.datasets); DataError for an unknown name."""
    return data.spec_of(dataset).defaults()


def train(dataset: str, out: Path, model_name: str | None = None, data_root: str | None = None,
          overrides: dict | None = None, tc: TrainConfig | None = None, progress: bool = True,
          preset: str = "paper", source_class: int | None = None, restarts: int = 1,
          probe_epochs: float = 2.0) -> dict:
    """Build the model for ``dataset`` (defaults, then preset, then overrides), train it,
    return the last record. Explicit overrides win over the preset; ``model_name`` None takes
    the preset's family.

    ``restarts`` > 1: train that many runs (seeds tc.seed, tc.seed + 1, ...) for
    ``probe_epochs`` each in out/restarts/, then continue the one whose codes carry the most
    real-data information (lowest mean mi_real over its last epoch), with no label involved.

    ``source_class``: the digit / item of a rotated dataset (default: its spec's).
    """
    if preset not in PRESETS:
        raise ValueError(f"--preset {preset}: unknown; known: {', '.join(sorted(PRESETS))}")
    tc = tc or TrainConfig()
    settings = defaults_for(dataset)
    epochs = settings.pop("epochs")
    if tc.epochs is None:  # a time budget without an epoch count: train until the time is up
        tc.epochs = epochs if tc.max_seconds is None else max(epochs, UNTIL_TIME_EPOCHS)
    for key, value in PRESETS[preset]["train"].items():
        setattr(tc, key, value)
    model_name = model_name or PRESETS[preset]["family"]
    if model_name not in FAMILIES:
        raise ValueError(f"--family {model_name}: unknown; known: {', '.join(sorted(FAMILIES))}")
    config_cls, model_cls = FAMILIES[model_name]
    if config_cls.LEARNS_LABELS and dataset not in rotated_names():  # before any field's own check
        raise ValueError(f"--family {model_name} learns the rotation angles of {' or '.join(rotated_names())}, "
                         f"not {dataset}")
    known = {f.name for f in fields(config_cls)}
    # Dataset defaults a family has no field for do not apply to it (a VAE has no noise z_dim,
    # beta-VAE no K) ...
    settings = {k: v for k, v in settings.items() if k in known}
    # ... a preset tunes the fields a family has ...
    settings.update(preset_model(preset, dataset, model_name))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in given.keys() - known:  # ... but an option the user typed must not vanish silently
        raise ValueError(f"--{key.replace('_', '-')} does not apply to --family {model_name}")
    settings.update(given)
    if "source_class" in known and dataset in rotated_names():  # recorded, so evaluate rebuilds the same data
        settings["source_class"] = data.spec_of(dataset).source_class if source_class is None else source_class
    config = config_cls(dataset=dataset, model=model_name, **settings)
    config.validate()
    ds = data.load(dataset, data_root, limit=tc.limit, progress=progress, source_class=source_class,
                   image_size=config.image_size, channels=config.channels, crop=config.crop)
    if config.channels == 1 and "background" not in given:  # what --invert auto matches inputs to
        config = replace(config, background=data.background(ds))
    if restarts > 1:
        tc = best_of_restarts(model_cls, config, ds, tc, Path(out), restarts, probe_epochs, progress)
    torch.manual_seed(tc.seed)
    model = model_cls(config)
    if tc.init_from:
        if restarts > 1:
            raise ValueError("--init-from starts one run from a model's weights; it cannot be combined with --restarts")
        warm_start(model, tc.init_from)
    return fit(model, ds, tc, out, progress=progress)


def warm_start(model, source: str) -> list[str]:
    """Copy a trained model's weights into ``model`` wherever they fit, and return the names of
    the tensors left as initialised. A tensor of the same name and shape is copied; a layer whose
    input grew (G2's first layer when a style code is added: its columns come last) gets the old
    columns and zeros for the new ones, so it draws as before until trained. A discriminator is
    not in a model folder: it starts afresh."""
    old = hub.from_pretrained(source)
    for name in ("image_size", "channels", "n_classes", "c_dim"):
        if getattr(old.config, name, None) != getattr(model.config, name, None):
            raise ValueError(f"--init-from {source}: its {name} is {getattr(old.config, name, None)}, "
                             f"this run's {getattr(model.config, name, None)}")
    # the old model's training-only networks (a discriminator) were not in its folder: not weights to keep
    old_state = {k: v for k, v in old.state_dict().items() if not k.startswith(old.training_only())}
    fresh = []
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            # G's moving average (g_average) starts as the G it averages
            have = old_state.get(f"G.{name.removeprefix('G_average.')}" if name.startswith("G_average.") else name)
            if have is not None and have.shape == tensor.shape:
                tensor.copy_(have)
            elif have is not None and tensor.dim() == 2 and have.shape[0] == tensor.shape[0] \
                    and have.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, :have.shape[1]] = have
            else:
                fresh.append(name)
    return fresh


def best_of_restarts(model_cls, config, ds, tc: TrainConfig, out: Path, restarts: int, probe_epochs: float,
                     progress: bool) -> TrainConfig:
    """Probe ``restarts`` seeds; return tc set to resume the most informative probe.

    Why: whether a run's categories become the classes or merge two of them is decided early
    and varies run to run; the real-data information (trainer.losses.paired_information_loss)
    separates the two kinds after about two epochs (bench/results/restarts.md).
    """
    if getattr(config, "real_mi_weight", 0) <= 0:
        raise ValueError("--restarts selects by the real-data MI: it needs real_mi_weight > 0 (e.g. --preset cpu-fast)")
    if tc.resume is not None:
        raise ValueError("--restarts starts new runs; it cannot be combined with --resume")
    probe_steps = max(1, int(probe_epochs * (len(ds) // tc.batch_size)))
    if tc.max_steps is not None:  # a probe never trains past the run's own end
        probe_steps = min(probe_steps, tc.max_steps)
    scores = {}
    for seed in range(tc.seed, tc.seed + restarts):
        folder = out / "restarts" / f"seed{seed}"
        probe = replace(tc, seed=seed, max_steps=probe_steps, eval_every=None)
        torch.manual_seed(seed)
        try:
            record = fit(model_cls(config), ds, probe, folder, progress=progress)
        except TrainingStopped as stop:  # --resume on a probe would make it the run: start over instead
            if stop.exit_code not in StopSignals.CODES.values():  # a loss went NaN: its message says so
                raise
            raise TrainingStopped(f"interrupted while probing seed {seed} of --restarts; {out} holds no model "
                                  "yet: run the same command again to probe anew", stop.exit_code) from None
        scores[seed] = (record["mi_real"], folder)
    best = min(scores, key=lambda s: scores[s][0])
    summary = {str(s): {"mi_real": v, "chosen": s == best} for s, (v, _) in scores.items()}
    hub.atomic_write_bytes(out / "restarts" / "choice.json", (json.dumps(summary, indent=2) + "\n").encode())
    probed = [min(scores), max(scores)]  # for the model card; the chosen one is the returned seed
    return replace(tc, seed=best, resume=scores[best][1], extra={**tc.extra, "restarts": probed})


def resume_training(dataset: str, out: Path, model_name: str | None = None, data_root: str | None = None,
                    overrides: dict | None = None, tc: TrainConfig | None = None, progress: bool = True,
                    preset: str | None = None, given: Collection[str] = ()) -> dict:
    """Continue the run saved in the folder ``tc.resume`` with its own model config and run
    settings, so no flag need be repeated. Model settings that are given (``model_name``,
    ``preset``, non-None ``overrides``) must agree with the run's; TrainConfig fields named in
    ``given`` are kept as set (fit refuses them if they differ from the run's)."""
    from infoedit.models import build, config_from_dict

    src = Path(tc.resume)
    state = checkpoint.read_state(src)
    try:  # the checkpoint's copy: config.json is first written at the end of epoch 1
        config = config_from_dict(dict(state.get("model_config") or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{src}: the checkpoint's model config is unusable ({exc})") from None
    asked = {k: v for k, v in (overrides or {}).items() if v is not None}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"--preset {preset}: unknown; known: {', '.join(sorted(PRESETS))}")
        asked = {**preset_model(preset, dataset, config.model), **asked}
    asked.update(dataset=dataset, **({"model": model_name} if model_name else {}))
    for key, value in asked.items():
        if getattr(config, key, None) != value:
            raise ValueError(f"{src}: the run has {key}={getattr(config, key, None)!r}, not {value!r} "
                             "(a resumed run keeps its model settings)")
    run_tc = state.get("train_config") or {}
    for key in (*checkpoint.RUN_SETTINGS, "limit", "init_from"):  # init_from: the card says how the run began
        if key not in given and key in run_tc:
            setattr(tc, key, run_tc[key])
    if tc.epochs is None:
        tc.epochs = run_tc.get("epochs")
    if tc.max_steps is None and "max_steps" not in given:  # the run's end, as its epochs are (a time
        tc.max_steps = run_tc.get("max_steps")  # budget, --max-minutes, is this invocation's own)
    if tc.max_steps is not None and state.get("step", 0) >= tc.max_steps:
        raise ValueError(f"{src}: the run has done {state.get('step')} of {tc.max_steps} step(s); "
                         "to train on, ask for more with --max-steps")
    tc.extra = {**(run_tc.get("extra") or {}), **tc.extra}  # e.g. which probe a --restarts run continued
    first = run_tc.get("command") or ""
    if first and tc.command and tc.command != first:  # the card keeps the command the run began with
        tc.extra["resumed_with"] = [*(tc.extra.get("resumed_with") or []), tc.command]
        tc.command = first
    extra = {"source_class": config.source_class} if hasattr(config, "source_class") else {}
    ds = data.load(dataset, data_root, limit=tc.limit, progress=progress, image_size=config.image_size,
                   channels=config.channels, crop=config.crop, **extra)
    torch.manual_seed(tc.seed)
    return fit(build(config), ds, tc, out, progress=progress)
