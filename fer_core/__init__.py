"""fer_core: the headless core of the facial-emotion-recognition workbench.

Nothing in this package imports streamlit. TensorFlow is imported lazily by the modules
that need it (model, train, evaluate, inference), so data work stays fast.
"""

from fer_core.constants import EMOTIONS, IMAGE_SIZE, NUM_CLASSES
from fer_core.hardware import configure_tensorflow

# Before any module of the package imports TensorFlow: settings it reads only at import.
configure_tensorflow()

__all__ = ["EMOTIONS", "IMAGE_SIZE", "NUM_CLASSES"]
__version__ = "0.1.0"
