"""TFDS datasets of bonefrac: importing this package registers `bone_fracture`."""

# The import registers the builder with TFDS.
from bonefrac_tfds.bone_fracture.bone_fracture_dataset_builder import Builder as BoneFracture  # noqa: F401
