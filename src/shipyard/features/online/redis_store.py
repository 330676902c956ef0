"""Redis online store: one string per (view, entity key), written by a script and read by MGET.

Key layout (``prefix`` defaults to ``shipyard:``; give each project or test its own)::

    {prefix}row:{view}:{entity-key JSON}   string  "<event µs> <JSON object of the row's features>"
    {prefix}meta:{view}                    hash    entities, max_ts, last_write, version
    {prefix}seen:{view}:{entity-key JSON}  zset    event times seen within the dedupe window

A row is one value, replaced whole, so a feature removed from a view leaves no trace and a read
is one ``MGET`` for every row of every view asked for. Script calls cost about 2 µs each here and
a hash of many fields costs more to write than one string (8 against 2 µs a row, measured), which
is what bounds materialization.

Conditional writes run in a Lua script so that the event-time comparison and the replacement are
atomic; one script call writes ``batch_size`` rows, in order, and all the calls of a write are sent
together (pipelined) before their replies are read.

Reads and writes go through one dedicated connection per thread (and process), encoded with
hiredis when it is installed: redis-py's per-command path (pool checkout with a readiness poll,
command packing in Python, response callbacks) cost about 60 µs per call here, more than the
round trip itself. Everything else (scan, stats, deletes) uses the ordinary client.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import ConfigError, StoreUnavailable, require
from shipyard.features.online.base import (
    OnlineStore,
    ViewStats,
    WriteResult,
    decode_key,
    decode_row,
    encode_key,
    encode_key_column,
    encode_row,
    encode_row_column,
    from_micros,
    micros_column,
    now_micros,
    to_micros,
)

try:  # the C encoder and parser of the Redis protocol; redis-py's own are used without them
    import hiredis
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency of the redis extra
    hiredis = None
    _hiredis_pack = None

_TS_MARK = b'"$ts"'  # a tagged timestamp value (see base.encode_value)
_TS_KEY = "$ts"
_VERDICTS = ("written", "duplicate", "stale")
_MGET_KEYS = 1000  # keys per MGET of a read: a long command holds up every other client

# This process's id, kept current across forks: connections belong to the process that opened
# them, and the hot read path checks this instead of asking the kernel every call.
_process_id = os.getpid()


def _after_fork() -> None:
    global _process_id
    _process_id = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

# The conditional write of many rows in one command. KEYS: the view's meta hash, then per row its
# key (and its seen-set when a dedupe window is given). ARGV: flag, write stamp, version, window,
# then per row its value, "<event µs> <JSON>". Returns one code per row (0 written, 1 duplicate,
# 2 stale).
_WRITE_LUA = """
local meta = KEYS[1]
local flag, stamp, version, window = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local per = 1
if window > 0 then per = 2 end
local out = {}
local added, max_ts, max_raw = 0, nil, nil
for r = 1, (#KEYS - 1) / per do
  local key = KEYS[per * (r - 1) + 2]
  local value = ARGV[r + 4]
  local raw = string.sub(value, 1, string.find(value, ' ', 1, true) - 1)
  local ts = tonumber(raw)
  local stored = redis.call('GET', key)
  local cur = nil
  if stored then
    local space = string.find(stored, ' ', 1, true)
    if space then cur = tonumber(string.sub(stored, 1, space - 1)) end
    if not cur then return redis.error_reply('WRONGTYPE ' .. key .. ' holds no online row') end
  end
  local code = 0
  if cur and ts == cur and flag == '0' then
    code = 1
  else
    if window > 0 then
      local seen = KEYS[per * (r - 1) + 3]
      local known = redis.call('ZSCORE', seen, raw)
      redis.call('ZADD', seen, ts, raw)
      redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. tostring(ts - window))
      redis.call('PEXPIRE', seen, math.floor(window / 1000) + 1000)
      if cur and ts < cur then
        if known then code = 1 else code = 2 end
      end
    end
    if code == 0 and cur and ts < cur then code = 2 end
    if code == 0 then
      if not cur then added = added + 1 end
      redis.call('SET', key, value)
      if (not max_ts) or max_ts < ts then max_ts, max_raw = ts, raw end
    end
  end
  out[r] = code
