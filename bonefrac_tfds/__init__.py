"""TFDS datasets of bonefrac: importing this package registers `bone_fracture`."""

from bonefrac_tfds.bone_fracture.bone_fracture_dataset_builder import Builder as BoneFracture
