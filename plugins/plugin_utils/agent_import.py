# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the agent bundled with the collection (``<collection root>/agent``) importable.

Controller-side plugins use the agent's own suite table (``ikeagent.crypto.suites``, standard
library only) and config schema, so there is one table and one schema. When ``ikeagent`` is
already importable (the agent installed in the controller's environment) that copy is used;
otherwise the bundled source directory is put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# <root>/plugins/plugin_utils/agent_import.py -> <root>
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
AGENT_SOURCE = COLLECTION_ROOT / "agent"


class AgentImportError(ImportError):
    """The agent package is neither installed nor bundled with the collection."""


def ensure_importable() -> None:
    """Make ``import ikeagent`` work, preferring an installed agent over the bundled source."""
    if "ikeagent" in sys.modules or importlib.util.find_spec("ikeagent") is not None:
        return
    if not (AGENT_SOURCE / "ikeagent" / "__init__.py").is_file():
        raise AgentImportError(
            f"the IKE agent package (ikeagent) is not installed and not bundled at {AGENT_SOURCE}"
        )
    path = str(AGENT_SOURCE)
    if path not in sys.path:
        sys.path.append(path)
    importlib.invalidate_caches()


def import_agent_module(name: str) -> ModuleType:
    """``import_agent_module("ikeagent.crypto.suites")`` after ``ensure_importable()``."""
    if name != "ikeagent" and not name.startswith("ikeagent."):
        raise ValueError(f"{name}: not a module of the agent package")
    ensure_importable()
    return importlib.import_module(name)
