"""The README's config reference and the starter config are written from the config models, so
that no default can disagree with the code; every key is there with what it means."""

from pathlib import Path

from pydantic import BaseModel

from dossier.config import Config, config_reference

README = (Path(__file__).parent.parent / "README.md").read_text()


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _keys(field.annotation, f"{prefix}{name}.")
    return keys


def test_readme_config_reference_is_the_generated_one() -> None:
    section = README.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block == config_reference(), (
        "the README's config reference is out of date: paste the output of "
        "`python -c 'from dossier.config import config_reference; print(config_reference(), end=\"\")'`"
    )


def test_every_config_key_has_a_default_or_example_and_a_meaning() -> None:
    reference = config_reference()
    starter = config_reference(starter=True)
    for key in _keys(Config):
        leaf = key.rsplit(".", 1)[-1]
        assert f"{leaf}:" in reference and f"{leaf}:" in starter, f"reference lacks {key}"
    for line in reference.splitlines():
        if ":" in line and not line.rstrip().endswith(":") and line.strip():
            assert "#" in line.split(":", 1)[1], f"no description: {line}"


def test_reference_defaults_are_the_models_defaults() -> None:
    import yaml

    loaded = yaml.safe_load(config_reference())
    defaults = Config.model_validate(loaded).analyses.model_dump()
    assert loaded["analyses"] == defaults
