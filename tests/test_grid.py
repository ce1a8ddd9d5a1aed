"""Study axes: --vary parsed by the config's own types and rules, the grid's runs and their names."""

import pytest

from vaelab.config import RunConfig
from vaelab.errors import ConfigError
from vaelab.grid import LATENT_KEY, Axis, grid_from_dict, make_grid, merged, parse_axis, split_values


def test_values_split_at_commas_outside_brackets():
    assert split_values("[512,256],[128],64") == ["[512,256]", "[128]", "64"]


@pytest.mark.parametrize("text, key, values", [
    ("beta=0.5,1,4", "train.beta", (0.5, 1.0, 4.0)),
    ("train.lr=1e-3,3e-3", "train.lr", (1e-3, 3e-3)),
    ("objective=ae,vae", "model.objective", ("ae", "vae")),
    ("hidden=[512,256],[128]", "model.hidden", ((512, 256), (128,))),
    ("arch=mlp,conv", "model.arch", ("mlp", "conv")),
    ("beta=1,1,2", "train.beta", (1.0, 2.0)),
])
def test_an_axis_parses_by_alias_or_dotted_name(text, key, values):
    axis = parse_axis(text)
    assert (axis.key, axis.values) == (key, values)


@pytest.mark.parametrize("text, complaint", [
    ("beta", "expected KEY=V1,V2"),
    ("bta=1,2", "'bta' is not a setting"),
    ("beta=-1,2", "beta=-1"),
    ("beta=fast", "train.beta"),
    ("arch=transformer", "model.arch"),
    ("epochs=0", "train.epochs"),
    ("beta=1,,2", "an empty value"),
    ("seed=1,2", "--seeds"),
])
def test_a_bad_axis_is_a_config_error_naming_key_and_value(text, complaint):
    with pytest.raises(ConfigError, match=complaint) as caught:
        parse_axis(text)
    assert caught.value.exit_code == 2


def test_a_latent_size_study_keeps_its_directory_names():
    grid = make_grid([2, 4, 16], [], None)
    assert grid.latent_only
    assert [run.dir_name for run in grid.plan(RunConfig())] == ["latent_2", "latent_4", "latent_16"]


def test_a_grid_is_the_product_of_its_axes_and_seeds_named_by_coordinates():
    grid = make_grid([2, 16], [parse_axis("beta=0.5,1,4")], [0, 1, 2])
    runs = grid.plan(RunConfig())
    assert len(runs) == 18 and len({r.dir_name for r in runs}) == 18
    assert runs[0].dir_name == "beta=0.5,z=2,seed=0" and runs[-1].dir_name == "beta=4,z=16,seed=2"
    assert (runs[4].config.train.beta, runs[4].config.model.latent_dim, runs[4].config.train.seed) == (0.5, 16, 1)
    assert runs[4].cell == (("train.beta", 0.5), (LATENT_KEY, 16))


def test_a_combination_the_model_cannot_build_fails_before_training():
    grid = make_grid([2], [parse_axis("arch=mlp,resnet-spatial")], None)
    with pytest.raises(ConfigError, match="arch=resnet-spatial.*needs --likelihood gaussian"):
        grid.plan(RunConfig())


def test_a_resumed_grid_adds_new_values_after_the_recorded_ones():
    old = make_grid([2], [parse_axis("beta=0.5,1")], [0, 1])
    new = make_grid([2, 4], [parse_axis("beta=1,4")], None)
    both = merged(grid_from_dict(old.to_dict()), new)
    assert both.axes == (Axis("train.beta", (0.5, 1.0, 4.0)), Axis(LATENT_KEY, (2, 4))) and both.seeds == (0, 1)


def test_two_axes_over_one_setting_are_refused():
    with pytest.raises(ConfigError, match="names beta twice"):
        make_grid([2], [parse_axis("beta=1"), parse_axis("train.beta=2")], None)
