"""The plugin kit: what first- and third-party plugins share instead of importing each other.

Every name a plugin uses is importable from here; the modules beside this one each own one job.
"""

from gateway.plugin_kit.config import SectionReader
from gateway.plugin_kit.retry import backoff_delay

__all__ = ["SectionReader", "backoff_delay"]
