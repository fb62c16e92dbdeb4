/*
 * test_config.c - the option table and what it drives (file, flags, --help,
 * sample config, reload), plus the small ops modules: status file and rates,
 * sd_notify datagrams, libevent signal wiring.
 *
 * The per-option tests are driven by cd_config_options[], so an option added
 * to the table is automatically checked for being settable from the file and
 * from the command line, and for appearing in conf/conduitd.conf.
 */
#include "cd_test.h"

#include "cd_util.h"
#include "cd_config.h"
#include "cd_notify.h"
#include "cd_signals.h"
#include "cd_status.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cd_build.h" /* CD_SOURCE_ROOT */

/* ---- helpers ---- */

static char g_tmp[256];

static void tmp_setup(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/cd_test_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static void tmp_teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    int rc = system(cmd);
    (void)rc;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A valid value different from the default, and its canonical form. */
static void other_value(const cd_option *o, char *in, char *canon, size_t len)
{
    switch (o->type) {
    case CD_OPT_BOOL:
        snprintf(in, len, "%s", strcmp(o->def, "on") == 0 ? "no" : "yes");
        snprintf(canon, len, "%s", strcmp(o->def, "on") == 0 ? "off" : "on");
        break;
    case CD_OPT_INT: {
        unsigned long long v = o->max;
        if (strtoull(o->def, NULL, 10) == v)
            v = o->min;
        snprintf(in, len, "%llu", v);
        snprintf(canon, len, "%llu", v);
        break;
    }
    case CD_OPT_SIZE: {
        /* a multiple of min, written in K to exercise the suffix (the ring
         * must stay at least twice the default unit size) */
        uint64_t v = o->min * (strcmp(o->name, "ring_size") == 0 ? 8 : 2);
        snprintf(in, len, "%lluK", (unsigned long long)(v / 1024));
        snprintf(canon, len, "%lluM", (unsigned long long)(v / (1024 * 1024)));
        if (v < 1024 * 1024)
            snprintf(canon, len, "%lluK", (unsigned long long)(v / 1024));
        break;
    }
    case CD_OPT_STRING:
        if (strcmp(o->name, "datadir") == 0 || strcmp(o->name, "log_file") == 0)
            snprintf(in, len, "/tmp/cd-test-%s", o->name);
        else if (strcmp(o->name, "conduitdb_reference_url") == 0) /* validated: http:// */
            snprintf(in, len, "http://127.0.0.1:47126");
        else if (strcmp(o->name, "http_listen") == 0 || /* validated: address:port */
                 strcmp(o->name, "metrics_listen") == 0)  /* (loopback unless allowed) */
            snprintf(in, len, "127.0.0.1:8085");
        else
            snprintf(in, len, "value-for-%s", o->name);
        snprintf(canon, len, "%s", in);
        if (strcmp(o->name, "api_keys") == 0) /* secrets are never printed */
            snprintf(canon, len, "(hidden: 1 key)");
        break;
    case CD_OPT_ENUM: {
        int last = 0;
        while (o->enum_names[last + 1])
            last++;
        snprintf(in, len, "%s", o->enum_names[last]);
        snprintf(canon, len, "%s", o->enum_names[last]);
        break;
    }
    case CD_OPT_LIST:
        snprintf(in, len, "10.1.2.3:1234");
        snprintf(canon, len, "10.1.2.3:1234");
        break;
    }
}

static cd_config_action parse(cd_config *cfg, char *err, size_t errlen, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"conduitd";
    va_list ap;
    va_start(ap, errlen);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return cd_config_parse_args(cfg, "conduitd", argc, argv, err, errlen);
}

/* ---- defaults and the table ---- */

START_TEST(test_defaults_match_table)
{
    setenv("HOME", "/home/tester", 1);
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), NULL), CD_CONFIG_RUN);
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char v[1024];
        cd_config_format_value(&cfg, o, v, sizeof(v));
        if (strcmp(o->name, "datadir") == 0)
            ck_assert_str_eq(v, "/home/tester/.conduitd/main");
        else
            ck_assert_msg(strcmp(v, o->def) == 0, "%s: %s != default %s", o->name, v, o->def);
    }
    ck_assert_ptr_eq(cfg.net, btc_net_get(BTC_NET_MAIN));
    ck_assert_int_eq(cfg.index, 1);
    ck_assert_uint_eq(cfg.ring_size, 512u << 20);
    ck_assert_uint_eq(cfg.unit_size, 32u << 20);
    ck_assert_ptr_null(cfg.log_file);
    ck_assert_str_eq(cfg.pg_conninfo, "");
    ck_assert_uint_eq(cfg.n_connect, 0);
    ck_assert_int_eq(cfg.log_level, CD_LOG_INFO);
    cd_config_free(&cfg);
}
END_TEST

START_TEST(test_table_sane)
{
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        ck_assert_ptr_eq(cd_config_find(o->name), o);
        ck_assert_msg(o->help && strlen(o->help) > 10, "%s has no help", o->name);
        ck_assert_msg(strchr(o->help, '\n') == NULL, "%s help is not one line", o->name);
        if (o->type == CD_OPT_INT || o->type == CD_OPT_SIZE)
            ck_assert_msg(o->min <= o->max, "%s bounds", o->name);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(cd_config_options[j].name, o->name);
    }
    ck_assert_ptr_null(cd_config_find("no_such_option"));
}
END_TEST

