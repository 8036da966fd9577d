"""exportd's configuration: one Struct tree, from a TOML file and the environment."""

from exportd.config.loading import load_settings, plugin_config
from exportd.config.settings import Settings

__all__ = ["Settings", "load_settings", "plugin_config"]
