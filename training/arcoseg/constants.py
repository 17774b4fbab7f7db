"""Conventions shared by every part of the engine."""

# Label value of voxels nobody annotated (partial labels). They are *not* background:
# losses ignore them, samplers never treat them as foreground.
IGNORE_LABEL = 255

# Array axis order everywhere in the engine: numpy arrays are (z, y, x) as SimpleITK's
# GetArrayFromImage returns them; spacings stored next to arrays are (z, y, x) too.
# Images carry a leading channel axis: (C, z, y, x). Batches for 2D nets are (B, C, y, x);
# for 3D nets (B, C, z, y, x). Label batches drop the channel axis.
