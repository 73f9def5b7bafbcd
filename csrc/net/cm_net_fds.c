/*
 * The descriptors an endpoint holds, for a process that forks and must
 * close in the child what belongs to the parent's endpoint.
 */
#include "cm_net_int.h"

size_t cm_net_fds(const cm_net_t *net, int *out, size_t max) {
  int fds[2];
  size_t n = 0, i;
  uv_os_fd_t udp;
  if (net == NULL)
    return 0;
  if (uv_fileno((const uv_handle_t *)&net->udp, &udp) == 0)
    fds[n++] = udp;
  if (net->timer_fd >= 0)
    fds[n++] = net->timer_fd;
  for (i = 0; i < n && i < max; i++)
    out[i] = fds[i];
  return n;
}
