/* The C worker of the stress suite: plain C against include/hap.h and libhap.so.
 *
 *   worker loop     resolve repeatedly until HAP_STRESS_UNTIL_MS (or once when unset);
 *                   print one summary JSON line (the format every stress worker shares)
 *   worker hot N    one resolve (it may refresh), then N hot resolves; print the RSS at
 *                   every tenth of N as JSON lines, then a summary line
 *   worker leak     every function of hap.h, three refreshes, resolves on nine handles, a
 *                   401 report, the refresh it asks for, a second 401 that benches the
 *                   credential, bad input, all freed: for valgrind
 *
 * Environment: HAP_STRESS_CONFIG (config JSON, required), HAP_STRESS_START_AT_MS,
 * HAP_STRESS_UNTIL_MS, HAP_STRESS_MIN_VALIDITY_MS, HAP_STRESS_PAUSE_MS (mean pause between
 * resolves, default 20), HAP_STRESS_THREADS (loop mode: threads resolving concurrently on
 * one pool handle, default 1). Never prints a token.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -I include stress/worker.c -L target/release -lhap \
 *          -Wl,-rpath,$PWD/target/release -lpthread -o stress/build/c-worker
 */
#define _POSIX_C_SOURCE 200809L
#include "hap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#define MAX_ERR_NAMES 16
#define MAX_MESSAGES 5

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms) {
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static long long env_ll(const char *name, long long dflt) {
  const char *v = getenv(name);
  return (v && *v) ? atoll(v) : dflt;
}

/* The value of a string key in a flat JSON object written by libhap (no escapes needed for
 * the keys read here: ids, status names, tokens). Copies at most cap-1 bytes. */
static int json_str(const char *json, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *p = strstr(json, pat);
  if (!p) return 0;
  p += strlen(pat);
  size_t n = 0;
  while (p[n] && !(p[n] == '"' && (n == 0 || p[n - 1] != '\\'))) n++;
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = 0;
  return 1;
}

static long long json_num(const char *json, const char *key, long long dflt) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(json, pat);
  if (!p) return dflt;
  p += strlen(pat);
  if (*p < '0' || *p > '9') return dflt;
  return atoll(p);
}

/* Writes s as a JSON string (quotes and backslashes escaped, control bytes dropped). */
static void put_json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') {
      putchar('\\');
      putchar(*s);
    } else if ((unsigned char)*s >= 0x20) {
      putchar(*s);
    }
  }
  putchar('"');
}

struct summary {
  long long calls, ok, refreshed, token_changes, expired_served, max_call_ms, total_call_ms;
  int n_names;
  char names[MAX_ERR_NAMES][48];
  long long counts[MAX_ERR_NAMES];
  int n_messages;
  char messages[MAX_MESSAGES][240];
  char last_fp[32]; /* a short, non-secret digest of the last access token */
};

static void note_error(struct summary *s, const char *err) {
  char name[48] = "HAP_STATUS_UNKNOWN", msg[200] = "";
  if (err) {
    json_str(err, "name", name, sizeof name);
    json_str(err, "message", msg, sizeof msg);
  }
  int i;
  for (i = 0; i < s->n_names && strcmp(s->names[i], name) != 0; i++) {
  }
  if (i == s->n_names && i < MAX_ERR_NAMES) {
    snprintf(s->names[i], sizeof s->names[i], "%s", name);
    s->n_names++;
  }
  if (i < MAX_ERR_NAMES) s->counts[i]++;
  if (s->n_messages < MAX_MESSAGES) {
    snprintf(s->messages[s->n_messages++], sizeof s->messages[0], "%s: %s", name, msg);
  }
}

/* FNV-1a of the token, enough to tell two tokens apart without printing either. */
static void token_fp(const char *tok, char out[32]) {
  unsigned long long h = 1469598103934665603ULL;
  for (; *tok; tok++) h = (h ^ (unsigned char)*tok) * 1099511628211ULL;
  snprintf(out, 32, "%016llx", h);
}

