"""What the image records cache saves: ``get_record`` served from memory vs from the database.

The object-store catalog reads its image record on every GetImage. This times 3000 reads of
one record with the cache (``RecordCache``) and with it switched off, on a temporary SQLite
file or on the PostgreSQL database given (``python -m tests.support.postgres`` prints a URL).

    python bench/records_cache.py [--database-url URL] [--reads 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.catalog import ImageFile, ImageRecord
from gateway.server.image_records import image_records_for
from gateway.settings import Settings


async def run(url: str | None, reads: int) -> None:
    with tempfile.TemporaryDirectory(prefix="records-cache-") as tmp:
        database = {"url": url} if url else {}
        records = image_records_for(Settings(data_dir=Path(tmp), database=database))
        records.open()
        try:
            image_file = ImageFile(sha1="a" * 40, size=3, compression="none", content_md5="x")
            uuid = f"bench-{time.time_ns()}"  # unique: a shared database may hold older runs
            await records.insert_record(ImageRecord({"uuid": uuid}, (image_file,), ("/bench",)))
            if url:
                await asyncio.sleep(2.5)  # until the poller has seen the insert
            cache = records.cache
            for label, used in (("cached", cache), ("uncached", None)):
                records.cache = used
                await records.get_record(uuid)
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(reads):
                    await records.get_record(uuid)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(
                    f"{'postgresql' if url else 'sqlite'} {label}: {wall / reads * 1e6:.0f} us "
                    f"wall, {cpu / reads * 1e6:.0f} us CPU per get_record"
                )
            records.cache = cache
        finally:
            records.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="postgresql:// URL (default: a SQLite file)")
    parser.add_argument("--reads", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(run(args.database_url, max(1, args.reads)))


if __name__ == "__main__":
    main()