/* Every option can be set from the file, and from --name VALUE and --name=VALUE. */
START_TEST(test_every_option_from_file_and_flag)
{
    tmp_setup();
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char in[256], canon[256], got[1024], err[512] = "";
        other_value(o, in, canon, sizeof(in));
        ck_assert_msg(strcmp(canon, o->def) != 0, "%s: test value equals default", o->name);

        /* file */
        char path[512], text[600];
        snprintf(path, sizeof(path), "%s/c.conf", g_tmp);
        snprintf(text, sizeof(text), "# a comment\n\n  %s =  %s   \n", o->name, in);
        write_file(path, text);
        cd_config cfg;
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_RUN);
        cd_config_format_value(&cfg, o, got, sizeof(got));
        ck_assert_msg(strcmp(got, canon) == 0, "file %s: got '%s' want '%s'", o->name, got, canon);
        ck_assert_str_eq(cfg.conf_file, path);
        cd_config_free(&cfg);

        /* --name value */
        char flag[512];
        snprintf(flag, sizeof(flag), "--%s", o->name);
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), flag, in, NULL), CD_CONFIG_RUN);
        cd_config_format_value(&cfg, o, got, sizeof(got));
        ck_assert_msg(strcmp(got, canon) == 0, "flag %s: got '%s' want '%s'", o->name, got, canon);
        cd_config_free(&cfg);

        /* --name=value, with dashes instead of underscores */
        snprintf(flag, sizeof(flag), "--%s=%s", o->name, in);
        for (char *p = flag + 2; *p && *p != '='; p++)
            if (*p == '_')
                *p = '-';
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), flag, NULL), CD_CONFIG_RUN);
        cd_config_format_value(&cfg, o, got, sizeof(got));
        ck_assert_msg(strcmp(got, canon) == 0, "%s: got '%s' want '%s'", flag, got, canon);
        cd_config_free(&cfg);
    }
    tmp_teardown();
}
END_TEST

START_TEST(test_flags_override_file)
{
    tmp_setup();
    char path[512];
    snprintf(path, sizeof(path), "%s/c.conf", g_tmp);
    write_file(path, "network = testnet\nring_size = 64M\nconnect = a.example:1\n"
                     "connect = b.example:2\nindex = off\nlog_level = warn\n");
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_RUN);
    ck_assert_ptr_eq(cfg.net, btc_net_get(BTC_NET_TEST));
    ck_assert_uint_eq(cfg.ring_size, 64u << 20);
    ck_assert_uint_eq(cfg.n_connect, 2);
    ck_assert_str_eq(cfg.connect[1], "b.example:2");
    ck_assert_int_eq(cfg.index, 0);
    cd_config_free(&cfg);

    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--regtest", "--ring-size", "1G", "--conf", path,
                           "--connect", "127.0.0.1", "--index", "--log-level=debug", NULL),
                     CD_CONFIG_RUN);
    ck_assert_ptr_eq(cfg.net, btc_net_get(BTC_NET_REGTEST));
    ck_assert_uint_eq(cfg.ring_size, 1u << 30);
    ck_assert_uint_eq(cfg.n_connect, 1); /* the command line replaces the file's list */
    ck_assert_str_eq(cfg.connect[0], "127.0.0.1:18444"); /* regtest default port */
    ck_assert_int_eq(cfg.index, 1);
    ck_assert_int_eq(cfg.log_level, CD_LOG_DEBUG);
    cd_config_free(&cfg);

    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, "--no-index", "--stn", NULL),
                     CD_CONFIG_RUN);
    ck_assert_int_eq(cfg.index, 0);
    ck_assert_ptr_eq(cfg.net, btc_net_get(BTC_NET_STN));
    cd_config_free(&cfg);
    tmp_teardown();
}
END_TEST

START_TEST(test_network_flags_and_datadir)
{
    setenv("HOME", "/home/op", 1);
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--regtest", NULL), CD_CONFIG_RUN);
    ck_assert_ptr_eq(cfg.net, btc_net_get(BTC_NET_REGTEST));
    ck_assert_str_eq(cfg.datadir, "/home/op/.conduitd/regtest");
    cd_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--testnet", NULL), CD_CONFIG_RUN);
    ck_assert_str_eq(cfg.datadir, "/home/op/.conduitd/test");
    cd_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--stn", "--datadir", "rel/dir/", NULL),
                     CD_CONFIG_RUN);
    char cwd[1024], want[1200];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/rel/dir", cwd);
    ck_assert_str_eq(cfg.datadir, want);
    cd_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--network", "mainnet", "--connect", "::1",
                           "--connect", "[::1]:9", "--connect", "node.local", NULL),
                     CD_CONFIG_RUN);
    ck_assert_uint_eq(cfg.n_connect, 3);
    ck_assert_str_eq(cfg.connect[0], "[::1]:8333");
    ck_assert_str_eq(cfg.connect[1], "[::1]:9");
    ck_assert_str_eq(cfg.connect[2], "node.local:8333");
    cd_config_free(&cfg);
}
END_TEST

START_TEST(test_sizes)
{
    static const struct {
        const char *in;
        uint64_t want;
    } ok[] = {
        {"16M", 16u << 20}, {"16777216", 16u << 20}, {"20480K", 20u << 20}, {"2g", 2ull << 30},
        {"1T", 1ull << 40}, {"64MiB", 64u << 20},    {"64MB", 64u << 20},
    };
    for (size_t i = 0; i < CD_ARRAY_LEN(ok); i++) {
        cd_config cfg;
        cd_config_init(&cfg);
        char err[256];
        ck_assert_msg(cd_config_set(&cfg, "ring_size", ok[i].in, err, sizeof(err)) == 0, "%s: %s",
                      ok[i].in, err);
        ck_assert_uint_eq(cfg.ring_size, ok[i].want);
        cd_config_free(&cfg);
    }
    static const char *bad[] = {
        "", "M", "1.5G", "-1G", "12Q", "1 G", "99999999999999999999", "17179869184T", "1K"};
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++) {
        cd_config cfg;
        cd_config_init(&cfg);
        char err[256] = "";
        ck_assert_msg(cd_config_set(&cfg, "ring_size", bad[i], err, sizeof(err)) < 0,
                      "'%s' accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "ring_size"));
        cd_config_free(&cfg);
    }
}
END_TEST

/* ---- errors ---- */

static void expect_file_error(const char *text, const char *want_sub, int line)
{
    char path[512], err[1024] = "", want[600];
    snprintf(path, sizeof(path), "%s/bad.conf", g_tmp);
    write_file(path, text);
    cd_config cfg;
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_ERROR);
    snprintf(want, sizeof(want), "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "'%s' does not start with '%s'", err,
                  want);
    ck_assert_msg(strstr(err, want_sub) != NULL, "'%s' lacks '%s'", err, want_sub);
    ck_assert_msg(strchr(err, '\n') == NULL, "multi-line error '%s'", err);
}

