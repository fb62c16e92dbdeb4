/*
 * test_cli.c - argument handling of conduit-cli (src/cli/, cd_cli_main):
 * the exit codes and messages for no command, help, --version, an unknown
 * command, and each family's missing or malformed arguments, which are all
 * decided before anything is opened (no node, store or database needed:
 * the data directory given does not even exist, and must not be created).
 *
 * Exit codes (cli.h): 0 ok (also --help), 1 failure, 2 usage.
 */
#include "cd_test.h"

#include "cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct out {
    int rc;
    char out[8192], err[8192];
} out;

static void slurp(int fd, char *buf, size_t cap)
{
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = 0;
}

/* Runs cd_cli_main with argv (NULL-terminated, argv[0] = "conduit-cli")
 * and captures what it printed. */
static void run(out *o, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    char t1[] = "/tmp/cd_cli_out_XXXXXX", t2[] = "/tmp/cd_cli_err_XXXXXX";
    int f1 = mkstemp(t1), f2 = mkstemp(t2);
    ck_assert_int_ge(f1, 0);
    ck_assert_int_ge(f2, 0);
    unlink(t1);
    unlink(t2);
    fflush(stdout);
    fflush(stderr);
    int s1 = dup(1), s2 = dup(2);
    dup2(f1, 1);
    dup2(f2, 2);
    o->rc = cd_cli_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(s1, 1);
    dup2(s2, 2);
    close(s1);
    close(s2);
    slurp(f1, o->out, sizeof(o->out));
    slurp(f2, o->err, sizeof(o->err));
    close(f1);
    close(f2);
}

#define NODIR "/tmp/cd_cli_test_no_such_dir/x"
#define TXID  "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"

static void assert_absent(void)
{
    struct stat st;
    ck_assert_int_ne(stat(NODIR, &st), 0);
}

START_TEST(test_no_command_is_usage)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli <command>"));
    ck_assert_str_eq(o.out, "");
}
END_TEST

START_TEST(test_help_and_version)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", "help", NULL});
    ck_assert_int_eq(o.rc, 0);
    /* every subcommand is listed */
    const char *names[] = {"status", "headers", "getblock",   "broadcast",   "ping",
                           "block",  "tx",      "tx-offsets", "merkle-proof"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(strstr(o.out, names[i]) != NULL, "help lacks %s", names[i]);
    run(&o, (const char *const[]){"conduit-cli", "--help", NULL});
    ck_assert_int_eq(o.rc, 0);
    run(&o, (const char *const[]){"conduit-cli", "--version", NULL});
    ck_assert_int_eq(o.rc, 0);
    ck_assert_ptr_nonnull(strstr(o.out, "conduit-cli "));
}
END_TEST

START_TEST(test_unknown_command)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", "frobnicate", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown command 'frobnicate'"));
    /* a prefix of a command is not that command */
    run(&o, (const char *const[]){"conduit-cli", "stat", NULL});
    ck_assert_int_eq(o.rc, 2);
    assert_absent();
}
END_TEST

START_TEST(test_store_commands_need_an_id)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", "block", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli block <hash|height>"));
    /* --hex and --out together */
    run(&o, (const char *const[]){"conduit-cli", "block", "7", "--hex", "--out", "/tmp/x",
                                  "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    run(&o, (const char *const[]){"conduit-cli", "tx-offsets", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli tx-offsets"));
    run(&o, (const char *const[]){"conduit-cli", "block", "--help", NULL});
    ck_assert_int_eq(o.rc, 0);
    ck_assert_ptr_nonnull(strstr(o.out, "usage: conduit-cli block"));
    assert_absent();
}
END_TEST

START_TEST(test_pg_commands_need_a_txid)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", "tx", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli tx <txid (64 hex)>"));
    /* not 64 hex digits */
    run(&o, (const char *const[]){"conduit-cli", "tx", "abcd", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    run(&o, (const char *const[]){"conduit-cli", "tx", TXID "0", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    /* a --target merkle-proof does not know */
    run(&o, (const char *const[]){"conduit-cli", "merkle-proof", TXID, "--target", "root",
                                  "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli merkle-proof"));
    /* --hex belongs to tx only */
    run(&o,
        (const char *const[]){"conduit-cli", "merkle-proof", "--hex", "--datadir", NODIR, NULL});
    ck_assert_int_eq(o.rc, 2);
    assert_absent();
}
END_TEST

START_TEST(test_daemon_options_are_checked)
{
    out o;
    /* a txid given, but a daemon option with a bad value: the daemon's own
     * message, exit 2 */
    run(&o, (const char *const[]){"conduit-cli", "tx", TXID, "--ring-size", "12Q", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "conduit-cli tx: "));
    ck_assert_ptr_nonnull(strstr(o.err, "ring_size expects a size"));
    run(&o, (const char *const[]){"conduit-cli", "block", "7", "--frobnicate", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown option"));
}
END_TEST

START_TEST(test_p2p_commands_arguments)
{
    out o;
    run(&o, (const char *const[]){"conduit-cli", "getblock", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "usage: conduit-cli getblock"));
    /* a hash but no --out */
    run(&o, (const char *const[]){"conduit-cli", "getblock", TXID, NULL});
    ck_assert_int_eq(o.rc, 2);
    run(&o, (const char *const[]){"conduit-cli", "broadcast", NULL});
    ck_assert_int_eq(o.rc, 2);
    run(&o, (const char *const[]){"conduit-cli", "broadcast", "abc", NULL}); /* odd length */
    ck_assert_int_eq(o.rc, 2);
    run(&o, (const char *const[]){"conduit-cli", "broadcast", "zz", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "not a hex string"));
    /* mined status comes from the index: it needs a database */
    run(&o, (const char *const[]){"conduit-cli", "broadcast", "00", "--wait", "mined", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "--pg-conninfo"));
    run(&o, (const char *const[]){"conduit-cli", "ping", "--frobnicate", NULL});
    ck_assert_int_eq(o.rc, 2);
    ck_assert_ptr_nonnull(strstr(o.err, "unknown option '--frobnicate'"));
}
END_TEST

static Suite *suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("arguments");
    tcase_add_test(tc, test_no_command_is_usage);
    tcase_add_test(tc, test_help_and_version);
    tcase_add_test(tc, test_unknown_command);
    tcase_add_test(tc, test_store_commands_need_an_id);
    tcase_add_test(tc, test_pg_commands_need_a_txid);
    tcase_add_test(tc, test_daemon_options_are_checked);
    tcase_add_test(tc, test_p2p_commands_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(suite_cli)
