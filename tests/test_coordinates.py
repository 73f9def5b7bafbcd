"""Network coordinates from Python: every member's, learnt on a live
loopback cluster; RTT estimates between members and from this node; the
nearest members, with tag filters; nothing at all with coordinates off;
the core's arithmetic behind Coordinate.rtt; the members table's RTT column
and the SVG map of the coordinates."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import xml.etree.ElementTree as ET
from types import MappingProxyType

import pytest
from _cluster import cluster
from conftest import eventually

from clustermember import (
    ClusterConfig,
    ClusterError,
    ClusterMembership,
    ConfigError,
    Coordinate,
    Member,
    MemberState,
    UnknownMember,
    _core,
)
from clustermember._coordmap import CoordinateMap
from clustermember._display import members_html, members_text

# Learning coordinates takes a few probe rounds and a snapshot refresh
# (every 2 s at most): far less than this, even on a loaded machine.
LEARNT = 60.0
# The error a coordinate starts with; it falls once samples move it.
START_ERROR = 1.5
SVG = "{http://www.w3.org/2000/svg}"


def learnt(node: ClusterMembership, n: int) -> bool:
    """Node sees n alive members, each (itself included) with a coordinate
    that samples have moved from where it started."""
    members = node.nodes()
    return len(members) == n and all(
        m.coordinate is not None and m.coordinate.error < START_ERROR for m in members
    )


def coord(x: float, y: float = 0.0, height: float = 0.0001, error: float = 0.2) -> Coordinate:
    return Coordinate((x, y, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), height, 0.0, error)


def member(node_id: str, c: Coordinate | None, is_self: bool = False) -> Member:
    return Member(
        node_id,
        "127.0.0.1:1",
        MemberState.ALIVE,
        1,
        MappingProxyType({}),
        0.0,
        None,
        is_self,
        c,
    )


def nearest_in_one_snapshot(node: ClusterMembership, k: int) -> tuple[list[Member], Member]:
    """nearest(k) and this node's own record from the same snapshot: the
    coordinates change with every refresh, so read until none came between."""
    while True:
        before = node._snapshot().version
        near, me = node.nearest(k), node.local_node
        if node._snapshot().version == before:
            return near, me


# --------------------------------------------------------- a live cluster


async def test_a_live_cluster_learns_every_coordinate_and_estimates_rtts(key: bytes) -> None:
    async with cluster(key, 4) as nodes:
        for i in (1, 3):
            await nodes[i].update_tag("role", "db")
        ids = [n.node_id for n in nodes]

        def ready() -> bool:
            tagged = {m.id for m in nodes[0].nodes_with_tag("role", "db")}
            return tagged == {"n1", "n3"} and all(learnt(n, 4) for n in nodes)

        await eventually(ready, "every coordinate learnt on every node", timeout=LEARNT)
        for node in nodes:
            assert node.local_node.coordinate is not None
            assert node.stats().counters["coord_updates"] > 0
            for other in ids:
                if other == node.node_id:
                    assert node.rtt(other) == 0.0
                    continue
                rtt = node.rtt(other)
                assert rtt is not None and 0.0 < rtt < 1.0, (node.node_id, other, rtt)
                between = node.rtt(other, node.node_id)
                assert between is not None and 0.0 < between < 1.0
            # Between two other members, as this node holds them.
            a, b = [x for x in ids if x != node.node_id][:2]
            ab = node.rtt(a, b)
            assert ab is not None and 0.0 < ab < 1.0

        n0 = nodes[0]
        with pytest.raises(UnknownMember, match="'nope'") as err:
            n0.rtt("nope")
        assert isinstance(err.value, KeyError) and isinstance(err.value, ClusterError)
        assert err.value.node_id == "nope"
        with pytest.raises(UnknownMember):
            n0.rtt("n1", "nope")
        with pytest.raises(TypeError):
            n0.rtt(1)  # type: ignore[arg-type]

        (one,) = n0.nearest(1)
        assert one.id in {"n1", "n2", "n3"} and not one.is_self
        near, me = nearest_in_one_snapshot(n0, 3)
        assert [m.id for m in near] != [] and {m.id for m in near} == {"n1", "n2", "n3"}
        assert me.coordinate is not None
        rtts = [me.coordinate.rtt(m.coordinate) for m in near if m.coordinate is not None]
        assert len(rtts) == 3 and rtts == sorted(rtts)
        # A tag filter: only db members, and never this node, db or not.
        assert {m.id for m in n0.nearest(5, tags={"role": "db"})} == {"n1", "n3"}
        assert [m.id for m in nodes[1].nearest(5, tags={"role": "db"})] == ["n3"]
        assert nodes[1].nearest(2, tags={"role": "web"}) == []
        assert n0.nearest(2, states=["failed"]) == []
        for bad in (0, -1):
            with pytest.raises(ValueError, match="k must be at least 1"):
                n0.nearest(bad)
        with pytest.raises(TypeError, match="k must be an int"):
            n0.nearest(True)

        # What Jupyter shows: an RTT column, and a point per member.
        assert "<th>rtt (ms)</th>" in n0._repr_html_()
        if importlib.util.find_spec("rich") is not None:
            table = n0.__rich__()
            assert [c.header for c in table.columns][-1] == "rtt (ms)"
            rows = dict(zip(table.columns[0].cells, table.columns[-1].cells, strict=True))
            assert rows["n0"] == "0.000" and rows["n1"] not in ("0.000", "-")
        svg = ET.fromstring(n0.coordinate_map()._repr_svg_())
        drawn = {c.get("data-id") for c in svg.iter(f"{SVG}circle")}
        assert drawn == set(ids)
        # The coordinate is data, JSON-able, and does not make members differ.
        d = n0.member("n1")
        assert d is not None and d.coordinate is not None
        assert json.loads(json.dumps(d.to_dict()))["coordinate"]["vec"] == list(d.coordinate.vec)
        assert dataclasses.replace(d, coordinate=None) == d


async def test_with_coordinates_off_there_are_none(key: bytes) -> None:
    async with cluster(key, 3, coordinates=False) as nodes:

        def probed() -> bool:
            return all(len(n.nodes()) == 3 and n.stats().counters["probe_acks"] >= 5 for n in nodes)

        # Enough probes answered that coordinates would have been learnt.
        await eventually(probed, "three members, each having probed", timeout=LEARNT)
        for node in nodes:
            assert [m.coordinate for m in node.nodes(None)] == [None] * 3
            assert node.local_node.coordinate is None
            assert node.rtt("n1", "n2") is None
            others = [x for x in ("n0", "n1", "n2") if x != node.node_id]
            assert node.rtt(others[0]) is None
            # Nearest falls back to every match, by id.
            assert [m.id for m in node.nearest(5)] == others
            assert node.stats().counters["coord_updates"] == 0
            assert "rtt (ms)" not in node._repr_html_()
            cmap = node.coordinate_map()
            assert cmap.members == [] and sorted(cmap.missing) == ["n0", "n1", "n2"]
            assert list(ET.fromstring(cmap.to_svg()).iter(f"{SVG}circle")) == []
        with pytest.raises(UnknownMember):
            nodes[0].rtt("nope")


# --------------------------------------------------------- the arithmetic


def test_coordinate_rtt_is_the_cores_and_symmetric() -> None:
    a = Coordinate((0.003, 0.0, 0, 0, 0, 0, 0, 0), 0.001, 0.0, 0.5)
    b = Coordinate((0.0, 0.004, 0, 0, 0, 0, 0, 0), 0.001, 0.0, 0.5)
    # 5 ms between the points, 1 ms of height at each end.
    assert a.rtt(b) == pytest.approx(0.007)
    assert a.rtt(b) == b.rtt(a) == _core.coord_rtt(a._tuple(), b._tuple())
    c = Coordinate((-0.002, 0.001, 0.0005, 0, 0, 0, 0, 0.003), 0.0002, 0.0004, 0.3)
    for x, y in itertools.permutations((a, b, c), 2):
        assert x.rtt(y) == y.rtt(x) == _core.coord_rtt(x._tuple(), y._tuple())
        assert x.rtt(y) > 0
    # The adjustments count, through the core.
    adjusted = dataclasses.replace(a, adjustment=0.002)
    assert adjusted.rtt(b) == pytest.approx(0.009)
    assert Coordinate._from_tuple(a._tuple()) == a
    assert json.loads(json.dumps(a.to_dict())) == {
        "vec": [0.003, 0.0, 0, 0, 0, 0, 0, 0],
        "height": 0.001,
        "adjustment": 0.0,
        "error": 0.5,
    }


@pytest.mark.parametrize(
    "bad",
    [
        ((0.0,) * 7, 0.0, 0.0, 0.5),  # seven dimensions
        ((math.nan,) + (0.0,) * 7, 0.0, 0.0, 0.5),
        ((math.inf,) + (0.0,) * 7, 0.0, 0.0, 0.5),
        ((1e9,) + (0.0,) * 7, 0.0, 0.0, 0.5),  # far beyond the bounds
        ((0.0,) * 8, -0.001, 0.0, 0.5),  # a negative height
        ((0.0,) * 8, 0.0, 0.0, -1.0),  # a negative error
        ((0.0,) * 8, 0.0, 0.0, 1e6),  # an error over the maximum
    ],
)
def test_an_invalid_coordinate_raises_value_error(
    bad: tuple[tuple[float, ...], float, float, float],
) -> None:
    good = ((0.0,) * 8, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="coordinate"):
        _core.coord_rtt(bad, good)
    with pytest.raises(ValueError, match="coordinate"):
        _core.coord_rtt(good, bad)
    with pytest.raises(ValueError, match="coordinate"):
        Coordinate(*bad).rtt(Coordinate(*good))


def test_coordinate_rtt_refuses_what_is_not_a_coordinate() -> None:
    with pytest.raises(TypeError, match="Coordinate"):
        coord(0.0).rtt(((0.0,) * 8, 0.0, 0.0, 0.5))  # type: ignore[arg-type]
    good = ((0.0,) * 8, 0.0, 0.0, 0.5)
    for bad in ("not one", [(0.0,) * 8, 0.0, 0.0, 0.5], None, ((0.0,) * 8, 0.0, 0.0)):
        with pytest.raises(TypeError, match="coordinate"):
            _core.coord_rtt(bad, good)  # type: ignore[arg-type]


# ----------------------------------------------------------- the display


def test_the_members_table_shows_rtts_from_this_node_when_known() -> None:
    me = member("me", coord(0.0), is_self=True)
    near, far = member("near", coord(0.001)), member("far", coord(0.02))
    unknown = member("unknown", None)
    page = members_html("t", [me, near, far, unknown])
    assert "<th>rtt (ms)</th>" in page
    assert f">{me.coordinate.rtt(near.coordinate) * 1000:.2f}<" in page  # type: ignore[union-attr]
    text = members_text("t", [me, near, far, unknown])
    head, *rows = text.splitlines()[1:]
    assert head.split()[-2:] == ["rtt", "(ms)"]
    assert [r.split()[-1] for r in rows] == ["0.000", "1.20", "20.2", "-"]
    # No column when no RTT is known: this node's coordinate unknown.
    blind = [member("me", None, is_self=True), near]
    assert "rtt" not in members_html("t", blind) and "rtt" not in members_text("t", blind)


def test_the_coordinate_map_keeps_far_groups_apart() -> None:
    # Two sites 40 ms apart, members within 1-2 ms of each other at each.
    jitter = [(0.0, 0.0), (0.0008, 0.0003), (-0.0005, 0.0009), (0.0002, -0.0011)]
    west = [member(f"w{i}", coord(-0.02 + dx, dy)) for i, (dx, dy) in enumerate(jitter)]
    east = [member(f"e{i}", coord(0.02 + dy, 0.004 + dx)) for i, (dx, dy) in enumerate(jitter)]
    me = dataclasses.replace(west[0], is_self=True)
    lost = member("lost", None)
    cmap = CoordinateMap([me, *west[1:], *east, lost], "two sites")
    assert cmap.missing == ["lost"] and len(cmap.members) == 8
    root = ET.fromstring(cmap._repr_svg_())
    assert root.tag == f"{SVG}svg"
    circles = {c.get("data-id"): c for c in root.iter(f"{SVG}circle")}
    assert sorted(circles) == sorted(m.id for m in [*west, *east])
    at = {k: (float(c.get("cx", "nan")), float(c.get("cy", "nan"))) for k, c in circles.items()}

    def gap(a: str, b: str) -> float:
        return math.dist(at[a], at[b])

    inside = [gap(a.id, b.id) for g in (west, east) for a, b in itertools.combinations(g, 2)]
    across = [gap(a.id, b.id) for a in west for b in east]
    assert max(inside) * 5 < min(across), (inside, across)
    # Every point is on the canvas; this node is ringed; the title is shown.
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert all(0 < x < width and 0 < y < height for x, y in at.values())
    assert circles["w0"].get("stroke") == "black" and circles["e1"].get("stroke") is None
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "two sites" in texts and "1 without a coordinate" in texts and "w0 (self)" in texts


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_coordinate_map_of_few_members_is_still_a_picture(count: int) -> None:
    members = [member(f"m{i}", coord(0.001 * i)) for i in range(count)]
    root = ET.fromstring(CoordinateMap(members).to_svg())
    assert len(list(root.iter(f"{SVG}circle"))) == count
    for c in root.iter(f"{SVG}circle"):
        assert math.isfinite(float(c.get("cx", "nan"))) and math.isfinite(float(c.get("cy", "nan")))


# -- the simulator's sites and the coordinates setting, as bad input --------


def test_simulator_sites_refuse_what_is_not_a_network() -> None:
    good = (3, 0.0002, 0.020, 0.080, 0.1)
    for bad, exc in (
        ((0, *good[1:]), ValueError),
        ((65, *good[1:]), ValueError),
        ((3, 0.0002, 0.080, 0.020, 0.1), ValueError),
        ((3, 0.0002, 0.020, 0.080, 1.5), ValueError),
        ((3, -1.0, 0.020, 0.080, 0.1), ValueError),
        ((3, 0.0002, 0.020), TypeError),
        ("three", TypeError),
    ):
        with pytest.raises(exc):
            _core.Simulator(6, sites=bad)  # type: ignore[arg-type]
    s = _core.Simulator(6, seed=2, sites=good)
    try:
        assert s.true_rtt(0, 3) == pytest.approx(0.0002)
        assert s.true_rtt(0, 1) == s.true_rtt(1, 0)
        assert 0.020 <= s.true_rtt(0, 1) <= 0.080
        with pytest.raises(IndexError):
            s.true_rtt(0, 6)
        s.bootstrap()
        s.run_for(5.0)
        held = s.coordinates(0)
        assert "n0" in held and len(held["n0"][0]) == 8
        s.crash(4)
        with pytest.raises(_core.Error, match="down"):
            s.coordinates(4)
    finally:
        s.close()


def test_coordinates_setting_is_a_bool() -> None:
    with pytest.raises(TypeError, match="True or False"):
        _core.Simulator(3, config={"coordinates": 1})
    s = _core.Simulator(3, config={"coordinates": False})
    try:
        assert s.config()["coordinates"] is False
        s.bootstrap()
        s.run_for(5.0)
        assert s.coordinates(0) == {}
    finally:
        s.close()
    with pytest.raises(ConfigError, match="coordinates must be True or False"):
        ClusterConfig(insecure=True, coordinates=1)  # type: ignore[arg-type]
