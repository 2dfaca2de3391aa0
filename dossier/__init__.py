"""dossier: an interpretability dossier for a trained convolutional network."""

__version__ = "0.1.0"
