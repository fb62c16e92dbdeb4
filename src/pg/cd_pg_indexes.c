/*
 * cd_pg_indexes.c - the secondary indexes of catch-up mode, as the database
 * defines them (sql/013_secondary_indexes.sql: the table secondary_indexes
 * and the functions that drop or build one index by name). See cd_pg.h.
 *
 * Why here and not spelled in C: the list and the definitions live in one
 * place, the database, where the tests and the benchmarks read them too;
 * this file only asks for "the state of every index" and "build / drop this
 * one".
 */
#include "cd_pg.h"
#include "cd_pg_int.h"

#include "cd_log.h"
#include "cd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* the catalog                                                         */
/* ------------------------------------------------------------------ */

struct list_arg {
    cd_pg_secondary *out;
    size_t cap;
    size_t *n;
};

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int list_op(cd_pg *pg, void *a)
{
    struct list_arg *x = a;
    PGresult *r = NULL;
    int rc = cd_pg_q(pg, "reading the secondary indexes",
                     "SELECT name, tbl, state, rel_bytes FROM cd_secondary_indexes_state()", 0,
                     NULL, NULL, NULL, &r);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    if ((size_t)rows > x->cap) {
        cd_log_error("postgres: %d secondary indexes in sql/013's catalog, more than the %zu "
                     "this build handles",
                     rows, x->cap);
        PQclear(r);
        return CD_PG_ERROR;
    }
    for (int i = 0; i < rows; i++) {
        cd_pg_secondary *s = &x->out[i];
        copy_field(s->name, sizeof(s->name), PQgetvalue(r, i, 0));
        copy_field(s->tbl, sizeof(s->tbl), PQgetvalue(r, i, 1));
        copy_field(s->state, sizeof(s->state), PQgetvalue(r, i, 2));
        s->rel_bytes = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    }
    *x->n = (size_t)rows;
    PQclear(r);
    return 0;
}

int cd_pg_secondary_list(cd_pg *pg, cd_pg_secondary *out, size_t cap, size_t *n)
{
    *n = 0;
    struct list_arg a = {out, cap, n};
    return cd_pg_with_retry(pg, list_op, &a);
}

int cd_pg_secondary_valid(const cd_pg_secondary *s)
{
    return strcmp(s->state, "valid") == 0;
}

/* ------------------------------------------------------------------ */
/* one index                                                           */
/* ------------------------------------------------------------------ */

struct one_arg {
    const char *name;
    int create;
    char *result;
    size_t result_cap;
};

static int one_op(cd_pg *pg, void *a)
{
    struct one_arg *x = a;
    const char *vals[1] = {x->name};
    PGresult *r = NULL;
    char what[128];
    snprintf(what, sizeof(what), "%s index %s", x->create ? "building" : "dropping", x->name);
    int rc = cd_pg_q(pg, what,
                     x->create ? "SELECT cd_secondary_index_create($1)"
                               : "SELECT CASE WHEN cd_secondary_index_drop($1) THEN 'dropped' "
                                 "ELSE 'absent' END",
                     1, vals, NULL, NULL, &r);
    if (rc)
        return rc;
    if (x->result)
        copy_field(x->result, x->result_cap, PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int cd_pg_secondary_one(cd_pg *pg, const char *name, int create, char *result, size_t result_cap)
{
    if (result && result_cap)
        result[0] = '\0';
    struct one_arg a = {name, create, result, result_cap};
    return cd_pg_with_retry(pg, one_op, &a);
}

int cd_pg_secondary_indexes(cd_pg *pg, int on)
{
    cd_pg_secondary list[CD_PG_SECONDARY_MAX];
    size_t n = 0;
    int rc = cd_pg_secondary_list(pg, list, CD_ARRAY_LEN(list), &n);
    /* one statement per index: each build commits on its own, so a crash
     * keeps the ones already built */
    for (size_t i = 0; rc == CD_PG_OK && i < n; i++) {
        if (on ? cd_pg_secondary_valid(&list[i]) : strcmp(list[i].state, "missing") == 0)
            continue;
        rc = cd_pg_secondary_one(pg, list[i].name, on, NULL, 0);
    }
    if (rc == CD_PG_OK)
        cd_log_info("postgres: secondary indexes %s", on ? "present" : "dropped for bulk load");
    return rc;
}
