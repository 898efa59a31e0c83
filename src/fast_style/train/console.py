"""A training console with each line once and none that misleads.

Lightning's info lines go through the logging setup (``configs/hydra/job_logging/fast_style.yaml``:
the message once on stderr, the full record in ``<run dir>/train.log``). What is left is dropped
here: the advertisement tip, and warnings about things this project does on purpose.
"""

from __future__ import annotations

import logging
import warnings

# Warnings that describe intended behaviour, not a problem of the run.
_INTENDED = (
    # the frozen VGG of the loss stays in eval mode (PerceptualLoss keeps it there)
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # the run folder holds Hydra's .hydra/ and train.log before the first checkpoint (or a resumed run's files)
    r"Checkpoint directory .* exists and is not empty",
    # Lightning's own use of a torch API; nothing a user can change
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _NoAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in str(record.msg)


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for pattern in _INTENDED:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvertisement) for f in logger.filters):
        logger.addFilter(_NoAdvertisement())