/* metrics_listen (issue 17): a bare port means loopback; any other address
 * than loopback is refused unless metrics_allow_remote is on. */
/* conduitdb_reference_url: an http:// base the delivery appends
 * /api/v1/tip-filter/matches to; what it cannot use is refused at load. */
START_TEST(test_conduitdb_reference_url)
{
    cd_config cfg;
    char err[1024] = "";
    const char *good[] = {"http://127.0.0.1:47126", "HTTP://ref.example", "http://[::1]:1/pre/",
                          "http://host:65535/a/b"};
    for (size_t i = 0; i < CD_ARRAY_LEN(good); i++) {
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--conduitdb-reference-url",
                               good[i], NULL),
                         CD_CONFIG_RUN);
        ck_assert_str_eq(cfg.conduitdb_reference_url, good[i]);
        cd_config_free(&cfg);
    }
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", NULL), CD_CONFIG_RUN);
    ck_assert_ptr_null(cfg.conduitdb_reference_url); /* off by default */
    cd_config_free(&cfg);
    const struct {
        const char *v, *why;
    } bad[] = {{"https://ref.example", "no TLS client"},
               {"ftp://ref.example", "expected http://"},
               {"127.0.0.1:47126", "expected http://"},
               {"http://", "no host"},
               {"http://:80", "no host"},
               {"http://u:p@ref.example", "user:password@"},
               {"http://ref.example/?a=1", "?query"},
               {"http://ref.example/#x", "#fragment"},
               {"http://ref.example:0", "bad port"},
               {"http://ref.example:70000", "bad port"},
               {"http://ref.example:8x", "bad port"},
               {"http://ref.example:", "empty port"},
               {"http://[::1", "IPv6"},
               {"http://ref.example/a b", "spaces"}};
    for (size_t i = 0; i < CD_ARRAY_LEN(bad); i++) {
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--conduitdb-reference-url",
                               bad[i].v, NULL),
                         CD_CONFIG_ERROR);
        ck_assert_msg(strstr(err, "conduitdb_reference_url") && strstr(err, bad[i].why),
                      "%s: %s", bad[i].v, err);
    }
}
END_TEST

START_TEST(test_metrics_listen)
{
    cd_config cfg;
    char err[1024] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", "9490", NULL),
                     CD_CONFIG_RUN);
    ck_assert_str_eq(cfg.metrics_listen, "127.0.0.1:9490");
    cd_config_free(&cfg);
    const char *local[] = {"[::1]:1", "localhost:1", "127.9.9.9:1", "[::ffff:127.0.0.1]:1"};
    for (size_t i = 0; i < CD_ARRAY_LEN(local); i++) {
        ck_assert_int_eq(
            parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", local[i], NULL),
            CD_CONFIG_RUN);
        ck_assert_str_eq(cfg.metrics_listen, local[i]);
        cd_config_free(&cfg);
    }
    const char *remote[] = {"0.0.0.0:9490", "[::]:1", "10.1.2.3:1", "metrics.example:1"};
    for (size_t i = 0; i < CD_ARRAY_LEN(remote); i++) {
        ck_assert_int_eq(
            parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", remote[i], NULL),
            CD_CONFIG_ERROR);
        ck_assert_msg(strstr(err, "not a loopback address") && strstr(err, "metrics_allow_remote"),
                      "%s", err);
        ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", remote[i],
                               "--metrics-allow-remote", "on", NULL),
                         CD_CONFIG_RUN);
        ck_assert_str_eq(cfg.metrics_listen, remote[i]);
        cd_config_free(&cfg);
    }
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", "70000", NULL),
                     CD_CONFIG_ERROR);
    ck_assert_msg(strstr(err, "metrics_listen expects address:port or a port"), "%s", err);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-conf", "--metrics-listen", "host", NULL),
                     CD_CONFIG_ERROR);
}
END_TEST

/* parser_workers: one bound (CD_CONFIG_MAX_PARSER_WORKERS) for an explicit
 * value, the default on any host, and the pipeline (cd_pipeline.h asserts
 * its own limit is this one). */
/* The pipeline and start-up recovery cut blocks at this one size (recovery
 * used the configured value while the pipeline capped it: a ring of 64M
 * with the default 32M units cut units of 16M in one and 32M in the other). */
START_TEST(test_unit_size_one_rule)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.ring_size = 64ull << 20;
    ck_assert_uint_eq(cd_config_unit_size(&cfg), 16ull << 20); /* default 32M, capped */
    cfg.unit_size = 8ull << 20;
    ck_assert_uint_eq(cd_config_unit_size(&cfg), 8ull << 20);
    cfg.ring_size = 512ull << 20;
    cfg.unit_size = 0;
    ck_assert_uint_eq(cd_config_unit_size(&cfg), 32ull << 20);
    cfg.ring_size = 8192;
    ck_assert_uint_eq(cd_config_unit_size(&cfg), 4096); /* the floor */
}
END_TEST

START_TEST(test_parser_workers_bound)
{
    tmp_setup();
    const cd_option *o = NULL;
    for (size_t i = 0; i < cd_config_n_options; i++)
        if (!strcmp(cd_config_options[i].name, "parser_workers"))
            o = &cd_config_options[i];
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->max, CD_CONFIG_MAX_PARSER_WORKERS);
    char msg[128];
    snprintf(msg, sizeof(msg), "parser_workers out of range 0..%d: '%d'",
             CD_CONFIG_MAX_PARSER_WORKERS, CD_CONFIG_MAX_PARSER_WORKERS + 1);
    char text[64];
    snprintf(text, sizeof(text), "parser_workers = %d\n", CD_CONFIG_MAX_PARSER_WORKERS + 1);
    expect_file_error(text, msg, 1);
    expect_file_error("parser_workers = 64\n", "parser_workers out of range 0..", 1);
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    /* the default: one per core, the bound on a larger host */
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 2), 2);
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 0), 1);
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, -1), 1);
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, CD_CONFIG_MAX_PARSER_WORKERS),
                      CD_CONFIG_MAX_PARSER_WORKERS);
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 128), CD_CONFIG_MAX_PARSER_WORKERS);
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 1024), CD_CONFIG_MAX_PARSER_WORKERS);
    /* an explicit value is taken as set (the table bounded it) */
    cfg.parser_workers = 3;
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 128), 3);
    cfg.parser_workers = CD_CONFIG_MAX_PARSER_WORKERS;
    ck_assert_uint_eq(cd_config_parser_workers(&cfg, 1), CD_CONFIG_MAX_PARSER_WORKERS);
}
END_TEST

