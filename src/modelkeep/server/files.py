"""A stored file as an HTTP response: streamed, verified as it is read (the store's reader
checks every chunk against its id), named safely for the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

_READ = 1 << 20


async def file_response(reader: BinaryIO, size: int, name: str) -> StreamingResponse:
    """Damage in the first MiB is an error response (raised here); later damage cuts the
    connection, so a client never receives changed bytes as the file."""
    try:
        first = await run_in_threadpool(reader.read, _READ)
    except BaseException:
        reader.close()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            data = first
            while data:
                yield data
                data = await run_in_threadpool(reader.read, _READ)
        finally:
            reader.close()

    return StreamingResponse(
        body(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            "X-Content-Type-Options": "nosniff",
        },
    )
