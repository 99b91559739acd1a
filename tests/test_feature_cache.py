"""VGG16's head trained on cached outputs of its frozen base (`--cache_features`)."""

import numpy as np
import pytest
import tensorflow as tf

from bonefrac import errors, fitting, input_pipeline, train_lib
from test_train import tiny_config


def vgg16_config(data_dir, workdir, **overrides):
  cached = dict(model="vgg16", vgg16_weights="none", augment=False, cache_features=True)
  return tiny_config(data_dir, workdir, **{**cached, **overrides})


def test_the_head_on_cached_features_computes_what_the_model_computes(small_data_dir, tmp_path):
  config = vgg16_config(small_data_dir, tmp_path)
  model = train_lib.build_model(config)
  builder = input_pipeline.load_builder(config.dataset, config.data_dir)
  head, data = fitting.cached_features(model, tf.distribute.get_strategy(), builder, config)
  assert head.trainable_weights and {id(w) for w in head.trainable_weights} <= {
      id(w) for w in model.trainable_weights}  # the model's own head layers
  images = input_pipeline.create_dataset(builder, "validation", batch_size=8, image_size=32,
                                         training=False, cache=None)
  from_images = model.predict(images, verbose=0)
  from_features = head.predict(data["validation_data"].map(lambda features, labels: features),
                               verbose=0)
  np.testing.assert_allclose(from_features, from_images, atol=1e-3)


def test_a_cached_run_trains_evaluates_exports_then_fine_tunes(small_data_dir, tmp_path, capsys):
  report = train_lib.train(vgg16_config(small_data_dir, tmp_path, epochs=2, fine_tune_epochs=1))
  out = capsys.readouterr().out
  assert "Cached the frozen VGG16 base's outputs of 40 training images" in out
  assert "Fine-tuning: " in out  # then on images, with the top block unfrozen
  assert report["model"] == "vgg16" and report["epochs_run"] == 3
  assert (tmp_path / "model.keras").exists() and (tmp_path / "export").is_dir()


@pytest.mark.parametrize("overrides, message", [
    (dict(model="cnn"), "--cache_features needs --model=vgg16"),
    (dict(augment=True), "--cache_features needs --noaugment"),
    (dict(strategy="multi_worker_mirrored"), "--cache_features runs on one machine")])
def test_cache_features_is_refused_where_it_cannot_hold(overrides, message, tmp_path):
  with pytest.raises(errors.UserError, match=message):
    train_lib.check_cache_features(vgg16_config(None, tmp_path, **overrides))
