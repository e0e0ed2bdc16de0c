"""Fused sweeps: a grid of runs trained as one batched model, each member still a complete run."""

from labelsmooth.fused.checkpoints import MemberCheckpoints
from labelsmooth.fused.classifier import FusedClassifier, LockstepLoaders, MemberFailed, MemberRandomState
from labelsmooth.fused.stacked import NotFusable, StackedNetworks, check_fusable

__all__ = [
    "FusedClassifier",
    "LockstepLoaders",
    "MemberCheckpoints",
    "MemberFailed",
    "MemberRandomState",
    "NotFusable",
    "StackedNetworks",
    "check_fusable",
]
