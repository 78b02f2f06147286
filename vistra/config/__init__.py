"""Config files: load ``.py``/``.json``/``.yaml`` with ``_base_`` inheritance, merge, dump.

torch-free: nothing here imports torch, so ``vistra print-config`` answers at once.
"""

from vistra.config.cfg_options import CfgOptionsAction, DictAction, parse_cfg_options
from vistra.config.config import Config
from vistra.config.config_dict import ConfigDict
from vistra.config.custom_imports import import_custom_modules
from vistra.config.errors import ConfigError, CustomImportError

__all__ = [
    "CfgOptionsAction",
    "Config",
    "ConfigDict",
    "ConfigError",
    "CustomImportError",
    "DictAction",
    "import_custom_modules",
    "parse_cfg_options",
]
