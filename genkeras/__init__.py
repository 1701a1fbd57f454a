"""genkeras: classic generative models in Keras 3, exported for TensorFlow Serving.

Importing the package registers every model class with Keras serialization, so
`keras.saving.load_model("conv_ae.keras")` works after `import genkeras`.
"""

__version__ = "0.1.0"

from genkeras import models  # noqa: E402,F401  (registers the Keras classes)
from genkeras.registry import available_models, get_spec  # noqa: E402,F401
