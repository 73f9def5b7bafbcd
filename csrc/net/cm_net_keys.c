/*
 * Keyring use by a client in cluster-key mode: which key to offer a peer
 * (the one it last accepted, else the primary), remembering which one it
 * accepted, and retrying with the next key when a peer refuses one.
 */
#include "cm_net_int.h"

size_t cm_net__key_for(cm_net_t *net, const cm_addr_t *peer) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  uintptr_t hint;
  if (net->ring == NULL) /* not in cluster-key mode */
    return 0;
  cm_net__addr_key(peer, key);
  hint = (uintptr_t)cm_net_map_get(&net->key_hints, key, sizeof(key));
  if (hint == 0 || hint > net->ring->n)
    return net->ring->primary;
  return (size_t)(hint - 1);
}

void cm_net__key_accepted(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  /* A hint names an entry of the current ring only. */
  if (!c->is_client || net->cfg.auth != CM_AUTH_KEY || c->ring != net->ring)
    return;
  cm_net__addr_key(&c->peer, key);
  if (c->key_idx == net->ring->primary) {
    cm_net_map_del(&net->key_hints, key, sizeof(key), NULL);
    return;
  }
  /* Hints only save failed handshakes during a rotation: rather than let
   * the table grow without bound, start it over. */
  if (net->key_hints.count >= 4 * (size_t)net->cfg.max_connections) {
    cm_net_map_free(&net->key_hints);
    if (cm_net_map_init(&net->key_hints, net->cids.seed ^ 0x5a5a) != 0)
      return;
  }
  (void)cm_net_map_put(&net->key_hints, key, sizeof(key),
                       (void *)(uintptr_t)(c->key_idx + 1));
}

/* A peer refused the key we offered: try the next key of the ring with a
 * new connection that inherits what waits to be sent. */
cm_net_conn_t *cm_net__key_retry(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  cm_net_conn_t *n;
  size_t next, tries;
  if (!c->is_client || net->cfg.auth != CM_AUTH_KEY || net->closing)
    return NULL;
  /* The ring was replaced meanwhile: start over from its primary. */
  if (c->ring == net->ring) {
    next = (c->key_idx + 1) % net->ring->n;
    tries = c->key_tries + 1;
  } else {
    next = net->ring->primary;
    tries = 0;
  }
  if (tries >= net->ring->n)
    return NULL;
  if (cm_net__conn_new_client(net, &c->peer, next, &n) != 0)
    return NULL;
  n->key_tries = tries;
  return n;
}

int cm_net_set_keys(cm_net_t *net, const cm_net_key_t *keys, size_t nkeys,
                    size_t primary) {
  cm_net_ring_t *ring;
  int rv;
  if (net == NULL || keys == NULL || nkeys == 0 || primary >= nkeys ||
      net->cfg.auth != CM_AUTH_KEY)
    return CM_EINVAL;
  if (net->closing)
    return CM_ECLOSED;
  rv = cm_net__ring_new(keys, nkeys, primary, &ring);
  if (rv != 0)
    return rv;
  /* Connections open stay open; handshakes under way keep the ring they
   * started with (each holds a reference). Hints name entries of the old
   * ring: forget them. */
  cm_net__ring_release(net->ring);
  net->ring = ring;
  cm_net_map_free(&net->key_hints);
  if (cm_net_map_init(&net->key_hints, net->cids.seed ^ 0x5a5a) != 0)
    return CM_ENOMEM; /* the ring is in place; hints are only a saving */
  return 0;
}