START_TEST(test_file_errors)
{
    tmp_setup();
    expect_file_error("index = off\nfrobnicate = 3\n", "unknown option: 'frobnicate'", 2);
    expect_file_error("# c\n\nring_size = lots\n",
                      "ring_size expects a size like 512M or 4G: 'lots'", 3);
    expect_file_error("ring_size = 1K\n", "ring_size out of range 16M..1T: '1K'", 1);
    expect_file_error("blocks_per_peer = 0\n", "blocks_per_peer out of range 1..1024: '0'", 1);
    expect_file_error("parser_workers = -2\n", "parser_workers expects a whole number: '-2'", 1);
    expect_file_error("index = maybe\n", "index expects on/off: 'maybe'", 1);
    expect_file_error("network = bch\n", "network expects main, test, regtest or stn: 'bch'", 1);
    expect_file_error("log_level = loud\n", "log_level expects one of error, warn, info, debug", 1);
    expect_file_error("connect = host:99999\n", "connect expects host[:port]", 1);
    expect_file_error("http_listen = 8085\n", "http_listen expects address:port", 1);
    expect_file_error("http_listen = localhost\n", "http_listen expects address:port", 1);
    expect_file_error("http_listen = ::1:80\n", "http_listen expects address:port", 1);
    expect_file_error("http_listen = [::1]\n", "http_listen expects address:port", 1);
    expect_file_error("http_listen = 127.0.0.1:70000\n", "http_listen expects address:port", 1);
    expect_file_error("http_listen = 127.0.0.1:\n", "http_listen expects address:port", 1);
    expect_file_error("just some words\n", "expected 'key = value': 'just some words'", 1);

    char err[1024] = "", path[512];
    snprintf(path, sizeof(path), "%s/missing.conf", g_tmp);
    cd_config cfg;
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_ERROR);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", g_tmp, NULL), CD_CONFIG_ERROR);
    ck_assert_ptr_nonnull(strstr(err, strerror(EISDIR)));
    /* a non-regular file is refused, not read (/dev/zero never ends) */
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", "/dev/zero", NULL), CD_CONFIG_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    /* a NUL byte: file:line, not a silently shortened line */
    snprintf(path, sizeof(path), "%s/nul.conf", g_tmp);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite("index = off\nring_size = 64M\0x\n", 1, 30, f);
    fclose(f);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_ERROR);
    char want[600];
    snprintf(want, sizeof(want), "%s:2: NUL byte at column 16", path);
    ck_assert_str_eq(err, strcat(want, ": not a text file"));
    tmp_teardown();
}
END_TEST

START_TEST(test_mask_secret)
{
    static const char *const cases[][2] = {
        {"", ""},
        {"host=h port=5", "host=h port=5"},
        {"host=h password=pw user=u", "host=h password=*** user=u"},
        {"password = 'a b\\' c' dbname=x", "password = *** dbname=x"},
        {"  password=pw", "  password=***"},
        {"passwordx=1 password=", "passwordx=1 password=***"},
        {"postgresql://u:pw@h:5/db", "postgresql://u:***@h:5/db"},
        {"postgresql://u:p@w@h/db", "postgresql://u:***@h/db"},
        {"postgres://u@h/db?password=pw&sslmode=a", "postgres://u@h/db?password=***&sslmode=a"},
        {"postgresql://h/db?a=b", "postgresql://h/db?a=b"},
        {"not a conninfo", "not a conninfo"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        cd_config_mask_secret(cases[i][0], out, sizeof(out));
        ck_assert_msg(strcmp(out, cases[i][1]) == 0, "'%s' -> '%s', want '%s'", cases[i][0], out,
                      cases[i][1]);
    }
    char small[8];
    cd_config_mask_secret("password=secret", small, sizeof(small));
    ck_assert_str_eq(small, "passwor"); /* truncated, never the password */

    char a0[] = "conduitd", a1[] = "--pg-conninfo", a2[] = "host=h password=secret",
         a3[] = "--pg_conninfo=postgresql://u:pw@h/d", a4[] = "--datadir", a5[] = "password=x";
    char *argv[] = {a0, a1, a2, a3, a4, a5, NULL};
    ck_assert_int_eq(cd_config_scrub_argv(6, argv), 2);
    ck_assert_str_eq(argv[2], "host=h password=***");
    ck_assert_int_eq(a2[sizeof(a2) - 2], '\0'); /* freed bytes are NULs */
    /* one byte longer masked: cut at the old length */
    ck_assert_str_eq(argv[3], "--pg_conninfo=postgresql://u:***@h/");
    ck_assert_str_eq(argv[5], "password=x"); /* not a conninfo flag's value */
}
END_TEST

START_TEST(test_flag_errors)
{
    cd_config cfg;
    char err[1024] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--bogus", NULL), CD_CONFIG_ERROR);
    ck_assert_str_eq(err, "command line: unknown option: '--bogus'");
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--ring-size", NULL), CD_CONFIG_ERROR);
    ck_assert_str_eq(err, "command line: missing value: '--ring-size'");
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--ring-size", "9", NULL), CD_CONFIG_ERROR);
    ck_assert_str_eq(err, "command line: ring_size out of range 16M..1T: '9'");
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "stray", NULL), CD_CONFIG_ERROR);
    ck_assert_str_eq(err, "command line: unexpected argument: 'stray'");
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--no-ring-size", NULL), CD_CONFIG_ERROR);
    ck_assert_int_eq(
        parse(&cfg, err, sizeof(err), "--ring-size", "64M", "--unit-size", "33M", NULL),
        CD_CONFIG_ERROR);
    ck_assert_str_eq(err, "unit_size 33M must be at most half of ring_size 64M");
    ck_assert_int_eq(
        parse(&cfg, err, sizeof(err), "--ring-size", "64M", "--unit-size", "32M", NULL),
        CD_CONFIG_RUN);
    cd_config_free(&cfg);
    char many[CD_CONFIG_MAX_CONNECT + 1][32];
    char *argv[2 * (CD_CONFIG_MAX_CONNECT + 1) + 2];
    int argc = 0;
    argv[argc++] = (char *)"conduitd";
    for (int i = 0; i <= CD_CONFIG_MAX_CONNECT; i++) {
        snprintf(many[i], sizeof(many[i]), "10.0.0.%d:1", i + 1);
        argv[argc++] = (char *)"--connect";
        argv[argc++] = many[i];
    }
    argv[argc] = NULL;
    ck_assert_int_eq(cd_config_parse_args(&cfg, "conduitd", argc, argv, err, sizeof(err)),
                     CD_CONFIG_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "too many connect entries"));
}
END_TEST

