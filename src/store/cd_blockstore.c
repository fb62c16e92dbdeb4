/*
 * cd_blockstore.c - LMDB store of raw blocks, tx offsets and merkle trees.
 *
 * Why it exists: the daemon keeps every raw block so that transactions and
 * merkle proofs can be served and blocks re-indexed without re-downloading.
 * Blocks are split into fixed-size chunks under a monotonic sequence key so
 * every insert is an MDB_APPEND (cheap, no page splits in the middle of the
 * tree) and no LMDB value is gigabytes. See cd_blockstore.h for the layout and
 * the crash-safety protocol.
 */
#include "cd_blockstore.h"
#include "cd_blockstore_int.h"

#include "cd_log.h"
#include "cd_store_guard.h"
#include "cd_util.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(CD_BS_NOTFOUND == MDB_NOTFOUND, "CD_BS_NOTFOUND must equal MDB_NOTFOUND");
_Static_assert(CD_BS_MAPFULL == MDB_MAP_FULL, "CD_BS_MAPFULL must equal MDB_MAP_FULL");

/* A read txn; a map another process grew (MDB_MAP_RESIZED) is adopted. */
int cd_blockstore_rdtxn(cd_blockstore *bs, MDB_txn **txn)
{
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(bs->env, 0) == 0) {
        cd_store_guard_env(bs->env, bs->dir); /* the map moved */
        rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, txn);
    }
    return rc;
}

int cd_blockstore_wrtxn(cd_blockstore *bs, MDB_txn **txn)
{
    int rc = mdb_txn_begin(bs->env, NULL, 0, txn);
    if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(bs->env, 0) == 0) {
        cd_store_guard_env(bs->env, bs->dir);
        rc = mdb_txn_begin(bs->env, NULL, 0, txn);
    }
    return rc;
}

/* After MDB_MAP_FULL (no txn open): doubles the map. Returns 0 (retry the
 * write) or MDB_MAP_FULL (at CD_BS_MAP_MAX, or the address space is gone). */
int cd_blockstore_grow_map(cd_blockstore *bs)
{
    MDB_envinfo info;
    if (mdb_env_info(bs->env, &info) != 0)
        return MDB_MAP_FULL;
    uint64_t cur = info.me_mapsize, want = cur * 2;
    if (cur >= CD_BS_MAP_MAX || want > CD_BS_MAP_MAX)
        want = CD_BS_MAP_MAX;
    if (want <= cur || mdb_env_set_mapsize(bs->env, (size_t)want) != 0) {
        cd_log_error("blockstore %s: the LMDB map is full at %llu bytes and cannot grow", bs->dir,
                     (unsigned long long)cur);
        return MDB_MAP_FULL;
    }
    cd_store_guard_env(bs->env, bs->dir);
    cd_log_info("blockstore %s: LMDB map full at %llu bytes; grown to %llu", bs->dir,
                (unsigned long long)cur, (unsigned long long)want);
    return 0;
}

int cd_blockstore_open(const char *dir, unsigned flags, uint64_t map_size, cd_blockstore **out)
{
    *out = NULL;
    int rdonly = (flags & CD_BS_RDONLY) != 0;
    if (!rdonly && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        cd_log_error("blockstore %s: mkdir: %s", dir, strerror(e));
        return e;
    }
    cd_blockstore *bs = cd_xcalloc(1, sizeof(*bs));
    bs->flags = flags;
    bs->dir = cd_xstrdup(dir);
    int rc = mdb_env_create(&bs->env);
    if (rc)
        goto fail;
    mdb_env_set_maxdbs(bs->env, 8);
    mdb_env_set_maxreaders(bs->env, 256);
    if (map_size == 0)
        map_size = (uint64_t)1 << 40;
    mdb_env_set_mapsize(bs->env, (size_t)map_size);
    unsigned eflags = MDB_NOTLS | (rdonly ? MDB_RDONLY : MDB_NOSYNC);
    rc = mdb_env_open(bs->env, dir, eflags, 0600);
    if (rc)
        goto fail;
    cd_store_guard_env(bs->env, dir); /* a fault in its map is named (F7) */
    MDB_txn *txn;
    rc = mdb_txn_begin(bs->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    if (rc)
        goto fail;
    unsigned dflags = rdonly ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, "chunks", dflags, &bs->chunks)) ||
        (rc = mdb_dbi_open(txn, "txoff", dflags, &bs->txoff)) ||
        (rc = mdb_dbi_open(txn, "blocks", dflags, &bs->blocks)) ||
        (rc = mdb_dbi_open(txn, "heights", dflags, &bs->heights)) ||
        (rc = mdb_dbi_open(txn, "merkle", dflags, &bs->merkle)) ||
        (rc = mdb_dbi_open(txn, "meta", dflags, &bs->meta))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        goto fail;
    *out = bs;
    return 0;
