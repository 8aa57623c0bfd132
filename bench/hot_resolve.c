/*
 * Hot resolve through the C ABI: a loop of hap_resolve_token + hap_free on a valid token
 * (no lock, no POST, no system call). Prints the median over batches of the per-call time.
 *
 *   bench/build/hot_resolve '<config json>' [batches=31] [calls per batch=20000]
 *
 * Built by bench/run_all.sh: gcc -O2 -I include bench/hot_resolve.c -L target/release -lhap
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hap.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void resolve_once(const hap_pool *pool) {
    char *out = NULL, *err = NULL;
    hap_status st = hap_resolve_token(pool, NULL, &out, &err);
    if (st != 0) {
        fprintf(stderr, "hap_resolve_token: %s %s\n", hap_status_name(st), err ? err : "");
        exit(1);
    }
    if (strstr(out, "\"refreshed\":true")) {
        fprintf(stderr, "a refresh happened during the benchmark\n");
        exit(1);
    }
    hap_free(out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG_JSON [BATCHES] [CALLS]\n", argv[0]);
        return 2;
    }
    int batches = argc > 2 ? atoi(argv[2]) : 31;
    int calls = argc > 3 ? atoi(argv[3]) : 20000;
    if (batches < 1 || batches > 10000 || calls < 1) return 2;
    hap_pool *pool = NULL;
    char *err = NULL;
    hap_status st = hap_pool_open(argv[1], &pool, &err);
    if (st != 0) {
        fprintf(stderr, "hap_pool_open: %s %s\n", hap_status_name(st), err ? err : "");
        hap_free(err);
        return 1;
    }
    for (int i = 0; i < calls; i++) resolve_once(pool); /* warm up: seeds the pool file */
    double *per_call = malloc(sizeof(double) * (size_t)batches);
    for (int b = 0; b < batches; b++) {
        double t0 = now_ns();
        for (int i = 0; i < calls; i++) resolve_once(pool);
        per_call[b] = (now_ns() - t0) / calls;
    }
    qsort(per_call, (size_t)batches, sizeof(double), cmp);
    printf("{\"median_ns\": %.1f, \"min_ns\": %.1f, \"max_ns\": %.1f, \"batches\": %d, "
           "\"calls\": %d}\n",
           per_call[batches / 2], per_call[0], per_call[batches - 1], batches, calls);
    free(per_call);
    hap_pool_free(pool);
    return 0;
}
