/*
 * cd_config_load.c - where a configuration comes from: the config file, the
 * command line (with --help, --version, --sample-config, --print-config),
 * derived values (default data directory, ports), the data directory check,
 * and SIGHUP reload. The option table and the parsing of values are
 * cd_config.c.
 */
#include "cd_config.h"
#include "cd_config_int.h"

#include "cd_hostport.h"
#include "cd_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cd_build.h" /* CD_VERSION */

/* ------------------------------------------------------------------------ */
/* config file                                                              */
/* ------------------------------------------------------------------------ */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* bitcoind's network switches as config-file keys: `regtest=1`,
 * `testnet=1`, `stn=1`, `mainnet=1` (bitcoind's util/system.cpp reads
 * -regtest/-testnet as booleans from bitcoin.conf too). A 0 leaves the
 * network alone. Returns 1 if key is one of them (handled), 0 if not,
 * -1 if the value is not a boolean. */
static int net_key(cd_config *cfg, const char *key, const char *value)
{
    static const char *const keys[][2] = {
        {"mainnet", "main"}, {"testnet", "test"}, {"regtest", "regtest"}, {"stn", "stn"}};
    for (size_t i = 0; i < CD_ARRAY_LEN(keys); i++) {
        if (strcmp(key, keys[i][0]) != 0)
            continue;
        int on;
        if (cd_config_parse_bool(value, &on) < 0)
            return -1;
        if (on)
            cfg->net = btc_net_by_name(keys[i][1]);
        return 1;
    }
    return 0;
}


/* Reads a whole config file into a new NUL-terminated buffer (*len bytes,
 * the caller frees it). Only a regular file of at most CD_CONFIG_MAX_FILE
 * bytes is read: /dev/zero would never end, a FIFO with no writer would
 * block start-up forever, a directory or a device is a mistake. The open is
 * non-blocking so that a FIFO is refused by the fstat, not waited on.
 * Returns 0, or -1 with err set. */