fail:
    if (!(rdonly && rc == ENOENT))
        cd_log_error("blockstore %s/data.mdb: open: %s%s", dir, mdb_strerror(rc),
                     cd_blockstore_is_corrupt(rc)
                         ? " (the file is damaged: check it with `conduit-cli verify --full`, "
                           "restore it from a backup or delete the directory to fetch the "
                           "blocks again)"
                         : "");
    cd_blockstore_close(bs);
    return rc;
}

int cd_blockstore_is_corrupt(int rc)
{
    return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
           rc == MDB_VERSION_MISMATCH || rc == CD_BS_ECORRUPT;
}

/* Walks up to `bound` records from each end of dbi. */
static int check_dbi(MDB_txn *txn, MDB_dbi dbi, unsigned bound, int locs)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    MDB_cursor_op ops[2][2] = {{MDB_FIRST, MDB_NEXT}, {MDB_LAST, MDB_PREV}};
    for (int e = 0; e < 2 && rc == 0; e++) {
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, ops[e][0]);
        for (unsigned i = 0; rc == 0 && i < bound; i++) {
            if (locs && (k.mv_size != 32 || v.mv_size != sizeof(cd_block_loc)))
                rc = CD_BS_ECORRUPT;
            else
                rc = mdb_cursor_get(cur, &k, &v, ops[e][1]);
        }
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

int cd_blockstore_check(cd_blockstore *bs, unsigned bound)
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc == 0) {
        MDB_dbi dbis[6] = {bs->chunks, bs->txoff, bs->blocks, bs->heights, bs->merkle, bs->meta};
        const char *names[6] = {"chunks", "txoff", "blocks", "heights", "merkle", "meta"};
        for (int i = 0; i < 6 && rc == 0; i++) {
            MDB_stat st;
            rc = mdb_stat(txn, dbis[i], &st);
            if (rc == 0)
                rc = check_dbi(txn, dbis[i], bound, dbis[i] == bs->blocks);
            if (rc)
                cd_log_error("blockstore %s/data.mdb: database '%s': %s%s", bs->dir, names[i],
                             cd_strerror(rc),
                             cd_blockstore_is_corrupt(rc)
                                 ? " (the file is damaged: check it with `conduit-cli verify "
                                   "--full`, restore it from a backup or delete the directory "
                                   "to fetch the blocks again)"
                                 : "");
        }
        mdb_txn_abort(txn);
    }
    return rc;
}

void cd_blockstore_close(cd_blockstore *bs)
{
    if (!bs)
        return;
    if (bs->env) {
        cd_store_guard_env_closed(bs->dir);
        mdb_env_close(bs->env);
    }
    free(bs->carry);
    free(bs->carry_alt);
    free(bs->ocarry);
    free(bs->ocarry_save);
    free(bs->dir);
    free(bs);
}

/* ---------------- reading ---------------- */

static int loc_decode(const MDB_val *v, cd_block_loc *out)
{
    if (v->mv_size != sizeof(cd_block_loc))
        return CD_BS_ECORRUPT;
    memcpy(out, v->mv_data, sizeof(*out));
    if (out->version != CD_BLOCK_LOC_VERSION || out->chunk_size == 0)
        return CD_BS_ECORRUPT;
    return 0;
}

