/*
 * cd_config_int.h - private to the config room: what cd_config.c (the option
 * table, values) and cd_config_load.c (file, command line, reload) share.
 */
#ifndef CD_CONFIG_INT_H
#define CD_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cd_config.h"
#include "cd_log.h" /* CD_PRINTF */
#include "cd_err.h" /* CD_WARN_UNUSED */

/* The largest config file read (bytes): the sample with every option and its
 * comments is about 20 KiB; a bigger file is a mistake (a log, a binary). */
#define CD_CONFIG_MAX_FILE (1024 * 1024)

/* Where a configuration came from, so SIGHUP can rebuild it. */
typedef struct cd_config_src {
    char *conf_file; /* NULL: none */
    char **keys;     /* command-line assignments, in order */
    char **values;
    size_t n;
} cd_config_src;

/* Frees a cd_config_src. Accepts NULL. */
void cd_config_src_free(cd_config_src *src);

/* snprintf into err (if err and errlen). */
void cd_config_seterr(char *err, size_t errlen, const char *fmt, ...) CD_PRINTF(3, 4);

/* metrics_listen's short form: a port alone ("9490").
 * Returns: the port (0..65535), or -1 if s is not one. */
int cd_config_port_only(const char *s) CD_WARN_UNUSED;

/* Sets option o from its text (file syntax). 0, or -1 with err. */
int cd_config_set_option(cd_config *cfg, const cd_option *o, const char *value, char *err,
                         size_t errlen) CD_WARN_UNUSED;

/* The char * field of a STRING option. */
char **cd_config_str_field(cd_config *cfg, const cd_option *o);

/* Empties a LIST option. */
void cd_config_list_clear(cd_config *cfg, const cd_option *o);

/* on/off yes/no true/false 1/0. 0, or -1. */
int cd_config_parse_bool(const char *s, int *out) CD_WARN_UNUSED;

/* A size with the largest exact K/M/G/T suffix. */
void cd_config_format_size(uint64_t v, char *buf, size_t len);

#endif /* CD_CONFIG_INT_H */
