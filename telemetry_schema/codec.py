"""Encoding and decoding the messages of one kind's stream, with a checksum on each.

Every message the writer produces (the schema, then one record batch per flush) carries a
tag in its custom metadata: ``crc=XXXXXXXX`` is the CRC-32 of the whole message (metadata and
body) as written with eight ``#`` in place of the digits, and a record batch's tag adds
``;seq=LO-HI``, the sequence numbers its flush spans over every kind of its rank (a reader
uses it to show a flush only once all its kinds' batches are on disk). Small batches are
written uncompressed and large ones zstd-compressed: per-buffer compression costs more than
it saves on a few rows.

Decoding checks before it computes: the framing, the checksum, Arrow's own checks on the
metadata, then full validation of the decoded arrays. Bytes that end before a message does
are a *torn* tail (a live writer mid-write, or a killed one); anything else that fails is
*corruption*, reported with the byte offset where it starts.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass

import pyarrow as pa

TAG_KEY = "esper"
_PLACEHOLDER = b"########"
_TAG_RE = re.compile(rb"crc=([0-9a-f]{8})(?:;seq=(\d+)-(\d+))?\x00")
_CONTINUATION = b"\xff\xff\xff\xff"
EOS = _CONTINUATION + b"\x00\x00\x00\x00"
MAX_METADATA = 1 << 20
"""A message whose metadata claims more bytes than this is corrupt (ours are a few KB)."""


class Corrupt(Exception):
    """A complete message that fails its checks; ``args[0]`` says how, in a few words."""


class Torn(Exception):
    """The bytes end inside a message."""


class BatchEncoder:
    """Serialises one schema's messages: the schema message once, then one message a batch."""

    def __init__(self, schema: pa.Schema, compress_rows: int = 64) -> None:
        self.schema = schema
        self.compress_rows = compress_rows
        self._sink = io.BytesIO()
        tagged = schema.with_metadata({**(schema.metadata or {}), TAG_KEY.encode(): b"crc=" + _PLACEHOLDER})
        self._writers = {}
        for compression in (None, "zstd"):
            options = pa.ipc.IpcWriteOptions(compression=compression)
            writer = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), tagged, options=options)
            writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))  # emits the schema now
            self._writers[compression] = writer
            if compression is None:
                head = self._take()
                schema_len = _message_length(head)
                self.schema_message = _seal(head[:schema_len])
            self._take()

    def encode(self, batch: pa.RecordBatch, lo: int, hi: int) -> bytes:
        """The message of ``batch``, tagged with its flush's sequence range [lo, hi]."""
        small = batch.num_rows < self.compress_rows and batch.nbytes < 32 * self.compress_rows
        compression = None if small else "zstd"
        self._writers[compression].write_batch(batch, custom_metadata={TAG_KEY: f"crc=########;seq={lo}-{hi}"})
        return _seal(self._take())

    def _take(self) -> bytes:
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data


def _message_length(data: bytes) -> int:
    """Bytes of the first encapsulated message in ``data`` (prefix, metadata and body)."""
    msg = pa.ipc.read_message(pa.BufferReader(data))
    (meta_len,) = struct.unpack_from("<i", data, 4)
    return 8 + meta_len + msg.body.size if msg.body is not None else 8 + meta_len


def _seal(message: bytes) -> bytes:
    """Write the message's CRC-32 into its placeholder."""
    at = message.find(b"crc=" + _PLACEHOLDER)
    if at < 0:
        raise ValueError("message has no checksum placeholder")
    digits = b"%08x" % zlib.crc32(message)
    return message[:at + 4] + digits + message[at + 12:]


@dataclass
class Message:
    """One decoded message: a schema, or a record batch with its flush's sequence range."""

    schema: pa.Schema | None
    batch: pa.RecordBatch | None
    lo: int
    hi: int
    end: int
    """Offset just past the message in the bytes it was read from."""


def read_message(data: pa.Buffer, pos: int, schema: pa.Schema | None) -> Message | None:
    """Decode the message at ``data[pos:]`` (a schema when ``schema`` is None, else a record
    batch of it). Returns None at an end-of-stream marker; raises Torn or Corrupt."""
    size = data.size
    if size - pos < 8:
        raise Torn()
    head = data.slice(pos, 8).to_pybytes()
    if head[:4] != _CONTINUATION:
        raise Corrupt("no message marker")
    (meta_len,) = struct.unpack("<i", head[4:])
    if meta_len == 0:
        return None
    if meta_len < 0 or meta_len > MAX_METADATA:
        raise Corrupt(f"message metadata length {meta_len}")
    if size - pos < 8 + meta_len:
        raise Torn()
    try:
        msg = pa.ipc.read_message(pa.BufferReader(data.slice(pos)))
    except OSError as exc:
        if "bytes for message body" in str(exc):
            raise Torn() from None
        raise Corrupt(_first_line(exc)) from None
    except (pa.ArrowException, ValueError) as exc:
        raise Corrupt(_first_line(exc)) from None
    body = msg.body.size if msg.body is not None else 0
    end = pos + 8 + meta_len + body
    lo, hi = _check_tag(data, pos, 8 + meta_len, body)
    if schema is None:
        if msg.type != "schema":
            raise Corrupt(f"expected a schema message, found {msg.type}")
        try:
            read = pa.ipc.read_schema(msg)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise Corrupt(_first_line(exc)) from None
        return Message(read, None, -1, -1, end)
    if msg.type != "record batch":
        raise Corrupt(f"expected a record batch, found {msg.type}")
    if lo < 0:
        raise Corrupt("record batch without a sequence range")
    try:
        batch = pa.ipc.read_record_batch(msg, schema)
        batch.validate(full=True)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise Corrupt(_first_line(exc)) from None
    return Message(None, batch, lo, hi, end)


def _check_tag(data: pa.Buffer, pos: int, meta_end: int, body: int) -> tuple[int, int]:
    """Verify the message's checksum; return its flush's sequence range (-1, -1 if none)."""
    meta = data.slice(pos, meta_end).to_pybytes()
    found = _TAG_RE.search(meta)
    if found is None:
        raise Corrupt("no checksum")
    blank = meta[:found.start(1)] + _PLACEHOLDER + meta[found.end(1):]
    crc = zlib.crc32(data.slice(pos + meta_end, body), zlib.crc32(blank))
    if crc != int(found.group(1), 16):
        raise Corrupt("checksum mismatch")
    if found.group(2) is None:
        return -1, -1
    lo, hi = int(found.group(2)), int(found.group(3))
    if hi < lo:
        raise Corrupt("bad sequence range")
    return lo, hi


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]