/* ---- sample config and help ---- */

START_TEST(test_sample_in_sync)
{
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *m = open_memstream(&gen, &gen_len);
    cd_config_write_sample(m);
    fclose(m);
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char line[512];
        snprintf(line, sizeof(line), "\n#%s =%s%s\n", o->name, o->def[0] ? " " : "", o->def);
        ck_assert_msg(strstr(gen, line) != NULL, "sample lacks '%s'", line + 1);
        snprintf(line, sizeof(line), "# %s\n", o->help);
        ck_assert_msg(strstr(gen, line) != NULL, "sample lacks help of %s", o->name);
    }
    /* The committed file must be exactly what the table generates. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/conf/conduitd.conf", CD_SOURCE_ROOT);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *disk = calloc(1, 1 << 16);
    size_t n = fread(disk, 1, (1 << 16) - 1, f);
    fclose(f);
    ck_assert_msg(n == gen_len && memcmp(disk, gen, n) == 0,
                  "conf/conduitd.conf is out of date: regenerate with "
                  "`conduitd --sample-config > conf/conduitd.conf`");
    /* And the sample, uncommented, parses back to the defaults. */
    tmp_setup();
    char upath[512];
    snprintf(upath, sizeof(upath), "%s/u.conf", g_tmp);
    FILE *u = fopen(upath, "w");
    for (char *l = strtok(disk, "\n"); l; l = strtok(NULL, "\n"))
        if (l[0] == '#' && l[1] != ' ' && strchr(l, '='))
            fprintf(u, "%s\n", l + 1);
    fclose(u);
    cd_config cfg;
    char err[512] = "";
    ck_assert_msg(parse(&cfg, err, sizeof(err), "--conf", upath, NULL) == CD_CONFIG_RUN, "%s", err);
    for (size_t i = 0; i < cd_config_n_options; i++) {
        const cd_option *o = &cd_config_options[i];
        char v[512];
        cd_config_format_value(&cfg, o, v, sizeof(v));
        if (strcmp(o->name, "datadir") != 0)
            ck_assert_str_eq(v, o->def);
    }
    cd_config_free(&cfg);
    tmp_teardown();
    free(disk);
    free(gen);
}
END_TEST

START_TEST(test_help_lists_every_option)
{
    char *h = NULL;
    size_t hl = 0;
    FILE *m = open_memstream(&h, &hl);
    cd_config_print_help(m, "conduitd");
    fclose(m);
    for (size_t i = 0; i < cd_config_n_options; i++) {
        char flag[128];
        snprintf(flag, sizeof(flag), "--%s ", cd_config_options[i].name);
        ck_assert_msg(strstr(h, flag) != NULL, "help lacks %s", flag);
        ck_assert_ptr_nonnull(strstr(h, cd_config_options[i].help));
    }
    ck_assert_ptr_nonnull(strstr(h, "--regtest"));
    ck_assert_ptr_nonnull(strstr(h, "--conf FILE"));
    free(h);
}
END_TEST

/* ---- datadir ---- */

START_TEST(test_datadir_checks)
{
    tmp_setup();
    cd_config cfg;
    char err[1024] = "", dir[512];
    snprintf(dir, sizeof(dir), "%s/a/b/c", g_tmp);
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--datadir", dir, NULL), CD_CONFIG_RUN);
    ck_assert_int_eq(cd_config_check_datadir(&cfg, err, sizeof(err)), 0);
    struct stat sb;
    ck_assert_int_eq(stat(dir, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_int_eq(sb.st_mode & 0777, 0700);
    cd_config_free(&cfg);

    char file[512];
    snprintf(file, sizeof(file), "%s/plain", g_tmp);
    write_file(file, "x");
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--datadir", file, NULL), CD_CONFIG_RUN);
    ck_assert_int_eq(cd_config_check_datadir(&cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, file));
    ck_assert_ptr_nonnull(strstr(err, strerror(ENOTDIR)));
    cd_config_free(&cfg);
    tmp_teardown();
}
END_TEST

/* ---- reload ---- */

START_TEST(test_reload_applies_only_reloadable)
{
    tmp_setup();
    char path[512], logf[512], text[1024];
    snprintf(path, sizeof(path), "%s/r.conf", g_tmp);
    snprintf(logf, sizeof(logf), "%s/one.log", g_tmp);
    write_file(path, "log_level = info\nstatus_interval = 10\nring_size = 64M\n");
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, "--blocks-per-peer", "3", NULL),
                     CD_CONFIG_RUN);
    snprintf(text, sizeof(text),
             "log_level = debug\nstatus_interval = 2\nring_size = 1G\nblocks_per_peer = 50\n"
             "log_file = %s\n",
             logf);
    write_file(path, text);
    ck_assert_int_eq(cd_config_reload(&cfg), 0);
    ck_assert_int_eq(cfg.log_level, CD_LOG_DEBUG);
    ck_assert_int_eq(cd_log_get_level(), CD_LOG_DEBUG);
    ck_assert_uint_eq(cfg.status_interval_s, 2);
    ck_assert_uint_eq(cfg.ring_size, 64u << 20); /* not reloadable */
    ck_assert_uint_eq(cfg.blocks_per_peer, 3);   /* the command line still wins */
    ck_assert_str_eq(cfg.log_file, logf);
    cd_log_info("after reload");
    ck_assert_int_eq(access(logf, F_OK), 0);

    /* An invalid file leaves the live configuration alone. */
    write_file(path, "log_level = shouting\n");
    ck_assert_int_eq(cd_config_reload(&cfg), -1);
    ck_assert_int_eq(cfg.log_level, CD_LOG_DEBUG);
    ck_assert_str_eq(cfg.log_file, logf);
    CD_IGNORE(cd_log_open(NULL)); /* stderr: cannot fail */
    cd_config_free(&cfg);
    tmp_teardown();
}
END_TEST

