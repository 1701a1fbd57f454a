"""genkeras: classic generative models in Keras 3, exported for TensorFlow Serving.

Importing the package registers every model class with Keras serialization, so
`keras.saving.load_model("conv_ae.keras")` works after `import genkeras`.
"""

import os

# TensorFlow's C++ start-up notices (oneDNN, CUDA probing) drown the progress bar;
# errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from genkeras import models  # noqa: E402,F401  (registers the Keras classes)
from genkeras.registry import available_models, get_spec  # noqa: E402,F401
