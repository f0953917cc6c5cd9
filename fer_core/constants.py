"""Project-wide constants: the one place that names the classes and the input geometry."""

# FER-2013 label order (the CSV release and most published work use it).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)

# Faces are stored and cached as IMAGE_SIZE x IMAGE_SIZE single-channel uint8.
IMAGE_SIZE = 48

# Splits, in the order the standard protocol uses them.
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Test-time augmentation modes, cheapest first: the centre crop, plus its mirror image, ten crops.
TTA_MODES: tuple[str, ...] = ("none", "flip", "tencrop")

# Image file extensions the loaders accept.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
)

# Where to get the full dataset (shown by the dashboard and the CLI).
FER2013_URL = "https://www.kaggle.com/datasets/msambare/fer2013"

# The shipped default model (relative to the repository root).
DEFAULT_MODEL_NAME = "fer_resnet"

# The face detector predict, video, serve and the pages use (see fer_core.faces.PRESETS and
# docs/inference.md for the measurement behind the choice).
DEFAULT_DETECTOR = "blazeface"

# Rotate each face so its eyes are level before the 48x48 crop (FER-2013 faces are roughly
# upright). benchmarks/alignment.py: on FER-2013 val faces turned by +-15/30 degrees it gained
# 0.8-3.3 points and lost nowhere; on the turned shared photos it kept the upright prediction
# (docs/inference.md, "Eye alignment"). Faces without eye landmarks (Haar) are cropped as is.
ALIGN_FACES = True
