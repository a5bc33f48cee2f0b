"""infoedit: learn disentangled image codes with InfoVAEGAN and edit images with them."""

__version__ = "0.1.0"
