"""The registered analyses. Importing this package registers every one of them."""

from dossier.analyses import (  # noqa: F401  (importing registers them)
    commute,
    embedding,
    galleries,
    kernel_clusters,
    model_card,
    neuron_types,
    probes,
    purity,
    relevance,
    tda_rings,
    translation,
)
from dossier.analyses.base import REGISTRY, Analysis, BuildContext, register

ALWAYS_RUN = ("model_card",)  # the index and the model card page need it

__all__ = ["REGISTRY", "ALWAYS_RUN", "Analysis", "BuildContext", "register"]
