"""windows.yaml -> frozen model. The only package that knows the file format.

Three passes, each reporting *all* of its problems with ``FILE:LINE:COL``:

1. :mod:`.source`: YAML -> plain values, with the position of any node or key (PyYAML
   marks; :mod:`.positions` finds most on demand) and ``${VAR}`` expanded in scalar values
   (never in keys or comments);
2. :mod:`.schema`: shape and types with pydantic v2 (the same models give ``maintd schema``);
   :mod:`.issues` words their errors;
3. :mod:`.build`: cross-references, Alertmanager style (``undefined policy "x" used in
   window "y"``), and meaning, then the frozen records of :mod:`scheduler.model`.

:mod:`.loader` runs them: ``load`` is the only part that touches the disk; ``parse`` is
pure (the environment is a parameter).
"""

from __future__ import annotations

from ..errors import ConfigError, ConfigIssue
from .build import Shapes, build, check_references, daemon_env, record
from .loader import MAX_BYTES, load, parse
from .schema import (
    DAEMON_ENV,
    ID_RE,
    WINDOW_ID_RE,
    ConfigModel,
    DaemonModel,
    DrainModel,
    Duration,
    EmailModel,
    EndCheckModel,
    HooksModel,
    LabelSelectorModel,
    MatchModel,
    NotifiersModel,
    PolicyModel,
    ProviderModel,
    RuleModel,
    TenantModel,
    TenantsFileModel,
    WebhookModel,
    WebhookSettingsModel,
    WindowModel,
    json_schema,
)
from .source import MAX_ALIASED, MAX_DEPTH, MAX_NODES, Collector, Source, read_yaml

__all__ = [
    "DAEMON_ENV",
    "ID_RE",
    "MAX_ALIASED",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "WINDOW_ID_RE",
    "Collector",
    "ConfigError",
    "ConfigIssue",
    "ConfigModel",
    "DaemonModel",
    "DrainModel",
    "Duration",
    "EmailModel",
    "EndCheckModel",
    "HooksModel",
    "LabelSelectorModel",
    "MatchModel",
    "NotifiersModel",
    "PolicyModel",
    "ProviderModel",
    "RuleModel",
    "Shapes",
    "Source",
    "TenantModel",
    "TenantsFileModel",
    "WebhookModel",
    "WebhookSettingsModel",
    "WindowModel",
    "build",
    "check_references",
    "daemon_env",
    "json_schema",
    "load",
    "parse",
    "read_yaml",
    "record",
]
