/*
 * cd_store_guard.h - a fault inside an LMDB map ends in one log line naming
 * the file, and exit status 2 (issue 11, F7).
 *
 * LMDB reads its file through a memory map: a damaged page makes it follow a
 * wild pointer (SIGSEGV) and a truncated file makes the kernel raise SIGBUS.
 * Before, the controller died of SIGBUS without a word, and the writer
 * segfaulted in a loop under the supervisor. Every process that opens an
 * LMDB environment registers its map here (the block store and the header
 * tree do it when they open one); the first registration installs SA_SIGINFO
 * handlers for SIGBUS and SIGSEGV. A fault whose address is inside a
 * registered map, or whose instruction is inside liblmdb, writes one ERROR
 * line (async-signal-safe: no stdio, no allocation) naming the file and the
 * offset, and calls _exit(2). Exit 2 means "do not restart" to systemd
 * (RestartPreventExitStatus=2) and to the worker supervisor, which then stops
 * the daemon with status 2: no restart loop on a damaged file. Any other
 * fault is not ours: the default action (a core dump) runs as before.
 */
#ifndef CD_STORE_GUARD_H
#define CD_STORE_GUARD_H

#include <stddef.h>

/* Registers (or updates, for the same file) the map [map, map + size) of the
 * LMDB file `file` (copied, truncated to 255 bytes) and installs the
 * handlers on first use. At most 16 maps per process; more are ignored. */
void cd_store_guard_add(const void *map, size_t size, const char *file);

/* cd_store_guard_add for an open environment in directory dir (its file is
 * dir/data.mdb); again after its map was resized. */
struct MDB_env;
void cd_store_guard_env(struct MDB_env *env, const char *dir);

/* Forgets the map of dir/data.mdb. */
void cd_store_guard_env_closed(const char *dir);

/* Forgets the map of `file` (the environment is being closed). */
void cd_store_guard_remove(const char *file);

/* Formats the line the handler writes, into buf (len bytes, NUL-terminated,
 * truncated): for the unit tests, and used by the handler itself.
 * In: sig (SIGBUS / SIGSEGV), file (may be NULL: "an LMDB file"), off (the
 * offset in it; UINT64_MAX when unknown). Async-signal-safe.
 * Returns: the length written. */
size_t cd_store_guard_format(char *buf, size_t len, int sig, const char *file,
                             unsigned long long off);

#endif /* CD_STORE_GUARD_H */
