#!/usr/bin/env python3
"""Write the seed corpora of fuzz_net, fuzz_engine and fuzz_control: short
scripts, one per path worth reaching (the input formats are described atop
each target; fuzz_control's is tests/fuzz_control.py).

Usage: python3 csrc/fuzz/make_script_seeds.py  (from the repository root)
"""

import json
import pathlib
import random
import struct

SEEDS = pathlib.Path(__file__).parent / "seeds"


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def varint(v: int) -> bytes:
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack(">H", 0x4000 | v)
    return struct.pack(">I", 0x80000000 | v)


# ---- fuzz_net ---------------------------------------------------------------

RAW, INITIAL, FRAMES, B_REQ, B_DGRAM, A_RESP, PUMP, TICK, A_REQ = range(9)


def raw(src: int, data: bytes) -> bytes:
    return bytes([RAW, src]) + u16(len(data)) + data


def initial(src: int, frames: bytes, flags: int = 0, token: bytes = b"") -> bytes:
    dcid = bytes((0x10 * (src + 1) + flags + i) & 0xFF for i in range(8))  # one per client
    return bytes([INITIAL, src, flags, 0, len(token)]) + dcid + token + u16(len(frames)) + frames


def frames(data: bytes) -> bytes:
    return bytes([FRAMES]) + u16(len(data)) + data


def b_req(data: bytes) -> bytes:
    return bytes([B_REQ]) + u16(len(data)) + data


def pump(mode: int = 0) -> bytes:
    return bytes([PUMP, mode])


def a_resp(which: int, data: bytes) -> bytes:
    return bytes([A_RESP, which]) + u16(len(data)) + data


def stream(sid: int, off: int, data: bytes, fin: bool) -> bytes:
    return bytes([0x0E | int(fin)]) + varint(sid) + varint(off) + varint(len(data)) + data


def net_seeds() -> dict[str, bytes]:
    rnd = random.Random(18)
    garbage = bytes(rnd.randrange(256) for _ in range(1200))
    short = bytes([0x40]) + bytes(rnd.randrange(256) for _ in range(60))
    hello = bytes([1, 0, 2, 0x58, 3, 3]) + bytes(rnd.randrange(256) for _ in range(42))
    crypto = bytes([0x06, 0]) + varint(len(hello)) + hello
    misc = (
        b"\x01"  # PING
        + b"\x10"
        + varint(1 << 20)  # MAX_DATA
        + b"\x12"
        + varint(50)  # MAX_STREAMS (bidi)
        + b"\x14"
        + varint(4096)  # DATA_BLOCKED
        + b"\x1a"
        + bytes(8)  # PATH_CHALLENGE
        + b"\x18"
        + varint(1)
        + varint(0)
        + bytes([16])
        + bytes(range(16))
        + bytes(16)
        + b"\x19"
        + varint(0)  # RETIRE_CONNECTION_ID
        + b"\x31"
        + varint(5)
        + b"gossip"[:5]  # DATAGRAM with length
    )
    return {
        "handshake": b"\x00",
        "retry_small_pool": b"\x03" + initial(5, crypto) + initial(6, crypto),
        "raw": b"\x00" + raw(4, garbage) + raw(0, short) + raw(15, b"\xc0\x00"),
        "retry_token": b"\x01"
        + initial(5, crypto)
        + initial(6, crypto)
        + initial(6, crypto, 2)
        + initial(1, crypto)
        + initial(2, crypto, 2),
        "initial_hello": b"\x04" + initial(4, crypto) + pump() + initial(1, crypto, 1),
        "b_request": b"\x00" + b_req(b"push-pull") + pump() + a_resp(0, b"reply") + pump(),
        "b_too_big": b"\x00" + b_req(b"x" * 5000) + pump(0x18) + pump(0x18),
        "b_datagram": b"\x00" + bytes([B_DGRAM]) + u16(5) + b"hello" + pump(),
        "a_request": b"\x00" + bytes([A_REQ]) + u16(4) + b"ping" + pump() + pump(),
        "lossy": b"\x00" + b_req(b"y" * 3000) + pump(7) + pump(2) + pump(),
        "idle": b"\x00" + bytes([TICK]) + u32(70_000_000) + pump(),
        "frames_stream": b"\x00" + frames(stream(0, 0, b"hello", True)) + a_resp(0, b"ok") + pump(),
        "frames_pieces": b"\x00"
        + frames(stream(4, 5, b"world", True))
        + frames(stream(4, 0, b"hello", False))
        + frames(stream(8, 0, b"abc", False) + b"\x04" + varint(8) + varint(1) + varint(3))
        + frames(b"\x05" + varint(0) + varint(1))  # STOP_SENDING
        + frames(stream(2, 0, b"uni", True))
        + pump(),
        "frames_misc": b"\x00" + frames(misc) + pump(),
        "frames_close": b"\x00"
        + frames(b"\x1c" + varint(0) + varint(0) + varint(3) + b"bye")
        + pump(),
    }


