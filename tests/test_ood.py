"""Out-of-distribution flags: the reference fitted, kept in the model, used by predict."""

import io

import keras
import numpy as np
import pytest
from PIL import Image

from bonefrac import augment, ood, predict_lib
from bonefrac_tfds.bone_fracture import synthetic

SIZE = 48


def _features_model():
  """A model whose penultimate features are what tells images apart here: mean brightness,
  contrast and the amount of fine detail (fixed, not learned), so the flags can be tested
  without training a network for minutes."""
  images = keras.Input((SIZE, SIZE, 1), dtype="uint8")
  x = augment.ToFloat()(augment.InputSettings(SIZE)(images)) / 255.0
  laplacian = keras.layers.Conv2D(1, 3, use_bias=False, trainable=False)
  detail = keras.layers.GlobalAveragePooling2D()(keras.ops.abs(laplacian(x)))
  mean = keras.layers.GlobalAveragePooling2D()(x)
  spread = keras.layers.GlobalAveragePooling2D()(keras.ops.abs(x - mean[:, None, None, :]))
  features = keras.layers.Concatenate()([mean, spread, detail])
  logit = keras.layers.Dense(1, dtype="float32", name="dense_logit")(features)
  model = keras.Model(images, keras.layers.Activation("sigmoid", dtype="float32")(logit))
  laplacian.set_weights([np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)[..., None, None]])
  return model


def _radiographs(seeds):
  return np.stack([np.asarray(Image.fromarray(synthetic.generate_radiograph(s, s % 2 == 0).image)
                              .resize((SIZE, SIZE), Image.BILINEAR))[..., None] for s in seeds])


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.fixture(scope="module")
def model_with_reference(tmp_path_factory):
  model = _features_model()
  features = ood.features_model(model)
  references = ood.fit(features.predict(_radiographs(range(200)), verbose=0),
                       features.predict(_radiographs(range(200, 300)), verbose=0))
  path = tmp_path_factory.mktemp("ood") / "model.keras"
  ood.with_reference(model, references).save(path)
  return path, references


def test_the_reference_survives_saving_and_flags_what_is_unlike_radiographs(model_with_reference,
                                                                            tmp_path):
  from sklearn.datasets import load_sample_image  # a photograph shipped with scikit-learn
  path, references = model_with_reference
  rng = np.random.default_rng(0)
  odd = {"noise.png": rng.integers(0, 256, (96, 96), dtype=np.uint8),
         "blank.png": np.full((96, 96), 255, np.uint8),
         "photo.png": load_sample_image("china.jpg")}
  fresh = {f"fresh_{s}.png": synthetic.generate_radiograph(s, s % 2 == 0).image
           for s in range(1000, 1060)}  # seeds neither the reference nor its threshold saw
  for name, array in {**odd, **fresh}.items():
    (tmp_path / name).write_bytes(_png(array))
  loaded = predict_lib.load_model(str(path))
  [layer] = ood.layers_of(loaded.keras_model)  # no layer named "pooled": the penultimate only
  assert layer.tap == "penultimate"
  assert layer.threshold.numpy() == pytest.approx(references["penultimate"]["threshold"])
  predictions = {p.path.split("/")[-1]: p for p in
                 predict_lib.predict_files(loaded, predict_lib.find_files([tmp_path]))}
  assert all(predictions[name].in_distribution is False for name in odd)
  assert np.mean([predictions[name].in_distribution for name in fresh]) >= 0.95


def test_a_reference_from_few_features_and_wide_features():
  rng = np.random.default_rng(0)
  references = ood.fit({"a": rng.normal(size=(10, 32)), "wide": np.zeros((4, ood.MAX_DIMS + 1))},
                       {"a": rng.normal(size=(10, 32)), "wide": np.zeros((4, ood.MAX_DIMS + 1))})
  assert list(references) == ["a"]  # fewer images than features is fine; too wide is left out
  assert np.isfinite(ood.distances(references["a"], rng.normal(size=(3, 32)))).all()
  assert "none" in ood.report_section({}, {})["method"]


def test_an_image_is_flagged_when_either_layer_flags_it():
  references = {tap: {"mean": np.zeros(2), "precision": np.eye(2), "threshold": 2.0}
                for tap in ("pooled", "penultimate")}
  features = {"pooled": np.array([[1.0, 0], [3.0, 0], [0, 0]]),
              "penultimate": np.array([[0, 1.0], [0, 0], [0, 5.0]])}
  np.testing.assert_allclose(ood.scores(references, features), [0.5, 1.5, 2.5])
  section = ood.report_section(references, features)
  assert section["evaluated_in_distribution"] == pytest.approx(1 / 3)


def test_thresholds_are_scaled_so_that_99_percent_of_validation_is_in_distribution():
  rng = np.random.default_rng(1)
  train = {tap: rng.normal(size=(2000, 4)) for tap in ("a", "b", "c")}
  validation = {tap: rng.normal(size=(1000, 4)) for tap in ("a", "b", "c")}
  alone = {tap: ood.fit({tap: train[tap]}, {tap: validation[tap]})[tap]["threshold"] for tap in train}
  references = ood.fit(train, validation)
  # each layer at its own 99th percentile would keep only about 97% (independent layers)
  unscaled = {t: {**references[t], "threshold": alone[t]} for t in train}
  assert np.mean(ood.scores(unscaled, validation) <= 1) < 0.98
  assert np.mean(ood.scores(references, validation) <= 1) == pytest.approx(0.99, abs=0.002)
  assert all(references[t]["threshold"] > alone[t] for t in train)


def test_the_first_blocks_channel_moments_are_a_tap_of_the_custom_cnn(tmp_path):
  from bonefrac import models
  config = models.ModelConfig(image_size=32, dense_units=(8,))
  cnn = models.create_cnn(config)
  taps = ood.feature_taps(cnn)
  assert list(taps) == ["first_block", "pooled", "penultimate"]
  assert taps["first_block"].shape[-1] == 2 * 32  # a mean and a spread per channel of block 1
  assert "first_block" not in ood.feature_taps(models.create_vgg16(config, weights=None))
  maps = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype(np.float32)
  np.testing.assert_allclose(ood.ChannelMoments()(maps),
                             np.concatenate([maps.mean(axis=(1, 2)), maps.std(axis=(1, 2))], -1),
                             rtol=1e-5)
  images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 1), dtype=np.uint8)
  features = ood.features_model(cnn).predict(images, verbose=0)
  served = ood.with_reference(cnn, ood.fit(features, features))
  served.save(tmp_path / "m.keras")
  loaded = keras.models.load_model(tmp_path / "m.keras")
  assert [layer.tap for layer in ood.layers_of(loaded)] == ["first_block", "pooled", "penultimate"]
  np.testing.assert_allclose(ood.scorer(loaded)(images[:4])[1],
                             ood.scores(ood.fit(features, features),
                                        {t: f[:4] for t, f in features.items()}), rtol=1e-3)
