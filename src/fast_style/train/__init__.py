"""Training with PyTorch Lightning: module, data, callbacks, checkpoint IO, loggers, styles, resume."""
