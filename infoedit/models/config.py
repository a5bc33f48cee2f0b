"""What every model config shares: JSON round trip with strict field checking."""

from __future__ import annotations

from dataclasses import asdict, fields


class ConfigMixin:
    """For @dataclass configs with a ``validate()`` that raises ValueError."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The config a config.json holds; ValueError on unknown, missing or invalid fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in data)
        if missing:
            raise ValueError(f"missing config field(s): {', '.join(missing)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg
