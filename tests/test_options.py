"""The command line's options come from the config schema: every field is an option, checked by the field's own
rules, and the options given (over a preset, over a config file) make the run's config."""

import json
import warnings

import click
import pytest
from click.testing import CliRunner

from vaelab.cli import cli
from vaelab.config import RunConfig, setting_keys
from vaelab.options import NOT_OPTIONS, build_config, option_name, training_options, warn_ignored_on_resume


def config_from(args: list[str]) -> RunConfig:
    """The RunConfig the training options make of ``args``, without training anything."""
    made = []

    @click.command()
    @training_options
    @click.pass_context
    def probe(ctx, **opts):
        made.append(build_config(ctx, None, opts))

    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 0, result.output
    return made[0]


@pytest.mark.parametrize("command", ["train", "study"])
def test_every_setting_is_an_option(command):
    text = CliRunner().invoke(cli, [command, "--help"]).output
    missing = [key for key in setting_keys() if key not in NOT_OPTIONS and option_name(key) not in text]
    assert missing == []


def test_options_become_the_fields_they_name():
    config = config_from(["--widths", "16,32", "--arch", "conv", "--betas", "0.5", "0.99", "--channels", "3",
                          "--evals-in-first-epoch", "2", "--binarize", "--lr", "3e-4", "--dataset", "folder",
                          "--data-dir", "x"])
    assert config.model.channels == (16, 32) and config.model.arch == "conv"
    assert config.train.betas == (0.5, 0.99) and config.train.evals_in_first_epoch == 2 and config.train.lr == 3e-4
    assert config.data.channels == 3 and config.data.binarize is True
    assert config_from([]) == RunConfig()


def test_given_options_win_over_the_preset_which_wins_over_the_config_file(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text("[train]\nepochs = 7\nlr = 0.01\nseed = 5\n")
    config = config_from(["--config", str(path), "--preset", "original", "--seed", "9"])
    assert config.train.epochs == 20 and config.train.lr == 1e-4  # the preset over the file
    assert config.train.seed == 9 and config.model.arch == "resnet-spatial"  # the option over the preset


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], "train.seed"),
    (["--betas", "0.5", "1.5"], "train.betas"),
    (["--evals-in-first-epoch", "x"], "train.evals_in_first_epoch"),
    (["--widths", "8,0"], "model.channels"),
])
def test_a_bad_value_is_refused_by_the_fields_own_rule_naming_the_option(args, words, tmp_path):
    result = CliRunner().invoke(cli, ["train", *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and option_name_in(result.output, args[0]) and words in result.output
    assert not (tmp_path / "run").exists()


def option_name_in(output: str, option: str) -> bool:
    return option in output and "Traceback" not in output


def test_options_the_run_cannot_use_are_warned_of_and_not_recorded():
    with pytest.warns(UserWarning) as caught:
        config = config_from(["--channels", "3", "--image-size", "64", "--widths", "8,8", "--hidden", "64"])
    messages = " | ".join(str(w.message) for w in caught)
    assert "--channels is not used: mnist images are read as they are" in messages
    assert "--image-size is not used" in messages
    assert "--widths is not used: --arch mlp takes its widths from --hidden" in messages
    assert "--hidden is not used" not in messages
    assert config.data.channels is None and config.data.image_size is None
    assert config.model.channels == RunConfig().model.channels and config.model.hidden == (64,)
    with warnings.catch_warnings():  # where they apply: kept, and no word
        warnings.simplefilter("error")
        config = config_from(["--dataset", "folder", "--data-dir", "x", "--channels", "3", "--arch", "conv",
                              "--widths", "8,8"])
    assert config.data.channels == 3 and config.model.channels == (8, 8)


def test_a_study_varying_the_architecture_keeps_the_widths_its_conv_runs_use(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CliRunner().invoke(cli, ["study", "--vary", "arch=mlp,conv", "--widths", "8,8", "--study-dir",
                                          str(tmp_path / "study"), "--data-dir", str(tmp_path / "none")])
    plan = json.loads((tmp_path / "study" / "study.json").read_text())
    assert plan["base_config"]["model"]["channels"] == [8, 8], result.output


def ignored_on_resume(saved: RunConfig, args: list[str]) -> list[str]:
    @click.command()
    @training_options
    @click.pass_context
    def probe(ctx, **opts):
        warn_ignored_on_resume(ctx, build_config(ctx, None, opts), saved)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert CliRunner().invoke(probe, args).exit_code == 0
    return [str(w.message) for w in caught]


def test_a_resume_names_each_option_it_ignores_with_the_value_it_keeps():
    saved = RunConfig()
    [message] = ignored_on_resume(saved, ["--lr", "0.5", "--arch", "conv", "--epochs", "20", "--beta", "1"])
    assert "so these are ignored: --arch conv (kept: mlp); --lr 0.5 (kept: 0.001). Only --epochs" in message
    assert "--beta" not in message  # the same value as the run's is not ignored
    assert ignored_on_resume(saved, ["--lr", "0.001", "--epochs", "3"]) == []