/* ---- status ---- */

/* The rates span a sliding window of samples: idle for the whole window
 * reads exactly 0 (an exponentially smoothed rate, as before, only decays
 * towards 0: 2 blk/s became 0.24 after six idle intervals); the status file
 * carries the best hash and the peers. */
START_TEST(test_status_window_and_peers)
{
    cd_status st;
    cd_config cfg;
    cd_config_init(&cfg);
    cd_status_init(&st, &cfg);
    cd_config_free(&cfg);
    st.height = 100;
    st.header_height = 1100;
    for (int i = 0; i <= 6; i++) /* 2 blk/s for 60 s */
        cd_status_sample(&st, (uint64_t)(20 * i), (uint64_t)i * 1000000, 0, 1000.0 + 10 * i);
    ck_assert_double_eq_tol(st.blocks_per_s, 2.0, 1e-9);
    ck_assert_double_eq_tol(st.mb_per_s, 0.1, 1e-9);
    for (int i = 1; i <= 5; i++) { /* idle */
        cd_status_sample(&st, 120, 6000000, 0, 1060.0 + 10 * i);
        ck_assert(st.blocks_per_s > 0);
    }
    cd_status_sample(&st, 120, 6000000, 0, 1120.0);
    ck_assert(st.blocks_per_s == 0.0 && st.mb_per_s == 0.0);
    ck_assert(st.eta_s < 0);
    /* moving again: a rate at once */
    cd_status_sample(&st, 130, 7000000, 0, 1130.0);
    ck_assert_double_eq_tol(st.blocks_per_s, 10.0 / 60.0, 1e-9);

    snprintf(st.best_hash, sizeof(st.best_hash), "%064d", 7);
    st.n_peer = 2;
    snprintf(st.peer[0].addr, sizeof(st.peer[0].addr), "10.0.0.1:8333");
    snprintf(st.peer[0].agent, sizeof(st.peer[0].agent), "/Bitcoin SV:1.1.0/");
    st.peer[0].height = 870000;
    st.peer[0].bytes_in = 123456789;
    st.peer[0].bytes_out = 42;
    snprintf(st.peer[1].addr, sizeof(st.peer[1].addr), "[::1]:18444");
    st.peer[1].height = -1;
    ck_assert_int_eq(cd_status_write(g_tmp, &st), 0);
    cd_status back;
    ck_assert_int_eq(cd_status_read(g_tmp, &back), 0);
    ck_assert_str_eq(back.best_hash, st.best_hash);
    ck_assert_uint_eq(back.n_peer, 2);
    ck_assert_str_eq(back.peer[0].addr, "10.0.0.1:8333");
    ck_assert_str_eq(back.peer[0].agent, "/Bitcoin SV:1.1.0/");
    ck_assert_int_eq(back.peer[0].height, 870000);
    ck_assert_uint_eq(back.peer[0].bytes_in, 123456789);
    ck_assert_uint_eq(back.peer[0].bytes_out, 42);
    ck_assert_str_eq(back.peer[1].addr, "[::1]:18444");
    ck_assert_str_eq(back.peer[1].agent, "");
    ck_assert_int_eq(back.peer[1].height, -1);
    char *json = cd_status_json(&back, 1, back.updated_at);
    ck_assert_ptr_nonnull(json);
    ck_assert_ptr_nonnull(strstr(json, "\"best_hash\": \"0000"));
    ck_assert_ptr_nonnull(strstr(json, "\"agent\": \"/Bitcoin SV:1.1.0/\""));
    const char *start = "{\"running\": true, \"stale\": false";
    ck_assert_msg(strncmp(json, start, strlen(start)) == 0, "%s", json);
    free(json);
}
END_TEST

/* Issue 17: the ETA by transactions where the chain's tx totals are known
 * (mainnet, testnet: the SV node's chainTxData), by blocks elsewhere; the
 * new status fields survive the file. */
