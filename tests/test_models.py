"""Model factories: parameter counts, float32 output under mixed precision, fine-tuning."""

import keras
import numpy as np
import pytest

from bonefrac import models

SMALL = models.ModelConfig(image_size=32, dense_units=(16, 8), pooling="max")


def _trainable(model):
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_cnn_parameter_count():
  model = models.create_cnn(SMALL)
  # conv 3x3: (27+1)*32 + (288+1)*64 + (576+1)*128 = 896 + 18,496 + 73,856, and the extra
  # conv 128 -> 128: (1152+1)*128 = 147,584
  # batch norm gamma/beta trainable: 2*(32+64+128+128) = 704 (moving stats are not)
  # head after global max pool (128): 128*16+16 + 16*8+8 + 8+1 = 2,064 + 136 + 9, and the
  # linear skip from the pooled features to the logit: 128+1
  assert _trainable(model) == 896 + 18_496 + 73_856 + 147_584 + 704 + 2_064 + 136 + 9 + 129
  assert model.count_params() == _trainable(model) + 704


def test_cnn_original_configuration():
  config = models.ModelConfig(image_size=64, pooling="flatten", stem_stride=1, extra_convs=0,
                              conv_dropout=0.3, linear_skip=False, augmentation=None)
  model = models.create_cnn(config)
  assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]) == 3
  assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]) == 4
  # 64 -> 32 -> 16 -> 8 after three 2x2 pools: Flatten gives 8*8*128 features
  flatten = [layer for layer in model.layers if isinstance(layer, keras.layers.Flatten)][0]
  assert flatten.output.shape[-1] == 8 * 8 * 128
  assert "linear_logit" not in [layer.name for layer in model.layers]


def test_vgg16_base_is_frozen_and_top_block_unfreezes():
  model = models.create_vgg16(SMALL, weights=None)
  head = 512 * 16 + 16 + 16 * 8 + 8 + 8 + 1 + 512 + 1  # global max pool over 512, linear skip
  assert _trainable(model) == head
  assert model.count_params() == 14_714_688 + head  # VGG16 without its top
  assert models.unfreeze_top_block(model) == 4  # block5_conv1..3 and block5_pool
  assert _trainable(model) == head + 3 * (3 * 3 * 512 * 512 + 512)


def test_flatten_pooling_is_the_original_head():
  model = models.create_cnn(models.ModelConfig(image_size=32, pooling="flatten", dense_units=(4,)))
  assert any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)


@pytest.mark.parametrize("factory", [models.create_cnn,
                                     lambda c: models.create_vgg16(c, weights=None)])
def test_output_is_float32_probability_under_mixed_precision(factory):
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = factory(SMALL)
    out = model(np.zeros((2, 32, 32, 1), np.uint8), training=False)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert out.dtype == "float32" and out.shape == (2, 1)
  assert np.all((out.numpy() >= 0) & (out.numpy() <= 1))
