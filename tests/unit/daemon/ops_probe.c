/*
 * ops_probe.c - a minimal daemon built only from the operations modules
 * (config, signals, notify, status), for the functional tests.
 *
 * Why: the SIGHUP/SIGTERM, Type=notify and status-file behaviour must be
 * proven with a real process and real signals even while the controller is
 * being written. The probe runs the same option parser as conduitd, an
 * event loop with cd_signals, sends READY=1 and STATUS= like the controller
 * does, and publishes a fake progress (height +1 per status interval) so
 * `conduit-cli status` has something to read. Not installed.
 */
#include "cd_util.h"
#include "cd_config.h"
#include "cd_notify.h"
#include "cd_signals.h"
#include "cd_status.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct probe {
    struct event_base *base;
    const cd_config *cfg;
    cd_status st;
    struct event *tick;
} probe;

static void on_stop(void *arg)
{
    probe *p = arg;
    CD_IGNORE(cd_notify_stopping()); /* best effort, as in the daemon */
    cd_log_info("probe: stopping");
    event_base_loopbreak(p->base);
}

static void on_reload(void *arg)
{
    probe *p = arg;
    struct timeval tv = {(time_t)p->cfg->status_interval_s, 0};
    event_add(p->tick, &tv); /* status_interval is reloadable */
    cd_log_info("probe: reloaded, log_level=%d status_interval=%u", (int)p->cfg->log_level,
                p->cfg->status_interval_s);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    probe *p = arg;
    (void)fd;
    (void)what;
    if (p->st.height < p->st.header_height)
        p->st.height++;
    snprintf(p->st.state, sizeof(p->st.state), "%s",
             p->st.height < p->st.header_height ? "syncing" : "synced");
    uint64_t h = (uint64_t)(p->st.height + 1);
    cd_status_sample(&p->st, h, h * 1000000, h * 100, cd_now_s());
    CD_IGNORE(cd_status_publish(p->cfg, &p->st)); /* logged; as in the daemon */
    cd_log_debug("probe: debug tick");
}

int main(int argc, char **argv)
{
    cd_config cfg;
    char err[1024];
    cd_log_set_component("ops-probe");
    switch (cd_config_parse_args(&cfg, "ops-probe", argc, argv, err, sizeof(err))) {
    case CD_CONFIG_RUN:
        break;
    case CD_CONFIG_ERROR:
        fprintf(stderr, "ops-probe: %s\n", err);
        return CD_EXIT_CONFIG;
    default:
        cd_config_free(&cfg);
        return 0;
    }
    cd_log_set_level(cfg.log_level);
    if (cd_config_check_datadir(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "ops-probe: %s\n", err);
        return CD_EXIT_CONFIG;
    }
    if (cfg.log_file && cd_log_open(cfg.log_file) < 0) {
        fprintf(stderr, "ops-probe: log_file %s: %s\n", cfg.log_file, strerror(errno));
        return CD_EXIT_CONFIG;
    }
    cd_notify_init();

    probe p;
    memset(&p, 0, sizeof(p));
    p.cfg = &cfg;
    p.base = event_base_new();
    cd_status_init(&p.st, &cfg);
    p.st.height = 0;
    p.st.header_height = 1000;
    p.st.peers = 1;
    p.st.workers_alive = p.st.workers_total = 2;
    p.st.ring_used = cfg.ring_size / 10;
    cd_signals *sig = cd_signals_install(p.base, &cfg, on_stop, on_reload, &p);
    struct event *wd = cd_notify_watchdog_start(p.base);
    p.tick = event_new(p.base, -1, EV_PERSIST, on_tick, &p);
    struct timeval tv = {(time_t)cfg.status_interval_s, 0};
    event_add(p.tick, &tv);
    cd_status_sample(&p.st, 0, 0, 0, cd_now_s());
    CD_IGNORE(cd_status_publish(&cfg, &p.st)); /* logged; as in the daemon */
    CD_IGNORE(cd_notify_ready());
    cd_log_info("probe: ready (pid %ld)", (long)getpid());

    event_base_dispatch(p.base);

    snprintf(p.st.state, sizeof(p.st.state), "stopped");
    CD_IGNORE(cd_status_write(cfg.datadir, &p.st)); /* best effort, as in the daemon */
    if (wd)
        event_free(wd);
    event_free(p.tick);
    cd_signals_free(sig);
    event_base_free(p.base);
    cd_log_info("probe: exit 0");
    cd_config_free(&cfg);
    return 0;
}