START_TEST(test_status_eta_by_txs)
{
    double txs;
    ck_assert_int_eq(cd_status_chain_txs("regtest", 10, 0, &txs), -1);
    ck_assert_int_eq(cd_status_chain_txs("stn", 10, 0, &txs), -1);
    ck_assert_int_eq(cd_status_chain_txs("main", 523992, 1522608016, &txs), 0);
    ck_assert_double_eq_tol(txs, 248589038.0, 0.5);
    /* after the known block: its rate (3.2 tx/s) from its time on */
    ck_assert_int_eq(cd_status_chain_txs("main", 523993, 1522608016 + 1000, &txs), 0);
    ck_assert_double_eq_tol(txs, 248589038.0 + 3200.0 + 1.0, 0.5);
    ck_assert_int_eq(cd_status_chain_txs("test", 0, 0, &txs), 0);
    ck_assert(txs > 0 && txs < 100);

    tmp_setup();
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--datadir", g_tmp, NULL), CD_CONFIG_RUN);
    cd_status st;
    cd_status_init(&st, &cfg);
    ck_assert_str_eq(st.network, "main");
    st.height = 262000; /* half the heights of the known block */
    st.tip_time = 1300000000;
    st.header_height = 523992;
    st.header_time = 1522608016;
    cd_status_sample(&st, 0, 0, 0, 1000.0);
    cd_status_sample(&st, 100, 1000000, 100000, 1010.0); /* 10 blk/s, 10000 tx/s */
    double left = 248589038.0 - 248589038.0 * 262001.0 / 523993.0;
    ck_assert_double_eq_tol(st.txs_left, left, 1.0);
    ck_assert_double_eq_tol(st.progress_tx, 262001.0 / 523993.0, 1e-6);
    /* txs left at the tx rate, not blocks left at the block rate */
    ck_assert_double_eq_tol(st.eta_s, left / 10000.0, 1e-3);
    /* idle for the whole window: the rates read 0 and the ETA is unknown */
    for (int i = 1; i <= CD_STATUS_WINDOW; i++)
        cd_status_sample(&st, 100, 1000000, 100000, 1010.0 + 10 * i);
    ck_assert(st.tx_per_s == 0.0 && st.blocks_per_s == 0.0 && st.eta_s < 0);

    snprintf(st.tip_hash, sizeof(st.tip_hash), "%064d", 7);
    st.n_restart = 2;
    snprintf(st.restart[0].name, sizeof(st.restart[0].name), "parser");
    st.restart[0].n = 3;
    snprintf(st.restart[1].name, sizeof(st.restart[1].name), "http");
    st.commit_n = 5;
    st.commit_sum_s = 0.25;
    for (int i = 0; i < CD_STATUS_COMMIT_BUCKETS; i++)
        st.commit_le[i] = i < 3 ? 2 : 5;
    st.mempool_refused[CD_STATUS_MEMPOOL_REASONS - 1] = 9;
    ck_assert_int_eq(cd_status_write(g_tmp, &st), 0);
    cd_status back;
    ck_assert_int_eq(cd_status_read(g_tmp, &back), 0);
    ck_assert_str_eq(back.tip_hash, st.tip_hash);
    ck_assert_int_eq(back.tip_time, 1300000000);
    ck_assert_int_eq(back.header_time, 1522608016);
    ck_assert_double_eq_tol(back.progress_tx, st.progress_tx, 1e-6);
    ck_assert_double_eq_tol(back.txs_left, st.txs_left, 1.0);
    ck_assert_uint_eq(back.n_restart, 2);
    ck_assert_str_eq(back.restart[0].name, "parser");
    ck_assert_uint_eq(back.restart[0].n, 3);
    ck_assert_uint_eq(back.commit_n, 5);
    ck_assert_double_eq_tol(back.commit_sum_s, 0.25, 1e-9);
    ck_assert_uint_eq(back.commit_le[2], 2);
    ck_assert_uint_eq(back.commit_le[CD_STATUS_COMMIT_BUCKETS - 1], 5);
    ck_assert_uint_eq(back.mempool_refused[CD_STATUS_MEMPOOL_REASONS - 1], 9);
    cd_config_free(&cfg);
}
END_TEST

START_TEST(test_status_roundtrip)
{
    tmp_setup();
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--regtest", "--datadir", g_tmp, NULL),
                     CD_CONFIG_RUN);
    cd_status st;
    cd_status_init(&st, &cfg);
    ck_assert_str_eq(st.network, "regtest");
    ck_assert_str_eq(st.state, "starting");
    st.height = 100;
    st.header_height = 1100;
    st.peers = 2;
    st.workers_alive = 3;
    st.workers_total = 4;
    st.ring_used = st.ring_size / 4;
    snprintf(st.state, sizeof(st.state), "syncing");
    cd_status_sample(&st, 0, 0, 0, 1000.0);
    ck_assert(st.eta_s < 0);
    cd_status_sample(&st, 20, 40000000, 5000, 1010.0); /* 2 blk/s, 4 MB/s, 500 tx/s */
    ck_assert_double_eq_tol(st.blocks_per_s, 2.0, 1e-9);
    ck_assert_double_eq_tol(st.mb_per_s, 4.0, 1e-9);
    ck_assert_double_eq_tol(st.tx_per_s, 500.0, 1e-9);
    ck_assert_double_eq_tol(st.eta_s, 500.0, 1e-6);     /* 1000 blocks at 2/s */
    cd_status_sample(&st, 40, 80000000, 10000, 1030.0); /* slower: over the window 1.33 */
    ck_assert(st.blocks_per_s < 2.0 && st.blocks_per_s > 1.0);

    char line[512];
    cd_status_format_line(&st, line, sizeof(line));
    ck_assert_msg(strstr(line, "syncing height=100/1100") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "ring 25%") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "workers 3/4") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "blk/s") && strstr(line, "MB/s") && strstr(line, "tx/s") &&
                      strstr(line, "eta "),
                  "%s", line);

    ck_assert_int_eq(cd_status_write(g_tmp, &st), 0);
    cd_status back;
    ck_assert_int_eq(cd_status_read(g_tmp, &back), 0);
    ck_assert_int_eq(back.pid, getpid());
    ck_assert_int_eq(back.height, 100);
    ck_assert_int_eq(back.header_height, 1100);
    ck_assert_uint_eq(back.workers_alive, 3);
    ck_assert_uint_eq(back.ring_used, st.ring_used);
    ck_assert_uint_eq(back.blocks_done, 40);
    ck_assert_str_eq(back.state, "syncing");
    ck_assert_str_eq(back.network, "regtest");
    ck_assert_double_eq_tol(back.blocks_per_s, st.blocks_per_s, 1e-3);
    ck_assert_int_eq(cd_status_pid_alive(&back), 1);
    ck_assert_uint_eq(back.interval_s, 10);
    ck_assert_int_eq(cd_status_stale(&back, back.updated_at + 30), 0);
    ck_assert_int_eq(cd_status_stale(&back, back.updated_at + 36), 1);
    char tmpf[512];
    snprintf(tmpf, sizeof(tmpf), "%s/status.tmp", g_tmp);
    ck_assert_int_eq(access(tmpf, F_OK), -1); /* renamed away */

    char *out = NULL;
    size_t ol = 0;
    FILE *m = open_memstream(&out, &ol);
    cd_status_print(m, &back, 1);
    fclose(m);
    ck_assert_ptr_nonnull(strstr(out, "running (pid"));
    ck_assert_ptr_nonnull(strstr(out, "best header 1100"));
    free(out);

    back.pid = 0x7ffffff0; /* surely not a live pid */
    ck_assert_int_eq(cd_status_pid_alive(&back), 0);

    char d[32];
    cd_status_format_duration(3725, d, sizeof(d));
    ck_assert_str_eq(d, "1h02m");
    cd_status_format_duration(-1, d, sizeof(d));
    ck_assert_str_eq(d, "?");

    char missing[512];
    snprintf(missing, sizeof(missing), "%s/nothing-here", g_tmp);
    ck_assert_int_eq(cd_status_read(missing, &back), -1);
    ck_assert_int_eq(errno, ENOENT);
    cd_config_free(&cfg);
    tmp_teardown();
}
END_TEST

