"""The ARCO semi-supervised method (ARCO spec, sections 2, 4 and 5).

- `samplers`: NS / SG / SAG pixel samplers and the stratified memory-bank draw;
- `contrastive`: pixel selection (reliable anchors, confusable negatives, prototypes) and the
  InfoNCE contrastive loss;
- `memory_bank`: per-class FIFO negative banks (and the ring buffer they share with the queue);
- `cutmix`: the strong view (CutMix, intensity jitter);
- `teacher`: the EMA teacher and the ramp-up;
- `nn_loss`: the nearest-neighbour (diversity) loss;
- `step`: `ArcoConfig` and `SemiSupervisedMethod`, one training iteration of mean teacher / ARCO.
"""
