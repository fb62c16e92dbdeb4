/*
 * cd_http.h - the read-only HTTP API (DESIGN.md §1: raw transactions and
 * merkle proofs for applications, without a database client).
 *
 * Process model: the server runs in HTTP_PROCS (4) child processes sharing
 * the listening socket, forked and supervised by the controller like the
 * workers (cd_supervisor.h: a crash is logged and the child restarted with
 * back-off), so a slow query or a slow client never stalls the controller's
 * p2p loop, and a query held by a lock stalls one server, not the API
 * (cd_http_server.c). Each child opens the LMDB stores read-only and its own
 * libpq connection, after the fork.
 *
 *   main.c            cd_http_listen_open(): binds http_listen before
 *                     anything is forked, so a bad address or a port in use
 *                     is the usual one-line configuration error (exit 2);
 *                     cd_http_set_listener() hands the socket on
 *   controller        cd_http_module (modules[] in main.c):
 *                     init() maps the servers' shared page and forks the
 *                     server children; the controller keeps the
 *                     listening socket and passes it to every (re)started
 *                     child over the child's channel (SCM_RIGHTS), so the
 *                     port stays bound across restarts (connections wait in
 *                     the backlog meanwhile)
 *   child             cd_http_server_run() (cd_http_server.c): libevent evhttp
 *                     on a fresh event_base; exits when the controller's end
 *                     of the channel closes (EOF) or on SIGTERM
 *
 * Endpoints, formats and errors: docs/QUERIES.md "HTTP API".
 */
#ifndef CD_HTTP_H
#define CD_HTTP_H

#include <stddef.h>

#include "cd_config.h"
#include "cd_ctl.h"
#include "cd_err.h" /* CD_WARN_UNUSED */

/* Resolves and binds `spec` ("host:port", "[v6]:port"; port 0 = any free
 * port) and listens. Returns the listening socket (non-blocking, CLOEXEC),
 * or -1 with err = "http_listen <spec>: <reason>". The bound address is
 * logged at info level ("http: API on 127.0.0.1:41233"). */
int cd_http_listen_open(const char *spec, char *err, size_t errlen) CD_WARN_UNUSED;

/* Hands the socket from cd_http_listen_open() to cd_http_module (called by
 * main.c before cd_controller_run; the module owns it from then on). -1 or
 * never called: the HTTP API is off. */
void cd_http_set_listener(int fd);

/* The same for metrics_listen (the Prometheus endpoint on its own port,
 * served by its own child process, independent of the API): err =
 * "metrics_listen <spec>: <reason>"; logs "metrics: Prometheus metrics on
 * http://127.0.0.1:9490/metrics". Returns the socket or -1. */
int cd_http_metrics_listen_open(const char *spec, char *err, size_t errlen) CD_WARN_UNUSED;

/* Hands that socket to cd_http_module (-1 or never called: off). */
void cd_http_set_metrics_listener(int fd);

/* Checks an OpenAPI document against the route table: every route has a
 * path, every path a route, and each path's query parameters are exactly
 * the route's. In: text, len: the JSON; NULL: the compiled-in
 * docs/openapi.json (what /v1/openapi.json serves). Returns 0, or -1 with
 * err naming the first mismatch (tests/unit/api). */
int cd_http_openapi_check(const char *text, size_t len, char *err, size_t errlen) CD_WARN_UNUSED;

/* The controller module that forks and supervises the server child. */
extern const cd_ctl_module cd_http_module;

struct http_busy;

/* A server child's main loop (cd_http_server.c; HTTP_PROCS of them share
 * the listening socket). cfg: the configuration as it was at fork time;
 * listen_fd: the listening socket; chan_fd: the channel to the controller
 * (EOF = the controller is gone); proc: this server's index; busy: the
 * table the servers share (borrowed, HTTP_PROCS entries, MAP_SHARED).
 * Returns the exit code: CD_EXIT_OK after SIGTERM or EOF, CD_EXIT_FAILURE
 * when it cannot serve. */
int cd_http_server_run(const cd_config *cfg, int listen_fd, int chan_fd, int proc,
                       struct http_busy *busy) CD_WARN_UNUSED;

/* The metrics server's main loop (cd_http_metrics.c): GET/HEAD /metrics
 * only, on listen_fd; chan_fd as above. Returns the exit code (as
 * cd_http_server_run). */
int cd_http_metrics_run(const cd_config *cfg, int listen_fd, int chan_fd) CD_WARN_UNUSED;

#endif /* CD_HTTP_H */