static int get_loc_txn(cd_blockstore *bs, MDB_txn *txn, const uint8_t hash[32], cd_block_loc *out)
{
    MDB_val k = {32, (void *)(uintptr_t)hash}, v;
    int rc = mdb_get(txn, bs->blocks, &k, &v);
    if (rc)
        return rc;
    return loc_decode(&v, out);
}

int cd_blockstore_get(cd_blockstore *bs, const uint8_t hash[32], cd_block_loc *out)
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    rc = get_loc_txn(bs, txn, hash, out);
    mdb_txn_abort(txn);
    if (rc == 0 && !(out->flags & CD_BLOCK_COMPLETE))
        rc = CD_BS_NOTFOUND;
    return rc;
}

int cd_blockstore_hash_at(cd_blockstore *bs, uint32_t height, uint8_t hash[32])
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    uint8_t kb[4];
    cd_put_be32(kb, height);
    MDB_val k = {4, kb}, v;
    rc = mdb_get(txn, bs->heights, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 32)
            rc = CD_BS_ECORRUPT;
        else
            memcpy(hash, v.mv_data, 32);
    }
    mdb_txn_abort(txn);
    return rc;
}

int cd_blockstore_read(cd_blockstore *bs, const cd_block_loc *loc, uint64_t off, void *buf,
                       size_t len)
{
    if (off > loc->size || len > loc->size - off)
        return CD_BS_ERANGE;
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    uint8_t *dst = buf;
    while (len > 0) {
        uint64_t ci = off / loc->chunk_size;
        uint64_t within = off % loc->chunk_size;
        uint8_t kb[8];
        cd_put_be64(kb, loc->chunk_first + ci);
        MDB_val k = {8, kb}, v;
        rc = mdb_get(txn, bs->chunks, &k, &v);
        if (rc)
            break;
        if (v.mv_size <= within) {
            rc = CD_BS_ECORRUPT;
            break;
        }
        size_t n = CD_MIN(len, v.mv_size - within);
        memcpy(dst, (uint8_t *)v.mv_data + within, n);
        dst += n;
        off += n;
        len -= n;
    }
    mdb_txn_abort(txn);
    return rc;
}

int cd_blockstore_read_offsets(cd_blockstore *bs, const cd_block_loc *loc, uint64_t first,
                               uint64_t n, uint64_t *out)
{
    if (first > loc->tx_count || n > loc->tx_count - first)
        return CD_BS_ERANGE;
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    while (n > 0) {
        uint64_t ri = first / CD_BS_OFFS_PER_REC;
        uint64_t within = first % CD_BS_OFFS_PER_REC;
        uint8_t kb[8];
        cd_put_be64(kb, loc->off_first + ri);
        MDB_val k = {8, kb}, v;
        rc = mdb_get(txn, bs->txoff, &k, &v);
        if (rc)
            break;
        uint64_t have = v.mv_size / 8;
        if (have <= within) {
            rc = CD_BS_ECORRUPT;
            break;
        }
        uint64_t m = CD_MIN(n, have - within);
        for (uint64_t i = 0; i < m; i++)
            out[i] = cd_le64((const uint8_t *)v.mv_data + 8 * (within + i));
        out += m;
        first += m;
        n -= m;
    }
    mdb_txn_abort(txn);
    return rc;
}

typedef struct seq_entry {
    uint8_t hash[32];
    cd_block_loc loc;
} seq_entry;

static int seq_cmp(const void *a, const void *b)
{
    const seq_entry *x = a, *y = b;
    return x->loc.seq < y->loc.seq ? -1 : x->loc.seq > y->loc.seq;
}

/* Collects the location records whose COMPLETE flag equals `complete`
 * (1: finished blocks, 0: half-written leftovers of a crash) into a malloc'd
 * list. Returns 0 (list in *out, count in *n; free it) or an LMDB error. */
