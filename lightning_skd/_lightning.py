"""The one place lightning_skd imports Lightning from: ``pytorch_lightning`` or ``lightning.pytorch``, chosen once.

Lightning ships the same code under two package names: ``pytorch_lightning`` (the ``pytorch-lightning`` package) and
``lightning.pytorch`` (the ``lightning`` package). Their classes are distinct: a ``lightning.pytorch.Trainer`` rejects a
``pytorch_lightning.LightningModule`` and a ``lightning.pytorch`` ``LightningCLI`` rejects a ``pytorch_lightning``
callback. A library built on Lightning therefore has to build on the package its user's Trainer comes from. This
module picks it **once, when lightning_skd first imports Lightning** (the package root loads lazily, so that is the
first use of a name that needs Lightning: ``lightning_skd.SelfKDCallback``, a submodule, a LightningCLI class path),
by the first rule that applies:

1. The environment variable ``LIGHTNING_SKD_NAMESPACE``, if set: ``pytorch_lightning`` or ``lightning.pytorch``
   (any other value is an error).
2. ``lightning.pytorch`` if it is already imported and ``pytorch_lightning`` is not (``import lightning.pytorch as L``
   or ``import lightning as L`` before lightning_skd's first use).
3. ``pytorch_lightning`` if it is installed (the default), else ``lightning.pytorch``.

Every other module of the package imports its Lightning names from here (``from lightning_skd._lightning import
Callback, pl, rank_zero_info``), so callbacks, modules, DataModules and the ``lightning-skd`` command all subclass the
chosen package's classes. The choice is public as ``lightning_skd.LIGHTNING_NAMESPACE``. A fresh process (a DDP rank
launched by Lightning, a ``lightning-skd`` command, a ``spawn`` worker) chooses again by the same rules: set the
environment variable to make every process of a run use ``lightning.pytorch`` whatever it imports first.

Where a mix is still possible (``import lightning_skd`` first, then a ``lightning.pytorch.Trainer``), the callbacks
refuse the other package's Trainer in ``setup`` (:func:`check_trainer`), saying which package lightning_skd chose,
why, and how to choose the other. The other package's Trainer rejects lightning_skd's modules and DataModules with an
error of its own before any of their hooks runs (``TypeError: model must be a LightningModule ...``), so they warn
instead when constructed while the other package is imported too (:func:`warn_if_mixed`, once per process, unless
the environment variable made the choice). The user-facing account is docs/namespaces.md.

Example:
    >>> from lightning_skd._lightning import NAMESPACE, Trainer, pl
    >>> NAMESPACE in ("pytorch_lightning", "lightning.pytorch") and Trainer is pl.Trainer
    True

"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from lightning_skd._warnings import LightningSKDWarning

#: The environment variable that forces the choice.
ENV_VARIABLE = "LIGHTNING_SKD_NAMESPACE"
#: The two packages lightning_skd can build on, the default first.
NAMESPACES = ("pytorch_lightning", "lightning.pytorch")


def _installed(namespace: str) -> bool:
    """Whether the package providing ``namespace`` is installed, without importing anything.

    ``find_spec("lightning.pytorch")`` would import ``lightning``, whose ``__init__`` imports ``lightning.pytorch``:
    only the top-level name is looked up.
    """
    return importlib.util.find_spec(namespace.partition(".")[0]) is not None


def choose_namespace(
    environ: Mapping[str, str] = os.environ,
    imported: Mapping[str, object] = sys.modules,
    installed: Callable[[str], bool] = _installed,
) -> tuple[str, str]:
    """The Lightning package to build on, and why (the rules of the module's docstring, in order).

    Args:
        environ: The environment (``LIGHTNING_SKD_NAMESPACE``).
        imported: The modules imported so far.
        installed: Whether a package can be imported.

    Returns:
        ``(namespace, reason)``: ``"pytorch_lightning"`` or ``"lightning.pytorch"``, and a phrase for messages.

    Raises:
        ValueError: ``LIGHTNING_SKD_NAMESPACE`` holds another value.
        ImportError: The package it names, or both packages, are not installed.

    Example:
        >>> choose_namespace(environ={}, imported={"lightning.pytorch": None}, installed=lambda name: True)
        ('lightning.pytorch', 'lightning.pytorch was imported before lightning_skd')
        >>> choose_namespace(environ={}, imported={}, installed=lambda name: True)[0]
        'pytorch_lightning'

    """
    requested = environ.get(ENV_VARIABLE)
    if requested is not None:
        if requested not in NAMESPACES:
            raise ValueError(
                f"The environment variable {ENV_VARIABLE} must be one of {', '.join(NAMESPACES)} (the Lightning "
                f"package lightning_skd builds on), got {requested!r}"
            )
        if not installed(requested):
            package = "pytorch-lightning" if requested == "pytorch_lightning" else "lightning"
            raise ImportError(
                f"{ENV_VARIABLE}={requested} but {requested} cannot be imported: install the {package!r} package or "
                f"unset {ENV_VARIABLE}"
            )
        return requested, f"set by {ENV_VARIABLE}"
    if "lightning.pytorch" in imported and "pytorch_lightning" not in imported:
        return "lightning.pytorch", "lightning.pytorch was imported before lightning_skd"
    if installed("pytorch_lightning"):
        return "pytorch_lightning", "the default"
    if installed("lightning.pytorch"):
        return "lightning.pytorch", "the only Lightning package installed"
    raise ImportError("lightning_skd needs Lightning: install 'pytorch-lightning' (or 'lightning')")


NAMESPACE, _REASON = choose_namespace()
_OTHER = NAMESPACES[1 - NAMESPACES.index(NAMESPACE)]
_CHOSEN_BY_USER = ENV_VARIABLE in os.environ
#: The chosen package itself (``pl.Trainer``, ``pl.LightningModule`` in annotations).
pl = importlib.import_module(NAMESPACE)

#: The Lightning names the package uses -> the submodule of the chosen package they come from. Imported on first
#: use (``from lightning_skd._lightning import LightningCLI`` imports ``<namespace>.cli`` then, not before).
_NAMES = {
    "Callback": "",
    "LightningDataModule": "",
    "LightningModule": "",
    "Trainer": "",
    "BasePredictionWriter": "callbacks",
    "ArgsType": "cli",
    "LRSchedulerCallable": "cli",
    "LightningArgumentParser": "cli",
    "LightningCLI": "cli",
    "OptimizerCallable": "cli",
    "UnrepeatedDistributedSampler": "overrides.distributed",
    "rank_zero_info": "utilities",
    "rank_zero_only": "utilities",
    "rank_zero_warn": "utilities",
    "is_overridden": "utilities.model_helpers",
}
__all__ = [
    "ENV_VARIABLE",
    "NAMESPACE",
    "NAMESPACES",
    "check_trainer",
    "choose_namespace",
    "pl",
    "warn_if_mixed",
    *sorted(_NAMES),
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from the chosen package on first use (PEP 562)."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(".".join(part for part in (NAMESPACE, _NAMES[name]) if part))
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


def check_trainer(trainer: Any, owner: str) -> None:
    """Fail early, with the fix, when ``trainer`` is the other Lightning package's Trainer.

    Anything else passes (the chosen package's Trainer, a test double): only a real mix is an error.

    Args:
        trainer: The Trainer an object of lightning_skd is attached to.
        owner: The object's class name, for the message.

    Raises:
        TypeError: ``trainer`` is a Trainer of the Lightning package lightning_skd did not choose.

    Example:
        >>> check_trainer(None, "SelfKDCallback")  # not a Trainer of the other package: nothing to say

    """
    other_trainer = getattr(sys.modules.get(_OTHER), "Trainer", None)
    if isinstance(trainer, pl.Trainer) or other_trainer is None or not isinstance(trainer, other_trainer):
        return
    raise TypeError(
        f"{owner} is attached to a {_OTHER}.Trainer, but lightning_skd was imported on {NAMESPACE} ({_REASON}): its "
        f"callbacks, modules and DataModules subclass {NAMESPACE} classes and must not be mixed with {_OTHER}. "
        f"Use {NAMESPACE}.Trainer, or, to use lightning_skd with {_OTHER}, {_how_to_switch()}."
    )


_warned_mix = False


def warn_if_mixed(owner: str) -> None:
    """Warn (once per process) when the other Lightning package is imported too and the user did not choose.

    A Trainer of the other package rejects lightning_skd's modules and DataModules with an error of its own before
    any of their code runs; they call this when constructed, so that the cause and the fix come first.
    ``LIGHTNING_SKD_NAMESPACE`` set (to either value) silences it: the choice is then the user's.

    Args:
        owner: The class being constructed, for the message.

    """
    global _warned_mix
    if _warned_mix or _CHOSEN_BY_USER or _OTHER not in sys.modules:
        return
    _warned_mix = True
    warnings.warn(
        f"lightning_skd was imported on {NAMESPACE} ({_REASON}) and {_OTHER} is imported too: a {_OTHER} Trainer or "
        f"LightningCLI rejects this {owner} (a {NAMESPACE} class). To use lightning_skd with {_OTHER}, "
        f"{_how_to_switch()}; to keep {NAMESPACE} without this warning, set {ENV_VARIABLE}={NAMESPACE}.",
        LightningSKDWarning,
        stacklevel=3,
    )


def _how_to_switch() -> str:
    """How to make lightning_skd use the other package (the import order only helps if the user did not choose)."""
    if _CHOSEN_BY_USER:
        return f"set the environment variable {ENV_VARIABLE}={_OTHER} (see docs/namespaces.md)"
    return f"import {_OTHER} before lightning_skd or set {ENV_VARIABLE}={_OTHER} (see docs/namespaces.md)"
