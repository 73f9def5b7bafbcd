"""ClusterConfig: every setting of the protocol core, the transport and the API.

Defaults are the C engine's LAN profile (read from it, so the two cannot
drift); docs/configuration.md gives the reason for each value. Times are
float seconds here and microseconds in C. Validation happens when a config is
made, first in Python (messages name the field), then by the core's own
validator as a backstop::

    config = ClusterConfig(node_id="worker-1", cluster_key=key, tags={"role": "worker"})
    fast = ClusterConfig.local(cluster_key=key)        # loopback tests
    wide = ClusterConfig.wan(cluster_key=key, probe_timeout=2.0)
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from clustermember._overrides import ConfigOverrides

from clustermember import _core
from clustermember._errors import ConfigError, TagError

KEY_LEN = 32
ID_MAX = 64
# Per-tag encoding overhead: u8 key length + u16 value length.
TAG_OVERHEAD = 3

_LAN: dict[str, Any] = _core.config_profile("lan")
_NET: dict[str, Any] = _core.net_defaults()

PROTOCOL_FIELDS: tuple[str, ...] = tuple(_LAN)
TRANSPORT_FIELDS: tuple[str, ...] = (
    "max_connections",
    "idle_timeout",
    "handshake_timeout",
    "request_timeout",
    "max_stream_message",
    "max_queued_datagrams",
    "accept_rate",
    "accept_rate_per_source",
    "max_half_open",
    "retry_threshold",
)
_U32_MAX = 2**32 - 1
# The transport's largest explicit retry_threshold: the one above it is
# its "derive" marker (CM_NET_RETRY_DERIVED), which None stands for here.
_RETRY_MAX = _U32_MAX - 1
_HOUR = 3600.0
_DAY = 24 * _HOUR
# Every duration, in seconds, with the range it may take (both ends
# included); docs/configuration.md lists them. Wide enough for any real
# network, narrow enough to catch a value given in the wrong unit
# (probe_interval=500 meant as milliseconds). The core's own checks
# (cm_config_validate) agree where they overlap: probe_interval at least
# 10 ms, probe_timeout below probe_interval.
TIME_RANGES: dict[str, tuple[float, float]] = {
    "probe_interval": (0.01, 60.0),
    "probe_timeout": (0.001, 30.0),  # and below probe_interval
    "phi_min_std": (0.001, 60.0),
    "phi_acceptable_pause": (0.0, _HOUR),
    "gossip_interval": (0.001, 60.0),
    "gossip_to_dead": (0.0, _DAY),
    "pushpull_interval": (0.1, _DAY),
    "reconnect_interval": (0.1, _DAY),
    "reconnect_timeout": (0.0, 30 * _DAY),
    "reap_left_after": (0.0, 30 * _DAY),
    "idle_timeout": (0.1, _DAY),
    "handshake_timeout": (0.1, 600.0),
    "request_timeout": (0.1, 600.0),
    "join_timeout": (0.1, _HOUR),
    "leave_timeout": (0.1, 600.0),
    "user_event_coalesce": (0.0, _HOUR),
}
_TIME_FIELDS = set(TIME_RANGES)


def check_duration(name: str, value: object, label: str | None = None) -> float:
    """A duration in seconds within its range; ConfigError in one style.

    >>> check_duration("probe_interval", 500)
    Traceback (most recent call last):
    clustermember._errors.ConfigError: probe_interval=500 is out of range: ...
    """
    lo, hi = TIME_RANGES[name]
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and lo <= value <= hi
    ):
        return float(value)
    raise ConfigError(
        f"{label or name}={value!r} is out of range: it must be a number of seconds "
        f"from {seconds_text(lo)} to {seconds_text(hi)}"
    )


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside this module and the
    dataclass's generated ``__init__``: a warning names the caller's line,
    whether it built the config directly or through a profile."""
    level, frame = 2, sys._getframe(2)
    while frame is not None and (
        frame.f_globals.get("__name__") == __name__ or frame.f_code.co_filename.startswith("<")
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def seconds_text(x: float) -> str:
    """A range end as written in the docs: ``0.01``, ``60``, ``86,400``.

    >>> seconds_text(0.01), seconds_text(60.0), seconds_text(86400.0)
    ('0.01', '60', '86,400')
    """
    return f"{x:,.0f}" if x.is_integer() else f"{x:g}"


def decode_key(key: bytes | str, what: str = "cluster_key") -> bytes:
    """A cluster key as 32 raw bytes, from bytes or a base64 string.

    >>> len(decode_key(base64.b64encode(bytes(32)).decode()))
    32
    """
    if isinstance(key, str):
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"{what} is not valid base64: {exc}") from None
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise ConfigError(
            f"{what} must be 32 bytes or a base64 string of 32 bytes, not {type(key).__name__}"
        )
    if len(raw) != KEY_LEN:
        raise ConfigError(
            f"{what} must be {KEY_LEN} bytes, got {len(raw)}; make one with "
            "`clustermember keygen` or secrets.token_bytes(32)"
        )
    return raw


