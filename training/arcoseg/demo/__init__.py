"""The built-in main job: a simulated clinician adapts a model on real brain anatomy."""
