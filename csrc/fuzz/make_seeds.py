#!/usr/bin/env python3
"""Write the seed corpus of fuzz_decode: one valid input of each format.

Written from docs/protocol.md (Wire format) rather than from the C encoder, so the
seeds double as a second reading of the specification.
Usage: python3 csrc/fuzz/make_seeds.py  (from the repository root)
"""

import pathlib
import struct

OUT = pathlib.Path(__file__).parent / "seeds" / "fuzz_decode"
VERSION = 1
PING, ACK, PING_REQ, NACK, ALIVE, SUSPECT, DEAD, LEAVE = range(1, 9)
USER_EVENT, QUERY, QUERY_RESPONSE, QUERY_RELAY = range(9, 13)
NEWER_TYPE = 0x40  # a type of a later version: skipped by its length
FLAG_JOIN, FLAG_EXT, NEWER_FLAG = 0x01, 0x02, 0x80


def node_id(s: str) -> bytes:
    b = s.encode("ascii")
    return bytes([len(b)]) + b


def addr4(ip: str, port: int) -> bytes:
    return bytes([4]) + bytes(int(x) for x in ip.split(".")) + struct.pack(">H", port)


def addr6(ip16: bytes, port: int) -> bytes:
    return bytes([6]) + ip16 + struct.pack(">H", port)


def tags(pairs: dict) -> bytes:
    out = b""
    for k in sorted(pairs, key=lambda k: k.encode()):
        kb, vb = k.encode(), pairs[k].encode()
        out += bytes([len(kb)]) + kb + struct.pack(">H", len(vb)) + vb
    return out


def tagged(t: bytes) -> bytes:
    return struct.pack(">H", len(t)) + t


def ext(vmin: int, vmax: int, later: bytes = b"") -> bytes:
    """u8 ext_len | u8 vmin | u8 vmax | later versions' bytes."""
    return bytes([2 + len(later), vmin, vmax]) + later


def packet(*msgs, version: int = VERSION) -> bytes:
    out = bytes([version, len(msgs)])
    for mtype, body in msgs:
        out += bytes([mtype]) + struct.pack(">H", len(body)) + body
    return out


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def sized8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def sized16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def qresp(ltime: int, qid: int, sender: str, flags: int, payload: bytes) -> bytes:
    """u64 ltime | u32 qid | id from | u8 flags | u16 payload_len | payload"""
    return u64(ltime) + u32(qid) + node_id(sender) + bytes([flags]) + sized16(payload)


V6 = bytes.fromhex("20010db8000000000000000000000001")
TAGS = tags({"dc": "eu-west", "role": "db", "zone": "caf\u00e9 b"})

SEEDS = {
    "ping": packet((PING, u32(1) + node_id("n2") + node_id("n1") + addr4("10.0.0.1", 7946))),
    "alive": packet((ALIVE, node_id("n1") + u32(2) + addr4("10.0.0.1", 7946) + tagged(tags({"dc": "eu"})))),
    "all_types": packet(
        (PING, u32(0x01020304) + node_id("node-b") + node_id("node-a") + addr6(V6, 7946)),
        (ACK, u32(0xDEADBEEF)),
        (PING_REQ, u32(7) + node_id("node-c") + addr4("10.0.0.3", 7947) + bytes([1])),
        (NACK, u32(7)),
        (ALIVE, node_id("node-a") + u32(42) + addr4("10.0.0.1", 7946) + tagged(TAGS)),
        (SUSPECT, node_id("node-c") + u32(3) + node_id("node-a")),
        (DEAD, node_id("node-d") + u32(0xFFFFFFFE) + node_id("node-b")),
        (LEAVE, node_id("node-a") + u32(9)),
    ),
    "pushpull": bytes([VERSION, 2, 0x01])
    + u32(3)
    + node_id("node-a") + u32(1) + addr4("10.0.0.1", 7946) + bytes([0]) + tagged(TAGS)
    + node_id("node-b") + u32(5) + addr6(V6, 7946) + bytes([1]) + tagged(b"")
    + node_id("node") + u32(0) + addr4("10.0.0.4", 1) + bytes([3]) + tagged(tags({"k": ""})),
    "pushpull_empty": bytes([VERSION, 1, 0]) + u32(0),
    # What a version-2 node sends: all of it must decode here.
    "newer_packet": packet(
        (NEWER_TYPE, b"v2"),
        (ALIVE, node_id("n1") + u32(2) + addr4("10.0.0.1", 7946) + tagged(b"") + ext(1, 2, b"\xab")),
        (ACK, u32(5)),
        (NEWER_TYPE + 1, b""),
        version=2,
    ),
    "alive_versions": packet((ALIVE, node_id("n1") + u32(2) + addr4("10.0.0.1", 7946) + tagged(TAGS) + ext(1, 1))),
    "pushpull_versions": bytes([VERSION, 2, FLAG_JOIN | FLAG_EXT])
    + u32(2)
    + node_id("node-a") + u32(1) + addr4("10.0.0.1", 7946) + bytes([0]) + tagged(TAGS) + ext(1, 1)
    + node_id("node-b") + u32(5) + addr6(V6, 7946) + bytes([1]) + tagged(b"") + bytes([0]),
    "pushpull_newer": bytes([2, 1, FLAG_EXT | NEWER_FLAG])
    + u32(1)
    + node_id("node-c") + u32(3) + addr4("10.0.0.3", 7946) + bytes([0]) + tagged(b"") + ext(1, 2, b"\xab\xcd"),
    "tags": TAGS,
    # User events and queries (types 9..12).
    "user_event": packet(
        (
            USER_EVENT,
            u64(7) + node_id("node-e") + bytes([0x01]) + sized8(b"deploy") + sized16(b"v1.2"),
        ),
        (USER_EVENT, u64(8) + node_id("node-e") + bytes([0x02]) + sized8(b"x") + sized16(b"")),
    ),
    "query": packet(
        (
            QUERY,
            u64(77)
            + u32(0xA1B2C3D4)
            + node_id("node-q")
            + addr4("10.0.0.9", 7950)
            + bytes([0x01, 2])
            + u32(3200)
            + sized16(b'{"tags":[["role","db.*"]]}')
            + sized8(b"load")
            + sized16(b"?"),
        ),
        (QUERY_RESPONSE, qresp(77, 0xA1B2C3D4, "node-r", 0, b"0.42")),
        (QUERY_RELAY, addr4("10.0.0.9", 7950) + qresp(77, 0xA1B2C3D4, "node-s", 0x01, b"")),
    ),
    # A sender's own entry with its event and query clocks in ext's later.
    "pushpull_clocks": bytes([VERSION, 2, FLAG_EXT])
    + u32(1)
    + node_id("node-a") + u32(1) + addr4("10.0.0.1", 7946) + bytes([0]) + tagged(b"")
    + ext(1, 1, u64(600) + u64(40)),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.items():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()
