"""Host synchronisations of one training step per method, on any checkout (issue 16's before /
after): loads `arcoseg/train/host_sync.py` of *this* tree by path and runs the `arcoseg` package
on PYTHONPATH (2D phantom, logging off, one step after a warm-up step).

    cd OLD_CHECKOUT && PYTHONPATH=training python NEW/training/benchmarks/experiments/count_host_syncs.py \\
        supervised mean_teacher arco-sg
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

HOST_SYNC = Path(__file__).resolve().parents[2] / "arcoseg" / "train" / "host_sync.py"


def main(methods: list[str]) -> None:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("host_sync", HOST_SYNC)
    host_sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_sync)
    from arcoseg.data.synthetic import make_phantom_dataset
    from arcoseg.progress import Reporter
    from arcoseg.train.options import TrainOptions
    from arcoseg.train.trainer import Trainer, prepare_data

    tmp = Path(tempfile.mkdtemp())
    root = make_phantom_dataset(tmp / "Phantom", num_cases=4, shape_zyx=(6, 32, 32), val_cases=1)
    for name in methods:
        method, _, sampler = name.partition("-")
        options = TrainOptions(dims=2, labelled=2, iterations=100, batch=2, patch=(32, 32),
                               device="cpu", val_every=10**6, checkpoint_every=10**6,
                               log_every=10**6, cache_dir=tmp / "cache", method=method,
                               sampler=sampler or "sg")
        trainer = Trainer(prepare_data(root, options, Reporter(quiet=True)), options,
                          tmp / name, Reporter(quiet=True))
        trainer._step()
        counter = host_sync.HostSyncCounter()
        with counter.python_copies(), counter:
            trainer._step()
        print(f"{name}: {len(counter.calls)} per step {sorted(set(counter.calls))}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["supervised", "mean_teacher", "arco-sg"])