static void one_resolve(const hap_pool *pool, const char *request, struct summary *s) {
  char *result = NULL, *err = NULL;
  long long t0 = now_ms();
  hap_status st = hap_resolve_token(pool, request, &result, &err);
  long long dt = now_ms() - t0;
  s->calls++;
  s->total_call_ms += dt;
  if (dt > s->max_call_ms) s->max_call_ms = dt;
  if (st == HAP_STATUS_OK) {
    s->ok++;
    if (strstr(result, "\"refreshed\":true")) s->refreshed++;
    long long exp = json_num(result, "expires_at_ms", -1);
    if (exp >= 0 && exp <= now_ms()) s->expired_served++;
    char tok[512], fp[32];
    if (json_str(result, "access_token", tok, sizeof tok)) {
      token_fp(tok, fp);
      memset(tok, 0, sizeof tok);
      if (s->last_fp[0] && strcmp(fp, s->last_fp) != 0) s->token_changes++;
      memcpy(s->last_fp, fp, sizeof fp);
    }
    hap_free(result);
  } else {
    note_error(s, err);
    hap_free(err);
  }
}

static void print_summary(const struct summary *s) {
  printf("{\"lang\": \"c\", \"pid\": %d, \"calls\": %lld, \"ok\": %lld, \"refreshed\": %lld, "
         "\"token_changes\": %lld, \"expired_served\": %lld, \"max_call_ms\": %lld, "
         "\"total_call_ms\": %lld, \"errors\": {",
         (int)getpid(), s->calls, s->ok, s->refreshed, s->token_changes, s->expired_served,
         s->max_call_ms, s->total_call_ms);
  for (int i = 0; i < s->n_names; i++) {
    printf("%s", i ? ", " : "");
    put_json_str(s->names[i]);
    printf(": %lld", s->counts[i]);
  }
  printf("}, \"messages\": [");
  for (int i = 0; i < s->n_messages; i++) {
    printf("%s", i ? ", " : "");
    put_json_str(s->messages[i]);
  }
  printf("]}\n");
  fflush(stdout);
}

static hap_pool *open_pool(struct summary *s) {
  const char *cfg = getenv("HAP_STRESS_CONFIG");
  if (!cfg) {
    note_error(s, "{\"name\":\"HAP_STATUS_INVALID_ARGUMENT\",\"message\":\"HAP_STRESS_CONFIG unset\"}");
    return NULL;
  }
  hap_pool *pool = NULL;
  char *err = NULL;
  if (hap_pool_open(cfg, &pool, &err) != HAP_STATUS_OK) {
    s->calls++;
    note_error(s, err);
    hap_free(err);
    return NULL;
  }
  return pool;
}

static void build_request(char *req, size_t cap) {
  long long mv = env_ll("HAP_STRESS_MIN_VALIDITY_MS", -1);
  if (mv >= 0)
    snprintf(req, cap, "{\"min_validity_ms\": %lld}", mv);
  else
    req[0] = 0;
}

struct loop_ctx {
  const hap_pool *pool;
  const char *req;
  long long until, pause;
  unsigned seed;
  struct summary s;
};

static void *loop_thread(void *arg) {
  struct loop_ctx *c = arg;
  do {
    one_resolve(c->pool, c->req, &c->s);
    if (c->until) sleep_ms(c->pause > 0 ? rand_r(&c->seed) % (2 * c->pause + 1) : 0);
  } while (c->until && now_ms() < c->until);
  return NULL;
}

