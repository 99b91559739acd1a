"""bonefrac: fracture / no-fracture classifiers for bone radiographs, the TensorFlow way."""

__version__ = "0.1.0"
