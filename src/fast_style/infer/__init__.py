"""Inference: load a checkpoint or an export and stylize images, folders and videos; exports. No Lightning."""
