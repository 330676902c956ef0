"""Redis online store: one string per (view, entity key), written by a script and read by MGET.

Key layout (``prefix`` defaults to ``shipyard:``; give each project or test its own)::

    {prefix}row:{view}:{entity-key JSON}   string  "<event µs> <JSON object of the row's features>"
    {prefix}meta:{view}                    hash    entities, max_ts, last_write, version
    {prefix}seen:{view}:{entity-key JSON}  zset    event times seen within the dedupe window

On Redis Cluster the view is a hash tag (``{prefix}row:{{view}}:...``), so every key of a view
lives in one slot: the write script can touch a view's rows and its meta hash together, and a
read is one ``MGET`` per view, the views' commands sent to their nodes together.

A row is one value, replaced whole, so a feature removed from a view leaves no trace. Conditional
writes run in a Lua script (loaded with ``register_script``) so that the event-time comparison and
the replacement are atomic; one script call writes ``batch_size`` rows, in order, and the calls
of a write go out in one pipeline. A table write (materialization) writes the rows whose key is
absent by pipelined ``SET NX`` instead, and only the rest through the script (see ``write_table``).

Everything goes through redis-py's public API (see ``redis_connect``): reads use a client per
thread that holds one pooled connection (``single_connection_client``), so a read is one
``execute_command`` without a pool checkout; writes, scans and counters use pipelines and
commands of the shared client. Replies are parsed by hiredis when it is installed.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import ConfigError, ShipyardError, StoreUnavailable, require
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
from shipyard.features.online.redis_connect import open_client, parse_url, thread_client

if TYPE_CHECKING:
    from shipyard.features.online.redis_connect import RedisClient

_TS_MARK = b'"$ts"'  # a tagged timestamp value (see base.encode_value)
_TS_KEY = "$ts"
_VERDICTS = ("written", "duplicate", "stale")
_MGET_KEYS = 1000  # keys per MGET of a read: a long command holds up every other client
_FOREIGN = "WRONGTYPE a key holds no online row"

# This process's id, kept current across forks: clients belong to the process that opened them,
# and the hot read path checks this instead of asking the kernel every call.
_process_id = os.getpid()


def _after_fork() -> None:
    global _process_id
    _process_id = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

try:  # hiredis encodes a command in C; redis-py's own encoder otherwise
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency of the redis extra
    _hiredis_pack = None


def _pack(conn: Any, command: tuple[Any, ...]) -> list[bytes]:
    """One command in the protocol, as the parts ``Connection.send_packed_command`` takes."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(command)]
    return conn.pack_command(*command)


