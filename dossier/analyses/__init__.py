"""The registered analyses. Importing this package registers every one of them."""

from dossier.analyses import (  # noqa: F401  (importing registers them)
    kernel_clusters,
    model_card,
    neuron_types,
    purity,
    relevance,
    tda_rings,
)
from dossier.analyses.base import REGISTRY, Analysis, BuildContext, register

ALWAYS_RUN = ("model_card",)  # the index and the model card page need it

__all__ = ["REGISTRY", "ALWAYS_RUN", "Analysis", "BuildContext", "register"]