static int collect_locs(cd_blockstore *bs, MDB_txn *txn, int complete, seq_entry **out,
                        size_t *n_out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, bs->blocks, &cur);
    if (rc)
        return rc;
    seq_entry *list = NULL;
    size_t n = 0, cap = 0;
    MDB_val k, v;
    int op = MDB_FIRST;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        cd_block_loc loc;
        if (k.mv_size != 32 || loc_decode(&v, &loc) != 0 ||
            !(loc.flags & CD_BLOCK_COMPLETE) != !complete)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            list = cd_xrealloc(list, cap * sizeof(*list));
        }
        memcpy(list[n].hash, k.mv_data, 32);
        list[n++].loc = loc;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        free(list);
        return rc;
    }
    *out = list;
    *n_out = n;
    return 0;
}

int cd_blockstore_foreach(cd_blockstore *bs,
                          int (*fn)(const uint8_t hash[32], const cd_block_loc *loc, void *arg),
                          void *arg)
{
    MDB_txn *txn;
    int rc = cd_blockstore_rdtxn(bs, &txn);
    if (rc)
        return rc;
    seq_entry *list = NULL;
    size_t n = 0;
    rc = collect_locs(bs, txn, 1, &list, &n);
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    if (n)
        qsort(list, n, sizeof(*list), seq_cmp);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(list[i].hash, &list[i].loc, arg);
    free(list);
    return rc;
}

/* ---------------- writing ---------------- */

static int meta_get(cd_blockstore *bs, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)(uintptr_t)name}, v;
    int rc = mdb_get(txn, bs->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc)
        return rc;
    if (v.mv_size != 8)
        return CD_BS_ECORRUPT;
    *out = cd_le64(v.mv_data);
    return 0;
}

static int meta_put(cd_blockstore *bs, MDB_txn *txn, const char *name, uint64_t val)
{
    uint8_t b[8];
    cd_put_le64(b, val);
    MDB_val k = {strlen(name), (void *)(uintptr_t)name}, v = {8, b};
    return mdb_put(txn, bs->meta, &k, &v, 0);
}

static int put_loc(cd_blockstore *bs, MDB_txn *txn, const uint8_t hash[32], const cd_block_loc *loc)
{
    MDB_val k = {32, (void *)(uintptr_t)hash}, v = {sizeof(*loc), (void *)(uintptr_t)loc};
    return mdb_put(txn, bs->blocks, &k, &v, 0);
}

