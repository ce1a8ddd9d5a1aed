"""Config files: a run's own config.json and hand-written TOML/JSON read back into the same RunConfig;
every kind of bad file is a ConfigFileError that names the file and the key."""

import json

import pytest

from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig, read_config_file
from vaelab.errors import ConfigFileError


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
