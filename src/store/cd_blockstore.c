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

#include "cd_log.h"
#include "cd_util.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(CD_BS_NOTFOUND == MDB_NOTFOUND, "CD_BS_NOTFOUND must equal MDB_NOTFOUND");

struct cd_blockstore {
    MDB_env *env;
    MDB_dbi chunks, txoff, blocks, heights, merkle, meta;
    unsigned flags;
    char *dir;
    /* writer state: one block at a time */
    int active;
    uint8_t cur_hash[32];
    cd_block_loc cur;
    uint64_t written;   /* bytes accepted so far */
    uint64_t offs_seen; /* offsets accepted so far */
    uint8_t *carry;     /* < chunk_size bytes not yet in a chunk */
    size_t carry_len;
    uint64_t *ocarry; /* offsets not yet in a record */
    size_t ocarry_len;
};

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
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
        cd_log_error("blockstore %s: open: %s", dir, mdb_strerror(rc));
    cd_blockstore_close(bs);
    return rc;
}

void cd_blockstore_close(cd_blockstore *bs)
{
    if (!bs)
        return;
    if (bs->env)
        mdb_env_close(bs->env);
    free(bs->carry);
    free(bs->ocarry);
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
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
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
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    uint8_t kb[4];
    put_be32(kb, height);
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
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    uint8_t *dst = buf;
    while (len > 0) {
        uint64_t ci = off / loc->chunk_size;
        uint64_t within = off % loc->chunk_size;
        uint8_t kb[8];
        put_be64(kb, loc->chunk_first + ci);
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
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    while (n > 0) {
        uint64_t ri = first / CD_BS_OFFS_PER_REC;
        uint64_t within = first % CD_BS_OFFS_PER_REC;
        uint8_t kb[8];
        put_be64(kb, loc->off_first + ri);
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
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
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

int cd_blockstore_merkle_meta(cd_blockstore *bs, const uint8_t hash[32], cd_merkle_meta *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    MDB_val k = {32, (void *)(uintptr_t)hash}, v;
    rc = mdb_get(txn, bs->merkle, &k, &v);
    if (rc == 0) {
        if (v.mv_size != sizeof(*out))
            rc = CD_BS_ECORRUPT;
        else
            memcpy(out, v.mv_data, sizeof(*out));
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Maps a global index into the concatenated levels of an n-leaf tree to
 * (level, index in level, level length). Returns 0 or CD_BS_ERANGE. */
static int merkle_locate(uint64_t n, uint64_t g, unsigned *level, uint64_t *idx, uint64_t *len)
{
    unsigned l = 0;
    while (n > 0) {
        if (g < n) {
            *level = l;
            *idx = g;
            *len = n;
            return 0;
        }
        g -= n;
        if (n == 1)
            break;
        n = (n + 1) / 2;
        l++;
    }
    return CD_BS_ERANGE;
}

static void merkle_key(uint8_t kb[37], const uint8_t hash[32], unsigned level, uint32_t part)
{
    memcpy(kb, hash, 32);
    kb[32] = (uint8_t)level;
    put_be32(kb + 33, part);
}

int cd_blockstore_merkle_read(cd_blockstore *bs, const uint8_t hash[32], uint64_t first, uint64_t n,
                              uint8_t *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    cd_merkle_meta meta;
    MDB_val mk = {32, (void *)(uintptr_t)hash}, mv;
    rc = mdb_get(txn, bs->merkle, &mk, &mv);
    if (rc == 0 && mv.mv_size != sizeof(meta))
        rc = CD_BS_ECORRUPT;
    if (rc == 0) {
        memcpy(&meta, mv.mv_data, sizeof(meta));
        if (first > meta.n_hashes || n > meta.n_hashes - first)
            rc = CD_BS_ERANGE;
    }
    while (rc == 0 && n > 0) {
        unsigned level;
        uint64_t idx, len;
        rc = merkle_locate(meta.tx_count, first, &level, &idx, &len);
        if (rc)
            break;
        uint8_t kb[37];
        merkle_key(kb, hash, level, (uint32_t)(idx / CD_BS_MERKLE_PER_PART));
        uint64_t within = idx % CD_BS_MERKLE_PER_PART;
        MDB_val k = {37, kb}, v;
        rc = mdb_get(txn, bs->merkle, &k, &v);
        if (rc)
            break;
        uint64_t have = v.mv_size / 32;
        if (have <= within) {
            rc = CD_BS_ECORRUPT;
            break;
        }
        uint64_t m = CD_MIN(n, have - within);
        m = CD_MIN(m, len - idx);
        memcpy(out, (uint8_t *)v.mv_data + 32 * within, 32 * m);
        out += 32 * m;
        first += m;
        n -= m;
    }
    mdb_txn_abort(txn);
    return rc;
}

uint64_t cd_merkle_tree_size(uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t total = n;
    while (n > 1) {
        n = (n + 1) / 2;
        total += n;
    }
    return total;
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
        put_be64(kb, first + i);
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
        put_be32(kb, loc->height);
        MDB_val k = {4, kb}, v;
        if (mdb_get(txn, bs->heights, &k, &v) == 0 && v.mv_size == 32 &&
            memcmp(v.mv_data, hash, 32) == 0)
            rc = mdb_del(txn, bs->heights, &k, NULL);
    }
    return rc;
}

static int commit_or_abort(MDB_txn *txn, int rc)
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
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
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
    rc = commit_or_abort(txn, rc);
    return rc ? rc : (int)n;
}

int cd_blockstore_begin(cd_blockstore *bs, const uint8_t hash[32], const uint8_t header[80],
                        uint32_t height, uint64_t size, uint64_t tx_count)
{
    if (bs->active || (bs->flags & CD_BS_RDONLY))
        return CD_BS_ESTATE;
    if (!bs->carry) {
        bs->carry = cd_xmalloc(CD_BS_CHUNK_SIZE);
        bs->ocarry = cd_xmalloc(CD_BS_OFFS_PER_REC * sizeof(uint64_t));
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
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
    rc = commit_or_abort(txn, rc);
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

static int put_chunk(cd_blockstore *bs, MDB_txn *txn, const uint8_t *p, size_t n)
{
    uint8_t kb[8];
    put_be64(kb, bs->cur.chunk_first + bs->cur.chunk_count);
    MDB_val k = {8, kb}, v = {n, (void *)(uintptr_t)p};
    int rc = mdb_put(txn, bs->chunks, &k, &v, MDB_APPEND);
    if (!rc)
        bs->cur.chunk_count++;
    return rc;
}

static int put_offrec(cd_blockstore *bs, MDB_txn *txn)
{
    uint8_t kb[8];
    put_be64(kb, bs->cur.off_first + bs->cur.off_count);
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

int cd_blockstore_append(cd_blockstore *bs, const uint8_t *data, size_t len,
                         const uint64_t *tx_offsets, size_t n_offsets)
{
    if (!bs->active)
        return CD_BS_ESTATE;
    if (bs->written + len > bs->cur.size || bs->offs_seen + n_offsets > bs->cur.tx_count)
        return CD_BS_ERANGE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    cd_block_loc saved = bs->cur;
    size_t saved_carry = bs->carry_len, saved_oc = bs->ocarry_len;
    rc = absorb(bs, txn, data, len, tx_offsets, n_offsets, 0);
    if (!rc)
        rc = finish_txn(bs, txn);
    rc = commit_or_abort(txn, rc);
    if (rc) {
        /* The txn is gone; the in-memory carry may be ahead of it. Give up on
         * this block (the caller aborts and it is fetched again). */
        bs->cur = saved;
        bs->carry_len = saved_carry;
        bs->ocarry_len = saved_oc;
        return rc;
    }
    bs->written += len;
    bs->offs_seen += n_offsets;
    return 0;
}

int cd_blockstore_finish(cd_blockstore *bs)
{
    if (!bs->active)
        return CD_BS_ESTATE;
    if (bs->written != bs->cur.size || bs->offs_seen != bs->cur.tx_count)
        return CD_BS_ERANGE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = absorb(bs, txn, NULL, 0, NULL, 0, 1);
    bs->cur.flags |= CD_BLOCK_COMPLETE;
    if (!rc)
        rc = finish_txn(bs, txn);
    if (!rc && bs->cur.height != UINT32_MAX) {
        uint8_t kb[4];
        put_be32(kb, bs->cur.height);
        MDB_val k = {4, kb}, v = {32, bs->cur_hash};
        rc = mdb_put(txn, bs->heights, &k, &v, 0);
    }
    rc = commit_or_abort(txn, rc);
    if (rc) {
        bs->cur.flags &= ~CD_BLOCK_COMPLETE;
        return rc;
    }
    bs->active = 0;
    return mdb_env_sync(bs->env, 1);
}

int cd_blockstore_abort(cd_blockstore *bs)
{
    if (!bs->active)
        return 0;
    bs->active = 0;
    bs->carry_len = 0;
    bs->ocarry_len = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    cd_block_loc l;
    rc = get_loc_txn(bs, txn, bs->cur_hash, &l);
    if (rc == 0 && !(l.flags & CD_BLOCK_COMPLETE))
        rc = delete_in_txn(bs, txn, bs->cur_hash, &l);
    else if (rc == MDB_NOTFOUND || rc == 0)
        rc = 0;
    return commit_or_abort(txn, rc);
}

int cd_blockstore_delete(cd_blockstore *bs, const uint8_t hash[32])
{
    if (bs->active && memcmp(hash, bs->cur_hash, 32) == 0)
        return cd_blockstore_abort(bs);
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
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
    rc = commit_or_abort(txn, rc);
    if (rc == 0)
        rc = mdb_env_sync(bs->env, 1);
    return rc;
}

/* Deletes the meta and every part of a tree inside txn. */
static int merkle_delete_txn(cd_blockstore *bs, MDB_txn *txn, const uint8_t hash[32])
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, bs->merkle, &cur);
    if (rc)
        return rc;
    for (;;) {
        /* re-seek after every delete: simplest correct cursor use */
        MDB_val k = {32, (void *)(uintptr_t)hash}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size < 32 || memcmp(k.mv_data, hash, 32) != 0)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int cd_blockstore_merkle_delete(cd_blockstore *bs, const uint8_t hash[32])
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = merkle_delete_txn(bs, txn, hash);
    return commit_or_abort(txn, rc);
}

int cd_blockstore_merkle_write(cd_blockstore *bs, const uint8_t hash[32],
                               const cd_merkle_part *parts, size_t n_parts,
                               const cd_merkle_meta *meta)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < n_parts && !rc; i++) {
        uint8_t kb[37];
        merkle_key(kb, hash, parts[i].level, parts[i].part);
        MDB_val k = {37, kb}, v = {32 * (size_t)parts[i].n, (void *)(uintptr_t)parts[i].hashes};
        rc = mdb_put(txn, bs->merkle, &k, &v, 0);
    }
    if (!rc && meta) {
        MDB_val k = {32, (void *)(uintptr_t)hash}, v = {sizeof(*meta), (void *)(uintptr_t)meta};
        rc = mdb_put(txn, bs->merkle, &k, &v, 0);
    }
    rc = commit_or_abort(txn, rc);
    if (rc == 0 && meta)
        rc = mdb_env_sync(bs->env, 1);
    return rc;
}

int cd_blockstore_merkle_cleanup(cd_blockstore *bs)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(bs->env, NULL, 0, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, bs->merkle, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    int removed = 0;
    uint8_t last[32];
    int have_last = 0, last_ok = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size == 32) {
            memcpy(last, k.mv_data, 32);
            have_last = 1;
            last_ok = 1; /* meta sorts before its parts */
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (k.mv_size != 37) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (!have_last || memcmp(last, k.mv_data, 32) != 0) {
            memcpy(last, k.mv_data, 32);
            have_last = 1;
            last_ok = 0;
            removed++;
        }
        if (last_ok) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        uint8_t kb[37];
        memcpy(kb, k.mv_data, 37);
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0) {
            k.mv_size = 37;
            k.mv_data = kb;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0 && removed)
        cd_log_warn("blockstore %s: removed %d incomplete merkle tree(s)", bs->dir, removed);
    return rc ? rc : removed;
}

int cd_blockstore_merkle_put(cd_blockstore *bs, const uint8_t hash[32], uint64_t tx_count,
                             const uint8_t *hashes, uint64_t n_hashes)
{
    if (n_hashes != cd_merkle_tree_size(tx_count) || n_hashes == 0)
        return CD_BS_ERANGE;
    int rc = cd_blockstore_merkle_delete(bs, hash);
    if (rc)
        return rc;
    size_t cap = 64, np = 0;
    cd_merkle_part *parts = cd_xmalloc(cap * sizeof(*parts));
    uint64_t n = tx_count, base = 0;
    for (unsigned level = 0;; level++) {
        for (uint64_t i = 0; i < n; i += CD_BS_MERKLE_PER_PART) {
            if (np == cap) {
                cap *= 2;
                parts = cd_xrealloc(parts, cap * sizeof(*parts));
            }
            parts[np].level = (uint8_t)level;
            parts[np].part = (uint32_t)(i / CD_BS_MERKLE_PER_PART);
            parts[np].hashes = hashes + 32 * (base + i);
            parts[np].n = (uint32_t)CD_MIN((uint64_t)CD_BS_MERKLE_PER_PART, n - i);
            np++;
        }
        base += n;
        if (n == 1)
            break;
        n = (n + 1) / 2;
    }
    cd_merkle_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.tx_count = tx_count;
    meta.n_hashes = n_hashes;
    memcpy(meta.root, hashes + 32 * (n_hashes - 1), 32);
    rc = cd_blockstore_merkle_write(bs, hash, parts, np, &meta);
    free(parts);
    return rc;
}