static int del_range(MDB_txn *txn, MDB_dbi dbi, uint64_t first, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        uint8_t kb[8];
        cd_put_be64(kb, first + i);
        MDB_val k = {8, kb};
        int rc = mdb_del(txn, dbi, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

/* Removes a block's chunks, offsets, location and height entry. */
static int delete_in_txn(cd_blockstore *bs, MDB_txn *txn, const uint8_t hash[32],
                         const cd_block_loc *loc)
{
    int rc = del_range(txn, bs->chunks, loc->chunk_first, loc->chunk_count);
    if (!rc)
        rc = del_range(txn, bs->txoff, loc->off_first, loc->off_count);
    if (!rc) {
        MDB_val k = {32, (void *)(uintptr_t)hash};
        rc = mdb_del(txn, bs->blocks, &k, NULL);
    }
    if (!rc && loc->height != UINT32_MAX) {
        uint8_t kb[4];
        cd_put_be32(kb, loc->height);
        MDB_val k = {4, kb}, v;
        if (mdb_get(txn, bs->heights, &k, &v) == 0 && v.mv_size == 32 &&
            memcmp(v.mv_data, hash, 32) == 0)
            rc = mdb_del(txn, bs->heights, &k, NULL);
    }
    return rc;
}

int cd_blockstore_commit(MDB_txn *txn, int rc)
{
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

int cd_blockstore_recover(cd_blockstore *bs)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    seq_entry *list = NULL;
    size_t n = 0;
    rc = collect_locs(bs, txn, 0, &list, &n);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        char hex[65];
        cd_hex_encode_rev(hex, list[i].hash, 32);
        cd_log_warn("blockstore %s: removing half-written block %s (%llu of %llu bytes in chunks)",
                    bs->dir, hex,
                    (unsigned long long)(list[i].loc.chunk_count * list[i].loc.chunk_size),
                    (unsigned long long)list[i].loc.size);
        rc = delete_in_txn(bs, txn, list[i].hash, &list[i].loc);
    }
    free(list);
    rc = cd_blockstore_commit(txn, rc);
    return rc ? rc : (int)n;
}

static int begin_once(cd_blockstore *bs, const uint8_t hash[32], const uint8_t header[80],
                      uint32_t height, uint64_t size, uint64_t tx_count)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    cd_block_loc old;
    rc = get_loc_txn(bs, txn, hash, &old);
    if (rc == 0)
        rc = delete_in_txn(bs, txn, hash, &old);
    else if (rc == MDB_NOTFOUND)
        rc = 0;
    cd_block_loc *l = &bs->cur;
    memset(l, 0, sizeof(*l));
    l->version = CD_BLOCK_LOC_VERSION;
    l->size = size;
    l->tx_count = tx_count;
    l->chunk_size = CD_BS_CHUNK_SIZE;
    l->height = height;
    memcpy(l->header, header, 80);
    if (!rc)
        rc = meta_get(bs, txn, "next_chunk", &l->chunk_first);
    if (!rc)
        rc = meta_get(bs, txn, "next_off", &l->off_first);
    if (!rc)
        rc = meta_get(bs, txn, "next_seq", &l->seq);
    if (!rc)
        rc = meta_put(bs, txn, "next_seq", l->seq + 1);
    if (!rc)
        rc = put_loc(bs, txn, hash, l);
    rc = cd_blockstore_commit(txn, rc);
    if (rc)
        return rc;
    memcpy(bs->cur_hash, hash, 32);
    bs->active = 1;
    bs->written = 0;
    bs->offs_seen = 0;
    bs->carry_len = 0;
    bs->ocarry_len = 0;
    return 0;
}

