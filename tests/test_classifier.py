import dataclasses
import threading

import pytest
import torch

from vaelab import classifier as classifier_module
from vaelab.classifier import (
    DEFAULT_RECIPE,
    ClassifierRecipe,
    ImageClassifier,
    accuracy,
    cache_path,
    classifier_cache_dir,
    features_and_logits,
    load_or_train_classifier,
)
from vaelab.errors import CheckpointError
from vaelab.prepare import as_float_images

TINY = ClassifierRecipe(epochs=1, train_size=1024, channels=(4, 8), features=16, min_steps=0)


def test_features_are_the_penultimate_layer_and_logits_follow_from_them():
    model = ImageClassifier(ClassifierRecipe(features=24))
    x = torch.rand(5, 1, 28, 28)
    features, logits = features_and_logits(model, x, batch_size=2)
    assert features.shape == (5, 24) and logits.shape == (5, 10) and (features >= 0).all()
    assert torch.allclose(logits, model.head(features), atol=1e-6)
    assert torch.allclose(logits, model.eval()(x), atol=1e-5)


@pytest.mark.slow
def test_the_tiny_session_classifier_learned_something(tiny_classifier, mnist):
    x = as_float_images(mnist.test.images[:1000], torch.device("cpu"))
    assert accuracy(tiny_classifier.model, x, mnist.test.labels[:1000]) > 0.8
    assert 0.8 < tiny_classifier.test_accuracy <= 1


@pytest.mark.slow
def test_trains_once_then_reads_the_cache(mnist, tmp_path, monkeypatch):
    data = mnist.head(1024, 500)
    first = load_or_train_classifier(data, "cpu", TINY, tmp_path)
    assert first.trained_now and first.path.parent == tmp_path and first.path.name.startswith("mnist-")
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    second = load_or_train_classifier(data, "cpu", TINY, tmp_path)
    assert not second.trained_now and second.test_accuracy == first.test_accuracy
    for name, weight in first.model.state_dict().items():
        assert torch.equal(weight, second.model.state_dict()[name]), name
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [first.path.name]


def test_cache_file_names_change_with_the_recipe_and_the_data(mnist, tmp_path):
    data = mnist.head(1024, 500)
    other_data = mnist.head(1000, 500)
    names = {cache_path(data, TINY, tmp_path), cache_path(data, DEFAULT_RECIPE, tmp_path),
             cache_path(data, dataclasses.replace(TINY, seed=1), tmp_path),
             cache_path(other_data, TINY, tmp_path)}
    assert len(names) == 4
    assert cache_path(data, ClassifierRecipe(epochs=1, train_size=1024, channels=(4, 8), features=16, min_steps=0),
                      tmp_path) == cache_path(data, TINY, tmp_path)


@pytest.mark.slow
def test_concurrent_callers_train_it_only_once(mnist, tmp_path, monkeypatch):
    data = mnist.head(1024, 500)
    calls = []
    real_train = classifier_module.train_classifier

    def counted(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "train_classifier", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_or_train_classifier(data, "cpu", TINY, tmp_path)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 3
    assert sum(r.trained_now for r in results) == 1
    assert len({r.test_accuracy for r in results}) == 1


def test_a_corrupt_cache_file_is_a_clear_error_naming_it(mnist, tmp_path):
    data = mnist.head(1024, 500)
    path = cache_path(data, TINY, tmp_path)
    path.write_bytes(b"torn file")
    with pytest.raises(CheckpointError, match=path.name):
        load_or_train_classifier(data, "cpu", TINY, tmp_path)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VAELAB_CLASSIFIER_DIR", str(tmp_path / "mine"))
    assert classifier_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("VAELAB_CLASSIFIER_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert classifier_cache_dir() == tmp_path / "xdg" / "vaelab" / "classifiers"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert classifier_cache_dir() == classifier_module.Path.home() / ".cache" / "vaelab" / "classifiers"


def test_a_small_data_set_gets_enough_steps_to_learn_its_classes():
    """160 LFW faces and non-faces: 3 epochs are 6 steps, too few to learn even these two classes; the
    recipe's minimum step count makes the classifier learn them."""
    import numpy as np
    from skimage.data import lfw_subset

    from vaelab.classifier import train_classifier
    from vaelab.data import Dataset, ImageSplit

    faces = torch.from_numpy(np.round(lfw_subset() * 255).astype(np.uint8)).unsqueeze(1)
    labels = (torch.arange(200) >= 100).long()  # 100 faces, then 100 non-faces
    order = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    train, test = order[:160], order[160:]
    data = Dataset("faces", classifier_module.Path("."), ImageSplit(faces[train], labels[train]),
                   ImageSplit(faces[test], labels[test]), class_names=("face", "not_face"))
    model = train_classifier(DEFAULT_RECIPE, data, torch.device("cpu"))
    # Measured: 1.0 (and 0.625 with min_steps=0, the 3 epochs alone).
    assert accuracy(model, as_float_images(data.test.images, "cpu"), data.test.labels) >= 0.9


def test_numbered_labels_beyond_nine_get_a_class_each():
    from pathlib import Path

    from vaelab.classifier import num_classes
    from vaelab.data import Dataset, ImageSplit

    def split(labels):
        return ImageSplit(torch.zeros(len(labels), 28, 28, dtype=torch.uint8), torch.tensor(labels))

    assert num_classes(Dataset("idx", Path("."), split([0, 19, 3]), split([2, 5]))) == 20
    assert num_classes(Dataset("idx", Path("."), split([0, 1]), split([2, 3]))) == 10  # digits: always ten
