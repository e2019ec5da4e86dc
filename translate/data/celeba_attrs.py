"""CelebA attribute names that configs and the data pipeline share.

Kept apart from translate/data/labelled.py (which imports TensorFlow) so that building a config
(configs/stargan.py) stays light: configs import only ml_collections and modules like this one.
"""

# The reference's (yunjey/stargan) default --selected_attrs.
CELEBA_DEFAULT_ATTRS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
# The reference's `create_labels` treats these as one exclusive group (setting one clears the others).
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
