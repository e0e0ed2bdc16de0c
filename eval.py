"""Evaluate a checkpoint with the calibration metrics and temperature scaling: ``python eval.py ckpt_path=...``."""

from labelsmooth.cli.evaluate import main

if __name__ == "__main__":
    main()
