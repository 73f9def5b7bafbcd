/*
 * Set-up shared by the engine tests: nodes on 127.0.0.1 with the LAN
 * profile, and the polling helpers their waits are made of.
 */
#ifndef CM_TEST_ENGINE_H
#define CM_TEST_ENGINE_H

#include <stdint.h>

#include "cm_engine.h"

/* Start node `id` in e, bound to an ephemeral port of 127.0.0.1, with the
 * LAN profile, the given transport settings (copied), seed (also the first
 * byte of the static secret, so nodes differ) and event queue bound (0: the
 * default). Fails the test if it cannot start. */
cm_enode_t *cm_te_start(cm_engine_t *e, const char *id,
                        const cm_net_config_t *net, uint64_t seed,
                        uint32_t queue);
/* Members n sees alive, itself included. */
int cm_te_alive_count(cm_enode_t *n);
void cm_te_nap_ms(int ms);
uint64_t cm_te_now_ms(void);

#endif
