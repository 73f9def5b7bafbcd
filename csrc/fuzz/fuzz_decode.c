/*
 * Fuzz the wire decoders: packets, push-pull and tag blobs. Each format is
 * canonical, so anything that decodes must re-encode to exactly the input
 * bytes; what a newer version may add (version bytes, message types, flag
 * bits, extension bytes) is decoded as is and written back verbatim. A
 * difference means the decoder accepted a non-canonical form or the encoder
 * disagrees with it, and the target aborts.
 */
#include "cm_wire.h"

#include <stdlib.h>
#include <string.h>

/* Most tags one blob can hold: each takes at least 4 bytes. */
#define FUZZ_MAX_TAGS (CM_WIRE_MAX_TAGS_LEN / 4)

static void fuzz_packet(const uint8_t *data, size_t size) {
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  size_t count = 99, i, total = 2, last = 0;
  cm_wbuf_t w;
  uint8_t *out;
  if (cm_wire_packet_decode(data, size, msgs, CM_WIRE_MAX_MSGS, &count) != 0) {
    if (count != 0)
      abort();
    return;
  }
  if (count == 0 || count > CM_WIRE_MAX_MSGS)
    abort();
  out = malloc(size);
  if (out == NULL)
    return;
  w.p = out;
  w.len = 0;
  w.cap = size;
  if (cm_wire_packet_begin_version(&w, data[0]) != 0)
    abort();
  for (i = 0; i < count; i++) {
    last = cm_wire_msg_size(&msgs[i]);
    total += last;
    if (cm_wire_packet_add(&w, &msgs[i]) != 0)
      abort();
  }
  if (total != size || w.len != size || memcmp(out, data, size) != 0)
    abort();
  /* One byte short, the last message must not fit and must leave no trace. */
  w.cap = size - 1;
  if (cm_wire_packet_begin_version(&w, data[0]) != 0)
    abort();
  for (i = 0; i + 1 < count; i++)
    if (cm_wire_packet_add(&w, &msgs[i]) != 0)
      abort();
  if (cm_wire_packet_add(&w, &msgs[count - 1]) != CM_ENOSPC ||
      w.len != size - last || cm_wire_packet_count(&w) != count - 1)
    abort();
  free(out);
}

static void fuzz_pp(const uint8_t *data, size_t size) {
  cm_pp_header_t h;
  cm_pp_entry_t e;
  cm_wbuf_t w;
  size_t off = 0;
  uint32_t n = 0;
  uint8_t *out;
  if (cm_wire_pp_decode(data, size, &h) != 0)
    return;
  out = malloc(size);
  if (out == NULL)
    return;
  w.p = out;
  w.len = 0;
  w.cap = size;
  if (cm_wire_pp_begin_version(&w, h.version, h.kind, h.flags) != 0)
    abort();
  while (cm_wire_pp_next(data, size, &off, &e)) {
    if (cm_wire_pp_add(&w, &e) != 0)
      abort();
    n++;
  }
  if (n != h.count || cm_wire_pp_finish(&w) != 0)
    abort();
  if (w.len != size || memcmp(out, data, size) != 0)
    abort();
  free(out);
}

static void fuzz_tags(const uint8_t *data, size_t size) {
  cm_tag_t *tags;
  uint8_t a[CM_WIRE_MAX_TAGS_LEN], b[CM_WIRE_MAX_TAGS_LEN];
  size_t n = 0, off = 0, len = 0, i;
  if (cm_tags_validate(data, size) != 0)
    return;
  tags = malloc(FUZZ_MAX_TAGS * sizeof(*tags));
  if (tags == NULL)
    return;
  while (cm_tags_next(data, size, &off, &tags[n])) {
    cm_tag_t got;
    if (!cm_tags_get(data, size, tags[n].key, tags[n].key_len, &got) ||
        got.value != tags[n].value || got.value_len != tags[n].value_len)
      abort();
    if (++n > FUZZ_MAX_TAGS)
      abort();
  }
  if (off != size)
    abort();
  /* Inserting in reverse order must still produce the canonical blob. */
  for (i = n; i-- > 0;) {
    memcpy(b, a, len);
    if (cm_tags_set(b, len, tags[i].key, tags[i].key_len, tags[i].value,
                    tags[i].value_len, a, sizeof(a), &len) != 0)
      abort();
  }
  if (len != size || (size > 0 && memcmp(a, data, size) != 0))
    abort();
  for (i = 0; i < n; i++) {
    size_t entry = 3 + tags[i].key_len + tags[i].value_len;
    cm_tag_t got;
    if (cm_tags_remove(data, size, tags[i].key, tags[i].key_len, a, sizeof(a),
                       &len) != 0 ||
        len != size - entry || cm_tags_validate(a, len) != 0 ||
        cm_tags_get(a, len, tags[i].key, tags[i].key_len, &got))
      abort();
  }
  free(tags);
}

/* The fetch of a payload: what decodes re-encodes to the same bytes. */
static void fuzz_fetch(const uint8_t *data, size_t size) {
  uint8_t out[3 + 8 + 1 + CM_ID_MAX + 8];
  cm_wbuf_t w = {out, 0, sizeof(out)};
  cm_wire_id_t origin;
  uint64_t ltime, digest;
  const uint8_t *p;
  uint32_t plen;
  uint8_t status;
  if (cm_wire_fetch_decode(data, size, &ltime, &origin, &digest) == 0) {
    if (cm_wire_fetch_encode(&w, ltime, &origin, digest) != 0 ||
        w.len != size || memcmp(out + 3, data + 3, size - 3) != 0 ||
        out[1] != data[1])
      abort();
  }
  if (cm_wire_fetched_decode(data, size, &status, &p, &plen) == 0) {
    uint8_t *buf = malloc(size);
    if (buf == NULL)
      return;
    w.p = buf;
    w.len = 0;
    w.cap = size;
    if (cm_wire_fetched_encode(&w, status, p, plen) != 0 || w.len != size ||
        memcmp(buf + 1, data + 1, size - 1) != 0)
      abort();
    free(buf);
  }
}

/* A query's answer on a stream: what decodes re-encodes the same. */
static void fuzz_sreply(const uint8_t *data, size_t size) {
  cm_wire_sreply_t r;
  cm_wbuf_t w;
  if (cm_wire_sreply_decode(data, size, &r) != 0)
    return;
  w.p = malloc(size);
  if (w.p == NULL)
    return;
  w.len = 0;
  w.cap = size;
  if (cm_wire_sreply_encode(&w, &r) != 0 || w.len != size ||
      memcmp(w.p + 3, data + 3, size - 3) != 0 || w.p[1] != data[1])
    abort();
  free(w.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_packet(data, size);
  fuzz_pp(data, size);
  fuzz_fetch(data, size);
  fuzz_sreply(data, size);
  fuzz_tags(data, size);
  return 0;
}
