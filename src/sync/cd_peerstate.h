/*
 * cd_peerstate.h - the peers' reconnect schedules (back-off, bans) kept in
 * the data directory, so that a restart does not forgive a misbehaving peer
 * or redial a failing one at once (issue 11 F12, issue 13 §1).
 *
 * File: <datadir>/peers.state, one line per peer address as configured:
 *   <connect string> failures=N bans=N until=UNIX banned=0|1 reason=NAME
 * rewritten (temporary file + rename) whenever libconduit-p2p reports a
 * change (on_penalty). Addresses with nothing to remember are left out.
 * A missing or unreadable file is an empty one (logged).
 */
#ifndef CD_PEERSTATE_H
#define CD_PEERSTATE_H

#include "conduit_p2p.h"

typedef struct cd_peerstate cd_peerstate;

/* Loads <datadir>/peers.state. Returns the table (never NULL). Free with
 * cd_peerstate_free (accepts NULL). */
cd_peerstate *cd_peerstate_open(const char *datadir);
void cd_peerstate_free(cd_peerstate *ps);

/* Returns: 1 with *out filled if `addr` has a stored schedule, else 0. */
int cd_peerstate_get(const cd_peerstate *ps, const char *addr, cp2p_penalty *out);

/* Records the schedule of `addr` and rewrites the file. Returns 0, or -1
 * if the file could not be written (logged once per failure streak). */
int cd_peerstate_set(cd_peerstate *ps, const char *addr, const cp2p_penalty *pen);

#endif /* CD_PEERSTATE_H */