static int read_conf(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        cd_config_seterr(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        cd_config_seterr(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        const char *what = S_ISDIR(sb.st_mode)    ? strerror(EISDIR)
                           : S_ISFIFO(sb.st_mode) ? "a FIFO"
                           : S_ISCHR(sb.st_mode)  ? "a character device"
                           : S_ISBLK(sb.st_mode)  ? "a block device"
                           : S_ISSOCK(sb.st_mode) ? "a socket"
                                                  : "not a regular file";
        cd_config_seterr(err, errlen, "%s: cannot read config file: %s, not a regular file", path,
                         what);
        close(fd);
        return -1;
    }
    if (sb.st_size > CD_CONFIG_MAX_FILE) {
        cd_config_seterr(err, errlen, "%s: config file too large: %lld bytes (at most %d)", path,
                         (long long)sb.st_size, CD_CONFIG_MAX_FILE);
        close(fd);
        return -1;
    }
    /* read up to one byte more than the limit: a file that grows between
     * the fstat and the read is still bounded */
    char *buf = cd_xmalloc((size_t)CD_CONFIG_MAX_FILE + 2);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, (size_t)CD_CONFIG_MAX_FILE + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cd_config_seterr(err, errlen, "%s: read error: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > (size_t)CD_CONFIG_MAX_FILE) {
            cd_config_seterr(err, errlen, "%s: config file too large: more than %d bytes", path,
                             CD_CONFIG_MAX_FILE);
            free(buf);
            close(fd);
            return -1;
        }
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int cd_config_load_file(cd_config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (read_conf(path, &text, &len, err, errlen) < 0)
        return -1;
    char line[8192];
    int lineno = 0;
    int rc = 0;
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl ? 1 : 0);
        /* fgets() used to stop at a NUL and drop the rest of the line
         * silently; a NUL has no business in a text file (a corrupt or
         * binary file given by mistake) */
        const char *nul = memchr(start, '\0', n);
        if (nul != NULL) {
            cd_config_seterr(err, errlen, "%s:%d: NUL byte at column %d: not a text file", path,
                             lineno, (int)(nul - start) + 1);
            rc = -1;
            break;
        }
        if (n >= sizeof(line)) {
            cd_config_seterr(err, errlen, "%s:%d: line too long: '%.40s...'", path, lineno, start);
            rc = -1;
            break;
        }
        memcpy(line, start, n);
        line[n] = '\0';
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            cd_config_seterr(err, errlen, "%s:%d: expected 'key = value': '%s'", path, lineno, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        /* trailing " # comment" after a value */
        char *hash = strstr(value, " #");
        if (hash == NULL)
            hash = strstr(value, "\t#");
        if (hash != NULL) {
            *hash = '\0';
            value = trim(value);
        }
        /* optional quotes around the whole value */
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        int net_rc = net_key(cfg, key, value);
        if (net_rc > 0)
            continue;
        if (net_rc < 0) {
            cd_config_seterr(err, errlen, "%s:%d: %s expects 1 or 0: '%s'", path, lineno, key,
                             value);
            rc = -1;
            break;
        }
        const cd_option *o = cd_config_find(key);
        if (o == NULL) {
            cd_config_seterr(err, errlen, "%s:%d: unknown option: '%s'", path, lineno, key);
            rc = -1;
            break;
        }
        char problem[256];
        if (cd_config_set_option(cfg, o, value, problem, sizeof(problem)) < 0) {
            cd_config_seterr(err, errlen, "%s:%d: %s: '%s'", path, lineno, problem, value);
            rc = -1;
            break;
        }
    }
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* finishing and the data directory                                         */
/* ------------------------------------------------------------------------ */

/* A loopback host: "localhost", 127.0.0.0/8, ::1 (or ::ffff:127.x). Names
 * other than localhost are not resolved here: they count as remote. */
static int loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

/* metrics_listen: a bare port becomes 127.0.0.1:port; anything but
 * loopback is refused unless metrics_allow_remote is on (issue 17: the
 * metrics are for the operator's monitoring, not for the world). */
static int finish_metrics_listen(cd_config *cfg, char *err, size_t errlen)
{
    char host[CD_HOSTPORT_MAX], hp[CD_HOSTPORT_MAX + 8];
    int port = cd_config_port_only(cfg->metrics_listen);
    if (cfg->metrics_listen[0] == '\0')
        return 0;
    if (port >= 0) {
        snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
        free(cfg->metrics_listen);
        cfg->metrics_listen = cd_xstrdup(hp);
        return 0;
    }
    if (cd_hostport_parse(cfg->metrics_listen, host, sizeof(host), &port) != 0)
        return 0; /* checked when set */
    if (!cfg->metrics_allow_remote && !loopback_host(host)) {
        cd_config_seterr(err, errlen,
                         "metrics_listen %s: not a loopback address; the metrics show the peers "
                         "and the sync state, so they stay on loopback unless "
                         "metrics_allow_remote = on says otherwise",
                         cfg->metrics_listen);
        return -1;
    }
    return 0;
}

int cd_config_finish(cd_config *cfg, char *err, size_t errlen)
{
    /* Options that only make sense together. */
    if (cfg->unit_size > cfg->ring_size / 2) {
        char u[32], r[32];
        cd_config_format_size(cfg->unit_size, u, sizeof(u));
        cd_config_format_size(cfg->ring_size, r, sizeof(r));
        cd_config_seterr(err, errlen, "unit_size %s must be at most half of ring_size %s", u, r);
        return -1;
    }
    if (cfg->partition_merge == 1) {
        cd_config_seterr(err, errlen,
                         "partition_merge 1 would merge a partition into itself: 0 (never) "
                         "or 2..%d",
                         CD_CONFIG_MAX_PARTITION_MERGE);
        return -1;
    }
    if (cfg->datadir == NULL || cfg->datadir[0] == '\0') {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0') {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (home == NULL || home[0] == '\0') {
            cd_config_seterr(err, errlen, "no datadir given and no home directory to default to");
            return -1;
        }
        size_t n = strlen(home) + strlen(cfg->net->name) + 16;
        char *d = cd_xmalloc(n);
        snprintf(d, n, "%s/.conduitd/%s", home, cfg->net->name);
        free(cfg->datadir);
        cfg->datadir = d;
    }
    if (cfg->datadir[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            cd_config_seterr(err, errlen, "datadir %s: cannot resolve relative path: %s",
                             cfg->datadir, strerror(errno));
            return -1;
        }
        size_t n = strlen(cwd) + strlen(cfg->datadir) + 2;
        char *d = cd_xmalloc(n);
        snprintf(d, n, "%s/%s", cwd, cfg->datadir);
        free(cfg->datadir);
        cfg->datadir = d;
    }
    /* strip trailing slashes (keep "/") */
    size_t dl = strlen(cfg->datadir);
    while (dl > 1 && cfg->datadir[dl - 1] == '/')
        cfg->datadir[--dl] = '\0';
    if (finish_metrics_listen(cfg, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_connect; i++) {
        char host[CD_HOSTPORT_MAX], hp[CD_HOSTPORT_MAX + 8];
        int port;
        if (cd_hostport_parse(cfg->connect[i], host, sizeof(host), &port) != 0 || port >= 0)
            continue; /* checked when set; only a missing port is completed */
        cd_hostport_format(hp, sizeof(hp), host, cfg->net->default_port);
        free(cfg->connect[i]);
        cfg->connect[i] = cd_xstrdup(hp);
    }
    return 0;
}

static int mkdir_p(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        int e = errno;
        *p = '/';
        if (rc < 0 && e != EEXIST) {
            errno = e;
            return -1;
        }
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

uint64_t cd_config_unit_size(const cd_config *cfg)
{
    uint64_t us = cfg->unit_size ? cfg->unit_size : 32ull << 20;
    us = CD_MIN(us, cfg->ring_size / 4);
    return CD_MAX(us, 4096);
}

unsigned cd_config_parser_workers(const cd_config *cfg, long cores)
{
    if (cfg->parser_workers)
        return cfg->parser_workers;
    if (cores < 1)
        return 1;
    return cores > CD_CONFIG_MAX_PARSER_WORKERS ? CD_CONFIG_MAX_PARSER_WORKERS : (unsigned)cores;
}

int cd_config_check_datadir(const cd_config *cfg, char *err, size_t errlen)
{
    char *path = cd_xstrdup(cfg->datadir);
    int rc = -1;
    struct stat sb;
    if (mkdir_p(path) < 0) {
        cd_config_seterr(err, errlen, "data directory %s: cannot create: %s", cfg->datadir,
                         strerror(errno));
        goto out;
    }
    if (stat(path, &sb) < 0) {
        cd_config_seterr(err, errlen, "data directory %s: %s", cfg->datadir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(sb.st_mode)) {
        cd_config_seterr(err, errlen, "data directory %s: %s", cfg->datadir, strerror(ENOTDIR));
        goto out;
    }
    if (access(path, R_OK | W_OK | X_OK) < 0) {
        cd_config_seterr(err, errlen, "data directory %s: %s", cfg->datadir, strerror(errno));
        goto out;
    }
    /* access() says yes to root even on a read-only mount: really write. */
    size_t n = strlen(path) + 32;
    char *probe = cd_xmalloc(n);
    snprintf(probe, n, "%s/.write-test.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        cd_config_seterr(err, errlen, "data directory %s: cannot write: %s", cfg->datadir,
                         strerror(errno));
        free(probe);
        goto out;
    }
    close(fd);
    unlink(probe);
    free(probe);
    rc = 0;
out:
    free(path);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* command line                                                             */
/* ------------------------------------------------------------------------ */

static void src_add(cd_config_src *src, const char *key, const char *value)
{
    src->keys = cd_xrealloc(src->keys, (src->n + 1) * sizeof(char *));
    src->values = cd_xrealloc(src->values, (src->n + 1) * sizeof(char *));
    src->keys[src->n] = cd_xstrdup(key);
    src->values[src->n] = cd_xstrdup(value);
    src->n++;
}

/* Builds cfg from scratch out of src (defaults, file, command line). */
static int build(cd_config *cfg, const cd_config_src *src, char *err, size_t errlen)
{
    cd_config_init(cfg);
    if (src->conf_file != NULL && src->conf_file[0] != '\0') {
        cfg->conf_file = cd_xstrdup(src->conf_file);
        if (cd_config_load_file(cfg, src->conf_file, err, errlen) < 0)
            return -1;
    }
    /* A list given on the command line replaces the file's list. */
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        if (o->type != CD_OPT_LIST)
            continue;
        for (size_t j = 0; j < src->n; j++) {
            if (strcmp(src->keys[j], o->name) == 0) {
                cd_config_list_clear(cfg, o);
                break;
            }
        }
    }
    for (size_t j = 0; j < src->n; j++) {
        char problem[256];
        if (cd_config_set(cfg, src->keys[j], src->values[j], problem, sizeof(problem)) < 0) {
            cd_config_seterr(err, errlen, "command line: %s: '%s'", problem, src->values[j]);
            return -1;
        }
    }
    return cd_config_finish(cfg, err, errlen);
}

/* The last value the command line gives key, or NULL. */
static const char *src_last(const cd_config_src *src, const char *key)
{
    const char *v = NULL;
    for (size_t j = 0; j < src->n; j++)
        if (strcmp(src->keys[j], key) == 0)
            v = src->values[j];
    return v;
}

static char *existing_file(const char *dir, const char *sub, const char *name)
{
    size_t n = strlen(dir) + (sub ? strlen(sub) : 0) + strlen(name) + 3;
    char *p = cd_xmalloc(n);
    snprintf(p, n, "%s/%s%s%s", dir, sub ? sub : "", sub ? "/" : "", name);
    struct stat sb;
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
        return p;
    free(p);
    return NULL;
}

/* The config file read when the command line names none (--conf) and does
 * not refuse one (--no-conf), the first that exists of:
 *   <datadir>/conduitd.conf            (--datadir given on the command line)
 *   $HOME/.conduitd/<network>/conduitd.conf, $HOME/.conduitd/conduitd.conf
 *                                      (no --datadir: bitcoind's
 *                                      ~/.bitcoin/bitcoin.conf habit)
 *   CD_SYSCONFDIR/conduitd/conduitd.conf  (where `meson install` puts the
 *                                      sample: /etc/... for prefix /usr)
 * The network is the command line's (a file chooses its own with
 * regtest=1; the data directory then follows it). conduit-cli runs the same
 * parser, so it finds the daemon's file and data directory the same way.
 * Returns a heap path or NULL. */
static char *default_conf_file(const cd_config_src *src)
{
    char *found = NULL;
    const char *dd = src_last(src, "datadir");
    if (dd != NULL && dd[0] != '\0') {
        found = existing_file(dd, NULL, "conduitd.conf");
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0') {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        const char *net = src_last(src, "network");
        const btc_net *n = net ? btc_net_by_name(net) : NULL;
        char sub[64];
        snprintf(sub, sizeof(sub), ".conduitd/%s", n ? n->name : "main");
        if (home != NULL && home[0] != '\0') {
            found = existing_file(home, sub, "conduitd.conf");
            if (found == NULL)
                found = existing_file(home, ".conduitd", "conduitd.conf");
        }
    }
    if (found == NULL)
        found = existing_file(CD_SYSCONFDIR, "conduitd", "conduitd.conf");
    return found;
}

static const struct {
    const char *flag;
    const char *net;
} net_flags[] = {
    {"--mainnet", "main"},
    {"--testnet", "test"},
    {"--regtest", "regtest"},
    {"--stn", "stn"},
};

cd_config_action cd_config_parse_args(cd_config *cfg, const char *prog, int argc, char **argv,
                                      char *err, size_t errlen)
{
    cd_config_src *src = cd_xcalloc(1, sizeof(*src));
    cd_config_action action = CD_CONFIG_RUN;
    int sample = 0, print = 0;
    memset(cfg, 0, sizeof(*cfg));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* bitcoind style: -regtest, -datadir=DIR, -conf FILE are the
         * double-dash flags (a lone "-" or "-h"/"-V" are not) */
        char dashed[256];
        if (a[0] == '-' && a[1] != '-' && a[1] != '\0' && a[2] != '\0' &&
            strlen(a) + 2 < sizeof(dashed)) {
            snprintf(dashed, sizeof(dashed), "-%s", a);
            a = dashed;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            action = CD_CONFIG_HELP;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            action = CD_CONFIG_VERSION;
            continue;
        }
        if (strcmp(a, "--sample-config") == 0) {
            sample = 1;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) {
            print = 1;
            continue;
        }
        if (strcmp(a, "--no-conf") == 0 || strcmp(a, "--noconf") == 0) {
            free(src->conf_file);
            src->conf_file = cd_xstrdup(""); /* "" = none, not even a default */
            continue;
        }
        int is_net = 0;
        for (size_t k = 0; k < CD_ARRAY_LEN(net_flags); k++) {
            if (strcmp(a, net_flags[k].flag) == 0) {
                src_add(src, "network", net_flags[k].net);
                is_net = 1;
            }
        }
        if (is_net)
            continue;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            cd_config_seterr(err, errlen, "command line: unexpected argument: '%s'", a);
            goto fail;
        }
        /* --name, --name=value, --no-name */
        char name[128];
        const char *value = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof(name)) {
            cd_config_seterr(err, errlen, "command line: unknown option: '%s'", a);
            goto fail;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_'; /* --log-level == --log_level */
        if (eq)
            value = eq + 1;

        if (strcmp(name, "conf") == 0) {
            if (value == NULL) {
                if (i + 1 >= argc || argv[i + 1][0] == '-') {
                    cd_config_seterr(err, errlen, "command line: missing value: '%s'", a);
                    goto fail;
                }
                value = argv[++i];
            }
            if (value[0] == '\0') {
                cd_config_seterr(err, errlen, "command line: empty --conf (use --no-conf)");
                goto fail;
            }
            free(src->conf_file);
            src->conf_file = cd_xstrdup(value);
            continue;
        }
        const cd_option *o = cd_config_find(name);
        if (o == NULL && strncmp(name, "no_", 3) == 0 && value == NULL) {
            const cd_option *b = cd_config_find(name + 3);
            if (b != NULL && b->type == CD_OPT_BOOL) {
                src_add(src, b->name, "off");
                continue;
            }
        }
        if (o == NULL) {
            cd_config_seterr(err, errlen, "command line: unknown option: '%s'", a);
            goto fail;
        }
        if (value == NULL && o->type == CD_OPT_BOOL) {
            int b;
            if (i + 1 < argc && cd_config_parse_bool(argv[i + 1], &b) == 0)
                value = argv[++i];
            else
                value = "on";
        }
        if (value == NULL) {
            /* "--datadir --no-index" (or "-datadir -regtest") is a
             * forgotten value, not a path */
            if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] != '\0')) {
                cd_config_seterr(err, errlen, "command line: missing value: '%s'", a);
                goto fail;
            }
            value = argv[++i];
        }
        src_add(src, o->name, value);
    }

    if (sample) {
        cd_config_write_sample(stdout);
        cd_config_src_free(src);
        return CD_CONFIG_HELP;
    }
    if (action == CD_CONFIG_HELP) {
        cd_config_print_help(stdout, prog);
        cd_config_src_free(src);
        return action;
    }
    if (action == CD_CONFIG_VERSION) {
        printf("%s %s\n", prog, CD_VERSION);
        cd_config_src_free(src);
        return action;
    }
    if (src->conf_file == NULL)
        src->conf_file = default_conf_file(src); /* may stay NULL: none found */
    if (build(cfg, src, err, errlen) < 0) {
        cd_config_free(cfg);
        goto fail;
    }
    cfg->src = src;
    if (print) {
        cd_config_print_values(stdout, cfg);
        return CD_CONFIG_HELP; /* caller frees cfg */
    }
    return CD_CONFIG_RUN;
