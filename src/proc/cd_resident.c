/*
 * cd_resident.c - a module's resident children whose channel the controller
 * only holds open (see cd_resident.h): their process-table rows, their
 * channel ends and the exit-2 line, written once for the modules that had
 * each their own copy (key rows, webhook delivery, HTTP and metrics).
 */
#include "cd_resident.h"

#include "cd_log.h"
#include "cd_util.h"

#include <stdlib.h>
#include <unistd.h>

typedef struct res_member {
    int slot; /* its row of the process table */
    int chan; /* the controller's end of its channel, -1: none */
} res_member;

struct cd_resident {
    cd_supervisor *sup;
    const char *fatal;
    cd_resident_hooks hooks;
    res_member *m;
    int n;
};

cd_resident *cd_resident_new(cd_supervisor *sup, const char *fatal, const cd_resident_hooks *hooks)
{
    cd_resident *r = cd_xcalloc(1, sizeof(*r));
    r->sup = sup;
    r->fatal = fatal;
    if (hooks)
        r->hooks = *hooks;
    return r;
}

int cd_resident_member(const cd_resident *r, int slot)
{
    for (int i = 0; i < r->n; i++)
        if (r->m[i].slot == slot)
            return i;
    return -1;
}

static void chan_close(res_member *m)
{
    if (m->chan >= 0)
        close(m->chan);
    m->chan = -1;
}

/* The process table's callbacks of every member (arg: the group). */
static void res_up(void *arg, int slot, int fd)
{
    cd_resident *r = arg;
    int i = cd_resident_member(r, slot);
    if (i < 0) { /* cannot happen: only the group's rows have these callbacks */
        close(fd);
        return;
    }
    chan_close(&r->m[i]);
    /* held open: the child takes its EOF for the controller's death */
    r->m[i].chan = fd;
    if (r->hooks.on_up)
        r->hooks.on_up(r->hooks.arg, i, fd);
}

static void res_down(void *arg, int slot, int code)
{
    cd_resident *r = arg;
    int i = cd_resident_member(r, slot);
    if (i < 0)
        return;
    chan_close(&r->m[i]);
    if (r->hooks.on_down)
        r->hooks.on_down(r->hooks.arg, i, code);
}

static void res_fatal(void *arg, int slot)
{
    cd_resident *r = arg;
    (void)slot; /* the supervisor has named the child */
    cd_log_error("%s", r->fatal);
}

int cd_resident_add(cd_resident *r, const cd_sup_kind *kind, uint32_t index, void *arg)
{
    cd_sup_cbs cbs = {.arg = r, .on_up = res_up, .on_down = res_down, .on_fatal = res_fatal};
    int slot = cd_sup_add(r->sup, kind, index, NULL, arg, &cbs);
    if (slot < 0)
        return slot;
    r->m = cd_xrealloc(r->m, (size_t)(r->n + 1) * sizeof(*r->m));
    r->m[r->n].slot = slot;
    r->m[r->n].chan = -1;
    return r->n++;
}

void cd_resident_launch(cd_resident *r)
{
    /* CD_SUP_EFORK is logged and retried with back-off; the other codes
     * (running, unknown slot) cannot occur for a fresh row */
    for (int i = 0; i < r->n; i++)
        CD_IGNORE(cd_sup_launch(r->sup, r->m[i].slot));
}

void cd_resident_kill(cd_resident *r, int member)
{
    if (member >= 0 && member < r->n)
        cd_sup_kill(r->sup, r->m[member].slot);
}

int cd_resident_one(cd_supervisor *sup, const cd_sup_kind *kind, void *arg, const char *fatal,
                    cd_resident **out)
{
    cd_resident *r = cd_resident_new(sup, fatal, NULL);
    int rc = cd_resident_add(r, kind, 0, arg);
    if (rc < 0) {
        cd_resident_free(r, 0);
        *out = NULL;
        return rc;
    }
    cd_resident_launch(r);
    *out = r;
    return 0;
}

void cd_resident_free(cd_resident *r, int timeout_ms)
{
    if (!r)
        return;
    cd_sup_stop(r->sup, r, timeout_ms); /* its rows only; frees them */
    for (int i = 0; i < r->n; i++)
        chan_close(&r->m[i]);
    free(r->m);
    free(r);
}
