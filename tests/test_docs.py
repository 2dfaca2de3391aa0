"""The README's config reference and the starter config name every config key."""

from pathlib import Path

from pydantic import BaseModel

from dossier.config import STARTER_CONFIG, Config

README = (Path(__file__).parent.parent / "README.md").read_text()


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _keys(field.annotation, f"{prefix}{name}.")
    return keys


def test_every_config_key_is_documented() -> None:
    reference = README.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    for key in _keys(Config):
        leaf = key.rsplit(".", 1)[-1]
        assert f"{leaf}:" in reference or f"{leaf}`" in reference, f"README lacks {key}"
        assert f"{leaf}:" in STARTER_CONFIG or f"{leaf}" in STARTER_CONFIG, f"starter config lacks {key}"