# ---- fuzz_engine ------------------------------------------------------------

START, SET_TAGS, JOIN, LEAVE, FAULT, EVENTS, READ, STOP = range(8)


def tags(pairs: dict[str, str]) -> bytes:
    out = b""
    for k in sorted(pairs, key=lambda k: k.encode()):
        kb, vb = k.encode(), pairs[k].encode()
        out += bytes([len(kb)]) + kb + struct.pack(">H", len(vb)) + vb
    return out


def start(node_id: bytes, tag_blob: bytes = b"", flags: int = 0) -> bytes:
    return bytes([START, flags, len(node_id)]) + node_id + u16(len(tag_blob)) + tag_blob


def engine_seeds() -> dict[str, bytes]:
    t = tags({"role": "web", "zone": "a"})
    return {
        "start_stop": start(b"n1") + bytes([READ, 0, 2]) + b"n1" + bytes([STOP, 0]),
        "tags": start(b"n1", t)
        + bytes([SET_TAGS, 0])
        + u16(len(t))
        + t
        + bytes([SET_TAGS, 0])
        + u16(5)
        + b"\x05role\x00"
        + bytes([SET_TAGS, 0])
        + u16(0),
        "join": start(b"a")
        + start(b"b")
        + bytes([JOIN, 0, 2, 1, 2])
        + u16(200)
        + bytes([EVENTS, 0, READ, 1, 1])
        + b"a",
        "leave": start(b"a")
        + bytes([LEAVE, 0])
        + u16(20)
        + bytes([LEAVE, 0])
        + u16(0)
        + bytes([EVENTS, 0]),
        "fault": start(b"a") + bytes([FAULT, 0, 10, 20, 2, FAULT, 0, 250, 0, 0, FAULT, 0, 7, 7, 0]),
        "bad_start": start(b"")
        + start(b"has space")
        + start(b"k", flags=1)
        + start(b"k", flags=4)
        + start(b"t", b"\x00", flags=2),
    }


# ---- fuzz_control -----------------------------------------------------------

UNIX, TCP = b"\x00", b"\x01"


def lines(*reqs: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in reqs)


def control_seeds() -> dict[str, bytes]:
    return {
        "members": UNIX + lines({"op": "members", "tags": {"role": "d.*"}, "status": ["alive"]}),
        "tags": UNIX
        + lines({"op": "tags", "set": {"zone": "a"}, "delete": ["role"]}, {"op": "tags"}),
        "bad": UNIX
        + b"[1,2]\n\n"
        + lines(
            {"op": "nope"},
            {"op": "tags", "set": {"n": 1}},
            {"op": "members", "tags": [["role", "("]]},
        ),
        "tcp": TCP + lines({"token": "fuzz-token"}, {"op": "status"}, {"op": "stats"}),
        "tcp_bad": TCP + lines({"token": "nope", "op": "stats"}),
        "events": UNIX + lines({"op": "events"}),
        "leave": UNIX + lines({"op": "leave"}, {"op": "status"}),
    }


def main() -> None:
    for name, seeds in (
        ("fuzz_net", net_seeds()),
        ("fuzz_engine", engine_seeds()),
        ("fuzz_control", control_seeds()),
    ):
        out = SEEDS / name
        out.mkdir(parents=True, exist_ok=True)
        for seed_name, data in seeds.items():
            (out / seed_name).write_bytes(data)


if __name__ == "__main__":
    main()
