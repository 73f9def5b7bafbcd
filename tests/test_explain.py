"""A member's history read aloud and drawn: the text that ``explain`` prints
and the SVG timeline a notebook shows, from histories built by hand."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from clustermember import HistoryEntry, MemberState
from clustermember._explain import ago_text, explain_lines, explain_text, summary_line
from clustermember._timeline import HistoryTimeline, bands, label_rows

SVG = "{http://www.w3.org/2000/svg}"


def entry(
    t: float,
    event: str,
    state: str,
    source: str,
    by: str | None = None,
    inc: int = 3,
    *,
    health: int = 0,
    rtt: float | None = None,
    helpers: int = 0,
    nacks: int = 0,
    confirmations: int = 0,
) -> HistoryEntry:
    return HistoryEntry(
        t, event, MemberState(state), source, by, inc, health, rtt, helpers, nacks, confirmations
    )


# A flap as n0 saw it: its own probe failed, n2 agreed, the suspicion ran
# out, then the member came back; then it was accused again by gossip and
# refuted in time.
FLAP = [
    entry(40.0, "suspect", "suspect", "probe", "n0", rtt=0.000412, helpers=3, nacks=3),
    entry(40.5, "confirmed", "suspect", "gossip", "n2", confirmations=1),
    entry(43.0, "failed", "failed", "timeout"),
    entry(50.0, "recovered", "alive", "alive", inc=4),
    entry(80.0, "suspect", "suspect", "gossip", "n1", inc=4),
    entry(80.2, "confirmed", "suspect", "pushpull", "n2", inc=4, confirmations=1),
    entry(81.0, "recovered", "alive", "alive", inc=5),
]


def test_each_line_says_when_what_and_why() -> None:
    lines = explain_lines(FLAP, 95.0)
    assert lines == [
        "55.0 s ago  suspect    by n0 (its own probe: no ack; 3 helpers asked: 3 could not "
        "reach it either, 0 did not answer; last RTT 0.412 ms; our health 0)",
        "54.5 s ago  confirmed  by n2 (gossip; 2 accusers so far)",
        "52.0 s ago  failed     suspicion timed out here",
        "45.0 s ago  recovered  it came back at incarnation 4",
        "15.0 s ago  suspect    by n1 (gossip)",
        "14.8 s ago  confirmed  by n2 (push-pull; 2 accusers so far)",
        "14.0 s ago  recovered  it refuted at incarnation 5",
    ]


def test_what_is_unusual_is_said_too() -> None:
    odd = [
        # Our own probe with nobody to ask, no round trip yet, and this
        # node struggling; helpers that said nothing.
        entry(1.0, "suspect", "suspect", "probe", "n0", health=3),
        entry(2.0, "suspect", "suspect", "probe", "n0", helpers=3, nacks=1, rtt=0.0042),
        # An accuser forgotten since; gossip while this node struggled.
        entry(3.0, "suspect", "suspect", "gossip", None, health=2),
        entry(4.0, "failed", "failed", "gossip", "n4", confirmations=2),
        entry(5.0, "left", "left", "leave", "n3"),
        entry(6.0, "joined", "alive", "alive", inc=7),
        entry(7.0, "left", "left", "pushpull", "n1"),
        entry(8.0, "failed", "failed", ""),
        # Helpers of this node's probe that could not reach it either.
        entry(9.0, "confirmed", "suspect", "nack", "n2", helpers=3, nacks=2, confirmations=1),
    ]
    causes = [line.split(None, 4)[4] for line in explain_lines(odd, 10.0)]
    assert causes == [
        "by n0 (its own probe: no ack; no helper to ask; no RTT measured before; our health 3)",
        "by n0 (its own probe: no ack; 3 helpers asked: 1 could not reach it either, "
        "2 did not answer; last RTT 4.20 ms; our health 0)",
        "by an accuser this node has forgotten since (gossip; our health 2)",
        "by n4 (gossip, 3 accusers)",
        "it left at incarnation 3",
        "it came back at incarnation 7",
        "by n1 (push-pull)",
        "by an accuser this node has forgotten since (cause not recorded)",
        "by n2 among the helpers of this node's probe (2 of 3 helpers asked could not reach "
        "it either; 2 accusers so far)",
    ]


def test_times_align_and_read_at_a_glance() -> None:
    assert [ago_text(s) for s in (0.04, 9.96, 59.96, 61, 3599, 3660, -1)] == [
        "0.0 s ago",
        "10.0 s ago",
        "1 min 0 s ago",
        "1 min 1 s ago",
        "59 min 59 s ago",
        "1 h 1 min ago",
        "0.0 s ago",
    ]
    lines = explain_lines([entry(0.0, "failed", "failed", "timeout"), *FLAP[3:4]], 95.0)
    assert lines[0].startswith("1 min 35 s ago  failed ")
    assert lines[1].startswith("    45.0 s ago  recovered ")


def test_the_summary_first_then_the_lines_or_a_word_that_there_are_none() -> None:
    text = explain_text("n3", "alive", 5, 81.0, FLAP, 100.0, "n0")
    head, *rest = text.splitlines()
    assert head == "n3 is alive (incarnation 5) since 19.0 s ago, as n0 sees it"
    assert rest == explain_lines(FLAP, 100.0)
    assert explain_text("n1", "alive", 0, None, [], 100.0, "n0").splitlines() == [
        summary_line("n1", "alive", 0, None, 100.0, "n0"),
        "no suspicion, failure or leave of n1 seen by n0",
    ]
    assert summary_line("n1", "alive", 0, None, 1.0, "n0") == (
        "n1 is alive (incarnation 0), as n0 sees it"
    )


def test_entries_travel_as_json_and_back() -> None:
    for e in FLAP:
        assert HistoryEntry.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    with pytest.raises(ValueError):
        HistoryEntry.from_dict({**FLAP[0].to_dict(), "state": "gone"})


def _svg(timeline: HistoryTimeline) -> ET.Element:
    assert timeline._repr_svg_() == timeline.to_svg()
    return ET.fromstring(timeline.to_svg())


def test_the_timeline_has_a_band_per_state_and_marks_confirmations() -> None:
    t = HistoryTimeline("n3", FLAP, 100.0, "n0")
    assert repr(t) == "<HistoryTimeline of n3: 7 changes, 5 states>"
    root = _svg(t)
    texts = ["".join(x.itertext()) for x in root.iter(f"{SVG}text")]
    assert "n3 as seen by n0" in texts
    drawn = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "band"]
    # suspect, failed, alive, suspect, alive: a confirmation starts none.
    assert [r.get("data-state") for r in drawn] == [b.state for b in t.bands]
    assert [(b.state, b.start, b.end) for b in t.bands] == [
        ("suspect", 40.0, 43.0),
        ("failed", 43.0, 50.0),
        ("alive", 50.0, 80.0),
        ("suspect", 80.0, 81.0),
        ("alive", 81.0, 100.0),
    ]
    # The bands follow one another, the last ending at the right (now).
    xs = [(float(r.get("x", "")), float(r.get("width", ""))) for r in drawn]
    assert all(abs(a + w - b) < 0.2 for (a, w), (b, _) in zip(xs, xs[1:], strict=False))
    assert abs(sum(w for _, w in xs) - (640 - 2 * 48)) < 1
    marks = [p for p in root.iter(f"{SVG}path") if p.get("class") == "confirmation"]
    assert len(marks) == 2
    tips = ["".join(m.itertext()) for m in marks]
    assert "by n2 (gossip; 2 accusers so far)" in tips[0]
    assert "by n2 (push-pull; 2 accusers so far)" in tips[1]
    labels = ["".join(x.itertext()) for x in root.iter(f"{SVG}text") if x.get("class") == "label"]
    assert len(labels) == len(FLAP)
    assert any(label.endswith("suspect by n0 (probe)") for label in labels)
    assert any(label.endswith("failed (timeout)") for label in labels)
    assert "now" in texts


@pytest.mark.parametrize("count", [0, 1])
def test_a_short_or_empty_history_is_still_a_picture(count: int) -> None:
    t = HistoryTimeline("n3", FLAP[:count], 40.0, "n0")
    root = _svg(t)
    drawn = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "band"]
    assert len(drawn) == count == len(bands(FLAP[:count], 40.0))
    if count == 0:
        texts = ["".join(x.itertext()) for x in root.iter(f"{SVG}text")]
        assert "no suspicion, failure or leave of n3 recorded" in texts


def test_labels_close_together_take_other_rows() -> None:
    # Changes a fraction of a second apart on a minute's timeline: each
    # label in a row of its own, none written over another.
    root = _svg(HistoryTimeline("n3", FLAP[:3], 100.0, "n0"))
    labels = [x for x in root.iter(f"{SVG}text") if x.get("class") == "label"]
    assert len({x.get("y") for x in labels}) == 3
    assert label_rows([(0, 50), (60, 90), (10, 40)], 2) == [0, 0, 1]
