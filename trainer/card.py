"""The model card (a model folder's README.md): what was trained, how, and what of it is the
paper's method and what is not."""

from __future__ import annotations

from dataclasses import fields

from infoedit.datasets import framing
from trainer.config import TrainConfig


def restarts_note(tc: TrainConfig) -> str:
    """Why a --restarts run's seed is not the command's: the probe it continued."""
    if not tc.extra.get("restarts"):
        return ""
    first, last = tc.extra["restarts"]
    return (f" (the probe --restarts continued: of seeds {first}-{last}, the lowest mi_real after its probe; "
            "restarts/choice.json)")


def model_card(model, tc: TrainConfig, summary: dict, held_out: tuple | None = None) -> str:
    """The model folder's README.md; ``held_out``: (held out, of) an unlabelled folder's images
    (trainer.data.hold_out)."""
    cfg = model.config
    lines = [f"---\nlibrary_name: infoedit\ntags: [{cfg.model}, disentanglement]\n---\n",
             f"# {cfg.model} on {cfg.dataset}\n",
             f"A `{cfg.model}` model trained with infoedit, the command-line tool for InfoVAEGAN "
             "(Ye & Bors, Information Sciences 2021) and its baselines.\n",
             f"- images: {cfg.image_size}x{cfg.image_size}, {cfg.channels} channel(s)"
             + (f", {cfg.background} background (`--invert auto` matches inputs to it)" if cfg.channels == 1 else "")
             + (f", cut to the central {cfg.crop:.2f} of each image's centre square first"
                if cfg.crop < 1 else ""),
             f"- codes: z {getattr(cfg, 'z_dim', 0)}, discrete s K={getattr(cfg, 'n_classes', 0)}, "
             f"continuous c {cfg.c_dim} ({getattr(cfg, 'c_prior', 'normal')} prior)",
             f"- command: `{tc.command}`" if tc.command else "- command: (library call)",
             f"- seed: {tc.seed}" + restarts_note(tc),
             f"- trained: {summary.get('steps', 0)} steps, {summary.get('epochs_done', 0):.2f} epochs, "
             f"{summary.get('seconds', 0):.0f} s on {summary.get('device', '?')}"]
    lines.append(method_line(cfg))
    if tc.init_from:
        lines.append(f"- started from the weights of `{tc.init_from}` (`--init-from`; trainer.train.warm_start)")
    if tc.extra.get("resumed_with"):
        lines.append("- resumed with: " + "; ".join(f"`{c}`" for c in tc.extra["resumed_with"]))
    if summary.get("test_acc") is not None:
        how = "argmax q(s|x) against the labels" if cfg.LEARNS_LABELS else \
            "unsupervised, Hungarian-matched argmax q(s|x)"
        lines.append(f"- held-out accuracy ({how}): "
                     f"{100 * summary['test_acc']:.2f}% on {summary.get('test_n')} test images")
    if held_out:
        count, total = held_out
        lines.append(f"- held out: {count} of {total} images, not trained on (those whose file name's CRC-32 is "
                     "0 mod 10, `trainer.data.held_out_name`: the same faces under any --limit)")
    if cfg.channels == 1 and framing(cfg.dataset) != "none":
        lines.append("- photos and scans (ink on paper, plain, ruled or squared): the editing commands' `--frame auto`, "
                     f"the default, cuts the object out and frames it as {cfg.dataset}'s images are framed")
    lines.append("\nLoad with `infoedit.hub.from_pretrained(path_or_repo_id)` or any `infoedit` command's `--model`.\n")
    return "\n".join(lines)


# What a model's own data and size set, not its method: left out of the card's method line.
FORMAT_FIELDS = ("image_size", "channels", "background", "crop", "z_dim", "n_classes", "c_dim", "width", "model",
                 "dataset", "format_version", "source_class")


def method_line(cfg) -> str:
    """The card's line saying what is the paper's and what is not: the config fields whose values
    differ from the family's defaults (which are its paper's method)."""
    defaults = type(cfg)()
    same = FORMAT_FIELDS + (("nets",) if cfg.image_size == 28 else ())  # one network layout at 28 px
    changed = [f"{f.name} {getattr(cfg, f.name)}" for f in fields(cfg)
               if f.name not in same and getattr(cfg, f.name) != getattr(defaults, f.name)]
    if not changed:
        return f"- method: {cfg.model} as its paper states it (infoedit's defaults for the family)"
    return (f"- method: {cfg.model} as its paper states it, with settings that are not the paper's "
            f"(infoedit's levers, docs/model.md): {', '.join(changed)}")
