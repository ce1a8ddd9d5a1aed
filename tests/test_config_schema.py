"""Out-of-range values for every configuration field, generated from the schema's own rules: each is a
ConfigError naming the field through the API, and exit 2 with one paragraph through a config file and the CLI,
before anything trains."""

import dataclasses
import math
import typing

import pytest
from click.testing import CliRunner

from helpers import one_line
from vaelab.cli import cli
from vaelab.config import DERIVED_KEYS, SECTIONS, RunConfig, with_settings
from vaelab.errors import ConfigError
from vaelab.options import NOT_OPTIONS, option_name


def bad_values(kind: type, spec: dataclasses.Field) -> list:
    """Values the field's rules refuse: outside its range, outside its choices, of the wrong type."""
    rules = spec.metadata.get("rules", {})
    annotation = typing.get_type_hints(kind)[spec.name]
    tuple_field = typing.get_origin(annotation) is tuple or "tuple" in str(annotation)
    values = []
    if rules.get("low") is not None:
        low = rules["low"]
        values.append(low if rules["low_open"] else (low - 1 if isinstance(low, int) and low >= 1 else low / 2 - 1))
    if rules.get("high") is not None:
        high = rules["high"]
        values.append(high if rules["high_open"] else high + 1)
    if rules.get("choices") is not None:
        values.append(99 if all(isinstance(c, int) for c in rules["choices"]) else "no-such-choice")
    if "float" in str(annotation) and not tuple_field:
        values += [math.inf, math.nan]
    values.append("text" if "str" not in str(annotation) else 7)
    return [(v,) * (2 if "tuple[float, float]" in str(annotation) else 1) if tuple_field else v for v in values]


CASES = [(f"{name}.{spec.name}", value) for name, kind in SECTIONS.items() for spec in dataclasses.fields(kind)
         if f"{name}.{spec.name}" not in DERIVED_KEYS for value in bad_values(kind, spec)
         if spec.metadata.get("rules") or "str" not in str(typing.get_type_hints(kind)[spec.name])]


def test_the_schema_table_covers_every_field_with_rules():
    keys = {key for key, _ in CASES}
    assert {"train.batch_size", "train.seed", "model.gaussian_std", "model.objective", "data.channels",
            "train.betas", "model.hidden"} <= keys
    assert len(CASES) > 40


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_bad_value_through_the_api_names_its_field(key, value):
    with pytest.raises(ConfigError) as caught:
        with_settings(RunConfig(), {key: value})
    assert caught.value.key == key and key in str(caught.value)


def toml_value(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf"
    return f'"{value}"' if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_bad_value_in_a_config_file_exits_2_before_training(key, value, tmp_path):
    section, name = key.split(".")
    path = tmp_path / "bad.toml"
    path.write_text(f"[{section}]\n{name} = {toml_value(value)}\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert key in one_line(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def option_args(key: str, value) -> list[str]:
    """``key = value`` as the command line writes it: a pair as two words, a list comma-separated."""
    section, name = key.split(".")
    if isinstance(value, tuple):  # str() writes nan and inf as the command line does
        pair = "tuple[float, float]" in str(typing.get_type_hints(SECTIONS[section])[name])
        return [option_name(key), *map(str, value)] if pair else [option_name(key), ",".join(map(str, value))]
    return [option_name(key), str(value)]


def typed_only_on_the_command_line(key: str, value) -> bool:
    """A wrong Python type with no command-line form: a flag takes no value, and 7 is a valid name or path."""
    section, name = key.split(".")
    annotation = str(typing.get_type_hints(SECTIONS[section])[name])
    return "bool" in annotation or ("str" in annotation and value == 7)


OPTION_CASES = [(key, value) for key, value in CASES
                if key not in NOT_OPTIONS and not typed_only_on_the_command_line(key, value)]


@pytest.mark.parametrize("key, value", OPTION_CASES, ids=[f"{k}={v!r}" for k, v in OPTION_CASES])
def test_a_bad_value_on_the_command_line_exits_2_before_training(key, value, tmp_path):
    for command in ("train", "study"):
        where = ["--run-dir", str(tmp_path / "run")] if command == "train" else ["--study-dir", str(tmp_path / "run")]
        result = CliRunner().invoke(cli, [command, *option_args(key, value), *where])
        assert result.exit_code == 2, (command, result.output)
        assert option_name(key) in result.output and "Traceback" not in result.output
        assert not (tmp_path / "run").exists()
