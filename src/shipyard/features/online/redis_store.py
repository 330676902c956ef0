"""Redis online store: one hash per (view, entity key), written and read in pipelines.

Key layout (``prefix`` defaults to ``shipyard:``; give each project or test its own)::

    {prefix}r:{view}:{entity-key JSON}  hash  __ts → event µs, feature → JSON value
    {prefix}v:{view}                    hash  entities, max_ts, last_write, version
    {prefix}s:{view}:{entity-key JSON}  zset  event times seen within the dedupe window

Conditional writes run in a Lua script so that the event-time comparison and the replacement are
atomic; one script call writes ``batch_size`` rows, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shipyard.errors import ConfigError, StoreUnavailable, require
from shipyard.features.online.base import (
    OnlineStore,
    ViewStats,
    WriteResult,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    from_micros,
    now_micros,
    to_micros,
    ttl_cutoff,
)

_TS_FIELD = b"__ts"
_VERDICTS = ("written", "duplicate", "stale")

# The conditional write of many rows in one command. KEYS: the view's meta hash, then per row
# its hash and its seen-set. ARGV: flag, write stamp, version, window, then per row its event time,
# its field count and its field/value pairs. Returns one code per row (0 written, 1 duplicate, 2 stale).
_WRITE_LUA = """
local meta = KEYS[1]
local flag, stamp, version, window = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
local p = 5
local added, max_ts, max_raw = 0, nil, nil
for r = 1, (#KEYS - 1) / 2 do
  local key, seen = KEYS[2 * r], KEYS[2 * r + 1]
  local raw = ARGV[p]
  local ts = tonumber(raw)
  local n = tonumber(ARGV[p + 1])
  local first = p + 2
  p = first + 2 * n
  local cur = redis.call('HGET', key, '__ts')
  local code = 0
  if cur and ts == tonumber(cur) and flag == '0' then
    code = 1
  else
    if window > 0 then
      local known = redis.call('ZSCORE', seen, raw)
      redis.call('ZADD', seen, ts, raw)
      redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. tostring(ts - window))
      redis.call('PEXPIRE', seen, math.floor(window / 1000) + 1000)
      if cur and ts < tonumber(cur) then
        if known then code = 1 else code = 2 end
      end
    end
    if code == 0 and cur and ts < tonumber(cur) then code = 2 end
    if code == 0 then
      if cur then redis.call('DEL', key) else added = added + 1 end
      redis.call('HSET', key, '__ts', raw, unpack(ARGV, first, p - 1))
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


# One command reads many hashes: KEYS are the rows, ARGV the fields (``__ts`` first).
_READ_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, unpack(ARGV))
end
return out
"""


# Small multi-view reads in one command: ARGV holds, per key, a field count and then its fields.
_READ_MIXED_LUA = """
local out = {}
local p = 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[p])
  out[i] = redis.call('HMGET', key, unpack(ARGV, p + 1, p + n))
  p = p + n + 1