static void merge(struct summary *into, const struct summary *from) {
  into->calls += from->calls;
  into->ok += from->ok;
  into->refreshed += from->refreshed;
  into->token_changes += from->token_changes;
  into->expired_served += from->expired_served;
  into->total_call_ms += from->total_call_ms;
  if (from->max_call_ms > into->max_call_ms) into->max_call_ms = from->max_call_ms;
  for (int i = 0; i < from->n_names; i++) {
    int j;
    for (j = 0; j < into->n_names && strcmp(into->names[j], from->names[i]) != 0; j++) {
    }
    if (j == into->n_names && j < MAX_ERR_NAMES) {
      memcpy(into->names[j], from->names[i], sizeof into->names[j]);
      into->n_names++;
    }
    if (j < MAX_ERR_NAMES) into->counts[j] += from->counts[i];
  }
  for (int i = 0; i < from->n_messages && into->n_messages < MAX_MESSAGES; i++)
    memcpy(into->messages[into->n_messages++], from->messages[i], sizeof into->messages[0]);
}

/* HAP_STRESS_THREADS (default 1) threads resolve concurrently on one pool handle. */
static int run_loop(void) {
  struct summary s;
  memset(&s, 0, sizeof s);
  hap_pool *pool = open_pool(&s);
  if (!pool) {
    print_summary(&s);
    return 1;
  }
  char req[128];
  build_request(req, sizeof req);
  int n = (int)env_ll("HAP_STRESS_THREADS", 1);
  if (n < 1) n = 1;
  if (n > 64) n = 64;
  struct loop_ctx *ctx = calloc((size_t)n, sizeof *ctx);
  pthread_t *tids = calloc((size_t)n, sizeof *tids);
  if (!ctx || !tids) return 1;
  sleep_ms(env_ll("HAP_STRESS_START_AT_MS", 0) - now_ms());
  for (int i = 0; i < n; i++) {
    ctx[i].pool = pool;
    ctx[i].req = req[0] ? req : NULL;
    ctx[i].until = env_ll("HAP_STRESS_UNTIL_MS", 0);
    ctx[i].pause = env_ll("HAP_STRESS_PAUSE_MS", 20);
    ctx[i].seed = (unsigned)getpid() * 31u + (unsigned)i;
    if (i > 0 && pthread_create(&tids[i], NULL, loop_thread, &ctx[i]) != 0) return 1;
  }
  loop_thread(&ctx[0]);
  for (int i = 1; i < n; i++) pthread_join(tids[i], NULL);
  for (int i = 0; i < n; i++) merge(&s, &ctx[i].s);
  /* token_changes counts per thread; last_fp is not merged */
  hap_pool_free(pool);
  free(ctx);
  free(tids);
  print_summary(&s);
  return s.ok == s.calls ? 0 : 1;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = atol(line + 6);
      break;
    }
  }
  fclose(f);
  return kib;
}

static int run_hot(long long n) {
  struct summary s;
  memset(&s, 0, sizeof s);
  hap_pool *pool = open_pool(&s);
  if (!pool) {
    print_summary(&s);
    return 1;
  }
  char req[128];
  build_request(req, sizeof req);
  one_resolve(pool, req[0] ? req : NULL, &s);
  long long step = n / 10 > 0 ? n / 10 : 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long long i = 1; i <= n; i++) {
    one_resolve(pool, req[0] ? req : NULL, &s);
    if (i % step == 0 || i == n) {
      clock_gettime(CLOCK_MONOTONIC, &t1);
      double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
      printf("{\"resolves\": %lld, \"rss_kib\": %ld, \"ns_per_resolve\": %.0f}\n", i, rss_kib(),
             secs * 1e9 / (double)i);
      fflush(stdout);
    }
  }
  hap_pool_free(pool);
  print_summary(&s);
  return s.ok == s.calls ? 0 : 1;
}

/* Every function of hap.h, including the failure paths, with everything freed: valgrind's
 * leak check must find nothing. */
