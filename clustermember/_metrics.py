"""A node's metrics in the Prometheus text format, from one definition.

:data:`METRICS` names every metric once: its name, type, help, labels and
the counters of the node it reads. Two outputs are built from it:
:func:`metrics_text` (the text exposition format 0.0.4, what the agent's
``/metrics`` serves, with no dependency) and :class:`ClusterCollector`, a
collector for the official ``prometheus_client`` (``pip install
'clustermember[prometheus]'``). docs/operations.md lists the same metrics;
a test keeps it in step with this module.

    >>> print(metrics_text(cluster))  # doctest: +SKIP
    # HELP clustermember_info This node's id and the package version; always 1.
    # TYPE clustermember_info gauge
    clustermember_info{node_id="n1",version="0.1.0"} 1
    ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clustermember._errors import ClusterError, MissingDependency

if TYPE_CHECKING:
    from clustermember._membership import ClusterMembership

#: The content type of :func:`metrics_text`, as Prometheus expects it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
#: One sample: its full name, its labels (name, value) in order, its value.
Sample = tuple[str, tuple[tuple[str, str], ...], float]


@dataclass(frozen=True)
class Reading:
    """What every metric is computed from: one read of a node.

    ``counters`` are :meth:`ClusterMembership.stats`' raw counters,
    ``probe_rtts`` the core's histogram of probe round trips (buckets not
    cumulative, the last bound ``inf``), ``event_backlog`` the events
    waiting in the fullest subscriber queue.
    """

    node_id: str
    version: str
    counters: Mapping[str, int]
    probe_rtts: Mapping[str, Any]
    event_backlog: int
    subscribers: int


@dataclass(frozen=True)
class Metric:
    """One metric: what Prometheus shows of it, and how to read it.

    ``name`` is the name as queried (a counter's ends in ``_total``);
    ``sources`` the raw counters it reads (for the check that none is
    forgotten); ``read`` turns a :class:`Reading` into samples.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    sources: tuple[str, ...]
    read: Callable[[Reading], list[Sample]]

    @property
    def family(self) -> str:
        """The family name: a counter's without ``_total``, as OpenMetrics has it."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def _one(name: str, kind: Kind, help_: str, counter: str) -> Metric:
    """A metric of one unlabelled raw counter."""
    return Metric(name, kind, help_, (), (counter,), lambda r: [(name, (), r.counters[counter])])


def _by(name: str, kind: Kind, help_: str, label: str, counters: Mapping[str, str]) -> Metric:
    """A metric with one label, a raw counter per value (``{value: counter}``)."""
    pairs = tuple(counters.items())
    return Metric(
        name,
        kind,
        help_,
        (label,),
        tuple(counters.values()),
        lambda r: [(name, ((label, v),), r.counters[c]) for v, c in pairs],
    )


@dataclass(frozen=True)
class DropReason:
    """One value of ``clustermember_drops_total``'s labels: where the input
    was dropped (``layer``), why (``reason``), the raw counter, and a line
    for the documentation."""

    layer: str
    reason: str
    counter: str
    meaning: str


def _drops(layer: str, prefix: str, meanings: Mapping[str, str]) -> list[DropReason]:
    return [DropReason(layer, reason, prefix + reason, m) for reason, m in meanings.items()]


#: Every reason input is dropped for. The reasons are disjoint: their sum is
#: every input dropped. The transport's ``rate_limit`` counter includes its
#: ``source_limit`` one; the metric shows the rest under ``rate_limit``.
DROP_REASONS: tuple[DropReason, ...] = (
    *_drops(
        "protocol",
        "drop_",
        {
            "malformed": "a message that failed to decode",
            "wrong_target": "a ping meant for another node id",
            "stale": "an ack or nack for no pending probe",
            "unknown": "news about a node this one does not know",
            "forward_full": "too many indirect probes in flight",
            "limit": "a newcomer while the registry is at max_members",
            "pushpull": "a bad or oversized push-pull",
            "left": "input after this node left",
            "incarnation": "an accusation at the last incarnation",
            "user_event_old": "a user event older than the buffer remembers",
            "user_event_rate": "a user event from an origin over twice the send rate",
            "user_event_ltime": "a user event with a Lamport time past 2^47",
            "user_event_size": "a user event over the size limit",
            "query_old": "a query older than the buffer remembers",
            "query_rate": "a query from an origin over twice the send rate",
            "query_ltime": "a query with a Lamport time past 2^47",
            "query_size": "a query over the size limit",
            "reply": "a query reply for no query in flight, late, or from no member",
            "relay": "a reply relay to an address of no live member",
            "sync_rate": "user events to re-send past the anti-entropy budget",
            "query_origin": "a query whose answers would go to an address not its origin's",
        },
    ),
    DropReason(
        "protocol", "broadcast_queue_full", "updates_dropped", "the gossip queue overflowed"
    ),
    DropReason("protocol", "app_queue_full", "app_dropped", "the application's queue was full"),
    *_drops(
        "transport",
        "net_drop_",
        {
            "garbage": "an undecodable, undecryptable or unroutable datagram",
            "queue_full": "the datagram or socket queue was full",
            "oversized": "a datagram or stream message too large",
            "auth": "a payload from an unauthenticated peer",
            "rate_limit": "a handshake over the rate strangers share",
            "source_limit": "a handshake over its source's own rate",
            "pool_full": "an inbound connection with no room in the pool",
            "closed": "a queued payload lost with its connection",
            "fault": "fault injection (--fault-drop, inject_faults)",
            "half_open": "a handshake refused: too many half-open connections",
            "retry_rate_limit": "an Initial a Retry was due for, over the Retry rate",
            "bad_token": "an Initial with an invalid or expired token",
        },
    ),
    DropReason(
        "engine", "event_queue_full", "events_dropped", "the engine's event queue overflowed"
    ),
    DropReason(
        "engine",
        "subscriber_queue_full",
        "subscriber_events_dropped",
        "a subscriber (subscribe(), an --event-handler) read too slowly: its queue was full",
    ),
)


def _drop_value(r: Reading, d: DropReason) -> int:
    c = r.counters
    if d.counter == "net_drop_rate_limit":  # it counts source_limit's too
        return max(0, c[d.counter] - c["net_drop_source_limit"])
    return c[d.counter]


def _drop_samples(r: Reading) -> list[Sample]:
    name = "clustermember_drops_total"
    return [
        (name, (("layer", d.layer), ("reason", d.reason)), _drop_value(r, d)) for d in DROP_REASONS
    ]


def _info(r: Reading) -> list[Sample]:
    return [("clustermember_info", (("node_id", r.node_id), ("version", r.version)), 1)]


def _rtt_samples(r: Reading) -> list[Sample]:
    """The core's buckets made cumulative, ``le="+Inf"`` last, then sum and count."""
    name = "clustermember_probe_rtt_seconds"
    out: list[Sample] = []
    total = 0
    for bound, count in r.probe_rtts["buckets"]:
        total += count
        out.append((name + "_bucket", (("le", value_text(bound)),), total))
    out.append((name + "_sum", (), r.probe_rtts["sum"]))
    out.append((name + "_count", (), r.probe_rtts["count"]))
    return out


def _backlog(r: Reading) -> list[Sample]:
    return [("clustermember_event_queue_depth", (), r.event_backlog)]


def _subscribers(r: Reading) -> list[Sample]:
    return [("clustermember_event_subscribers", (), r.subscribers)]


_IN_OUT = {"in": "_in", "out": "_out"}


def _in_out(name: str, help_: str, prefix: str) -> Metric:
    """A counter by ``direction`` (in, out) of raw counters prefix_in and prefix_out."""
    return _by(name, "counter", help_, "direction", {d: prefix + s for d, s in _IN_OUT.items()})


#: Every metric, once, in the order the exposition shows them.
METRICS: tuple[Metric, ...] = (
    Metric(
        "clustermember_info",
        "gauge",
        "This node's id and the package version; always 1.",
        ("node_id", "version"),
        (),
        _info,
    ),
    _by(
        "clustermember_members",
        "gauge",
        "Members in this node's view by state, this node included.",
        "state",
        {s: s for s in ("alive", "suspect", "failed", "left")},
    ),
    _one(
        "clustermember_local_health",
        "gauge",
        "Lifeguard local health (awareness) score: 0 is healthy; higher means this node "
        "answers late and stretches its own timeouts.",
        "health",
    ),
    _one(
        "clustermember_incarnation", "gauge", "This node's own incarnation number.", "incarnation"
    ),
    Metric(
        "clustermember_probe_rtt_seconds",
        "histogram",
        "Round trips of direct probes acked by their target, in seconds.",
        (),
        (),
        _rtt_samples,
    ),
    _one("clustermember_probes_total", "counter", "Direct probes sent.", "probes"),
    _one("clustermember_probe_acks_total", "counter", "Acks to this node's probes.", "probe_acks"),
    _one(
        "clustermember_probe_failures_total",
        "counter",
        "Probes that got no ack in time, direct and indirect.",
        "probe_failures",
    ),
    _one(
        "clustermember_indirect_probes_total",
        "counter",
        "Indirect probes asked of other members.",
        "indirect_probes",
    ),
    _one(
        "clustermember_suspicions_total",
        "counter",
        "Members this node began to suspect.",
        "suspicions",
    ),
    _one(
        "clustermember_refutations_total",
        "counter",
        "Suspicions of this node that it refuted (it was suspected while alive).",
        "refutations",
    ),
    _one(
        "clustermember_failures_declared_total",
        "counter",
        "Suspects this node declared failed.",
        "failures_declared",
    ),
    _one(
        "clustermember_conflicts_total",
        "counter",
        "Node ids seen claimed from two addresses at once.",
        "conflicts",
    ),
    _one(
        "clustermember_id_duplicates_total",
        "counter",
        "Times a process elsewhere answered to this node's own id.",
        "duplicates",
    ),
    _one(
        "clustermember_stalls_total",
        "counter",
        "Times this node ran late (its process or machine was paused).",
        "stalls",
    ),
    _in_out(
        "clustermember_bytes_total",
        "UDP payload bytes on the wire (QUIC), by direction.",
        "net_bytes",
    ),
    _in_out(
        "clustermember_protocol_bytes_total",
        "Membership protocol bytes the core encoded or decoded, by direction.",
        "bytes",
    ),
    _in_out("clustermember_packets_total", "UDP datagrams, by direction.", "net_packets"),
    _one(
        "clustermember_control_packets_sent_total",
        "counter",
        "Packets sent with no new membership payload: acknowledgements alone, "
        "handshakes, loss probes and resends, closes, resets, Retries.",
        "net_control_packets_out",
    ),
    _one(
        "clustermember_control_bytes_sent_total",
        "counter",
        "UDP payload bytes of those packets.",
        "net_control_bytes_out",
    ),
    _in_out("clustermember_messages_total", "Protocol messages, by direction.", "msgs"),
    Metric(
        "clustermember_drops_total",
        "counter",
        "Input dropped, by layer and reason (reasons are disjoint).",
        ("layer", "reason"),
        tuple(d.counter for d in DROP_REASONS),
        _drop_samples,
    ),
    _by(
        "clustermember_send_errors_total",
        "counter",
        "Sends that failed: the socket refused a packet (transport), or the "
        "transport a datagram or request (engine).",
        "layer",
        {"transport": "net_send_errors", "engine": "send_errors"},
    ),
    _in_out(
        "clustermember_pushpulls_total", "Push-pull state exchanges, by direction.", "pushpull"
    ),
    _one(
        "clustermember_pushpull_failures_total",
        "counter",
        "Push-pull exchanges that failed.",
        "pushpull_failed",
    ),
    _one("clustermember_connections_open", "gauge", "QUIC connections open.", "net_conns_open"),
    _one(
        "clustermember_connections_idle",
        "gauge",
        "Open QUIC connections with nothing in flight.",
        "net_conns_idle",
    ),
    _one(
        "clustermember_connections_half_open",
        "gauge",
        "Inbound QUIC connections not yet authenticated.",
        "net_conns_half_open",
    ),
    _one(
        "clustermember_connections_opened_total",
        "counter",
        "QUIC connections opened, as client or server.",
        "net_conns_opened",
    ),
    _one(
        "clustermember_connections_evicted_total",
        "counter",
        "QUIC connections closed to make room in the pool.",
        "net_conns_evicted",
    ),
    _one(
        "clustermember_connections_timed_out_total",
        "counter",
        "QUIC connections closed by an idle or handshake timeout.",
        "net_conns_timed_out",
    ),
    _by(
        "clustermember_handshakes_total",
        "counter",
        "QUIC handshakes by result: ok (confirmed) or failed.",
        "result",
        {"ok": "net_handshakes_ok", "failed": "net_handshakes_failed"},
    ),
    _one(
        "clustermember_handshake_auth_failures_total",
        "counter",
        "Handshakes that failed authentication: another cluster key or CA, or a stranger.",
        "net_auth_refused",
    ),
    _by(
        "clustermember_broadcast_queue_depth",
        "gauge",
        "Messages waiting to be piggybacked on gossip, by kind.",
        "kind",
        {"membership": "bcast_queue", "user_event": "user_event_queue", "query": "query_queue"},
    ),
    Metric(
        "clustermember_event_queue_depth",
        "gauge",
        "Events waiting in the fullest subscriber queue (the slowest reader's backlog).",
        (),
        (),
        _backlog,
    ),
    Metric(
        "clustermember_event_subscribers",
        "gauge",
        "Event subscriptions open on this node.",
        (),
        (),
        _subscribers,
    ),
    _one(
        "clustermember_user_events_sent_total",
        "counter",
        "User events sent from here.",
        "user_events_sent",
    ),
    _one(
        "clustermember_user_events_delivered_total",
        "counter",
        "User events delivered here, each once, own included.",
        "user_events_delivered",
    ),
    _one("clustermember_queries_sent_total", "counter", "Queries asked from here.", "queries_sent"),
    _one(
        "clustermember_queries_delivered_total",
        "counter",
        "Queries delivered here, each once, own included.",
        "queries_delivered",
    ),
    _by(
        "clustermember_query_replies_total",
        "counter",
        "Query acks and responses: sent to others' queries (out), received for ours (in).",
        "direction",
        {"in": "replies_in", "out": "replies_sent"},
    ),
    _one(
        "clustermember_coordinate_updates_total",
        "counter",
        "RTT samples that moved this node's network coordinate.",
        "coord_updates",
    ),
    _one(
        "clustermember_coordinate_rejections_total",
        "counter",
        "Coordinates out of bounds and outlier RTT samples, rejected.",
        "coord_rejected",
    ),
    _one(
        "clustermember_coordinate_resets_total",
        "counter",
        "Times this node's coordinate diverged and began again.",
        "coord_resets",
    ),
)

#: The raw counters no metric reads: detail for debugging, shown by
#: ``clustermember stats`` and :meth:`ClusterStats.flat`. A test checks
#: that every raw counter is read by a metric or named here.
NOT_EXPORTED = frozenset(
    {
        "members",  # the sum of clustermember_members
        "packets_in",
        "packets_out",
        "nacks_in",
        "pings_in",
        "ping_reqs_in",
        "stale_corrections",
        "tombstones_evicted",
        "skipped_unknown",
        "user_events_duplicate",
        "user_events_coalesced",
        "queries_duplicate",
        "replies_relayed",
        "replies_streamed",
        "reply_stream_failed",
        "reply_duplicate",
        "events_synced",
        "events_before_join",
        "events_fetched",
        "events_served",
        "fetch_failed",
        "fetch_busy",
        "payloads_forgotten",
        "coord_heard",
        "coord_ignored",
        "net_conns_accepted",
        "net_accepts_fresh",
        "net_handshakes_refused",
        "net_half_open_displaced",
        "net_datagrams_in",
        "net_datagrams_out",
        "net_requests_in",
        "net_requests_out",
        "net_responses_out",
        "net_retries_sent",
        "net_sends_deferred",
        "net_stale_peers",
        "net_stateless_resets_sent",
        "net_resets_rate_limited",
        "net_stream_in_peak",
    }
)


def value_text(v: float) -> str:
    """A sample value or ``le`` bound as the text format writes it.

    >>> value_text(3), value_text(0.25), value_text(float("inf"))
    ('3', '0.25', '+Inf')
    """
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(float(v))


def escape_label(value: str) -> str:
    r"""A label value escaped for the text format: backslash, quote, newline.

    >>> escape_label('a"b\\c\nd')
    'a\\"b\\\\c\\nd'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: Sequence[tuple[Metric, list[Sample]]]) -> str:
    """The text exposition of metrics and their samples: HELP, TYPE, samples.

    >>> print(render([(METRICS[0], [("clustermember_info", (("node_id", "n1"),), 1)])]))
    # HELP clustermember_info This node's id and the package version; always 1.
    # TYPE clustermember_info gauge
    clustermember_info{node_id="n1"} 1
    <BLANKLINE>
    """
    lines: list[str] = []
    for metric, samples in families:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for name, labels, value in samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            lines.append(
                f"{name}{{{text}}} {value_text(value)}" if text else f"{name} {value_text(value)}"
            )
    return "\n".join(lines) + "\n"


def read(cluster: ClusterMembership) -> Reading:
    """One read of a started node, for :func:`samples`.

    Raises ClusterError (NotStarted, ClusterClosed) for a node not running.

    >>> read(cluster).counters["alive"]
    3
    """
    from clustermember import __version__

    stats = cluster.stats()
    backlog, subscribers = cluster._event_backlog()
    return Reading(
        stats.node_id, __version__, stats.counters, cluster._probe_rtts(), backlog, subscribers
    )


def samples(reading: Reading) -> list[tuple[Metric, list[Sample]]]:
    """Every metric with its samples from one reading.

    >>> [m.name for m, _ in samples(read(cluster))][:2]
    ['clustermember_info', 'clustermember_members']
    """
    return [(m, m.read(reading)) for m in METRICS]


def metrics_text(cluster: ClusterMembership) -> str:
    """Every metric of a started node in the Prometheus text format 0.0.4
    (serve it as :data:`CONTENT_TYPE`).

    >>> "clustermember_members{state=\\"alive\\"} 3" in metrics_text(cluster)
    True
    """
    return render(samples(read(cluster)))


class ClusterCollector:
    """A ``prometheus_client`` collector of one node's metrics, the same the
    agent serves. Needs ``pip install 'clustermember[prometheus]'``.

    Each scrape reads the node once; while the node is not running (not
    started yet, or closed) it yields nothing.

    >>> from prometheus_client import REGISTRY
    >>> REGISTRY.register(ClusterCollector(cluster))  # doctest: +SKIP
    """

    def __init__(self, cluster: ClusterMembership) -> None:
        try:
            from prometheus_client.core import Metric as _PromMetric
        except ImportError:
            raise MissingDependency(
                "ClusterCollector needs prometheus_client, which is not installed: "
                "pip install 'clustermember[prometheus]'"
            ) from None
        self._metric_class = _PromMetric
        self.cluster = cluster

    def describe(self) -> Iterator[Any]:
        """The metric families without samples: a registry checks their
        names at registration without reading the node (which may not have
        started yet)."""
        for metric in METRICS:
            yield self._metric_class(metric.family, metric.help, metric.kind)

    def collect(self) -> Iterator[Any]:
        """One ``prometheus_client`` metric family per metric, from one read."""
        try:
            reading = read(self.cluster)
        except ClusterError:
            return
        for metric, got in samples(reading):
            family = self._metric_class(metric.family, metric.help, metric.kind)
            for name, labels, value in got:
                family.add_sample(name, dict(labels), value)
            yield family


def docs_table() -> str:
    """The metrics as the Markdown table docs/operations.md holds (a test
    checks the page has it as it is).

    >>> docs_table().splitlines()[0]
    '| metric | type | labels | meaning |'
    """
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels) or "—"
        rows.append(f"| `{m.name}` | {m.kind} | {labels} | {m.help} |")
    return "\n".join(rows)


def drops_table() -> str:
    """The reasons of ``clustermember_drops_total`` as a Markdown table.

    >>> drops_table().splitlines()[0]
    '| layer | reason | counted when |'
    """
    rows = ["| layer | reason | counted when |", "|---|---|---|"]
    rows += [f"| {d.layer} | `{d.reason}` | {d.meaning} |" for d in DROP_REASONS]
    return "\n".join(rows)