/* Every write below runs its txn again after growing a full map. */
int cd_blockstore_begin(cd_blockstore *bs, const uint8_t hash[32], const uint8_t header[80],
                        uint32_t height, uint64_t size, uint64_t tx_count)
{
    if (bs->active || (bs->flags & CD_BS_RDONLY))
        return CD_BS_ESTATE;
    if (!bs->carry) {
        bs->carry = cd_xmalloc(CD_BS_CHUNK_SIZE);
        bs->carry_alt = cd_xmalloc(CD_BS_CHUNK_SIZE);
        bs->ocarry = cd_xmalloc(CD_BS_OFFS_PER_REC * sizeof(uint64_t));
        bs->ocarry_save = cd_xmalloc(CD_BS_OFFS_PER_REC * sizeof(uint64_t));
    }
    int rc;
    while ((rc = begin_once(bs, hash, header, height, size, tx_count)) == MDB_MAP_FULL &&
           cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}

static int put_chunk(cd_blockstore *bs, MDB_txn *txn, const uint8_t *p, size_t n)
{
    uint8_t kb[8];
    cd_put_be64(kb, bs->cur.chunk_first + bs->cur.chunk_count);
    MDB_val k = {8, kb}, v = {n, (void *)(uintptr_t)p};
    int rc = mdb_put(txn, bs->chunks, &k, &v, MDB_APPEND);
    if (!rc)
        bs->cur.chunk_count++;
    return rc;
}

static int put_offrec(cd_blockstore *bs, MDB_txn *txn)
{
    uint8_t kb[8];
    cd_put_be64(kb, bs->cur.off_first + bs->cur.off_count);
    MDB_val k = {8, kb}, v = {bs->ocarry_len * 8, NULL};
    int rc = mdb_put(txn, bs->txoff, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc)
        return rc;
    uint8_t *d = v.mv_data;
    for (size_t i = 0; i < bs->ocarry_len; i++)
        cd_put_le64(d + 8 * i, bs->ocarry[i]);
    bs->cur.off_count++;
    bs->ocarry_len = 0;
    return 0;
}

/* Writes data into chunks (full ones only unless `final`). */
static int absorb(cd_blockstore *bs, MDB_txn *txn, const uint8_t *data, size_t len,
                  const uint64_t *offs, size_t n_offs, int final)
{
    int rc = 0;
    while (len > 0 && !rc) {
        if (bs->carry_len == 0 && len >= CD_BS_CHUNK_SIZE) {
            rc = put_chunk(bs, txn, data, CD_BS_CHUNK_SIZE);
            data += CD_BS_CHUNK_SIZE;
            len -= CD_BS_CHUNK_SIZE;
            continue;
        }
        size_t take = CD_MIN(len, CD_BS_CHUNK_SIZE - bs->carry_len);
        memcpy(bs->carry + bs->carry_len, data, take);
        bs->carry_len += take;
        data += take;
        len -= take;
        if (bs->carry_len == CD_BS_CHUNK_SIZE) {
            rc = put_chunk(bs, txn, bs->carry, CD_BS_CHUNK_SIZE);
            bs->carry_len = 0;
            /* the next bytes go to the other buffer: this one must stay
             * intact until the txn commits (at most one swap per call:
             * after it, whole chunks are put from `data` directly) */
            uint8_t *t = bs->carry;
            bs->carry = bs->carry_alt;
            bs->carry_alt = t;
            bs->carry_swapped ^= 1;
        }
    }
    if (!rc && final && bs->carry_len) {
        rc = put_chunk(bs, txn, bs->carry, bs->carry_len);
        bs->carry_len = 0;
    }
    for (size_t i = 0; i < n_offs && !rc; i++) {
        bs->ocarry[bs->ocarry_len++] = offs[i];
        if (bs->ocarry_len == CD_BS_OFFS_PER_REC)
            rc = put_offrec(bs, txn);
    }
    if (!rc && final && bs->ocarry_len)
        rc = put_offrec(bs, txn);
    return rc;
}

static int finish_txn(cd_blockstore *bs, MDB_txn *txn)
{
    int rc = meta_put(bs, txn, "next_chunk", bs->cur.chunk_first + bs->cur.chunk_count);
    if (!rc)
        rc = meta_put(bs, txn, "next_off", bs->cur.off_first + bs->cur.off_count);
    if (!rc)
        rc = put_loc(bs, txn, bs->cur_hash, &bs->cur);
    return rc;
}

static int append_once(cd_blockstore *bs, const uint8_t *data, size_t len,
                       const uint64_t *tx_offsets, size_t n_offsets)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    cd_block_loc saved = bs->cur;
    size_t saved_carry = bs->carry_len, saved_oc = bs->ocarry_len;
    /* a record of offsets written in this txn empties ocarry, which then
     * fills again: keep its prefix to put back if the txn fails */
    int oc_flush = saved_oc > 0 && saved_oc + n_offsets >= CD_BS_OFFS_PER_REC;
    if (oc_flush)
        memcpy(bs->ocarry_save, bs->ocarry, saved_oc * sizeof(uint64_t));
    bs->carry_swapped = 0;
    rc = absorb(bs, txn, data, len, tx_offsets, n_offsets, 0);
    if (!rc)
        rc = finish_txn(bs, txn);
    rc = cd_blockstore_commit(txn, rc);
    if (rc) {
        /* The txn is gone: the state goes back to before it, so the same
         * append can be tried again (the disk was full, the map grew). */
        bs->cur = saved;
        if (bs->carry_swapped) {
            uint8_t *t = bs->carry;
            bs->carry = bs->carry_alt;
            bs->carry_alt = t;
        }
        bs->carry_len = saved_carry;
        if (oc_flush)
            memcpy(bs->ocarry, bs->ocarry_save, saved_oc * sizeof(uint64_t));
        bs->ocarry_len = saved_oc;
        return rc;
    }
    bs->written += len;
    bs->offs_seen += n_offsets;
    return 0;
}