fail:
    cd_config_src_free(src);
    memset(cfg, 0, sizeof(*cfg));
    return CD_CONFIG_ERROR;
}

/* Rewrites one argv string in place with its password masked; the string
 * cannot grow (it lives in the kernel's argument area), so freed bytes
 * become NULs. Returns 1 if it changed. */
static int scrub_one(char *arg)
{
    size_t n = strlen(arg);
    char *m = cd_xmalloc(n + 4);
    cd_config_mask_secret(arg, m, n + 4);
    int changed = strcmp(m, arg) != 0;
    if (changed) {
        /* "***" is longer than a 1-2 character password: the text is then
         * cut at the old length (its end lost, never a password byte) */
        size_t ml = strlen(m);
        if (ml > n)
            ml = n;
        memcpy(arg, m, ml);
        memset(arg + ml, '\0', n - ml);
    }
    free(m);
    return changed;
}

/* The value of a pg_conninfo flag in any spelling the parser accepts
 * (bitcoind idioms: one or two dashes, '-' or '_', "=value" or the next
 * argument). Returns: the "=value" text, "" for a bare flag, NULL otherwise. */
static char *conninfo_flag(char *a)
{
    if (a[0] != '-')
        return NULL;
    a += a[1] == '-' ? 2 : 1;
    if (strncmp(a, "pg-conninfo", 11) != 0 && strncmp(a, "pg_conninfo", 11) != 0)
        return NULL;
    a += 11;
    return *a == '=' ? a + 1 : *a == '\0' ? a : NULL;
}

