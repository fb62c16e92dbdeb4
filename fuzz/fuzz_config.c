/*
 * fuzz_config.c - libFuzzer target for the config parser (src/config).
 *
 * First byte 'A': the rest is a command line (arguments separated by NUL
 * bytes) for cd_config_parse_args, which also applies defaults and
 * cd_config_finish; flags that read other files (--conf) are dropped, and
 * --help & co print to /dev/null. Any other first byte: the rest is a config
 * file's bytes, written to a temporary file (the parser reads paths; a file
 * is what an operator gives it) and read by cd_config_load_file, then
 * cd_config_finish.
 *
 * Oracles:
 *  - an error message names the file and a line number within the file
 *    ("<path>:<line>: ...") or the file alone;
 *  - a configuration that loads prints (--print-config's
 *    cd_config_print_values) to a file that loads back to the same values:
 *    print(load(print(cfg))) == print(cfg), for every option whose text can
 *    live on a config line (strings without control bytes, '#'-comments,
 *    outer spaces or quotes, and short enough for the printer).
 *
 * Built only with -Dfuzz=true and clang (scripts/fuzz.sh).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cd_config.h"
#include "cd_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_config: check failed at line %d: %s\n", __LINE__, #c);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char path_a[256], path_b[256];

static void cleanup(void)
{
    unlink(path_a);
    unlink(path_b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(path_a, sizeof(path_a), "%s/fuzz_config.%d.a.conf", tmp, (int)getpid());
    snprintf(path_b, sizeof(path_b), "%s/fuzz_config.%d.b.conf", tmp, (int)getpid());
    atexit(cleanup);
    cd_log_set_level(CD_LOG_ERROR);
    if (!freopen("/dev/null", "w", stdout)) /* --help, --sample-config ... */
        abort();
    setenv("HOME", "/nonexistent-home", 1);
    return 0;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(p, 1, n, f) == n || n == 0);
    CHECK(fclose(f) == 0);
}

/* Can this value be written on a config line and read back as is? */
static int line_safe(const char *v)
{
    size_t n = strlen(v);
    if (n >= 1000)
        return 0; /* the printer's buffer */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return 0;
    if (n && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1])))
        return 0;
    if (strstr(v, " #") || strstr(v, "\t#") || v[0] == '#')
        return 0;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        return 0;
    return 1;
}

static int cfg_line_safe(const cd_config *c)
{
    /* Secrets are never printed (api_keys as "(hidden: N keys)", a
     * password in pg_conninfo as ***): such a configuration cannot round
     * trip through --print-config by design, so it is not checked that way. */
    if (c->api_keys && c->api_keys[0])
        return 0;
    if (c->pg_conninfo) {
        char masked[1024];
        cd_config_mask_secret(c->pg_conninfo, masked, sizeof(masked));
        if (strcmp(masked, c->pg_conninfo) != 0)
            return 0;
    }
    const char *s[] = {c->datadir, c->pg_conninfo, c->log_file ? c->log_file : "", c->user_agent,
                       c->http_listen, c->http_cors_origins ? c->http_cors_origins : ""};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if (s[i] && !line_safe(s[i]))
            return 0;
    for (size_t i = 0; i < c->n_connect; i++)
        if (!line_safe(c->connect[i]))
            return 0;
    return 1;
}

/* The printed values without the comment header. */
static char *print_cfg(const cd_config *c, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CHECK(f != NULL);
    cd_config_print_values(f, c);
    CHECK(fclose(f) == 0);
    char *body = buf;
    while (*body == '#') {
        char *nl = strchr(body, '\n');
        body = nl ? nl + 1 : body + strlen(body);
    }
    memmove(buf, body, strlen(body) + 1);
    *len = strlen(buf);
    return buf;
}

static void round_trip(const cd_config *c)
{
    if (!cfg_line_safe(c))
        return;
    size_t n1, n2;
    char *p1 = print_cfg(c, &n1);
    write_file(path_b, p1, n1);
    cd_config c2;
    char err[512];
    cd_config_init(&c2);
    int rc = cd_config_load_file(&c2, path_b, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "fuzz_config: printed config does not load: %s\n", err);
    CHECK(rc == 0);
    rc = cd_config_finish(&c2, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "fuzz_config: printed config does not finish: %s\n", err);
    CHECK(rc == 0);
    char *p2 = print_cfg(&c2, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1) != 0)
        fprintf(stderr, "fuzz_config: round trip differs:\n%s\n---\n%s\n", p1, p2);
    CHECK(n1 == n2 && memcmp(p1, p2, n1) == 0);
    free(p1);
    free(p2);
    cd_config_free(&c2);
}

static void check_err(const char *err, const char *path, const uint8_t *data, size_t size)
{
    size_t pl = strlen(path);
    CHECK(strncmp(err, path, pl) == 0 && err[pl] == ':');
    if (err[pl + 1] >= '0' && err[pl + 1] <= '9') {
        long line = strtol(err + pl + 1, NULL, 10);
        size_t lines = 1;
        for (size_t i = 0; i < size; i++)
            lines += data[i] == '\n';
        CHECK(line >= 1 && (size_t)line <= lines);
    }
}

static void file_mode(const uint8_t *data, size_t size)
{
    write_file(path_a, data, size);
    cd_config c;
    char err[1024] = "";
    cd_config_init(&c);
    if (cd_config_load_file(&c, path_a, err, sizeof(err)) != 0) {
        check_err(err, path_a, data, size);
    } else if (cd_config_finish(&c, err, sizeof(err)) == 0) {
        round_trip(&c);
    }
    cd_config_free(&c);
}

static void args_mode(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[34];
    int argc = 0;
    argv[argc++] = "conduitd";
    for (size_t i = 0; i < size && argc < 33;) {
        char *a = buf + i;
        size_t l = strlen(a);
        /* --conf (and a value that follows it) would read another file */
        if (strncmp(a, "--conf", 6) != 0)
            argv[argc++] = a;
        i += l + 1;
    }
    argv[argc] = NULL;
    cd_config c;
    char err[1024] = "";
    cd_config_action act = cd_config_parse_args(&c, "conduitd", argc, argv, err, sizeof(err));
    CHECK(act == CD_CONFIG_RUN || act == CD_CONFIG_HELP || act == CD_CONFIG_VERSION ||
          act == CD_CONFIG_ERROR);
    if (act == CD_CONFIG_ERROR)
        CHECK(err[0] != '\0');
    if (act == CD_CONFIG_RUN)
        round_trip(&c);
    cd_config_free(&c);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] == 'A')
        args_mode(data + 1, size - 1);
    else
        file_mode(data + 1, size - 1);
    return 0;
}