/* ---- sd_notify ---- */

START_TEST(test_notify_datagrams)
{
    tmp_setup();
    char path[512];
    snprintf(path, sizeof(path), "%s/notify.sock", g_tmp);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof(a.sun_path));
    memcpy(a.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);

    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(cd_notify_init(), 0);
    ck_assert_int_eq(cd_notify_ready(), 0); /* no-op */

    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    ck_assert_int_eq(cd_notify_init(), 1);
    ck_assert_ptr_null(getenv("NOTIFY_SOCKET")); /* children must not notify */
    ck_assert_uint_eq(cd_notify_watchdog_usec(), 3000000);
    ck_assert_int_eq(cd_notify_ready(), 0);
    ck_assert_int_eq(cd_notify_status("height %d\nof %d", 5, 10), 0);
    ck_assert_int_eq(cd_notify_watchdog(), 0);
    ck_assert_int_eq(cd_notify_stopping(), 0);
    const char *want[] = {"READY=1", "STATUS=height 5 of 10", "WATCHDOG=1", "STOPPING=1"};
    for (size_t i = 0; i < 4; i++) {
        char buf[256];
        ssize_t n = recv(s, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        ck_assert_str_eq(buf, want[i]);
    }
    close(s);

    /* watchdog meant for another process */
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    cd_notify_init();
    ck_assert_uint_eq(cd_notify_watchdog_usec(), 0);
    tmp_teardown();
}
END_TEST

/* ---- signals ---- */

static int g_stops, g_reloads;
static void on_stop(void *arg)
{
    g_stops++;
    event_base_loopbreak(arg);
}
static void on_reload(void *arg)
{
    g_reloads++;
    event_base_loopbreak(arg);
}

START_TEST(test_signals_run_in_loop)
{
    tmp_setup();
    char path[512], logf[512], moved[512], text[600];
    snprintf(path, sizeof(path), "%s/s.conf", g_tmp);
    snprintf(logf, sizeof(logf), "%s/d.log", g_tmp);
    snprintf(moved, sizeof(moved), "%s/d.log.1", g_tmp);
    snprintf(text, sizeof(text), "log_file = %s\n", logf);
    write_file(path, text);
    cd_config cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof(err), "--conf", path, NULL), CD_CONFIG_RUN);
    ck_assert_int_eq(cd_log_open(cfg.log_file), 0);

    struct event_base *base = event_base_new();
    cd_signals *sig = cd_signals_install(base, &cfg, on_stop, on_reload, base);
    ck_assert_ptr_nonnull(sig);

    ck_assert_int_eq(rename(logf, moved), 0); /* logrotate */
    raise(SIGHUP);
    event_base_dispatch(base);
    ck_assert_int_eq(g_reloads, 1);
    ck_assert_int_eq(g_stops, 0);
    cd_log_info("line after reopen");
    ck_assert_int_eq(access(logf, F_OK), 0); /* reopened under the original name */

    raise(SIGTERM);
    event_base_dispatch(base);
    ck_assert_int_eq(g_stops, 1);
    raise(SIGINT);
    event_base_dispatch(base);
    ck_assert_int_eq(g_stops, 2);
    ck_assert_uint_eq(cd_signals_stop_count(sig), 2);

    cd_signals_free(sig);
    event_base_free(base);
    CD_IGNORE(cd_log_open(NULL)); /* stderr: cannot fail */
    cd_config_free(&cfg);
    tmp_teardown();
}
END_TEST

static Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_defaults_match_table);
    tcase_add_test(tc, test_table_sane);
    tcase_add_test(tc, test_every_option_from_file_and_flag);
    tcase_add_test(tc, test_metrics_listen);
    tcase_add_test(tc, test_conduitdb_reference_url);
    tcase_add_test(tc, test_flags_override_file);
    tcase_add_test(tc, test_network_flags_and_datadir);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_file_errors);
    tcase_add_test(tc, test_parser_workers_bound);
    tcase_add_test(tc, test_unit_size_one_rule);
    tcase_add_test(tc, test_flag_errors);
    tcase_add_test(tc, test_mask_secret);
    tcase_add_test(tc, test_sample_in_sync);
    tcase_add_test(tc, test_help_lists_every_option);
    tcase_add_test(tc, test_datadir_checks);
    tcase_add_test(tc, test_reload_applies_only_reloadable);
    suite_add_tcase(s, tc);
    TCase *ops = tcase_create("ops");
    tcase_add_test(ops, test_status_roundtrip);
    tcase_add_test(ops, test_status_eta_by_txs);
    tcase_add_test(ops, test_status_window_and_peers);
    tcase_add_test(ops, test_notify_datagrams);
    tcase_add_test(ops, test_signals_run_in_loop);
    suite_add_tcase(s, ops);
    return s;
}

CD_TEST_MAIN(suite_config)
