"""fast-style: train Johnson-style fast neural style transfer networks and stylize with them.

Packages: ``config`` (schema, checks, launcher; no torch), ``model`` (networks, CPU kernels, loss),
``infer`` (stylizing and exports; no Lightning), ``train`` (Lightning); see the README's
"How the code is laid out".
"""