def check_node_id(node_id: object) -> str:
    """A node id: 1..64 printable ASCII characters, no spaces."""
    if not isinstance(node_id, str):
        raise ConfigError(f"node_id must be a str, not {type(node_id).__name__}")
    raw = node_id.encode("utf-8", "replace")
    if not 1 <= len(raw) <= ID_MAX or any(c <= 0x20 or c >= 0x7F for c in raw):
        raise ConfigError(
            f"node_id {node_id!r} must be 1..{ID_MAX} printable ASCII characters without spaces"
        )
    return node_id


def check_tags(tags: object, max_key: int, max_value: int, max_size: int) -> dict[str, str]:
    """Validate a tag set against the limits; returns a plain dict copy."""
    if not isinstance(tags, Mapping):
        raise TagError(f"tags must be a mapping of str to str, not {type(tags).__name__}")
    size = 0
    out: dict[str, str] = {}
    for key, value in tags.items():
        check_tag(key, value, max_key, max_value)
        size += TAG_OVERHEAD + len(key.encode()) + len(value.encode())
        out[key] = value
    if size > max_size:
        raise TagError(
            f"tag set is {size} bytes encoded, over max_tags_size={max_size} "
            f"(each tag costs {TAG_OVERHEAD} bytes plus its key and value)"
        )
    return out


def check_tag(key: object, value: object, max_key: int, max_value: int) -> None:
    """One tag: key 1..max_key printable ASCII bytes without '=', value <= max_value bytes."""
    if not isinstance(key, str):
        raise TypeError(f"tag key must be a str, not {type(key).__name__}")
    if not isinstance(value, str):
        raise TypeError(f"tag value for {key!r} must be a str, not {type(value).__name__}")
    k = key.encode()
    if not 1 <= len(k) <= max_key or any(c <= 0x20 or c >= 0x7F or c == 0x3D for c in k):
        raise TagError(
            f"tag key {key!r} must be 1..{max_key} bytes of printable ASCII without spaces or '='"
        )
    v = value.encode()
    if len(v) > max_value:
        raise TagError(f"tag {key!r}: value is {len(v)} bytes, over max_tag_value={max_value}")
    if any(c < 0x20 or c == 0x7F for c in v):
        raise TagError(f"tag {key!r}: value must not contain control characters")


