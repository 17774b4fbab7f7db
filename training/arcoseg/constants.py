"""Conventions shared by every part of the engine."""

# Label value of voxels nobody annotated (partial labels). They are *not* background:
# losses ignore them, samplers never treat them as foreground.
IGNORE_LABEL = 255
# A dataset label of this name marks unannotated voxels (nnU-Net v2's partial labels): trained
# on as IGNORE_LABEL, left out of every metric.
IGNORE_NAME = "ignore"
# Name of class 0 of a model Adapt starts from scratch (--classes names the others).
BACKGROUND = "background"
# Every spatial input size of both networks (2D U-Net, 3D V-Net) is a multiple of this: four
# 2x down-samplings. Patches and windows are sized with it.
INPUT_DIVISOR = 16
# 2.5D input of 2D models (data.context): at most this many neighbouring slices on each side.
MAX_CONTEXT_SLICES = 3

# Array axis order everywhere in the engine: numpy arrays are (z, y, x) as SimpleITK's
# GetArrayFromImage returns them; spacings stored next to arrays are (z, y, x) too.
# Images carry a leading channel axis: (C, z, y, x). Batches for 2D nets are (B, C, y, x);
# for 3D nets (B, C, z, y, x). Label batches drop the channel axis.

# Choices the command line offers, here rather than next to the code that implements them so
# that building the parser (`arcoseg --help`, `models list`) imports no torch or MONAI.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
METHODS = ("supervised", "mean_teacher", "arco")
OPTIMIZERS = ("sgd", "adamw")  # train.optimizer
SAMPLERS = ("ns", "sg", "sag")  # ARCO pixel samplers: naive, stratified group, antithetic
MIX_MODES = ("none", "unlabelled", "bidirectional")  # CutMix of the semi-supervised methods
TEACHER_NORMS = ("batch", "running")  # BatchNorm statistics of the teacher's pass
DEFAULT_JITTER = 0.5  # intensity augmentation strength (arcoseg.data.intensity)
PRIOR_MODES = ("none", "nearest", "interpolate")  # Adapt's propagation prior (arcoseg.adapt.prior)
FUSION_WEIGHT = 0.5  # the drawing's weight in Adapt's output (arcoseg.adapt.fusion)
DEFAULT_PRIOR = "none"  # until its effect is measured (training/benchmarks/RESULTS.md)
# Adapt from a model: weight of the parent's prediction far from the drawing (adapt.parent_prior)
PARENT_PRIOR = 3.0
# `arcoseg demo`: a fixed iteration count (its result must not depend on the machine's load,
# issue 13); the budget in seconds only stops a machine far too slow to finish them
DEMO_ITERATIONS = 600
DEMO_BUDGET = 900.0

# A model folder's files (arcoseg.modelfile); model.json is replaced last: it commits a save.
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
MODEL_FILES = (WEIGHTS_FILE, METADATA_FILE)
