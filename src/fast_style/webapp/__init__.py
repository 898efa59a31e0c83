"""The web app: ``python scripts/app.py`` serves a Gradio page and API over trained stylizers.

``settings`` reads ``configs/app.yaml`` (no torch, no Gradio), ``service`` loads the models and
stylizes (torch, no Gradio), ``ui`` builds and launches the Gradio app (the optional ``app`` extra).
"""