@dataclass(kw_only=True)
class ClusterConfig:
    """Every setting of one node. Keyword-only; defaults are the LAN profile.

    Security (one of them is required): ``cluster_key`` (32 bytes or base64),
    ``keyring`` (several keys, the first is used to connect, all are
    accepted: for key rotation), mutual TLS (``tls_ca``, ``tls_cert``,
    ``tls_key``), or ``insecure=True`` (no authentication, logs a warning).

    >>> import secrets
    >>> ClusterConfig(cluster_key=secrets.token_bytes(32), tags={"role": "db"}).probe_interval
    1.0
    """

    node_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    cluster_key: bytes | str | None = field(default=None, repr=False)
    keyring: list[bytes | str] = field(default_factory=list, repr=False)
    tls_ca: str | os.PathLike[str] | None = None
    tls_cert: str | os.PathLike[str] | None = None
    tls_key: str | os.PathLike[str] | None = field(default=None, repr=False)
    insecure: bool = False

    # Protocol core (docs/configuration.md).
    probe_interval: float = _LAN["probe_interval"]
    probe_timeout: float = _LAN["probe_timeout"]
    indirect_checks: int = _LAN["indirect_checks"]
    awareness_max: int = _LAN["awareness_max"]
    suspicion_mult: int = _LAN["suspicion_mult"]
    suspicion_max_mult: int = _LAN["suspicion_max_mult"]
    suspicion_confirmations: int = _LAN["suspicion_confirmations"]
    # A helper's nack confirms the suspicion its asker raised.
    nack_confirms: bool = _LAN["nack_confirms"]
    phi_threshold: float = _LAN["phi_threshold"]
    phi_window: int = _LAN["phi_window"]
    phi_min_std: float = _LAN["phi_min_std"]
    phi_acceptable_pause: float = _LAN["phi_acceptable_pause"]
    phi_min_samples: int = _LAN["phi_min_samples"]
    gossip_interval: float = _LAN["gossip_interval"]
    gossip_nodes: int = _LAN["gossip_nodes"]
    gossip_to_dead: float = _LAN["gossip_to_dead"]
    retransmit_mult: int = _LAN["retransmit_mult"]
    max_broadcast_queue: int = _LAN["max_broadcast_queue"]
    pushpull_interval: float = _LAN["pushpull_interval"]
    reconnect_interval: float = _LAN["reconnect_interval"]
    reconnect_timeout: float = _LAN["reconnect_timeout"]
    reap_left_after: float = _LAN["reap_left_after"]
    max_packet_size: int = _LAN["max_packet_size"]
    max_tag_key: int = _LAN["max_tag_key"]
    max_tag_value: int = _LAN["max_tag_value"]
    max_tags_size: int = _LAN["max_tags_size"]
    max_members: int = _LAN["max_members"]
    max_pushpull_size: int = _LAN["max_pushpull_size"]
    user_event_buffer: int = _LAN["user_event_buffer"]
    max_user_event_size: int = _LAN["max_user_event_size"]
    max_user_event_stream: int = _LAN["max_user_event_stream"]
    user_event_store: int = _LAN["user_event_store"]
    user_event_rate: int = _LAN["user_event_rate"]
    query_timeout_mult: int = _LAN["query_timeout_mult"]
    # Network coordinates (Vivaldi), learnt from probes; see Member.coordinate.
    coordinates: bool = _LAN["coordinates"]
    # State changes kept per member for history() (0..64).
    history: int = _LAN["history"]

    # Transport (QUIC connection pool).
    max_connections: int = _NET["max_connections"]
    idle_timeout: float = _NET["idle_timeout"]
    handshake_timeout: float = _NET["handshake_timeout"]
    request_timeout: float = _NET["request_timeout"]
    max_stream_message: int = _NET["max_stream_message"]
    max_queued_datagrams: int = _NET["max_queued_datagrams"]
    accept_rate: int = _NET["accept_rate"]
    accept_rate_per_source: int = _NET["accept_rate_per_source"]
    # None: derived from the pool when the node starts (docs/configuration.md).
    max_half_open: int | None = None
    retry_threshold: int | None = None

    # Engine and API.
    join_timeout: float = 10.0
    leave_timeout: float = 5.0
    event_queue_size: int = 4096
    subscriber_queue_size: int = 1024
    # Seconds to hold coalescable user events, delivering only the latest
    # of each name; 0 delivers every one at once.
    user_event_coalesce: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self.validate()
        if self.phi_threshold != _LAN["phi_threshold"]:
            warnings.warn(
                f"phi_threshold={self.phi_threshold!r} has no effect: phi takes no part in "
                "the protocol (it is only reported, as Member.phi); leave phi_threshold "
                "unset (docs/configuration.md)",
                DeprecationWarning,
                stacklevel=_caller_stacklevel(),
            )

    # ------------------------------------------------------------ profiles

    @classmethod
    def lan(cls, **overrides: Unpack[ConfigOverrides]) -> ClusterConfig:
        """The LAN profile (the default): 1 s probes, failure in a few seconds.

        >>> ClusterConfig.lan(cluster_key=key).probe_interval
        1.0
        """
        return cls._profile("lan", overrides)

    @classmethod
    def wan(cls, **overrides: Unpack[ConfigOverrides]) -> ClusterConfig:
        """The WAN profile: 5 s probes and longer timeouts for high-latency links.

        >>> ClusterConfig.wan(cluster_key=key, probe_timeout=2.0).probe_timeout
        2.0
        """
        return cls._profile("wan", overrides)

    @classmethod
    def local(cls, **overrides: Unpack[ConfigOverrides]) -> ClusterConfig:
        """The local profile: fast probes for one host or a test (0.2 s probes).

        >>> ClusterConfig.local(cluster_key=key, node_id="n1").probe_interval
        0.2
        """
        return cls._profile("local", overrides)

    @classmethod
    def _profile(cls, name: str, overrides: ConfigOverrides) -> ClusterConfig:
        settings: dict[str, Any] = dict(_core.config_profile(name))
        settings.update(overrides)
        return cls(**settings)

    # ---------------------------------------------------------- validation

    def validate(self) -> None:
        """Check every field; raises ConfigError (or TagError) naming the culprit."""
        if self.node_id is not None:
            check_node_id(self.node_id)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _TIME_FIELDS:
                self._check_time(f.name, value)
            elif f.type == "int" or (
                f.name in _LAN
                and isinstance(_LAN[f.name], int)
                and not isinstance(_LAN[f.name], bool)
            ):
                self._check_int(f.name, value)
        self._check_int("seed", self.seed, optional=True)
        if not isinstance(self.phi_threshold, (int, float)) or isinstance(self.phi_threshold, bool):
            raise ConfigError("phi_threshold must be a number")
        for name in ("insecure", "coordinates", "nack_confirms"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False")
        for name in ("event_queue_size", "subscriber_queue_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        # Passed to the engine as C uint32_t: larger would wrap, silently.
        for name in (
            "event_queue_size",
            "subscriber_queue_size",
            "max_queued_datagrams",
            "accept_rate",
            "accept_rate_per_source",
        ):
            if getattr(self, name) > _U32_MAX:
                raise ConfigError(f"{name} must be at most {_U32_MAX:,}, got {getattr(self, name)}")
        check_tags(self.tags, self.max_tag_key, self.max_tag_value, self.max_tags_size)
        self._check_admission()
        self._check_auth()
        why = _core.validate_config(self.protocol_settings())
        if why is not None:
            raise ConfigError(f"invalid config: {why}")
        # A payload on streams travels in one stream message.
        if self.max_user_event_stream + 16 > self.max_stream_message:
            raise ConfigError(
                f"max_user_event_stream={self.max_user_event_stream} does not fit in "
                f"max_stream_message={self.max_stream_message}: raise max_stream_message "
                "or lower max_user_event_stream"
            )

    @staticmethod
    def _check_time(name: str, value: object) -> None:
        check_duration(name, value)

    @staticmethod
    def _check_int(name: str, value: object, optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")

    def _check_admission(self) -> None:
        """The pool and the half-open table that admission carves out of it."""
        if self.max_connections < 1 or self.max_connections > _U32_MAX:
            raise ConfigError(
                f"max_connections must be between 1 and {_U32_MAX}, got {self.max_connections}"
            )
        for name in ("max_half_open", "retry_threshold"):
            self._check_int(name, getattr(self, name), optional=True)
        mho = self.max_half_open
        if mho is not None and not 1 <= mho <= self.max_connections:
            raise ConfigError(
                f"max_half_open={mho} must be between 1 and max_connections="
                f"{self.max_connections}: lower max_half_open, raise max_connections, or "
                "leave max_half_open unset (None) to derive it from the pool "
                "(min(128, max_connections // 4), at least 1)"
            )
        rt = self.retry_threshold
        if rt is not None and rt > _RETRY_MAX:
            raise ConfigError(
                f"retry_threshold={rt} is too large: 0 sends a Retry for every handshake, "
                f"max_half_open or more (up to {_RETRY_MAX}) never does, and unset (None) "
                "derives it from max_half_open (a quarter, so 0 under four places)"
            )

    def _check_auth(self) -> None:
        keys = self.keys()
        tls = [self.tls_ca, self.tls_cert, self.tls_key]
        if any(x is not None for x in tls):
            if any(x is None for x in tls):
                raise ConfigError("mutual TLS needs all of tls_ca, tls_cert and tls_key")
            if keys:
                raise ConfigError("choose one: a cluster key or mutual TLS, not both")
            for name, path in zip(("tls_ca", "tls_cert", "tls_key"), tls, strict=True):
                if not os.path.isfile(os.fspath(path)):  # type: ignore[arg-type]
                    raise ConfigError(f"{name} file {os.fspath(path)!r} does not exist")  # type: ignore[arg-type]
            return
        if not keys and not self.insecure:
            raise ConfigError(
                "no cluster key: pass cluster_key=... (32 bytes or base64; make one with "
                "`clustermember keygen` or secrets.token_bytes(32)), mutual TLS "
                "(tls_ca, tls_cert, tls_key), or insecure=True to run without authentication"
            )

    # ------------------------------------------------------------- derived

    @property
    def auth(self) -> str:
        """'key', 'mtls' or 'none'."""
        if self.tls_ca is not None:
            return "mtls"
        return "key" if self.keys() else "none"

    def keys(self) -> list[bytes]:
        """The keyring as raw keys, primary first (key ids are position + 1)."""
        out: list[bytes] = []
        if self.cluster_key is not None:
            out.append(decode_key(self.cluster_key))
        if not isinstance(self.keyring, (list, tuple)):
            raise ConfigError("keyring must be a list of keys")
        for i, k in enumerate(self.keyring):
            raw = decode_key(k, f"keyring[{i}]")
            if raw not in out:
                out.append(raw)
        if len(out) > 255:
            raise ConfigError("a keyring holds at most 255 keys")
        return out

    def protocol_settings(self) -> dict[str, Any]:
        """The core's settings, in seconds, as the C binding takes them."""
        return {name: getattr(self, name) for name in PROTOCOL_FIELDS}

    def transport_settings(self, node_id: str, bind: str) -> dict[str, Any]:
        """The transport's settings, with keys and a static reset secret."""
        auth = self.auth
        # Settings left unset are not passed: the transport derives them.
        net: dict[str, Any] = {
            name: getattr(self, name)
            for name in TRANSPORT_FIELDS
            if getattr(self, name) is not None
        }
        net["auth"] = auth
        if auth == "key":
            keys = self.keys()
            net["keys"] = keys
            material = keys[0]
        elif auth == "mtls":
            net["ca_file"] = os.fspath(self.tls_ca)  # type: ignore[arg-type]
            net["cert_file"] = os.fspath(self.tls_cert)  # type: ignore[arg-type]
            net["key_file"] = os.fspath(self.tls_key)  # type: ignore[arg-type]
            with open(net["key_file"], "rb") as fh:
                material = fh.read()
        else:
            material = b"insecure:" + bind.encode()
        # Deterministic, so a node restarted with the same id and key can
        # send stateless resets to peers still holding its old connections.
        import hashlib  # when a node starts, not when the package is imported

        net["static_secret"] = hashlib.sha256(
            b"clustermember static secret\0" + material + b"\0" + node_id.encode()
        ).digest()
        return net
