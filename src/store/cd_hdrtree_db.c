/*
 * cd_hdrtree_db.c - the header tree on disk: the controller's own LMDB
 * environment (<datadir>/headers/; layout in cd_hdrtree.c): opening it and
 * loading every header into memory, committing records and the sorted
 * "idx" batches, closing it, and the read-only lookups of other processes.
 */
#include "cd_hdrtree.h"
#include "cd_hdrtree_int.h"

#include "cd_hash.h"
#include "cd_log.h"
#include "cd_store_guard.h"
#include "cd_util.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void rec_encode(uint8_t rec[HDR_REC_LEN], const cd_hdr_node *n)
{
    memcpy(rec, n->hash, 32);
    memcpy(rec + 32, n->raw, 80);
    cd_put_le32(rec + 112, (uint32_t)n->height);
    cd_put_le32(rec + 116, n->status);
    memcpy(rec + 120, n->work, 32);
}

static void seq_key(uint8_t k[8], uint64_t seq)
{
    for (int i = 7; i >= 0; i--) {
        k[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

static int rec_decode(cd_hdr_node *n, const MDB_val *k, const MDB_val *v)
{
    if (v->mv_size != HDR_REC_LEN || k->mv_size != 8)
        return -1;
    const uint8_t *rec = v->mv_data, *kp = k->mv_data;
    memcpy(n->hash, rec, 32);
    memcpy(n->raw, rec + 32, 80);
    n->height = (int32_t)cd_le32(rec + 112);
    n->status = cd_le32(rec + 116);
    memcpy(n->work, rec + 120, 32);
    n->seq = 0;
    for (int i = 0; i < 8; i++)
        n->seq = (n->seq << 8) | kp[i];
    n->prev = NULL;
    n->skip = NULL;
    return 0;
}

/* Stores a header record: "hdr" seq -> record (appended for new headers). */
int cd_hdrtree_put_node(cd_hdrtree *t, MDB_txn *txn, const cd_hdr_node *n, int is_new)
{
    uint8_t rec[HDR_REC_LEN], k[8];
    rec_encode(rec, n);
    seq_key(k, n->seq);
    return mdb_put(txn, t->dbi_hdr, &(MDB_val){8, k}, &(MDB_val){sizeof(rec), rec},
                   is_new ? MDB_APPEND : 0);
}

static int cmp_hash(const void *a, const void *b)
{
    const cd_hdr_node *x = *(cd_hdr_node *const *)a, *y = *(cd_hdr_node *const *)b;
    return memcmp(x->hash, y->hash, 32);
}

void cd_hdrtree_unidx_push(cd_hdrtree *t, cd_hdr_node *n)
{
    if (t->n_unidx == t->cap_unidx) {
        t->cap_unidx = t->cap_unidx ? t->cap_unidx * 2 : 1024;
        t->unidx = cd_xrealloc(t->unidx, t->cap_unidx * sizeof(*t->unidx));
    }
    t->unidx[t->n_unidx++] = n;
}

/* Writes "idx" entries for the unindexed headers plus extra[0..n_extra)
 * (sorted by hash, so the inserts walk the B-tree in order) and moves the
 * idx_seq mark to new_idx_seq, inside txn. */
int cd_hdrtree_idx_write(cd_hdrtree *t, MDB_txn *txn, cd_hdr_node *const *extra, size_t n_extra,
                         uint64_t new_idx_seq)
{
    size_t n = t->n_unidx + n_extra;
    cd_hdr_node **v = cd_xmalloc((n ? n : 1) * sizeof(*v));
    if (t->n_unidx)
        memcpy(v, t->unidx, t->n_unidx * sizeof(*v));
    if (n_extra)
        memcpy(v + t->n_unidx, extra, n_extra * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_hash);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t k[8];
        seq_key(k, v[i]->seq);
        rc = mdb_put(txn, t->dbi_idx, &(MDB_val){32, v[i]->hash}, &(MDB_val){8, k}, 0);
    }
    free(v);
    if (!rc) {
        uint8_t k[8];
        seq_key(k, new_idx_seq);
        rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &(MDB_val){8, k}, 0);
    }
    return rc;
}

int cd_hdrtree_flush_index(cd_hdrtree *t)
{
    if (t->flags & CD_HDRTREE_RDONLY)
        return CD_HDRTREE_ERDONLY;
    if (t->n_unidx == 0)
        return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(t->env, NULL, 0, &txn);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", rc);
    rc = cd_hdrtree_idx_write(t, txn, NULL, 0, t->next_seq);
    if (rc) {
        mdb_txn_abort(txn);
        return cd_hdrtree_lmdb_fail(t, "index write", rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        return cd_hdrtree_lmdb_fail(t, "mdb_txn_commit", rc);
    t->idx_seq = t->next_seq;
    t->n_unidx = 0;
    return 0;
}

int cd_hdrtree_lmdb_fail(const cd_hdrtree *t, const char *what, int rc)
{
    int damaged = rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
                  rc == MDB_VERSION_MISMATCH;
    cd_log_error("header tree %s/data.mdb: %s: %s%s", t->path, what, mdb_strerror(rc),
                 damaged ? " (the file is damaged: restore it from a backup or delete the "
                           "directory to fetch the headers again)"
                         : "");
    return CD_HDRTREE_ESTORE;
}

/* ---- open / close ---- */

static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static void make_genesis(const cd_hdrtree *t, cd_hdr_node *g)
{
    memset(g, 0, sizeof(*g));
    memcpy(g->raw, t->net->genesis_header, 80);
    cd_sha256d(g->hash, g->raw, 80);
    g->height = 0;
    g->status = CD_HDR_VALID_HEADER;
    btc_u256 w = btc_block_work(hdr_bits(g));
    btc_u256_to_be(g->work, &w);
    g->seq = 0;
}

static int cmp_height(const void *a, const void *b)
{
    const cd_hdr_node *x = *(cd_hdr_node *const *)a, *y = *(cd_hdr_node *const *)b;
    return (x->height > y->height) - (x->height < y->height);
}

static int load_all(cd_hdrtree *t, MDB_txn *txn)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, t->dbi_hdr, &cur);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_cursor_open(hdr)", rc);
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        cd_hdr_node *n = cd_hdrtree_node_alloc(t);
        if (rec_decode(n, &k, &v) != 0) {
            mdb_cursor_close(cur);
            cd_log_error("header tree %s: corrupt record (key %zu bytes, value %zu bytes)", t->path,
                         k.mv_size, v.mv_size);
            return CD_HDRTREE_ESTORE;
        }
        cd_hdrtree_tab_insert(t, n);
        if (n->seq >= t->next_seq)
            t->next_seq = n->seq + 1;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return cd_hdrtree_lmdb_fail(t, "mdb_cursor_get(hdr)", rc);
    /* link parents */
    for (size_t i = 0; i <= t->tab_mask; i++) {
        cd_hdr_node *n = t->tab[i];
        if (!n || n->height == 0)
            continue;
        n->prev = cd_hdrtree_tab_find(t, n->raw + 4);
        if (!n->prev || n->prev->height != n->height - 1) {
            cd_log_error("header tree %s: header at height %d has no stored parent", t->path,
                         (int)n->height);
            return CD_HDRTREE_ESTORE;
        }
    }
    /* skip pointers, parents before children: sort nodes by height */
    {
        cd_hdr_node **all = cd_xmalloc(t->count * sizeof(*all));
        size_t na = 0;
        for (size_t i = 0; i <= t->tab_mask; i++) {
            if (t->tab[i])
                all[na++] = t->tab[i];
        }
        qsort(all, na, sizeof(*all), cmp_height);
        for (size_t i = 0; i < na; i++)
            cd_hdrtree_set_skip(t, all[i]);
        free(all);
    }
    /* headers not yet in "idx" */
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &v);
    if (rc && rc != MDB_NOTFOUND)
        return cd_hdrtree_lmdb_fail(t, "mdb_get(meta idx_seq)", rc);
    t->idx_seq = (!rc && v.mv_size == 8) ? be64_get(v.mv_data) : 0;
    for (size_t i = 0; i <= t->tab_mask; i++) {
        if (t->tab[i] && t->tab[i]->seq >= t->idx_seq)
            cd_hdrtree_unidx_push(t, t->tab[i]);
    }
    /* the tip and the best array */
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &v);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_get(meta tip)", rc);
    if (v.mv_size != 32 || !(t->tip = cd_hdrtree_tab_find(t, v.mv_data))) {
        cd_log_error("header tree %s: stored tip is not a stored header", t->path);
        return CD_HDRTREE_ESTORE;
    }
    cd_hdrtree_best_reserve(t, (size_t)t->tip->height + 1);
    for (cd_hdr_node *n = t->tip; n; n = n->prev)
        t->best[n->height] = n;
    return 0;
}

