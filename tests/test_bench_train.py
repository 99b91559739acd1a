"""The training benchmark: the original setup's model as the original built it, and each setup timed."""

from bonefrac import bench_train, train_lib


def test_the_original_cnn_is_the_original_architecture():
  model = bench_train.original_model("cnn", 64)
  # 64 px RGB, valid 3x3 convs, 2x2 pools: 62 -> 31 -> 29 -> 14 -> 12 -> 6, so 6*6*128 = 4608
  # features. Convs 896 + 18,496 + 73,856; batch norm 4 per channel: 128 + 256 + 512;
  # dense 4608*256+256 = 1,179,904, 256*128+128 = 32,896, 128+1 = 129.
  assert model.count_params() == 896 + 18_496 + 73_856 + 128 + 256 + 512 + 1_179_904 + 32_896 + 129
  assert [layer.rate for layer in model.layers if "dropout" in layer.name] == [0.3] * 4
  assert model.layers[-1].activation.__name__ == "sigmoid"


def test_bench_train_times_each_precision(small_data_dir):
  config = train_lib.TrainConfig(dataset="bone_fracture/synthetic_small", data_dir=small_data_dir,
                                 image_size=32, batch_size=4, dense_units=(8,))
  result = bench_train.bench_train(config, model_names=("cnn",),
                                   precisions=("float32", "mixed_bfloat16"), xla=(False,),
                                   steps=2, warmup_steps=1)
  assert {"cnn float32", "cnn mixed_bfloat16", "devices"} <= set(result)
  assert "cnn original" not in result  # only with a Kaggle tree
