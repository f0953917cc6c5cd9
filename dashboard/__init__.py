"""UI-only helpers for the Streamlit pages: cached resources, widgets, plotly figures.

Import order matters here: aiortc's SRTP library (pylibsrtp, used by streamlit-webrtc)
segfaults at import when TensorFlow's bundled SSL symbols were loaded first (seen with
TensorFlow 2.21 + pylibsrtp 1.0). Every page imports this package before anything else,
so loading pylibsrtp first keeps the whole dashboard process safe.
"""

import contextlib
import sys

try:  # noqa: SIM105 - the webcam stack is optional for the other pages
    import pylibsrtp  # noqa: F401
except ImportError:
    pass


def _keep_keras_state_between_reruns() -> None:
    """Stop Streamlit from resetting Keras after every script run.

    After each run of a page, fragments included, Streamlit's script runner calls
    `keras.backend.clear_session()` (its `_clean_problem_modules`), meant for scripts that
    build a new model on every run. This app builds none in its pages (models are cached
    resources), and each call runs a full `gc.collect()` and clears TensorFlow's kernel
    caches: profiled with py-spy during a webcam stream, every call held the GIL for about
    360 ms, once a second while the Webcam readout refreshed, and stalled the video threads
    (4 FPS from a 15 fps camera). The replacement keeps the rest of Streamlit's clean-up.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if getattr(getattr(script_runner, "_clean_problem_modules", None), "keeps_keras", False):
        return

    def clean_problem_modules() -> None:
        """Streamlit's clean-up minus the Keras reset: close matplotlib figures, as it does."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            with contextlib.suppress(Exception):
                plt.close("all")

    clean_problem_modules.keeps_keras = True
    script_runner._clean_problem_modules = clean_problem_modules


_keep_keras_state_between_reruns()
