"""What every analysis is: a registered name, settings from the config, a data-pass consumer and
a typed result. Rendering reads results only; it never sees tensors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from dossier.capture import Consumer
from dossier.config import Config
from dossier.data import ImageSet
from dossier.layers import LayerInfo
from dossier.model_source import LoadedModel


@dataclass
class BuildContext:
    """Everything an analysis may read: config, model, layers, data and the build's device."""

    config: Config
    model: LoadedModel
    layers: list[LayerInfo]
    dataset: ImageSet
    device: torch.device

    @property
    def recorded_layers(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.recordable]

    @property
    def classifier(self) -> str | None:
        """The last recorded layer when it is a Linear one: its input is the penultimate code."""
        recorded = self.recorded_layers
        if recorded and recorded[-1].type == "Linear" and not self.model.scripted:
            return recorded[-1].name
        return None


class Analysis(ABC):
    """One section of the dossier. Subclasses register themselves with @register."""

    name: ClassVar[str]
    title: ClassVar[str]
    result_type: ClassVar[type]

    def settings(self, config: Config) -> BaseModel:
        return getattr(config.analyses, self.name)

    def consumer(self, ctx: BuildContext) -> Consumer | None:
        """A running statistic fed by the single data pass; None for weight-only analyses."""
        return None

    @abstractmethod
    def finish(self, ctx: BuildContext, consumer: Any) -> Any:
        """Turn the consumer's statistic (None if it has none) into this analysis' result."""


REGISTRY: dict[str, type[Analysis]] = {}


def register(cls: type[Analysis]) -> type[Analysis]:
    REGISTRY[cls.name] = cls
    return cls