# The conditional write of many rows in one command. KEYS: the view's meta hash, then per row its
# key (and its seen-set when a dedupe window is given). ARGV: flag, write stamp, version, window,
# the rows already written by SET NX for the meta hash (their count and newest event µs, or ""),
# then per row its value, "<event µs> <JSON>". Returns one code per row (0 written, 1 duplicate,
# 2 stale).
_WRITE_LUA = """
local meta = KEYS[1]
local flag, stamp, version, window = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local per = 1
if window > 0 then per = 2 end
local out = {}
local added, max_ts, max_raw = tonumber(ARGV[5]), nil, nil
if ARGV[6] ~= '' then max_ts, max_raw = tonumber(ARGV[6]), ARGV[6] end
for r = 1, (#KEYS - 1) / per do
  local key = KEYS[per * (r - 1) + 2]
  local value = ARGV[r + 6]
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


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisOnlineStore(OnlineStore):
    kind = "redis"

    def __init__(self, url: str, prefix: str | None = None, batch_size: int = 1000) -> None:
        redis = require("redis", "redis")
        self.target = parse_url(url)
        self.prefix = prefix if prefix is not None else (self.target.prefix or "shipyard:")
        self.batch_size = batch_size
        self.cluster = self.target.cluster
        errors = redis.exceptions
        self._errors: tuple[type[Exception], ...] = (errors.ConnectionError, errors.TimeoutError,
                                                     errors.ClusterDownError)
        self._auth_errors = (errors.AuthenticationError, errors.NoPermissionError)
        self._no_script = errors.NoScriptError
        self._response_error = errors.ResponseError
        self._cluster_error = errors.RedisClusterException
        self._client: Any = None
        self._script: Any = None
        self._script_loaded = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread_clients: list[Any] = []
        self._view_cache: dict[tuple[str, tuple[str, ...], int | None], _PlainView] = {}

    # -- clients ---------------------------------------------------------------------------------
    @property
    def client(self) -> RedisClient:
        """The shared redis-py client (``Redis`` or ``RedisCluster``), opened on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        client = open_client(self.target)
                    except (*self._errors, self._cluster_error) as exc:
                        raise self._unavailable(exc) from exc
                    self._script = client.register_script(_WRITE_LUA)
                    self._client = client
        return self._client

    def _reader(self) -> Any:
        """This thread's client (a new one after a fork)."""
        local = self._local
        client = getattr(local, "client", None)
        if client is None or local.pid != _process_id:
            client = thread_client(self.client)
            local.client, local.pid = client, _process_id
            if client is not self._client:
                with self._lock:
                    self._thread_clients.append(client)
        return client

    def _drop_reader(self) -> None:
        """Forget this thread's client after an error (its connection was closed by redis-py)."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is None or client is self._client:
            return
        with self._lock:
            if client in self._thread_clients:
                self._thread_clients.remove(client)
        try:
            client.close()
        except Exception:  # noqa: BLE001 - the connection is gone already; nothing to release
            pass

    def _unavailable(self, exc: Exception) -> ShipyardError:
        text = str(exc)
        if isinstance(exc, self._auth_errors):
            return ConfigError(
                f"Redis refused this online store's credentials or command ({text}); check the user and "
                "password in online_store (redis://user:password@host:6379/0) and that the ACL allows "
                f"GET/SET/MGET/SCAN/HGETALL/UNLINK and scripts on keys {self.prefix}*", {"field": "online_store"})
        hint = ""
        if "certificate" in text.lower() or "ssl" in text.lower():
            hint = "; for TLS give the CA with ?ssl_ca_certs=/path/ca.pem"
        return StoreUnavailable(
            f"Redis online store unreachable ({text}); check that Redis runs and online_store is right{hint}",
            {"field": "online_store"},
        )

    def _foreign(self, text: str) -> ConfigError:
        at = text.find("WRONGTYPE")
        detail = text[at:].split(" script:")[0] if at >= 0 else text
        return ConfigError(
            f"Redis keys under the prefix {self.prefix!r} hold values this online store did not write "
            f"({detail}); give the store a prefix of its own, e.g. redis://host:6379/0?prefix=features:",
            {"field": "online_store"})

    # -- key layout ------------------------------------------------------------------------------
    def _tag(self, view: str) -> str:
        return f"{{{view}}}" if self.cluster else view

    def _row_prefix(self, view: str) -> bytes:
        return f"{self.prefix}row:{self._tag(view)}:".encode()

    def _meta_key(self, view: str) -> str:
        return f"{self.prefix}meta:{self._tag(view)}"

    def _seen_prefix(self, view: str) -> bytes:
        return f"{self.prefix}seen:{self._tag(view)}:".encode()

    # -- commands --------------------------------------------------------------------------------
    def _mget(self, groups: Sequence[list[bytes]]) -> list[bytes | None]:
        """The stored values of full row keys, in order; ``groups`` are the keys of one view each
        (one slot on a cluster). A dropped connection is reopened once: reads are safe to repeat.

        On one server the commands go out on this thread's connection (``Connection``'s public
        ``send_packed_command`` / ``read_response``, encoded by hiredis when installed): about 5 µs
        less per read than ``execute_command``, whose retry and bookkeeping wrap every call."""
        for attempt in (0, 1):
            try:
                client = self._reader()
                if self.cluster:
                    return self._cluster_mget(client, groups)
                keys = groups[0] if len(groups) == 1 else [key for group in groups for key in group]
                conn = client.connection
                if len(keys) <= _MGET_KEYS:
                    conn.send_packed_command(_pack(conn, ("MGET", *keys)), check_health=False)
                    return conn.read_response()
                commands = [("MGET", *keys[i : i + _MGET_KEYS]) for i in range(0, len(keys), _MGET_KEYS)]
                conn.send_packed_command([part for command in commands for part in _pack(conn, command)],
                                         check_health=False)
                return [value for _ in commands for value in conn.read_response()]
            except self._errors as exc:
                self._drop_reader()
                if attempt:
                    raise self._unavailable(exc) from exc
            except self._auth_errors as exc:
                self._drop_reader()  # later replies are unread
                raise self._unavailable(exc) from exc
            except BaseException:
                self._drop_reader()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _cluster_mget(client: Any, groups: Sequence[list[bytes]]) -> list[bytes | None]:
        chunks = [group[i : i + _MGET_KEYS] for group in groups for i in range(0, len(group), _MGET_KEYS)]
        if len(chunks) == 1:
            return client.execute_command("MGET", *chunks[0])
        pipe = client.pipeline()  # one MGET per slot, each node's sent together
        for chunk in chunks:
            pipe.execute_command("MGET", *chunk)
        return [value for reply in pipe.execute() for value in reply]

    def _run_scripts(self, parts: Callable[[], Iterable[Sequence[tuple[list[Any], list[Any]]]]]) -> list[list[int]]:
        """Run the write script once per (keys, args) that ``parts()`` yields, a list at a time;
        the replies, in order. A script the server lost (a restart, ``SCRIPT FLUSH``) is loaded
        again and everything sent again.

        On one server each part goes out on this thread's connection as soon as it is encoded and
        the replies are read once all are sent, so Redis runs one part while the next is encoded;
        commands are encoded by hiredis in one call each (redis-py's pipeline spends about 2 µs of
        Python per argument). On a cluster each part is a cluster pipeline."""
        for attempt in (0, 1):
            try:
                if not self._script_loaded:
                    self.client.script_load(_WRITE_LUA)
                    self._script_loaded = True
                if self.cluster:
                    return [reply for calls in parts() for reply in self._cluster_scripts(calls)]
                return self._streamed_scripts(parts)
            except self._no_script:
                self._script_loaded = False
                if attempt:
                    raise
            except self._auth_errors as exc:
                raise self._unavailable(exc) from exc
            except self._response_error as exc:
                if "WRONGTYPE" in str(exc):
                    raise self._foreign(str(exc)) from None
                if "NOPERM" in str(exc) or "can't run this command" in str(exc):  # refused inside the script
                    raise self._unavailable(self._auth_errors[1](str(exc).split("caused error: ")[-1])) from None
                raise
            except self._errors as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _streamed_scripts(self, parts: Callable[[], Iterable[Sequence[tuple[list[Any], list[Any]]]]]) -> list[Any]:
        sha = self._script.sha
        client = self._reader()
        conn = client.connection
        try:
            sent = 0
            for calls in parts():
                conn.send_packed_command([chunk for keys, args in calls
                                          for chunk in _pack(conn, ("EVALSHA", sha, len(keys), *keys, *args))],
                                         check_health=False)
                sent += len(calls)
            replies: list[Any] = []
            error: Exception | None = None
            for _ in range(sent):  # every reply is read, so the connection stays usable after an error reply
                try:
                    replies.append(conn.read_response())
                except self._response_error as exc:
                    replies.append(None)
                    error = error or exc
        except BaseException:
            self._drop_reader()  # replies may be left unread
            raise
        if error is not None:
            raise error
        return replies

    def _cluster_scripts(self, calls: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
        pipe = self.client.pipeline()
        for keys, args in calls:  # (redis-py 5 refuses pipe.evalsha on a cluster pipeline)
            pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, *args)
        return pipe.execute()

    # -- writes ----------------------------------------------------------------------------------
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
        seen_prefix = self._seen_prefix(view)
        meta = self._meta_key(view)
        window = str(int(dedupe_window.total_seconds() * 1_000_000)) if dedupe_window is not None else "0"
        head = ["1" if overwrite_equal else "0", str(now_micros()), "" if version is None else str(version), window,
                "0", ""]
        with_seen = window != "0"
        calls = []
        for first in range(0, len(keys), self.batch_size):
            # one script call per batch: its rows run in order, as separate commands would
            rows: list[Any] = [meta]
            args: list[Any] = list(head)
            for i in range(first, min(first + self.batch_size, len(keys))):
                ek = encode_key(keys[i])
                rows.append(row_prefix + ek)
                if with_seen:
                    rows.append(seen_prefix + ek)
                args.append(b"%d %s" % (to_micros(event_ts[i]), encode_row(values[i])))
            calls.append((rows, args))
        for codes in self._run_scripts(lambda: [calls]):
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
        """Keys and values encoded column-wise (no Python work per value); rows whose key is absent
        are written by ``SET NX`` and the rest by the write script.

        A row whose key holds nothing has nothing newer to protect, so a pipelined ``SET key value
        NX`` writes it: for Redis a plain command costs a tenth of a script step. Only the rows
        whose ``SET NX`` found a key (written meanwhile by another writer, or a repeated key) go
        through the script, which compares event times as always; the last script call also counts
        the ``SET NX`` rows into the view's meta hash (entities, newest event time, last write,
        version), so the meta hash ends as if every row had gone through the script. (Unlike the
        script's own rows, ``SET NX`` rows and their count are not one atomic step: a connection lost
        between them leaves rows the view's ``entities`` count misses. The counting call goes last,
        so a script reloaded and sent again never counts them twice.)

        When the view already holds rows, the stored values are read first (``MGET``, one round
        trip): a row whose stored value is byte for byte the one to write skips the script (it
        would find the same event time and leave the same value, so the row counts as the script
        would count it: written with ``overwrite_equal``, duplicate otherwise), a row found absent
        is tried with ``SET NX``, and the others go through the script. The newest unchanged row
        still goes through the script, so the view's meta hash moves as before. A fresh view's rows
        are all tried with ``SET NX`` without a read."""
        result = WriteResult()
        if table.num_rows == 0:
            return result
        names = list(feature_names)
        head = ["1" if overwrite_equal else "0", str(now_micros()), "" if version is None else str(version), "0"]
        meta = self._meta_key(view)
        row_prefix = self._row_prefix(view)
        keys = pc.binary_join_element_wise(row_prefix, encode_key_column(table, join_keys), b"")
        micros = micros_column(table.column(timestamp_field))
        stamps = pc.cast(micros, pa.string()).cast(pa.binary())
        values = pc.binary_join_element_wise(stamps, b" ", encode_row_column(table, names), b"")
        n = table.num_rows
        unchanged = 0
        if self._has_rows(meta):  # compare with what is stored, in one round trip
            stored = pa.array(self._mget([keys.to_pylist()]), pa.binary())
            same = pc.fill_null(pc.equal(stored, values), False).to_numpy(zero_copy_only=False)
            scripted = ~same
            if same.any():
                scripted[np.flatnonzero(same)[np.argmax(micros.to_numpy()[same])]] = True
                unchanged = int(same.sum()) - 1
            absent = stored.is_null().to_numpy(zero_copy_only=False)
            scripted &= ~absent
        else:
            absent = np.ones(n, dtype=bool)
            scripted = np.zeros(n, dtype=bool)
        inserted = np.zeros(n, dtype=bool)
        if absent.any():
            tried = np.flatnonzero(absent)
            mask = pa.array(absent)
            won = self._set_absent(keys.filter(mask), values.filter(mask))
            inserted[tried[won]] = True
            scripted[tried[~won]] = True  # written since it was found absent: compared by the script
        added = int(inserted.sum())
        newest = str(int(micros.to_numpy()[inserted].max())) if added else ""
        mask = pa.array(scripted)
        key_list, value_list = keys.filter(mask).to_pylist(), values.filter(mask).to_pylist()
        step = self.batch_size
        calls = [([meta, *key_list[i : i + step]], [*head, "0", "", *value_list[i : i + step]])
                 for i in range(0, len(key_list), step)]
        if added:  # the rows written by SET NX counted into the meta hash by the last call
            last_keys, last_args = calls.pop() if calls else ([meta], [*head, "0", ""])
            last_args[4:6] = [str(added), newest]
            calls.append((last_keys, last_args))
        for codes in self._run_scripts(lambda: [calls[i : i + 4] for i in range(0, len(calls), 4)]):
            for code in codes:  # 0 written, 1 duplicate, 2 stale
                if code == 0:
                    result.written += 1
                elif code == 1:
                    result.duplicates += 1
                else:
                    result.stale += 1
        result.written += added
        if overwrite_equal:
            result.written += unchanged
        else:
            result.duplicates += unchanged
        return result

    def _set_absent(self, keys: pa.Array, values: pa.Array) -> np.ndarray:
        """``SET key value NX`` for each row, pipelined; whether each was written."""
        try:
            if self.cluster:
                pipe = self.client.pipeline(transaction=False)
                for key, value in zip(keys.to_pylist(), values.to_pylist(), strict=True):
                    pipe.set(key, value, nx=True)
                replies = pipe.execute()
            else:
                conn = self._reader().connection
                rows = list(zip(keys.to_pylist(), values.to_pylist(), strict=True))
                try:
                    for start in range(0, len(rows), _MGET_KEYS):
                        conn.send_packed_command([part for key, value in rows[start : start + _MGET_KEYS]
                                                  for part in _pack(conn, ("SET", key, value, "NX"))],
                                                 check_health=False)
                    replies = [conn.read_response() for _ in range(len(rows))]
                except BaseException:
                    self._drop_reader()  # replies may be left unread
                    raise
        except (*self._errors, *self._auth_errors) as exc:
            raise self._unavailable(exc) from exc
        return np.array([reply is not None for reply in replies], dtype=bool)

    def _has_rows(self, meta: str) -> bool:
        """Whether the view's meta hash counts any row (a fresh view's rows need no read first)."""
        try:
            return int(self.client.hget(meta, "entities") or 0) > 0
        except (*self._errors, *self._auth_errors) as exc:
            raise self._unavailable(exc) from exc

    # -- reads -----------------------------------------------------------------------------------
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
        """Every read: the rows of every view fetched by ``MGET``, and the JSON of every row that is
        present and within its view's TTL decoded by one ``orjson.loads``."""
        groups: list[list[bytes]] = []
        for view, entity_keys in zip(views, keys_per_view, strict=True):
            prefix = view.prefix
            groups.append([prefix + (b"[%d]" % key[0] if len(key) == 1 and type(key[0]) is int else encode_key(key))
                           for key in entity_keys])
        if not any(groups):
            return [{name: [] for name in view.names} for view in views]
        stored = self._mget([group for group in groups if group])
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
            raise self._foreign(_FOREIGN) from None
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
            raise self._foreign(_FOREIGN) from None

    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        row_prefix = self._row_prefix(view)
        if not entity_keys:
            return []
        stored = self._mget([[row_prefix + encode_key(key) for key in entity_keys]])
        return [None if value is None else from_micros(self._split_row(value)[0]) for value in stored]

    # -- scans, counters, deletes ----------------------------------------------------------------
    def _keys(self, view: str, kind: str = "row") -> Iterator[bytes]:
        pattern = _glob_escape(f"{self.prefix}{kind}:{self._tag(view)}:") + "*"
        yield from self.client.scan_iter(match=pattern, count=1000)

    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        row_prefix = self._row_prefix(view)
        batch: list[bytes] = []
        seen = 0

        def flush(keys: list[bytes]) -> list[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
            found = []
            for key, value in zip(keys, self._mget([keys]), strict=True):
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
        except (*self._errors, *self._auth_errors) as exc:
            raise self._unavailable(exc) from exc
        entities = int(meta.get(b"entities", 0))
        max_ts = meta.get(b"max_ts")
        last = meta.get(b"last_write")
        return ViewStats(
            entities,
            from_micros(int(max_ts)) if max_ts else None,
            from_micros(int(last)) if last else None,
        )

    def _unlink(self, keys: Iterator[bytes]) -> int:
        """Remove keys in batches (a cluster client splits each batch by slot)."""
        removed = 0
        batch: list[bytes] = []
        for key in keys:
            batch.append(key)
            if len(batch) >= 1000:
                removed += self.client.unlink(*batch)
                batch = []
        if batch:
            removed += self.client.unlink(*batch)
        return removed

    def delete_view(self, view: str) -> int:
        try:
            removed = self._unlink(self._keys(view))
            self._unlink(self._keys(view, "seen"))
            self.client.delete(self._meta_key(view))
        except (*self._errors, *self._auth_errors) as exc:
            raise self._unavailable(exc) from exc
        return removed

    def delete_prefix(self) -> int:
        """Remove every key under this store's prefix (tests and teardown)."""
        return self._unlink(self.client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000))

    def close(self) -> None:
        with self._lock:
            clients, self._thread_clients = self._thread_clients, []
            shared, self._client = self._client, None
            self._script_loaded = False
        for client in clients:
            client.close()  # gives its connection back to the pool
        self._local = threading.local()
        if shared is not None:
            pool = getattr(shared, "connection_pool", None)
            shared.close()
            if pool is not None:
                pool.disconnect()