int cd_blockstore_append(cd_blockstore *bs, const uint8_t *data, size_t len,
                         const uint64_t *tx_offsets, size_t n_offsets)
{
    if (!bs->active)
        return CD_BS_ESTATE;
    if (bs->written + len > bs->cur.size || bs->offs_seen + n_offsets > bs->cur.tx_count)
        return CD_BS_ERANGE;
    int rc;
    while ((rc = append_once(bs, data, len, tx_offsets, n_offsets)) == MDB_MAP_FULL &&
           cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}

static int finish_once(cd_blockstore *bs)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    /* the final flush only empties the carries (no new bytes overwrite
     * them): their lengths and the loc are all a retry needs back */
    cd_block_loc saved = bs->cur;
    size_t saved_carry = bs->carry_len, saved_oc = bs->ocarry_len;
    rc = absorb(bs, txn, NULL, 0, NULL, 0, 1);
    bs->cur.flags |= CD_BLOCK_COMPLETE;
    if (!rc)
        rc = finish_txn(bs, txn);
    if (!rc && bs->cur.height != UINT32_MAX) {
        uint8_t kb[4];
        cd_put_be32(kb, bs->cur.height);
        MDB_val k = {4, kb}, v = {32, bs->cur_hash};
        rc = mdb_put(txn, bs->heights, &k, &v, 0);
    }
    rc = cd_blockstore_commit(txn, rc);
    if (rc) {
        bs->cur = saved;
        bs->carry_len = saved_carry;
        bs->ocarry_len = saved_oc;
        return rc;
    }
    bs->active = 0;
    return mdb_env_sync(bs->env, 1);
}

int cd_blockstore_finish(cd_blockstore *bs)
{
    if (!bs->active)
        return CD_BS_ESTATE;
    if (bs->written != bs->cur.size || bs->offs_seen != bs->cur.tx_count)
        return CD_BS_ERANGE;
    int rc;
    while ((rc = finish_once(bs)) == MDB_MAP_FULL && cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}

static int abort_once(cd_blockstore *bs)
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    cd_block_loc l;
    rc = get_loc_txn(bs, txn, bs->cur_hash, &l);
    if (rc == 0 && !(l.flags & CD_BLOCK_COMPLETE))
        rc = delete_in_txn(bs, txn, bs->cur_hash, &l);
    else if (rc == MDB_NOTFOUND || rc == 0)
        rc = 0;
    return cd_blockstore_commit(txn, rc);
}

int cd_blockstore_abort(cd_blockstore *bs)
{
    if (!bs->active)
        return 0;
    int rc;
    while ((rc = abort_once(bs)) == MDB_MAP_FULL && cd_blockstore_grow_map(bs) == 0)
        ;
    if (rc)
        return rc; /* still active: the abort can be tried again */
    bs->active = 0;
    bs->carry_len = 0;
    bs->ocarry_len = 0;
    return 0;
}

static int delete_once(cd_blockstore *bs, const uint8_t hash[32])
{
    MDB_txn *txn;
    int rc = cd_blockstore_wrtxn(bs, &txn);
    if (rc)
        return rc;
    cd_block_loc l;
    rc = get_loc_txn(bs, txn, hash, &l);
    if (rc == 0)
        rc = delete_in_txn(bs, txn, hash, &l);
    if (rc == 0) {
        /* its merkle tree, if this env holds one */
        MDB_val k = {32, (void *)(uintptr_t)hash};
        mdb_del(txn, bs->merkle, &k, NULL);
    }
    rc = cd_blockstore_commit(txn, rc);
    if (rc == 0)
        rc = mdb_env_sync(bs->env, 1);
    return rc;
}

int cd_blockstore_delete(cd_blockstore *bs, const uint8_t hash[32])
{
    if (bs->active && memcmp(hash, bs->cur_hash, 32) == 0)
        return cd_blockstore_abort(bs);
    int rc;
    while ((rc = delete_once(bs, hash)) == MDB_MAP_FULL && cd_blockstore_grow_map(bs) == 0)
        ;
    return rc;
}
