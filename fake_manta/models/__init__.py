"""State and behaviour of the fake Manta, with no HTTP (moto's ``models.py`` role)."""

from fake_manta.models.backend import Backend, BlobWriter, Ingested, ListQuery, ingest
from fake_manta.models.disk import DiskBackend
from fake_manta.models.entry import Entry
from fake_manta.models.memory import MemoryBackend
from fake_manta.models.store import ObjectMeta, Store

__all__ = [
    "Backend",
    "BlobWriter",
    "DiskBackend",
    "Entry",
    "Ingested",
    "ListQuery",
    "MemoryBackend",
    "ObjectMeta",
    "Store",
    "ingest",
]