int cd_hdrtree_open(cd_hdrtree **out, const char *dir, const btc_net *net, unsigned flags)
{
    cd_hdrtree *t = cd_xcalloc(1, sizeof(*t));
    int rc, ret = CD_HDRTREE_ESTORE;
    MDB_txn *txn = NULL;
    int rdonly = (flags & CD_HDRTREE_RDONLY) != 0;

    *out = NULL;
    t->net = net;
    t->flags = flags;
    t->path = cd_xstrdup(dir);
    t->bits_fn = cd_hdrtree_default_bits_fn;
    t->work_bits = 0xffffffffu;

    if (!rdonly && mkdir_p(dir) != 0) {
        cd_log_error("header tree %s: mkdir: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&t->env)) != 0) {
        cd_hdrtree_lmdb_fail(t, "mdb_env_create", rc);
        goto fail;
    }
    mdb_env_set_maxdbs(t->env, 4);
    mdb_env_set_mapsize(t->env, sizeof(size_t) >= 8 ? (size_t)4 << 30 : (size_t)512 << 20);
    /* MDB_NOMETASYNC: one fsync per commit instead of two; a system crash
     * may lose the last headers message (fetched again), never integrity */
    rc = mdb_env_open(t->env, dir, rdonly ? MDB_RDONLY | MDB_NOTLS : MDB_NOTLS | MDB_NOMETASYNC,
                      0600);
    if (rc) {
        cd_hdrtree_lmdb_fail(t, "mdb_env_open", rc);
        goto fail;
    }
    cd_store_guard_env(t->env, dir); /* a fault in its map is named (F7) */
    if ((rc = mdb_txn_begin(t->env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0) {
        cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", rc);
        goto fail;
    }
    unsigned cf = rdonly ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, "hdr", cf, &t->dbi_hdr)) != 0 ||
        (rc = mdb_dbi_open(txn, "idx", cf, &t->dbi_idx)) != 0 ||
        (rc = mdb_dbi_open(txn, "best", cf, &t->dbi_best)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", cf, &t->dbi_meta)) != 0) {
        cd_hdrtree_lmdb_fail(t, "mdb_dbi_open", rc);
        goto fail;
    }

    MDB_val gv;
    uint8_t ghash[32];
    cd_sha256d(ghash, net->genesis_header, 80);
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "genesis"}, &gv);
    if (rc == MDB_NOTFOUND && !rdonly) {
        /* fresh tree: store genesis */
        cd_hdr_node gn, *g = &gn;
        make_genesis(t, g);
        uint8_t hk[4] = {0, 0, 0, 0}, ver[4];
        cd_put_le32(ver, 2);
        uint8_t gk[8];
        seq_key(gk, 0);
        if ((rc = cd_hdrtree_put_node(t, txn, g, 1)) != 0 ||
            (rc = mdb_put(txn, t->dbi_idx, &(MDB_val){32, g->hash}, &(MDB_val){8, gk}, 0)) != 0 ||
            (rc = cd_hdrtree_idx_write(t, txn, NULL, 0, 1)) != 0 ||
            (rc = mdb_put(txn, t->dbi_best, &(MDB_val){4, hk}, &(MDB_val){32, g->hash}, 0)) != 0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &(MDB_val){32, g->hash}, 0)) !=
                0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "genesis"}, &(MDB_val){32, g->hash},
                          0)) != 0 ||
            (rc = mdb_put(txn, t->dbi_meta, &(MDB_val){7, "version"}, &(MDB_val){4, ver}, 0)) !=
                0) {
            cd_hdrtree_lmdb_fail(t, "mdb_put(genesis)", rc);
            goto fail;
        }
    } else if (rc) {
        cd_hdrtree_lmdb_fail(t, "mdb_get(meta genesis)", rc);
        goto fail;
    } else if (gv.mv_size != 32 || memcmp(gv.mv_data, ghash, 32) != 0) {
        cd_log_error("header tree %s: stored genesis is not the %s genesis (wrong --datadir or "
                     "network?)",
                     dir, net->name);
        ret = CD_HDRTREE_EGENESIS;
        goto fail;
    }

    if (!rdonly) {
        cd_hdrtree_tab_grow(t);
        if ((ret = load_all(t, txn)) != 0)
            goto fail;
        ret = CD_HDRTREE_ESTORE;
        if ((rc = mdb_txn_commit(txn)) != 0) {
            txn = NULL;
            cd_hdrtree_lmdb_fail(t, "mdb_txn_commit", rc);
            goto fail;
        }
    } else {
        /* commit (not abort) so that the dbi handles stay open */
        if ((rc = mdb_txn_commit(txn)) != 0) {
            txn = NULL;
            cd_hdrtree_lmdb_fail(t, "mdb_txn_commit", rc);
            goto fail;
        }
    }
    txn = NULL;
    *out = t;
    return 0;

