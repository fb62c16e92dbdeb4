/*
 * main.c - conduitd entry point (temporary minimal version; the operations
 * module replaces it with the table-driven configuration).
 */
#include "daemon/cd_config.h"
#include "daemon/cd_controller.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.net = btc_net_get(BTC_NET_MAIN);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--regtest") == 0)
            cfg.net = btc_net_get(BTC_NET_REGTEST);
    }
    return cd_controller_run(&cfg);
}