int cd_config_scrub_argv(int argc, char **argv)
{
    int changed = 0;
    for (int i = 1; i < argc; i++) {
        char *v = conninfo_flag(argv[i]);
        if (v == NULL)
            continue;
        if (*v != '\0')
            changed += scrub_one(v);
        else if (i + 1 < argc)
            changed += scrub_one(argv[++i]);
    }
    return changed;
}

/* ------------------------------------------------------------------------ */
/* reload                                                                   */
/* ------------------------------------------------------------------------ */

static size_t scalar_size(const cd_option *o)
{
    switch (o->type) {
    case CD_OPT_BOOL:
        return sizeof(int);
    case CD_OPT_INT:
        return sizeof(uint32_t);
    case CD_OPT_SIZE:
        return sizeof(uint64_t);
    case CD_OPT_ENUM:
        return o->offset == offsetof(cd_config, net) ? sizeof(const btc_net *) : sizeof(int);
    default:
        return 0;
    }
}

int cd_config_reload(cd_config *live)
{
    if (live->src == NULL) {
        cd_log_warn("reload: configuration was not built from a command line; nothing to do");
        return cd_log_reopen();
    }
    cd_config fresh;
    char err[512];
    if (build(&fresh, live->src, err, sizeof(err)) < 0) {
        cd_log_error("reload: %s (keeping the running configuration)", err);
        cd_config_free(&fresh);
        if (cd_log_reopen() < 0)
            cd_log_error("reload: cannot reopen log file: %s", strerror(errno));
        return -1;
    }
    /* The log destination first, so the messages below land in the new file. */
    int rc = 0;
    int same = (live->log_file == NULL && fresh.log_file == NULL) ||
               (live->log_file != NULL && fresh.log_file != NULL &&
                strcmp(live->log_file, fresh.log_file) == 0);
    if (same) {
        if (cd_log_reopen() < 0) {
            cd_log_error("reload: cannot reopen log file %s: %s", live->log_file, strerror(errno));
            rc = -1;
        }
    } else if (cd_log_open(fresh.log_file) < 0) {
        cd_log_error("reload: cannot open log file %s: %s (still logging to %s)", fresh.log_file,
                     strerror(errno), live->log_file ? live->log_file : "stderr");
        /* keep logging where we are: make the new value equal the old one */
        free(fresh.log_file);
        fresh.log_file = live->log_file ? cd_xstrdup(live->log_file) : NULL;
        rc = -1;
    }
    cd_log_set_level(fresh.log_level);

    int changed = 0;
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char a[1024], b[1024];
        cd_config_format_value(live, o, a, sizeof(a));
        cd_config_format_value(&fresh, o, b, sizeof(b));
        if (strcmp(a, b) == 0)
            continue;
        if (o->flags & CD_OPT_SECRET) { /* compared in clear, logged masked */
            char ma[1024], mb[1024];
            cd_config_mask_secret(a, ma, sizeof(ma));
            cd_config_mask_secret(b, mb, sizeof(mb));
            snprintf(a, sizeof(a), "%s", ma);
            snprintf(b, sizeof(b), "%s", mb);
        }
        if (!(o->flags & CD_OPT_RELOADABLE)) {
            cd_log_warn("reload: %s changed from '%s' to '%s'; restart conduitd to apply", o->name,
                        a, b);
            continue;
        }
        cd_log_info("reload: %s = %s (was %s)", o->name, b, a);
        changed++;
        if (o->type == CD_OPT_STRING) {
            char **dst = cd_config_str_field(live, o);
            char **from = cd_config_str_field(&fresh, o);
            free(*dst);
            *dst = *from;
            *from = NULL;
        } else {
            memcpy((char *)live + o->offset, (char *)&fresh + o->offset, scalar_size(o));
        }
    }
    cd_config_free(&fresh);
    cd_log_info("reload: done (%d option%s changed)", changed, changed == 1 ? "" : "s");
    return rc;
}
