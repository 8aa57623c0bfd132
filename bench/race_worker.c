/*
 * One process of the hap side of the race (bench/race.py), straight on the C ABI.
 *
 *   HAP_BENCH_CONFIG='{"pool_path": ...}' bench/build/race_worker
 *
 * Prints {"ready": pid} once loaded, reads one stdin line holding the start instant (epoch
 * ms), sleeps until then, opens the pool, resolves once and prints one JSON line:
 * {"tool": "hap-c", "pid", "ok", "t_done_ms", "refreshed", "token_hash", "error"}.
 * token_hash is FNV-1a 64 of the access token (only compared within one race); the token
 * itself is never printed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hap.h"

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The value of a string key in the flat result JSON (no escapes in tokens), or NULL. */
static const char *find_string(const char *json, const char *key, size_t *len) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p += strlen(pat);
    const char *end = strchr(p, '"');
    if (!end) return NULL;
    *len = (size_t)(end - p);
    return p;
}

int main(void) {
    const char *cfg = getenv("HAP_BENCH_CONFIG");
    printf("{\"ready\": %d}\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 2;
    int64_t wait = strtoll(line, NULL, 10) - now_ms();
    if (wait > 0) {
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    hap_pool *pool = NULL;
    char *out = NULL, *err = NULL;
    hap_status st = hap_pool_open(cfg, &pool, &err);
    if (st == 0) st = hap_resolve_token(pool, NULL, &out, &err);
    int64_t done = now_ms();
    if (st != 0) {
        printf("{\"tool\": \"hap-c\", \"pid\": %d, \"ok\": false, \"t_done_ms\": %lld, "
               "\"error\": \"%s\"}\n",
               (int)getpid(), (long long)done, hap_status_name(st));
        hap_free(err);
        hap_pool_free(pool);
        return 1;
    }
    size_t n = 0;
    const char *tok = find_string(out, "access_token", &n);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; tok && i < n; i++) h = (h ^ (unsigned char)tok[i]) * 1099511628211ULL;
    int refreshed = strstr(out, "\"refreshed\":true") != NULL;
    printf("{\"tool\": \"hap-c\", \"pid\": %d, \"ok\": %s, \"t_done_ms\": %lld, "
           "\"refreshed\": %s, \"token_hash\": \"%016llx\"}\n",
           (int)getpid(), tok ? "true" : "false", (long long)done,
           refreshed ? "true" : "false", (unsigned long long)h);
    hap_free(out);
    hap_pool_free(pool);
    return tok ? 0 : 1;
}