fail:
    if (txn)
        mdb_txn_abort(txn);
    cd_hdrtree_close(t);
    return ret;
}

void cd_hdrtree_close(cd_hdrtree *t)
{
    if (!t)
        return;
    if (t->env && !(t->flags & CD_HDRTREE_RDONLY) && t->tab)
        /* logged inside; what is not indexed now is indexed at the next
         * open (from idx_seq), and lookups scan the tail meanwhile */
        CD_IGNORE(cd_hdrtree_flush_index(t));
    if (t->env) {
        cd_store_guard_env_closed(t->path);
        mdb_env_close(t->env);
    }
    free(t->unidx);
    node_slab *s = t->slabs;
    while (s) {
        node_slab *nx = s->next;
        free(s);
        s = nx;
    }
    free(t->tab);
    free(t->best);
    free(t->pending);
    free(t->ev_leaving);
    free(t->ev_joining);
    free(t->path);
    free(t);
}

/* ---- lookups in both modes ---- */

static int ro_get_hash(cd_hdrtree *t, MDB_txn *txn, const uint8_t hash[32], cd_hdr_node *out)
{
    MDB_val k, v;
    int rc = mdb_get(txn, t->dbi_idx, &(MDB_val){32, (void *)hash}, &k);
    if (rc == MDB_NOTFOUND) {
        /* not indexed yet? scan the records from the idx_seq mark on */
        uint8_t sk[8] = {0};
        MDB_val mv;
        rc = mdb_get(txn, t->dbi_meta, &(MDB_val){7, "idx_seq"}, &mv);
        if (rc == 0 && mv.mv_size == 8)
            memcpy(sk, mv.mv_data, 8);
        else if (rc && rc != MDB_NOTFOUND)
            return cd_hdrtree_lmdb_fail(t, "mdb_get(meta idx_seq)", rc);
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(txn, t->dbi_hdr, &cur)) != 0)
            return cd_hdrtree_lmdb_fail(t, "mdb_cursor_open(hdr)", rc);
        k.mv_size = 8;
        k.mv_data = sk;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (v.mv_size == HDR_REC_LEN && memcmp(v.mv_data, hash, 32) == 0)
                break;
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND)
            return CD_HDRTREE_ENOTFOUND;
        if (rc)
            return cd_hdrtree_lmdb_fail(t, "mdb_cursor_get(hdr)", rc);
        if (rec_decode(out, &k, &v) != 0)
            return cd_hdrtree_lmdb_fail(t, "corrupt header record", MDB_CORRUPTED);
        return 0;
    }
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_get(idx)", rc);
    rc = mdb_get(txn, t->dbi_hdr, &k, &v);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_get(hdr)", rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc);
    if (rec_decode(out, &k, &v) != 0 || memcmp(out->hash, hash, 32) != 0)
        return cd_hdrtree_lmdb_fail(t, "corrupt header record", MDB_CORRUPTED);
    return 0;
}

