"""The base of every config model: unknown keys are errors and values cannot change after loading.

Each analysis declares its settings as a subclass next to its computation; the config assembles
them under `analyses:` by the analysis' registered name.
"""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SectionSettings(StrictModel):
    """Settings of one analysis (`analyses.<name>` in the config)."""
