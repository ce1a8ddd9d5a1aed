"""Config files: a run's own config.json and hand-written TOML/JSON read back into the same RunConfig;
every kind of bad file is a ConfigFileError that names the file and the key."""

import json

import pytest

from vaelab.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_setting,
    read_config_file,
    resolve_key,
    with_settings,
)
from vaelab.errors import ConfigError, ConfigFileError


def test_a_saved_config_json_reads_back_to_the_same_config(tmp_path):
    config = RunConfig(data=DataConfig(dataset="fashion-mnist", data_dir="/data", binarize=True),
                       model=ModelConfig(arch="conv", latent_dim=7, hidden=(32,), likelihood="gaussian"),
                       train=TrainConfig(epochs=3, lr=2e-4, beta=0.5, warmup_epochs=1.5, device="cpu"))
    config.save(tmp_path / "config.json")
    assert read_config_file(tmp_path / "config.json") == config


def test_a_partial_toml_file_keeps_the_defaults_elsewhere(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text('[model]\narch = "conv"\nlatent_dim = 8\nhidden = [128, 64]\n\n[train]\nepochs = 3\nlr = 1\n')
    config = read_config_file(path)
    expected = RunConfig(model=ModelConfig(arch="conv", latent_dim=8, hidden=(128, 64)),
                         train=TrainConfig(epochs=3, lr=1.0))
    assert config == expected and isinstance(config.train.lr, float)


@pytest.mark.parametrize("name, text, complaint", [
    ("unknown.toml", "[model]\nlatent_dims = 4\n", "'model.latent_dims'"),
    ("section.json", '{"optimizer": {"lr": 1}}', "'optimizer'"),
    ("type.toml", '[train]\nepochs = "ten"\n', "train.epochs must be an integer, got 'ten'"),
    ("bool.json", '{"train": {"epochs": true}}', "train.epochs must be an integer, got True"),
    ("float.toml", "[train]\nlr = \"fast\"\n", "train.lr must be a number"),
    ("list.toml", '[model]\nhidden = ["wide"]\n', "model.hidden must be a list of integers"),
    ("none.json", '{"model": {"arch": null}}', "model.arch must be a string, got None"),
    ("flat.toml", "[train]\nepochs = 2\n[model]\n", None),
    ("section-type.json", '{"model": 3}', "'model' must be a section of keys"),
    ("bad.toml", "[model\narch = 1\n", "not valid TOML"),
    ("bad.json", '{"model": {', "not valid JSON"),
    ("list.json", "[1, 2]", "not a list"),
    ("newer.json", '{"config_version": 99}', "config_version 99"),
])
def test_bad_config_files_are_clear_errors_naming_the_key(tmp_path, name, text, complaint):
    path = tmp_path / name
    path.write_text(text)
    if complaint is None:  # an empty section is fine
        assert read_config_file(path).train.epochs == 2
        return
    with pytest.raises(ConfigFileError) as caught:
        read_config_file(path)
    assert complaint in str(caught.value) and str(path) in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_config_file_says_so(tmp_path):
    with pytest.raises(ConfigFileError, match="no such config file"):
        read_config_file(tmp_path / "absent.toml")


def test_a_json_file_of_the_wrong_shape_names_the_section(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": {"dataset": "mnist", "train_eval_size": 10.5}}))
    with pytest.raises(ConfigFileError, match="data.train_eval_size must be an integer"):
        read_config_file(path)


# -- the schema: every value checked where the config is made, for the API, files and the CLI alike ----------

@pytest.mark.parametrize("make, key", [
    (lambda: TrainConfig(batch_size=0), "train.batch_size"),
    (lambda: TrainConfig(epochs=-1), "train.epochs"),
    (lambda: TrainConfig(lr=0.0), "train.lr"),
    (lambda: TrainConfig(lr=float("nan")), "train.lr"),
    (lambda: TrainConfig(beta=-1), "train.beta"),
    (lambda: TrainConfig(betas=(0.9, 1.0)), "train.betas"),
    (lambda: TrainConfig(lr_schedule="step"), "train.lr_schedule"),
    (lambda: TrainConfig(epochs=True), "train.epochs"),
    (lambda: ModelConfig(latent_dim=0), "model.latent_dim"),
    (lambda: ModelConfig(likelihood="poisson"), "model.likelihood"),
    (lambda: ModelConfig(objective="gan"), "model.objective"),
    (lambda: ModelConfig(gaussian_std=0), "model.gaussian_std"),
    (lambda: ModelConfig(arch="resnet-spatial", channels=(32, 64, 128)), "model.likelihood"),
    (lambda: ModelConfig(arch="resnet-spatial", likelihood="gaussian"), "model.channels"),
    (lambda: DataConfig(train_eval_size=0), "data.train_eval_size"),
    (lambda: DataConfig(channels=2), "data.channels"),
])
def test_out_of_range_values_raise_a_config_error_naming_the_field(make, key):
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.key == key and key in str(caught.value) and caught.value.exit_code == 2


def test_a_config_file_value_out_of_range_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nbatch_size = 0\n")
    with pytest.raises(ConfigFileError, match="train.batch_size") as caught:
        read_config_file(path)
    assert str(path) in str(caught.value)


def test_presets_load_from_python_without_click():
    config = RunConfig.from_preset("original", z=4)
    assert (config.model.arch, config.model.channels, config.model.latent_dim) == ("resnet-spatial", (32, 64, 128), 4)
    assert (config.train.lr, config.train.betas, config.train.seed) == (1e-4, (0.5, 0.999), 1111)
    assert RunConfig.from_preset("original-vae").train.beta == pytest.approx(5e-6 * 784 / (8 * 0.1**2))
    with pytest.raises(ConfigError, match="no preset"):
        RunConfig.from_preset("newest")


@pytest.mark.parametrize("key, text, value", [
    ("beta", "0.5", 0.5), ("train.lr", "1e-3", 1e-3), ("z", "8", 8), ("hidden", "[512,256]", (512, 256)),
    ("arch", "conv", "conv"), ("binarize", "true", True), ("data.channels", "none", None),
])
def test_settings_parse_by_dotted_name_or_alias(key, text, value):
    assert parse_setting(resolve_key(key), text) == value


def test_changing_the_architecture_moves_the_default_widths_with_it():
    config = with_settings(RunConfig(), {"arch": "resnet-spatial", "likelihood": "gaussian"})
    assert config.model.channels == (32, 64, 128)
    kept = with_settings(RunConfig(model=ModelConfig(arch="conv", channels=(8, 16))), {"arch": "conv-spatial"})
    assert kept.model.channels == (8, 16)


def test_an_unknown_setting_lists_what_there_is():
    with pytest.raises(ConfigError, match="'train.momentum' is not a setting.*train.beta"):
        resolve_key("train.momentum")


@pytest.mark.parametrize("name, text", [
    ("deep.toml", "[train]\nepochs = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep.json", '{"train": {"epochs": ' + "[" * 100_000 + "]" * 100_000 + "}}"),
])
def test_a_config_file_nested_thousands_deep_is_a_clear_error(tmp_path, name, text):
    from vaelab.config import ConfigFileError, read_config_file

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigFileError, match="nested too deeply"):
        read_config_file(path)
