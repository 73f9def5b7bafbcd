/*
 * Admission of inbound connections: what an Initial from an unknown
 * connection ID must pass before the endpoint keeps any state for it.
 */
#include <netinet/in.h>

#include "cm_net_int.h"

void cm_net__accept(cm_net_t *net, const struct sockaddr *sa,
                    const cm_addr_t *from, const uint8_t *data, size_t len) {
  ngtcp2_pkt_hd hd;
  cm_net_conn_t *c;
  socklen_t salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);

  /* Also rejects Initials under 1200 bytes, so truncated ones never cost a
   * connection. */
  if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
    net->st.drop_garbage++;
    return;
  }
  /* Per source first, so one address over its rate takes nothing from the
   * endpoint-wide budget the others share. */
  if (!cm_net__srclimit_take(&net->srclimit, from, cm_net__now())) {
    net->st.drop_source_limit++;
    net->st.drop_rate_limit++;
    return;
  }
  if (net->cfg.accept_rate > 0 &&
      !cm_net__bucket_take(&net->accept_tokens, &net->accept_ts,
                           (double)net->cfg.accept_rate, cm_net__now())) {
    net->st.drop_rate_limit++;
    return;
  }
  if (cm_net__make_room(net) != 0) {
    net->st.drop_pool_full++;
    return;
  }
  if (cm_net__conn_new_server(net, sa, salen, from, &hd, &c) != 0) {
    net->st.drop_garbage++;
    return;
  }
  cm_net__conn_read(c, data, len);
}
