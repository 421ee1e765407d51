/*
 * waf-server: the OAuth 2.0 WAF/WWSF of TS 24.371.
 *   waf-server [--config FILE]          run until SIGTERM/SIGINT
 *   waf-server --check-config [FILE]    validate the configuration and show every value
 *   waf-server --routes                 list every route of both listeners
 *                                       ("public|admin METHOD PATH"; docs/openapi.yaml)
 * Exit: 0, 1 on a start-up failure (one line on stderr), 2 on a configuration error.
 */
#include "app.h"
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool check = false;
    if (argc == 2 && strcmp(argv[1], "--routes") == 0) {
        waf_routes_print(stdout, "public", waf_app_routes(0));
        waf_routes_print(stdout, "admin", waf_app_routes(1));
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check-config") == 0)
            check = true;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (check && argv[i][0] != '-' && path == NULL)
            path = argv[i];
        else {
            fprintf(stderr,
                    "usage: waf-server [--config FILE] | --check-config [FILE] | --routes\n");
            return 2;
        }
    }
    struct waf_config *cfg;
    char d[512];
    enum waf_config_result r = waf_config_load(path, environ, &cfg, d, sizeof(d));
    if (r != WAF_CONFIG_OK) {
        fprintf(stderr, "waf-server: configuration: %s: %s\n", waf_config_strerror(r), d);
        return 2;
    }
    if (check) {
        waf_config_explain(cfg, stdout);
        printf("configuration ok\n");
        waf_config_free(cfg);
        return 0;
    }
    /* Block the stop signals before any thread starts, then wait for one. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct waf_app app;
    if (waf_app_start(&app, cfg, d, sizeof(d)) != 0) {
        fprintf(stderr, "waf-server: %s\n", d);
        waf_app_stop(&app);
        waf_config_free(cfg);
        return 1;
    }
    fprintf(stderr, "waf-server: public on port %u, admin on port %u, issuer %s\n",
            (unsigned)waf_http_port(app.pub), (unsigned)waf_http_port(app.admin), cfg->issuer);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "waf-server: stopping (signal %d)\n", sig);
    waf_app_stop(&app);
    waf_config_free(cfg);
    return 0;
}
