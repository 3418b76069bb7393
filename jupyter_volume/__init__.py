"""jupyter-volume."""
