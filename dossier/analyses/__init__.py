"""The registered analyses. Importing this package imports every module in it, which registers
each analysis: a new analysis is a new module here, nothing else to list."""

import importlib
import pkgutil

from dossier.analyses.base import REGISTRY, Analysis, BuildContext, finding, ordered, register, warnings

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

ALWAYS_RUN = ("model_card",)  # the index and the model card page need it

__all__ = ["REGISTRY", "ALWAYS_RUN", "Analysis", "BuildContext", "finding", "ordered", "register", "warnings"]
