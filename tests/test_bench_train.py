"""The training benchmark times each setup on real batches."""

from bonefrac import bench_train, train_lib


def test_bench_train_times_each_precision(small_data_dir):
  config = train_lib.TrainConfig(dataset="bone_fracture/synthetic_small", data_dir=small_data_dir,
                                 image_size=32, batch_size=4, dense_units=(8,))
  result = bench_train.bench_train(config, model_names=("cnn",),
                                   precisions=("float32", "mixed_bfloat16"), xla=(False,),
                                   steps=2, warmup_steps=1)
  assert result["cnn float32"] > 0 and result["cnn mixed_bfloat16"] > 0
  assert "cnn original" not in result  # only with a Kaggle tree