static int run_leak(void) {
  struct summary s;
  memset(&s, 0, sizeof s);
  int bad = 0;
  if (hap_abi_version() != HAP_ABI_VERSION) bad++;
  if (strncmp(hap_version(), "hap ", 4) != 0) bad++;
  if (strcmp(hap_status_name(12345), "HAP_STATUS_UNKNOWN") != 0) bad++;
  hap_free(NULL);
  hap_pool_free(NULL);

  hap_pool *pool = NULL;
  char *err = NULL, *out = NULL;
  if (hap_pool_open("{\"pool_path\": \"relative.json\"}", &pool, &err) != HAP_STATUS_INVALID_ARGUMENT)
    bad++;
  hap_free(err);
  err = NULL;
  if (hap_pool_open("not json", &pool, NULL) != HAP_STATUS_INVALID_ARGUMENT) bad++;

  pool = open_pool(&s);
  if (!pool) {
    print_summary(&s);
    return 1;
  }
  one_resolve(pool, NULL, &s); /* the credentials file is expired: a refresh */
  for (int i = 0; i < 200; i++) one_resolve(pool, NULL, &s);
  one_resolve(pool, "{\"min_validity_ms\": 1000}", &s);
  one_resolve(pool, "{\"force_refresh\": true}", &s); /* a second refresh */
  if (hap_resolve_token(pool, "{\"bogus\": 1}", &out, &err) != HAP_STATUS_INVALID_ARGUMENT) bad++;
  hap_free(err);
  err = NULL;
  /* More handles over the same stores, one at a time and two at once: a per-handle leak
   * would show up as one lost block per handle. */
  for (int k = 0; k < 4; k++) {
    hap_pool *a = open_pool(&s), *b = open_pool(&s);
    if (!a || !b) bad++;
    for (int i = 0; a && b && i < 50; i++) {
      one_resolve(a, NULL, &s);
      one_resolve(b, "{\"min_validity_ms\": 60000}", &s);
    }
    if (a && hap_pool_status(a, &out, NULL) == HAP_STATUS_OK) hap_free(out);
    out = NULL;
    hap_pool_free(a);
    hap_pool_free(b);
  }
  if (hap_pool_status(pool, &out, &err) != HAP_STATUS_OK) bad++;
  char id[64] = "";
  if (out) json_str(out, "credential_id", id, sizeof id);
  hap_free(out);
  out = NULL;
  /* A first 401 (even right after a refresh) gets one refresh; a 401 on the token that
   * refresh produced benches the credential; then a resolve fails cleanly. */
  char failure[256];
  snprintf(failure, sizeof failure,
           "{\"credential_id\": \"%s\", \"status_code\": 401, \"message\": \"sk-ant-oat01-fake-x\"}", id);
  for (int round = 0; round < 2; round++) {
    if (hap_report_failure(pool, failure, &out, &err) != HAP_STATUS_OK) bad++;
    hap_free(out);
    hap_free(err);
    out = err = NULL;
    if (round == 0) one_resolve(pool, NULL, &s); /* the third refresh */
  }
  if (hap_resolve_token(pool, NULL, &out, &err) != HAP_STATUS_NO_CREDENTIAL) bad++;
  hap_free(out);
  hap_free(err);
  out = err = NULL;
  if (hap_report_failure(pool, "{\"credential_id\": \"nope\", \"status_code\": 429}", &out, &err) !=
      HAP_STATUS_UNKNOWN_CREDENTIAL)
    bad++;
  hap_free(out);
  hap_free(err);
  hap_pool_free(pool);
  print_summary(&s);
  if (bad) fprintf(stderr, "leak mode: %d unexpected statuses\n", bad);
  return (bad == 0 && s.ok == s.calls && s.refreshed == 3) ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "loop";
  if (strcmp(mode, "loop") == 0) return run_loop();
  if (strcmp(mode, "hot") == 0) return run_hot(argc > 2 ? atoll(argv[2]) : 1000000);
  if (strcmp(mode, "leak") == 0) return run_leak();
  fprintf(stderr, "usage: %s loop | hot N | leak\n", argv[0]);
  return 2;
}
