"""fast-style: train Johnson-style fast neural style transfer networks and stylize with them.

Layers (each imports only those listed before it):

- ``errors``, ``files``, ``images``: shared helpers (one-line errors, atomic writes, the image codec);
- ``model``: the transformer net, its CPU fast paths, the perceptual loss and its VGG;
- ``config``: the schema of every command's keys, its checks and the command-line launcher (no torch);
- ``checkpoint_format``: what a checkpoint holds and how it is read safely (torch, no Lightning);
- ``infer``: stylizing with a checkpoint or an export (backends, tiling, colour, video, export);
- ``train``: the Lightning module, data, callbacks, checkpoint IO, loggers, styles, resume;
- ``contact_sheet``: comparing trained runs in one picture.

``infer`` never imports ``train`` or Lightning; see the README's "How the code is laid out".
"""
