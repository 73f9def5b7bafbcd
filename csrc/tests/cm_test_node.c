#include "cm_test_node.h"

#include "cm_test.h"

void cm_tconfig_pinned(cm_config_t *c) {
  cm_config_lan(c);
  c->probe_interval = CM_MSEC(500);
  c->probe_timeout = CM_MSEC(200);
  c->suspicion_mult = 4;
  c->suspicion_confirmations = 2;
}

void cm_tnode_feed(cm_node_t *n, const cm_addr_t *from, const cm_msg_t *m,
                   cm_time_t now) {
  uint8_t buf[1500];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  CM_CHECK_OK(cm_wire_packet_add(&w, m));
  CM_CHECK_OK(cm_node_recv(n, from, w.p, w.len, now));
}

void cm_tnode_alive(cm_node_t *n, const char *id, uint32_t inc,
                    const cm_addr_t *addr, cm_time_t now) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, id, strlen(id));
  m.u.alive.incarnation = inc;
  m.u.alive.addr = *addr;
  cm_tnode_feed(n, addr, &m, now);
}

void cm_tnode_accuse(cm_node_t *n, const cm_addr_t *from, uint8_t type,
                     const char *id, uint32_t inc, const char *by,
                     cm_time_t now) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = type;
  if (type == CM_MSG_LEAVE) {
    CM_CHECK_OK(cm_wire_id_set(&m.u.leave.node, id, strlen(id)));
    m.u.leave.incarnation = inc;
  } else {
    CM_CHECK_OK(cm_wire_id_set(&m.u.suspect.node, id, strlen(id)));
    m.u.suspect.incarnation = inc;
    CM_CHECK_OK(cm_wire_id_set(&m.u.suspect.from, by, strlen(by)));
  }
  cm_tnode_feed(n, from, &m, now);
}

cm_node_t *cm_tnode_new(const cm_config_t *c, cm_time_t now) {
  cm_node_t *n = NULL;
  cm_addr_t a = cm_addr_from_index(1, 7946);
  CM_CHECK_OK(cm_node_new(&n, c, "self", &a, NULL, 0, 7, now));
  return n;
}

cm_node_stats_t cm_tnode_stats(cm_node_t *n) {
  cm_node_stats_t st;
  const char *what = NULL;
  if (cm_node_check_invariants(n, &what) != 0)
    cm_test_fail(__FILE__, __LINE__, "invariant: %s", what);
  cm_node_stats(n, &st);
  return st;
}
