"""Configuration: the schema (every key, type, default and rule), its checks, and the command-line
launcher every entry point and script uses. Imports neither torch nor Lightning."""

from pathlib import Path

# The one place that knows where the YAML options live (the repository's configs/ folder).
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
