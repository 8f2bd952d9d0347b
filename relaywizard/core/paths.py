"""Where relaywizard keeps its files, from platformdirs.

Nothing is computed at import time: callers ask for an ``AppPaths`` when they need one, so tests (and a
service running under another account) can point everything elsewhere with ``RELAYWIZARD_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "relaywizard"
HOME_ENV = "RELAYWIZARD_HOME"


@dataclass(frozen=True)
class AppPaths:
    """The folders of one relaywizard installation."""

    config: Path
    data: Path
    state: Path
    cache: Path
    log: Path

    @classmethod
    def under(cls, root: Path) -> AppPaths:
        """Every folder below one root (tests, portable installs, ``RELAYWIZARD_HOME``)."""
        root = Path(root)
        return cls(
            config=root / "config",
            data=root / "data",
            state=root / "state",
            cache=root / "cache",
            log=root / "log",
        )

    @classmethod
    def default(cls) -> AppPaths:
        """The platform's folders for this user, or those under ``$RELAYWIZARD_HOME`` when it is set."""
        home = os.environ.get(HOME_ENV)
        if home:
            return cls.under(Path(home).expanduser())
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        return cls(
            config=Path(dirs.user_config_dir),
            data=Path(dirs.user_data_dir),
            state=Path(dirs.user_state_dir),
            cache=Path(dirs.user_cache_dir),
            log=Path(dirs.user_log_dir),
        )

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.toml"

    @property
    def spool(self) -> Path:
        return self.data / "spool"

    @property
    def delivery_log(self) -> Path:
        return self.log / "deliveries.jsonl"
