"""Move object bytes: DATA frames into an image writer, and a stored object out as DATA frames."""

from __future__ import annotations

import logging
import select
from collections.abc import Callable

from openxbsa import wire
from openxbsa.errors import MediaReadError, OpenXBSAError
from openxbsa.storage.base import ImageWriter, ObjectReader

log = logging.getLogger("openxbsa.media")


class Receiver:
    """Receives the DATA frames of one object into a writer.

    A storage failure does not stop the stream: the remaining frames are read and dropped so
    the session stays in step, and the failure is reported at BSAEndData.
    """

    def __init__(self, writer: ImageWriter, buffer: memoryview) -> None:
        self.writer = writer
        self.error: OpenXBSAError | None = None
        self.bytes = 0
        self._buf = buffer  # one frame buffer per session, reused for every object

    def take(self, channel: wire.Channel, length: int) -> None:
        direct = self.writer.write_buffer(length) if self.error is None else None
        view = direct if direct is not None else self._buf[:length]   # direct: no copy
        channel.readinto_exact(view)
        self.bytes += length
        if self.error is None:
            try:
                if direct is not None:
                    self.writer.wrote(length)
                else:
                    self.writer.write(view)
            except OpenXBSAError as exc:
                log.error("write to the storage unit failed: %s", exc)
                self.error = exc


def send_object(channel: wire.Channel, reader: ObjectReader,
                cancelled: Callable[[], bool]) -> bool:
    """Stream one object as DATA frames; False if the client cancelled. Raises MediaReadError."""
    remaining = reader.size
    zc = reader.zero_copy()
    sent = 0
    while remaining:
        if cancelled():
            log.info("the client ended the object after %d of %d bytes", sent, reader.size)
            return False
        part = min(remaining, wire.STREAM_FRAME)
        if zc is not None:
            channel.sendfile(zc[0], zc[1] + sent, part)
            reader.sent(part)
        else:
            views = reader.read_views(part)
            if sum(len(v) for v in views) != part:
                raise MediaReadError("object is shorter than the catalog says")
            channel.send_data_views(views)
        sent += part
        remaining -= part
    reader.finish()                 # before the end-of-data frame says the object is good
    return True


def peer_has_spoken(channel: wire.Channel) -> bool:
    """True when the client has sent something (a cancel) while we stream to it."""
    readable, _, _ = select.select([channel.sock], [], [], 0)
    return bool(readable)
