"""The plugin kit: what first- and third-party plugins share instead of importing each other.

Every name a plugin uses is importable from here; the modules beside this one each own one job.
"""

from gateway.plugin_kit.bodies import ExactSizeBody, exact_size_body
from gateway.plugin_kit.checksums import content_md5
from gateway.plugin_kit.config import SectionReader, describe, read_section
from gateway.plugin_kit.javascript import as_javascript, load_json_file
from gateway.plugin_kit.lease import Lease, held
from gateway.plugin_kit.network import NetworkSettings
from gateway.plugin_kit.retry import RetryPolicy, backoff_delay, with_retries

__all__ = [
    "ExactSizeBody",
    "Lease",
    "NetworkSettings",
    "RetryPolicy",
    "SectionReader",
    "as_javascript",
    "backoff_delay",
    "content_md5",
    "describe",
    "exact_size_body",
    "held",
    "load_json_file",
    "read_section",
    "with_retries",
]
