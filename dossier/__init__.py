"""dossier: an interpretability dossier for a trained convolutional network."""

import time

__version__ = "0.1.0"
IMPORTED_AT = time.perf_counter()  # a plan counts a build's start-up (the imports) from here
