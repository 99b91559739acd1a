"""The `bone_fracture` dataset (`tfds new` layout)."""
