/* Exercises every function of include/hap.h from C, against the fake token server.
 * Built by tests/c_smoke.rs with -Wall -Wextra -Werror and ASan/UBSan.
 * usage: smoke <token_url> <tmpdir>
 */
#include "hap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static long long now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <token_url> <tmpdir>\n", argv[0]);
    return 2;
  }
  const char *url = argv[1];
  const char *dir = argv[2];
  char path[4096], config[8192];

  CHECK(hap_abi_version() == HAP_ABI_VERSION);
  CHECK(strncmp(hap_version(), "hap ", 4) == 0);
  CHECK(strcmp(hap_status_name(HAP_STATUS_REAUTH_REQUIRED), "HAP_STATUS_REAUTH_REQUIRED") == 0);
  CHECK(strcmp(hap_status_name(12345), "HAP_STATUS_UNKNOWN") == 0);
  hap_free(NULL);
  hap_pool_free(NULL);

  /* An expired Claude Code login: the first resolve refreshes it. */
  snprintf(path, sizeof path, "%s/claude", dir);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/claude/.credentials.json", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return 1;
  fprintf(f,
          "{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fake-c1\", "
          "\"refreshToken\": \"sk-ant-ort01-fake-c1\", \"expiresAt\": %lld, "
          "\"subscriptionType\": \"pro\"}}\n",
          now_ms() - 1000);
  fclose(f);

  /* Bad input: a status and an error JSON, never a crash. */
  hap_pool *pool = (hap_pool *)0x1;
  char *err = (char *)0x1;
  CHECK(hap_pool_open("{\"pool_path\": \"relative.json\"}", &pool, &err) == HAP_STATUS_INVALID_ARGUMENT);
  CHECK(pool == NULL);
  CHECK(err != NULL && strstr(err, "\"name\":\"HAP_STATUS_INVALID_ARGUMENT\"") != NULL);
  hap_free(err);
  CHECK(hap_pool_open(NULL, NULL, NULL) == HAP_STATUS_INVALID_ARGUMENT);

  snprintf(config, sizeof config,
           "{\"pool_path\": \"%s/hermes/auth.json\", \"credentials_path\": \"%s\", "
           "\"token_urls\": [\"%s\"], \"lock_timeout_ms\": 10000}",
           dir, path, url);
  err = NULL;
  hap_status st = hap_pool_open(config, &pool, &err);
  CHECK(st == HAP_STATUS_OK);
  if (st != HAP_STATUS_OK) {
    fprintf(stderr, "open: %s\n", err ? err : "(no error)");
    hap_free(err);
    return 1;
  }

  char *result = NULL;
  st = hap_resolve_token(pool, NULL, &result, &err);
  CHECK(st == HAP_STATUS_OK);
  CHECK(result != NULL && strstr(result, "\"refreshed\":true") != NULL);
  CHECK(result != NULL && strstr(result, "\"access_token\":\"sk-ant-oat01-fake-") != NULL);
  hap_free(result);

  st = hap_resolve_token(pool, "{\"min_validity_ms\": 1000}", &result, NULL);
  CHECK(st == HAP_STATUS_OK && strstr(result, "\"refreshed\":false") != NULL);
  /* Pull the credential id out of the result for the report. */
  char id[16] = {0};
  const char *p = strstr(result, "\"credential_id\":\"");
  CHECK(p != NULL);
  if (p) memcpy(id, p + 17, 6);
  hap_free(result);

  CHECK(hap_resolve_token(pool, "{\"bogus\": 1}", &result, NULL) == HAP_STATUS_INVALID_ARGUMENT);
  CHECK(result == NULL);
  CHECK(hap_resolve_token(NULL, NULL, &result, NULL) == HAP_STATUS_INVALID_ARGUMENT);

  char failure[256];
  snprintf(failure, sizeof failure,
           "{\"credential_id\": \"%s\", \"status_code\": 429, \"reason\": \"rate_limit_error\", \"retry_after_s\": 30}", id);
  st = hap_report_failure(pool, failure, &result, &err);
  CHECK(st == HAP_STATUS_OK);
  CHECK(result != NULL && strstr(result, "\"last_status\":\"exhausted\"") != NULL);
  hap_free(result);

  st = hap_resolve_token(pool, NULL, &result, &err);
  CHECK(st == HAP_STATUS_NO_CREDENTIAL);
  CHECK(result == NULL && err != NULL && strstr(err, "\"retry_at_ms\":") != NULL);
  hap_free(err);

  st = hap_pool_status(pool, &result, NULL);
  CHECK(st == HAP_STATUS_OK && strstr(result, "\"credentials\":[") != NULL);
  CHECK(strstr(result, "fake") == NULL); /* no token in the status */
  hap_free(result);

  CHECK(hap_report_failure(pool, "{\"credential_id\": \"nope00\", \"status_code\": 401}", &result, NULL) ==
        HAP_STATUS_UNKNOWN_CREDENTIAL);

  hap_pool_free(pool);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("C smoke test: all checks passed\n");
  return 0;
}
