"""Train a label-smoothed classifier: ``python train.py smoothing=gamma smoothing.gamma=0.8 [-m]``."""

from labelsmooth.cli.train import main

if __name__ == "__main__":
    main()
