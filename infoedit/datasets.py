"""Every dataset infoedit knows, one entry each: what its images are, how it is read, its label
names, how a photo is framed to look like it, and a model's defaults for it.

Adding a dataset is adding an entry here (and, for a new ``loader`` kind, a reader in
``trainer.data``). The inference package reads the framing and the label names; the trainer
reads the rest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: str                  # how trainer.data reads it: "idx", "rotated", "dsprites" or "folder"
    image_size: int
    channels: int
    n_classes: int               # the default K of the discrete code
    c_dim: int                   # the default number of continuous codes
    epochs: int                  # the default training length
    z_dim: int | None = 100      # None: the model config's own default
    framing: str = "none"        # how --frame auto makes a photo look like these images (infoedit.framing)
    labelled: bool = False       # a labelled test split, so evaluate can score clustering
    class_names: tuple[str, ...] = ()  # the labels' names, when they name things
    idx_folder: str = ""         # loader "idx": torchvision's folder name (MNIST/raw/...)
    source: str = ""             # loader "rotated": the dataset whose images are rotated
    source_class: int = 0        # loader "rotated": the default class (--digit / --item)
    folders: tuple[str, ...] = ()  # loader "folder": glob patterns of the image folder under --data
    crop_white: bool = False     # loader "folder": crop each image to its non-white bounding box
    hold_out: bool = False       # loader "folder": set a tenth of the images apart (trainer.data.hold_out)

    def defaults(self) -> dict:
        """The model and run settings a dataset starts from, before any preset or option."""
        out = dict(image_size=self.image_size, channels=self.channels, n_classes=self.n_classes,
                   c_dim=self.c_dim, epochs=self.epochs)
        if self.z_dim is not None:
            out["z_dim"] = self.z_dim
        return out


_DIGITS = tuple(str(d) for d in range(10))
_CLOTHES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")

# framing: MNIST's digits fill a 20x20 box and sit by their centre of mass in 28x28 (LeCun et
# al.) -> "digit"; Fashion-MNIST's products are trimmed and their longer side fills the frame
# (Xiao et al. 2017) -> "fill"; CelebA: a face found in the photo, aligned as CelebA's -> "face".
DATASETS = {spec.name: spec for spec in (
    DatasetSpec("mnist", "idx", 28, 1, 10, 2, 20, z_dim=62, framing="digit", labelled=True,
                class_names=_DIGITS, idx_folder="MNIST"),
    DatasetSpec("fashion-mnist", "idx", 28, 1, 10, 2, 20, z_dim=62, framing="fill", labelled=True,
                class_names=_CLOTHES, idx_folder="FashionMNIST"),
    # Sec. 5.1: one class rotated to 10 angles (the labels), a 10-d continuous code, 100 epochs.
    # No z_dim: supervised models have no noise, an InfoVAEGAN takes its config default (62).
    DatasetSpec("rotated-mnist", "rotated", 28, 1, 10, 10, 100, z_dim=None, framing="digit", labelled=True,
                source="mnist", source_class=3),  # the paper's digit 3
    DatasetSpec("rotated-fashion", "rotated", 28, 1, 10, 10, 100, z_dim=None, framing="fill", labelled=True,
                source="fashion-mnist", source_class=0),  # a T-shirt
    DatasetSpec("dsprites", "dsprites", 64, 1, 3, 10, 1),
    DatasetSpec("celeba", "folder", 64, 3, 10, 10, 20, framing="face", folders=("img_align_celeba*",),
                hold_out=True),  # the paper holds out 10% of CelebA (Sec. 5)
    DatasetSpec("chairs", "folder", 64, 3, 10, 10, 20, folders=("rendered_chairs", "*/rendered_chairs"),
                crop_white=True),  # the renders sit on a wide white margin
    DatasetSpec("folder", "folder", 64, 3, 10, 10, 20),  # folder:PATH, any folder of images
)}
NAMES_HELP = ", ".join(n for n in DATASETS if n != "folder") + " or folder:PATH"


class UnknownDataset(ValueError):
    pass


def spec_for(name: str) -> DatasetSpec:
    """The entry of a dataset name (``folder:PATH`` -> the "folder" entry); UnknownDataset, one
    line listing the names, for any other."""
    key = "folder" if name.startswith("folder:") else name
    if key not in DATASETS:
        raise UnknownDataset(f"{name}: unknown dataset; use {NAMES_HELP}")
    return DATASETS[key]


def framing(name: str) -> str:
    """How --frame auto frames a photo for a model trained on ``name``: "digit", "fill",
    "face", or "none" (names this infoedit does not know included)."""
    return DATASETS[name].framing if name in DATASETS else "none"


def rotated_names() -> list[str]:
    return [n for n, s in DATASETS.items() if s.loader == "rotated"]


def labelled_names() -> list[str]:
    return [n for n, s in DATASETS.items() if s.labelled]