end
if added > 0 then redis.call('HINCRBY', meta, 'entities', added) end
if max_ts then
  local m = redis.call('HGET', meta, 'max_ts')
  if (not m) or tonumber(m) < max_ts then redis.call('HSET', meta, 'max_ts', max_raw) end
  redis.call('HSET', meta, 'last_write', stamp)
  if version ~= '' then redis.call('HSET', meta, 'version', version) end
end
return out
"""


class _PlainView(NamedTuple):
    """One view of a read, prepared once: its row keys' prefix in protocol form, and how its
    columns are taken from the decoded rows."""

    prefix: bytes  # the row keys' prefix
    names: list[str]
    ttl: int | None  # microseconds
    pick: Callable[[dict[str, Any]], tuple[Any, ...]]  # a row's values in ``names`` order
    nulls: tuple[None, ...]  # the values of a missing row


def split_prefix(url: str) -> tuple[str, str | None]:
    """Take an optional ``?prefix=...`` out of a redis:// URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), prefix


def _bulk(text: bytes | str) -> bytes:
    """One Redis protocol bulk string."""
    raw = text.encode() if isinstance(text, str) else text
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _bulk_column(values: pa.Array, prefix: bytes = b"") -> pa.Array:
    """``_bulk(prefix + value)`` of every element of a binary array, computed column-wise."""
    lengths = pc.add(pc.binary_length(values), len(prefix))
    return pc.binary_join_element_wise(b"$", pc.cast(lengths, pa.string()).cast(pa.binary()), b"\r\n", prefix,
                                       values, b"\r\n", b"")


