/*
 * The join state machine, on the loop thread: one push-pull request per
 * seed; the first seed whose answer merges completes the join; when every
 * request of an attempt has failed, retry with backoff until the deadline.
 * Its result leaves as a CM_EEV_JOINED event.
 */
#include <string.h>

#include "cm_engine_int.h"

/* Join retries back off from 200 ms to 2 s: quick when a seed is just
 * starting, gentle when it is down. */
#define ENGINE_JOIN_BACKOFF_MIN CM_MSEC(200)
#define ENGINE_JOIN_BACKOFF_MAX CM_SEC(2)
/* A refusal arrives in an Initial-level CONNECTION_CLOSE, which anyone on
 * the path can forge: one all-refused attempt is not proof. This many in a
 * row (about 0.6 s with the backoff above) is, for a join to give up
 * before its deadline. */
#define ENGINE_JOIN_REFUSED_ATTEMPTS 3

/* Called after a join whose reply made us refute a record of ourselves:
 * this id ran before, likely at this address. Members that had declared
 * that process failed may hold a connection to it still in its handshake,
 * retrying at growing intervals, with what they send to us queued behind
 * it; members that had not may hold an established one we do not know.
 * Our connecting to each replaces both at once, before our refutation
 * reaches them. Bounded to half the default pool; past that, on_stale_peer
 * and our own probes reach the rest. */
#define ENGINE_RESTART_CONNECT_MAX 256

int cm_engine__join_response(cm_enode_t *n, uint64_t req_id, int status) {
  struct join_state *j = &n->join;
  size_t i;
  if (!j->active)
    return 0;
  for (i = 0; i < j->nreqs; i++)
    if (j->reqs[i] == req_id) {
      j->reqs[i] = j->reqs[--j->nreqs];
      if (status == CM_EAUTH) {
        j->attempt_refused++;
        j->refused = 1;
      } else if (status == 0) {
        j->answered = 1;
      }
      return 1;
    }
  return 0;
}

void cm_engine__join_track(cm_enode_t *n, uint64_t req_id) {
  if (n->join.active && n->join.nreqs < ENGINE_MAX_SEEDS) {
    n->join.reqs[n->join.nreqs++] = req_id;
    n->join.attempt_sent++;
  }
}

/* End the join, keeping its token for the result. */
static uint64_t join_end(cm_enode_t *n) {
  n->join.active = 0;
  n->join.nreqs = 0;
  if (n->join.retry_pending) {
    uv_timer_stop(&n->join_timer);
    n->join.retry_pending = 0;
  }
  return n->join.token;
}

void cm_engine__join_finish(cm_enode_t *n, int status) {
  cm_engine__q_result(n, CM_EEV_JOINED, join_end(n), status);
}

static void join_send(cm_enode_t *n) {
  int rc;
  n->join.attempt_sent = n->join.attempt_refused = 0;
  rc = cm_node_join(n->node, n->join.seeds, n->join.nseeds, cm_engine__now());
  if (rc != 0) {
    cm_engine__join_finish(n, rc);
    return;
  }
  cm_engine__flush(n, 0);
}

static void on_join_retry(uv_timer_t *t) {
  cm_enode_t *n = t->data;
  n->join.retry_pending = 0;
  if (n->join.active)
    join_send(n);
}

/* A join out of time: refused if a seed refused our credentials and none
 * ever answered, else timed out. */
static int join_verdict(const struct join_state *j) {
  return j->refused && !j->answered ? CM_EAUTH : CM_ETIMEDOUT;
}

