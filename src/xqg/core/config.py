"""Config helpers shared by the stages."""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

T = TypeVar("T")


def plain(value: Any) -> Any:
    """Plain dicts/lists (resolved) from an OmegaConf node; anything else unchanged. Stages take either, so they
    work from Hydra configs and from plain Python alike."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def dataclass_from_mapping(
    cls: type[T], values: Any, *, what: str, field: str, tuples: tuple[str, ...] = ()
) -> T:
    """``cls(**values)`` for a settings dataclass, where a misspelt key is one clear error naming the config
    field and the known keys (never silently ignored); list values named in ``tuples`` become tuples."""
    from dataclasses import fields

    from xqg.core.errors import XqgInputError

    given = dict(plain(values) or {})
    known = sorted(f.name for f in fields(cls))  # type: ignore[arg-type]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise XqgInputError(f"unknown {what} option(s) {unknown}; known: {known}", field=field)
    for key in tuples:
        if key in given and given[key] is not None:
            given[key] = tuple(given[key])
    return cls(**given)
