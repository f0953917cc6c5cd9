"""UI-only helpers for the Streamlit pages: cached resources, widgets, plotly figures.

Import order matters here: aiortc's SRTP library (pylibsrtp, used by streamlit-webrtc)
segfaults at import when TensorFlow's bundled SSL symbols were loaded first (seen with
TensorFlow 2.21 + pylibsrtp 1.0). Every page imports this package before anything else,
so loading pylibsrtp first keeps the whole dashboard process safe.
"""

try:  # noqa: SIM105 - the webcam stack is optional for the other pages
    import pylibsrtp  # noqa: F401
except ImportError:
    pass