def _joined(values: pa.Array, first: int, n: int) -> memoryview:
    """The bytes of ``values[first:first + n]`` one after another, without a Python object per
    element: a slice of the binary array's data buffer (the array has no nulls)."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if pa.types.is_large_binary(values.type) else np.int32,
                            count=len(values) + 1, offset=values.offset * (8 if pa.types.is_large_binary(values.type) else 4))
    return memoryview(values.buffers()[2])[int(offsets[first]):int(offsets[first + n])]


def _kernel_timeouts(sock: socket.socket) -> None:
    """Move a socket's timeout into the kernel (SO_RCVTIMEO / SO_SNDTIMEO) and make it blocking
    for Python: a Python-level timeout polls before every send and receive, two more system calls
    per round trip (about 5 µs here). A call that times out now fails with EAGAIN, an OSError,
    which the callers treat as a dropped connection."""
    timeout = sock.gettimeout()
    if not timeout:
        return
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    except OSError:  # pragma: no cover - a platform without these options keeps Python's timeout
        return
    sock.settimeout(None)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisOnlineStore(OnlineStore):
    kind = "redis"

    def __init__(self, url: str, prefix: str | None = None, batch_size: int = 1000) -> None:
        redis = require("redis", "redis")
        clean, url_prefix = split_prefix(url)
        self.prefix = prefix if prefix is not None else (url_prefix or "shipyard:")
        self.batch_size = batch_size
        try:
            self.client = redis.Redis.from_url(clean)
        except ValueError as exc:
            raise ConfigError(
                f"online_store {url!r} is not a valid Redis URL ({exc}); use redis://host:6379/0",
                {"field": "online_store"},
            ) from None
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._write_sha = ""
        self._no_script = redis.exceptions.NoScriptError
        self._response_error = redis.exceptions.ResponseError
        self._local = threading.local()
        self._links: list[Any] = []
        self._links_lock = threading.Lock()
        self._view_cache: dict[tuple[str, tuple[str, ...], int | None], _PlainView] = {}

    def _load_scripts(self) -> None:
        self._write_sha = self.client.script_load(_WRITE_LUA)

    def _link(self) -> Any:
        """This thread's dedicated connection (a new one after a fork)."""
        link = getattr(self._local, "link", None)
        if link is None or self._local.pid != _process_id:
            pool = self.client.connection_pool
            # RESP2: replies of the commands used here need nothing newer, and no push messages
            # can arrive between them
            link = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
            self._local.link, self._local.pid = link, _process_id
            with self._links_lock:
                self._links.append(link)
        return link

    def _pack(self, *args: Any) -> bytes:
        if _hiredis_pack is not None:
            return _hiredis_pack(args)
        return b"".join(self._link().pack_command(*args))

    def _exchange(self, parts: Callable[[], Iterable[list[bytes]]], retry: bool) -> list[Any]:
        """Send encoded commands and read one reply each. ``parts()`` (called once the scripts are
        loaded) yields them in parts, each sent as soon as it is made, so Redis can run one part
        while the next is encoded; the replies are read once everything is sent. A missing script
        (server restarted) is loaded and the commands sent again; with ``retry`` a dropped
        connection is reopened once, which is safe for reads."""
        for attempt in (0, 1):
            link = self._link()
            try:
                if not self._write_sha:
                    self._load_scripts()
                sent = 0
                for commands in parts():
                    link.send_packed_command([b"".join(commands)], check_health=False)
                    sent += len(commands)
                return self._replies(link, sent)
            except self._no_script:
                link.disconnect()  # later replies are still unread
                if attempt:
                    raise
                self._load_scripts()
            except self._errors as exc:
                link.disconnect()
                if attempt or not retry:
                    raise self._unavailable(exc) from exc
            except BaseException:
                link.disconnect()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _replies(self, link: Any, count: int) -> list[Any]:
        """Read ``count`` replies. With hiredis they are parsed straight off the socket (a reader
        per connection), which saves redis-py's per-reply bookkeeping on the hot read path."""
        sock = getattr(link, "_sock", None)
        if hiredis is None or sock is None:
            return [link.read_response() for _ in range(count)]
        local = self._local
        if getattr(local, "sock", None) is not sock:
            _kernel_timeouts(sock)
            local.sock, local.reader = sock, hiredis.Reader()
        reader = local.reader
        out = []
        try:
            while len(out) < count:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(65536)
                    if not data:
                        raise self._errors[0]("Redis closed the connection")
                    reader.feed(data)
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    raise self._reply_error(str(reply))
                out.append(reply)
        except OSError as exc:  # includes socket timeouts
            raise self._errors[0](f"Error reading from Redis: {exc}") from exc
        return out

    def _reply_error(self, text: str) -> Exception:
        if text.startswith("NOSCRIPT"):
            return self._no_script(text)
        if text.startswith("WRONGTYPE"):
            return ConfigError(
                f"Redis keys under the prefix {self.prefix!r} hold values this online store did not write "
                f"({text.split(' script:')[0]}); give the store a prefix of its own, e.g. "
                "redis://host:6379/0?prefix=features:", {"field": "online_store"})
        return self._response_error(text)

    def _row_prefix(self, view: str) -> bytes:
        return f"{self.prefix}row:{view}:".encode()

    def _meta_key(self, view: str) -> str:
        return f"{self.prefix}meta:{view}"

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis online store unreachable ({exc}); check that Redis runs and online_store is right",
            {"field": "online_store"},
        )

    def write_batch(
        self,
        view: str,
        keys: Sequence[Sequence[Any]],
        values: Sequence[Mapping[str, Any]],
        event_ts: Sequence[Any],
        *,
        version: int | None = None,
        overwrite_equal: bool = False,
        with_status: bool = False,
        dedupe_window: dt.timedelta | None = None,
    ) -> WriteResult:
        result = WriteResult(status=[] if with_status else None)
        if not keys:
            return result
        row_prefix = self._row_prefix(view)
        meta = self._meta_key(view)
        flag = "1" if overwrite_equal else "0"
        stamp = str(now_micros())
        ver = "" if version is None else str(version)
        window = str(int(dedupe_window.total_seconds() * 1_000_000)) if dedupe_window is not None else "0"
        seen_prefix = f"{self.prefix}seen:{view}:".encode()
        with_seen = window != "0"

        def commands() -> list[bytes]:
            # one scripted command per batch: rows run in order, as separate commands would
            out = []
            for first in range(0, len(keys), self.batch_size):
                rows: list[Any] = [meta]
                args: list[Any] = [flag, stamp, ver, window]
                for i in range(first, min(first + self.batch_size, len(keys))):
                    ek = encode_key(keys[i])
                    rows.append(row_prefix + ek)
                    if with_seen:
                        rows.append(seen_prefix + ek)
                    args.append(b"%d %s" % (to_micros(event_ts[i]), encode_row(values[i])))
                out.append(self._pack("EVALSHA", self._write_sha, len(rows), *rows, *args))
            return out

        for codes in self._exchange(lambda: [commands()], retry=False):
            for code in codes:
                verdict = _VERDICTS[int(code)]
                if verdict == "written":
                    result.written += 1
                elif verdict == "duplicate":
                    result.duplicates += 1
                else:
                    result.stale += 1
                if with_status:
                    result.status.append(verdict)  # type: ignore[union-attr]
        return result

    def write_table(
        self,
        view: str,
        table: pa.Table,
        join_keys: Sequence[str],
        timestamp_field: str,
        feature_names: Sequence[str],
        *,
        version: int | None = None,
        overwrite_equal: bool = False,
    ) -> WriteResult:
        """The write script's commands encoded column-wise: no Python work per row or value.

        Rows are encoded and sent a few batches at a time, so Redis runs the scripts of one part
        while the next is encoded; all replies are read at the end."""
        result = WriteResult()
        if table.num_rows == 0:
            return result
        names = list(feature_names)
        head = b"".join(_bulk(v) for v in ("1" if overwrite_equal else "0", str(now_micros()),
                                          "" if version is None else str(version), "0"))
        meta = _bulk(self._meta_key(view))
        row_prefix = self._row_prefix(view)
        part_rows = 4 * self.batch_size

        def encode(part: pa.Table) -> tuple[pa.Array, pa.Array]:
            # per row: its key (KEYS; no seen-set without a dedupe window) and its value (ARGV)
            keys = _bulk_column(encode_key_column(part, join_keys), row_prefix)
            stamps = pc.cast(micros_column(part.column(timestamp_field)), pa.string()).cast(pa.binary())
            values = pc.binary_join_element_wise(stamps, b" ", encode_row_column(part, names), b"")
            return keys, _bulk_column(values)

        def parts() -> Iterator[list[bytes]]:
            for start in range(0, table.num_rows, part_rows):
                keys, values = encode(table.slice(start, part_rows))
                out = []
                for first in range(0, len(keys), self.batch_size):
                    n = min(self.batch_size, len(keys) - first)
                    out.append(b"".join((
                        b"*%d\r\n" % (3 + 1 + n + 4 + n), _bulk("EVALSHA"), _bulk(self._write_sha), _bulk(str(1 + n)),
                        meta, _joined(keys, first, n), head, _joined(values, first, n))))
                yield out

        for codes in self._exchange(parts, retry=False):
            for code in codes:
                if code == 0:
                    result.written += 1
                elif code == 1:
                    result.duplicates += 1
                else:
                    result.stale += 1
        return result

    def read(
        self,
        view: str,
        feature_names: Sequence[str],
        entity_keys: Sequence[Sequence[Any]],
        *,
        ttl: dt.timedelta | None = None,
        now: Any = None,
    ) -> dict[str, list[Any]]:
        return self.read_many([(view, feature_names, entity_keys, ttl)], now=now)[0]

    def read_many(
        self, requests: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]], dt.timedelta | None]],
        now: Any = None,
    ) -> list[dict[str, list[Any]]]:
        return self._read_plain([self._plain_view(v, names, ttl) for v, names, _keys, ttl in requests],
                                [keys for _v, _names, keys, _ttl in requests], now)

    def _plain_view(self, view: str, names: Sequence[str], ttl: dt.timedelta | None) -> _PlainView:
        """How one view is read; the same few are used again and again."""
        micros = None if not ttl else int(ttl.total_seconds() * 1_000_000)
        cache_key = (view, tuple(names), micros)
        found = self._view_cache.get(cache_key)
        if found is not None:
            return found
        names = list(names)
        if len(names) == 1:
            only = names[0]

            def pick(row: dict[str, Any]) -> tuple[Any, ...]:
                return (row[only],)
        else:
            pick = itemgetter(*names)  # type: ignore[assignment]
        found = _PlainView(self._row_prefix(view), names, micros, pick, (None,) * len(names))
        if len(self._view_cache) < 10_000:
            self._view_cache[cache_key] = found
        return found

    def prepare_read(
        self, views: Sequence[tuple[str, Sequence[str], dt.timedelta | None]]
    ) -> Callable[..., list[dict[str, list[Any]]]]:
        """Each view's read prepared once per plan."""
        plain = [self._plain_view(view, names, ttl) for view, names, ttl in views]

        def read(keys_per_view: Sequence[Sequence[Sequence[Any]]], now: Any = None) -> list[dict[str, list[Any]]]:
            return self._read_plain(plain, keys_per_view, now)

        return read

    def _read_plain(self, views: list[_PlainView], keys_per_view: Sequence[Sequence[Sequence[Any]]],
                    now: Any) -> list[dict[str, list[Any]]]:
        """Every read: the rows of every view fetched by ``MGET`` (a command per ``_MGET_KEYS``
        keys) written straight to this thread's socket, the replies parsed by hiredis, and the
        JSON of every row that is present and within its view's TTL decoded by one
        ``orjson.loads``."""
        keys: list[bytes] = []
        for view, entity_keys in zip(views, keys_per_view, strict=True):
            prefix = view.prefix
            for key in entity_keys:
                keys.append(prefix + (b"[%d]" % key[0] if len(key) == 1 and type(key[0]) is int else encode_key(key)))
        if not keys:
            return [{name: [] for name in view.names} for view in views]
        stored = self._mget(keys)
        current = now_micros() if now is None else to_micros(now)
        docs = []
        at = 0
        for view, entity_keys in zip(views, keys_per_view, strict=True):
            cutoff = -1 if view.ttl is None else current - view.ttl
            for value in stored[at : at + len(entity_keys)]:
                if value is None:
                    docs.append(b"null")
                else:
                    micros, doc = self._split_row(value)
                    docs.append(b"null" if micros < cutoff else doc)
            at += len(entity_keys)
        blob = b"[" + b",".join(docs) + b"]"
        try:
            rows = orjson.loads(blob)
        except orjson.JSONDecodeError:
            raise self._reply_error("WRONGTYPE a key holds no online row") from None
        if _TS_MARK in blob:  # tagged timestamps back to datetimes
            rows = [row if row is None else {k: from_micros(v[_TS_KEY]) if type(v) is dict and _TS_KEY in v else v
                                             for k, v in row.items()} for row in rows]
        out: list[dict[str, list[Any]]] = []
        at = 0
        for view, entity_keys in zip(views, keys_per_view, strict=True):
            n = len(entity_keys)
            names = view.names
            if not n:
                out.append({name: [] for name in names})
                continue
            if n == 1:  # the usual online request: one row, nothing to transpose
                row = rows[at]
                try:
                    out.append({name: [None if row is None else row[name]] for name in names})
                except KeyError:  # a row written before the view gained a feature
                    out.append({name: [row.get(name)] for name in names})
            else:
                pick, nulls, part = view.pick, view.nulls, rows[at : at + n]
                try:
                    picked = [nulls if row is None else pick(row) for row in part]
                except KeyError:
                    picked = [nulls if row is None else tuple(row.get(name) for name in names) for row in part]
                out.append({name: list(column) for name, column in zip(names, zip(*picked, strict=True), strict=True)})
            at += n
        return out

    def _split_row(self, value: bytes) -> tuple[int, bytes]:
        """A stored row's event time (µs) and its JSON; a value this store did not write is refused."""
        space = value.find(b" ")
        try:
            if space < 1:
                raise ValueError(value)
            return int(value[:space]), value[space + 1 :]
        except ValueError:
            raise self._reply_error("WRONGTYPE a key holds no online row") from None

    def _mget(self, keys: list[bytes]) -> list[bytes | None]:
        """The stored values of full row keys: ``MGET``s of ``_MGET_KEYS`` keys, sent together."""
        bulk = [b"$%d\r\n%s\r\n" % (len(key), key) for key in keys]
        replies = self._read_replies([b"*%d\r\n$4\r\nMGET\r\n%s" % (len(bulk[i : i + _MGET_KEYS]) + 1,
                                                                   b"".join(bulk[i : i + _MGET_KEYS]))
                                      for i in range(0, len(bulk), _MGET_KEYS)])
        return replies[0] if len(replies) == 1 else [value for reply in replies for value in reply]

    def _read_replies(self, commands: list[bytes]) -> list[Any]:
        """Send read commands on this thread's socket and read their replies (MGET replies are
        lists; anything else is an error). A connection that is not open yet, or that has
        dropped, goes through the general exchange, which reconnects."""
        local = self._local
        sock = getattr(local, "sock", None)
        if sock is None or local.pid != _process_id:
            return self._exchange(lambda: [commands], retry=True)
        count = len(commands)
        replies: list[Any] = []
        try:
            # a socket closed by a disconnect raises here, so it is never used stale
            sock.sendall(b"".join(commands) if count > 1 else commands[0])
            reader = local.reader  # holds nothing between calls: each reads all its replies
            while True:
                data = sock.recv(65536)
                if not data:
                    raise OSError("Redis closed the connection")
                reader.feed(data)
                reply = reader.gets()
                while reply is not False:
                    if type(reply) is not list:
                        raise self._reply_error(str(reply))
                    replies.append(reply)
                    if len(replies) == count:
                        return replies
                    reply = reader.gets()
        except (*self._errors, OSError):  # a dropped connection (or a timeout), seen by the send or the read
            local.link.disconnect()  # reconnected once by the exchange, which is safe for reads
            return self._exchange(lambda: [commands], retry=True)
        except BaseException:
            local.link.disconnect()  # later replies are still unread
            raise

    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        row_prefix = self._row_prefix(view)
        if not entity_keys:
            return []
        stored = self._mget([row_prefix + encode_key(key) for key in entity_keys])
        return [None if value is None else from_micros(self._split_row(value)[0]) for value in stored]

    def _keys(self, view: str, kind: str = "row") -> Iterator[bytes]:
        pattern = _glob_escape(f"{self.prefix}{kind}:{view}:") + "*"
        yield from self.client.scan_iter(match=pattern, count=1000)

    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        row_prefix = self._row_prefix(view)
        batch: list[bytes] = []
        seen = 0

        def flush(keys: list[bytes]) -> list[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
            found = []
            for key, value in zip(keys, self._mget(keys), strict=True):
                if value is None:  # removed since the scan listed it
                    continue
                micros, doc = self._split_row(value)
                found.append((decode_key(key[len(row_prefix) :]), from_micros(micros), decode_row(doc)))
            return found

        try:
            for key in self._keys(view):
                if limit is not None and seen >= limit:
                    break
                batch.append(key)
                seen += 1
                if len(batch) >= 1000:
                    yield from flush(batch)
                    batch = []
            if batch:
                yield from flush(batch)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def stats(self, view: str) -> ViewStats:
        try:
            meta = self.client.hgetall(self._meta_key(view))
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        entities = int(meta.get(b"entities", 0))
        max_ts = meta.get(b"max_ts")
        last = meta.get(b"last_write")
        return ViewStats(
            entities,
            from_micros(int(max_ts)) if max_ts else None,
            from_micros(int(last)) if last else None,
        )

    def delete_view(self, view: str) -> int:
        removed = 0
        try:
            batch: list[bytes] = []
            for key in self._keys(view):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += self.client.unlink(*batch)
                    batch = []
            if batch:
                removed += self.client.unlink(*batch)
            seen = list(self._keys(view, "seen"))
            for start in range(0, len(seen), 1000):
                self.client.unlink(*seen[start : start + 1000])
            self.client.delete(self._meta_key(view))
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return removed

    def delete_prefix(self) -> int:
        """Remove every key under this store's prefix (tests and teardown)."""
        removed = 0
        for key in self.client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000):
            removed += self.client.unlink(key)
        return removed

    def close(self) -> None:
        with self._links_lock:
            for link in self._links:
                link.disconnect()
            self._links.clear()
        self._local = threading.local()
        self.client.close()
