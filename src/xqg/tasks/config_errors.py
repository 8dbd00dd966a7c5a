"""Config errors (Hydra composition, OmegaConf resolution) as one line naming the key, instead of Hydra's
multi-line report or a traceback."""

from __future__ import annotations

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException


def config_error_line(e: BaseException) -> str | None:
    """One line for an error in composing or resolving the config (a value of the wrong type, a misspelt key or
    group option, an override that does not parse, a broken interpolation), naming the key; None for any other
    error. Used by :func:`xqg.tasks.entrypoints._guarded` and the entry scripts' guard
    (:func:`xqg.tasks.targets.run_entry_point`)."""
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__
    if isinstance(cause, OmegaConfBaseException) and isinstance(e, OmegaConfBaseException | HydraException):
        message = (getattr(cause, "msg", None) or str(cause)).strip().splitlines()[0]
        key = getattr(cause, "full_key", None)
        return f"field '{key}': {message}" if key else message
    if not isinstance(e, HydraException):
        return None
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    if isinstance(e, MissingConfigException) and any(x.startswith("Available options") for x in lines):
        start = next(i for i, x in enumerate(lines) if x.startswith("Available options")) + 1
        options = [x for x in lines[start:] if not x.startswith(("Config search path", "provider="))]
        return f"{lines[0]} (available: {', '.join(options)})"
    if isinstance(e, OverrideParseException):
        return "; ".join(lines[:2])
    return lines[0] if lines else None