int cd_hdrtree_get(cd_hdrtree *t, const uint8_t hash[32], cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        const cd_hdr_node *n = cd_hdrtree_tab_find(t, hash);
        if (!n)
            return CD_HDRTREE_ENOTFOUND;
        *out = *n;
        return 0;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", rc);
    rc = ro_get_hash(t, txn, hash, out);
    mdb_txn_abort(txn);
    return rc;
}

int cd_hdrtree_get_at(cd_hdrtree *t, int32_t height, cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        const cd_hdr_node *n = cd_hdrtree_at(t, height);
        if (!n)
            return CD_HDRTREE_ENOTFOUND;
        *out = *n;
        return 0;
    }
    if (height < 0)
        return CD_HDRTREE_ENOTFOUND;
    MDB_txn *txn;
    MDB_val v;
    uint8_t hk[4];
    cd_put_be32(hk, (uint32_t)height);
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", rc);
    rc = mdb_get(txn, t->dbi_best, &(MDB_val){4, hk}, &v);
    if (rc == MDB_NOTFOUND)
        rc = CD_HDRTREE_ENOTFOUND;
    else if (rc)
        rc = cd_hdrtree_lmdb_fail(t, "mdb_get(best)", rc);
    else if (v.mv_size != 32)
        rc = cd_hdrtree_lmdb_fail(t, "corrupt best-chain record", MDB_CORRUPTED);
    else
        rc = ro_get_hash(t, txn, v.mv_data, out);
    mdb_txn_abort(txn);
    return rc;
}

int cd_hdrtree_get_tip(cd_hdrtree *t, cd_hdr_node *out)
{
    if (!(t->flags & CD_HDRTREE_RDONLY)) {
        *out = *t->tip;
        return 0;
    }
    MDB_txn *txn;
    MDB_val v;
    int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cd_hdrtree_lmdb_fail(t, "mdb_txn_begin", rc);
    rc = mdb_get(txn, t->dbi_meta, &(MDB_val){3, "tip"}, &v);
    if (rc == MDB_NOTFOUND)
        rc = CD_HDRTREE_ENOTFOUND;
    else if (rc)
        rc = cd_hdrtree_lmdb_fail(t, "mdb_get(meta tip)", rc);
    else if (v.mv_size != 32)
        rc = cd_hdrtree_lmdb_fail(t, "corrupt tip record", MDB_CORRUPTED);
    else
        rc = ro_get_hash(t, txn, v.mv_data, out);
    mdb_txn_abort(txn);
    return rc;
}