void cm_engine__join_check(cm_enode_t *n) {
  struct join_state *j = &n->join;
  if (j->active && j->await_idcheck) {
    int st = cm_node_id_check(n->node, NULL);
    if (st == CM_IDCHECK_DUPLICATE)
      cm_engine__join_finish(n, CM_EDUPLICATE);
    else if (st != CM_IDCHECK_PENDING)
      cm_engine__join_succeeded(n, j->refuted);
    return;
  }
  if (!j->active)
    return;
  /* The deadline ends the join even with requests still out (a handshake
   * to a silent seed lasts handshake_timeout, which may be longer). */
  if (cm_engine__now() >= j->deadline) {
    cm_engine__join_finish(n, join_verdict(j));
    return;
  }
  if (j->nreqs > 0 || j->retry_pending)
    return;
  /* Every seed refused our credentials, attempt after attempt: retrying
   * will not change that. */
  if (j->attempt_sent > 0 && j->attempt_refused == j->attempt_sent)
    j->refused_in_a_row++;
  else
    j->refused_in_a_row = 0;
  if (j->refused_in_a_row >= ENGINE_JOIN_REFUSED_ATTEMPTS) {
    cm_engine__join_finish(n, CM_EAUTH);
    return;
  }
  if (cm_engine__now() + j->backoff >= j->deadline) {
    cm_engine__join_finish(n, join_verdict(j));
    return;
  }
  n->join.retry_pending = 1;
  uv_timer_start(&n->join_timer, on_join_retry, n->join.backoff / 1000, 0);
  n->join.backoff *= 2;
  if (n->join.backoff > ENGINE_JOIN_BACKOFF_MAX)
    n->join.backoff = ENGINE_JOIN_BACKOFF_MAX;
}

static int join_has_others(const cm_addr_t *seeds, size_t n,
                           const cm_addr_t *self) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!cm_addr_eq(&seeds[i], self))
      return 1;
  return 0;
}

void cm_engine__join_start(cm_enode_t *n, const struct cmd *c) {
  if (n->node == NULL || n->closing || n->leaving) {
    cm_engine__q_result(n, CM_EEV_JOINED, c->token, CM_ECLOSED);
    return;
  }
  if (n->join.active) {
    cm_engine__q_result(n, CM_EEV_JOINED, c->token, CM_ESTATE);
    return;
  }
  memset(&n->join, 0, sizeof(n->join));
  cm_node_id_check_reset(n->node);
  n->join.active = 1;
  n->join.token = c->token;
  memcpy(n->join.seeds, c->seeds, c->nseeds * sizeof(cm_addr_t));
  n->join.nseeds = c->nseeds;
  n->join.deadline = cm_engine__now() + c->timeout;
  n->join.backoff = ENGINE_JOIN_BACKOFF_MIN;
  if (join_has_others(c->seeds, c->nseeds, &n->addr))
    join_send(n);
  else
    cm_engine__join_finish(n,
                           0); /* only ourselves, or none: a cluster of one */
}

static void join_connect_members(cm_enode_t *n) {
  cm_member_info_t info;
  uint32_t slot, slots, done = 0;
  cm_time_t now = cm_engine__now();
  slots = cm_node_member_slots(n->node);
  for (slot = 0; slot < slots && done < ENGINE_RESTART_CONNECT_MAX; slot++) {
    if (!cm_node_member_get(n->node, slot, &info, now) || info.is_self ||
        info.state == CM_STATE_LEFT)
      continue;
    if (cm_net_connect(n->net, &info.addr) == 0)
      done++;
  }
}

void cm_engine__join_succeeded(cm_enode_t *n, uint64_t refuted) {
  /* Publish the merged table before reporting success, so a caller that
   * reads the registry right after join() sees the cluster. */
  uint64_t token = join_end(n);
  if (refuted > 0)
    join_connect_members(n);
  cm_engine__flush(n, 1);
  cm_engine__q_result(n, CM_EEV_JOINED, token, 0);
}

/* A seed's answer merged. If it showed a live member with our id at another
 * address, the core is asking that address whether a process there answers
 * to our id: the join is reported when it knows (cm_engine__join_check),
 * as a failure if one does. A crashed predecessor on another port does
 * not answer, and the join succeeds one probe interval later. */
void cm_engine__join_answered(cm_enode_t *n, uint64_t refuted) {
  if (cm_node_id_check(n->node, NULL) == CM_IDCHECK_NONE &&
      !n->join.await_idcheck) {
    cm_engine__join_succeeded(n, refuted);
    return;
  }
  n->join.await_idcheck = 1;
  n->join.refuted += refuted;
  cm_engine__flush(n, 0);
}