end
return out
"""
_SMALL_READ = 32


def split_prefix(url: str) -> tuple[str, str | None]:
    """Take an optional ``?prefix=...`` out of a redis:// URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), prefix


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
        self._read_sha = ""
        self._no_script = redis.exceptions.NoScriptError

    def _load_scripts(self) -> None:
        self._write_sha = self.client.script_load(_WRITE_LUA)
        self._read_sha = self.client.script_load(_READ_LUA)
        self._mixed_sha = self.client.script_load(_READ_MIXED_LUA)

    def _with_scripts(self, call: Any) -> Any:
        """Run ``call`` with the scripts loaded, loading them again after a server restart."""
        if not self._write_sha:
            self._load_scripts()
        try:
            return call()
        except self._no_script:
            self._load_scripts()
            return call()

    def _row_prefix(self, view: str) -> bytes:
        return f"{self.prefix}r:{view}:".encode()

    def _meta_key(self, view: str) -> str:
        return f"{self.prefix}v:{view}"

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
        seen_prefix = f"{self.prefix}s:{view}:".encode()
        def send(first: int, last: int) -> list[Any]:
            # one scripted command per batch: rows run in order, as separate commands would
            rows: list[Any] = [meta]
            args: list[Any] = [flag, stamp, ver, window]
            for i in range(first, last):
                ek = encode_key(keys[i])
                rows.append(row_prefix + ek)
                rows.append(seen_prefix + ek)
                row = values[i]
                args.append(to_micros(event_ts[i]))
                args.append(len(row))
                for name, value in row.items():
                    args.append(name)
                    args.append(encode_value(value))
            return self.client.execute_command("EVALSHA", self._write_sha, len(rows), *rows, *args)

        try:
            for start in range(0, len(keys), self.batch_size):
                last = min(start + self.batch_size, len(keys))
                for code in self._with_scripts(lambda first=start, last=last: send(first, last)):
                    verdict = _VERDICTS[int(code)]
                    if verdict == "written":
                        result.written += 1
                    elif verdict == "duplicate":
                        result.duplicates += 1
                    else:
                        result.stale += 1
                    if with_status:
                        result.status.append(verdict)  # type: ignore[union-attr]
        except self._errors as exc:
            raise self._unavailable(exc) from exc
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
        def send() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for view, names, keys, _ttl in requests:
                fields = [_TS_FIELD, *names]
                rows = [self._row_prefix(view) + encode_key(key) for key in keys]
                if len(rows) == 1:
                    pipe.hmget(rows[0], fields)
                else:
                    pipe.execute_command("EVALSHA", self._read_sha, len(rows), *rows, *fields)
            return pipe.execute()

        def send_small() -> list[list[Any]]:
            rows: list[bytes] = []
            args: list[Any] = []
            for view, names, keys, _ttl in requests:
                prefix = self._row_prefix(view)
                for key in keys:
                    rows.append(prefix + encode_key(key))
                    args.append(len(names) + 1)
                    args.append(_TS_FIELD)
                    args.extend(names)
            flat = self.client.execute_command("EVALSHA", self._mixed_sha, len(rows), *rows, *args)
            grouped, start = [], 0
            for _view, _names, keys, _ttl in requests:
                grouped.append(flat[start : start + len(keys)])
                start += len(keys)
            return grouped

        try:
            if len(requests) == 1 and len(requests[0][2]) == 1:
                view, names, keys, _ttl = requests[0]
                replies = [[self.client.hmget(self._row_prefix(view) + encode_key(keys[0]), [_TS_FIELD, *names])]]
            elif sum(len(r[2]) for r in requests) <= _SMALL_READ:
                replies = self._with_scripts(send_small)
            else:
                replies = self._with_scripts(send)
                replies = [[r] if len(req[2]) == 1 else r for r, req in zip(replies, requests, strict=True)]
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return [self._decode(rows, names, ttl_cutoff(ttl, now))
                for rows, (_view, names, _keys, ttl) in zip(replies, requests, strict=True)]

    @staticmethod
    def _decode(replies: list[Any], feature_names: Sequence[str], cutoff: int | None) -> dict[str, list[Any]]:
        names = list(feature_names)
        out: dict[str, list[Any]] = {name: [] for name in names}
        columns = [out[name] for name in names]
        for reply in replies:
            ts = reply[0]
            if ts is None or (cutoff is not None and int(ts) < cutoff):
                for column in columns:
                    column.append(None)
                continue
            for column, raw in zip(columns, reply[1:], strict=True):
                column.append(decode_value(raw))
        return out

    def read_event_ts(self, view: str, entity_keys: Sequence[Sequence[Any]]) -> list[dt.datetime | None]:
        row_prefix = self._row_prefix(view)
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in entity_keys:
                pipe.hget(row_prefix + encode_key(key), _TS_FIELD)
            replies = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return [None if ts is None else from_micros(int(ts)) for ts in replies]

    def _keys(self, view: str, kind: str = "r") -> Iterator[bytes]:
        pattern = _glob_escape(f"{self.prefix}{kind}:{view}:") + "*"
        yield from self.client.scan_iter(match=pattern, count=1000)

    def scan(self, view: str, limit: int | None = None) -> Iterator[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
        row_prefix = self._row_prefix(view)
        batch: list[bytes] = []
        seen = 0

        def flush(keys: list[bytes]) -> list[tuple[tuple[Any, ...], dt.datetime, dict[str, Any]]]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            found = []
            for key, row in zip(keys, pipe.execute(), strict=True):
                if not row or _TS_FIELD not in row:
                    continue
                values = {k.decode(): decode_value(v) for k, v in row.items() if k != _TS_FIELD}
                found.append((decode_key(key[len(row_prefix) :]), from_micros(int(row[_TS_FIELD])), values))
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
            seen = list(self._keys(view, "s"))
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
        self.client.close()
