"""ARCOSegment engine: data I/O, networks, ARCO training, inference, metrics, model files, CLI."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that wait by spinning (the default) keep cores busy between torch's parallel
# regions; on a workstation shared with other programs that slows everyone, torch included, many
# times (issue 13). Set before torch is imported by the engine; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
