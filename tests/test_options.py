"""The command line's options come from the config schema: every field is an option, checked by the field's own
rules, and the options given (over a preset, over a config file) make the run's config."""

import click
import pytest
from click.testing import CliRunner

from vaelab.cli import cli
from vaelab.config import RunConfig, setting_keys
from vaelab.options import NOT_OPTIONS, build_config, option_name, training_options


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
                          "--evals-in-first-epoch", "2", "--binarize", "--lr", "3e-4"])
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
