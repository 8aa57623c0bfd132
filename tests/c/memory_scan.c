/* A C host whose memory tests/memory_scan.rs scans for token copies after hap is done.
 * usage: memory_scan <config_json>
 *
 * Opens a pool on an expired login, resolves once (hap refreshes) and hap_free's the result;
 * writes "open\n" and waits for a byte on stdin (the scanner looks at the open pool); then
 * hap_pool_free's the pool, writes "ready\n" and blocks until stdin closes (the scanner
 * looks again).
 *
 * This host must never hold a token copy of its own, or the scan would blame hap for it:
 * it never prints, copies or receives a token (the config carries paths and a URL only; the
 * test writes the credentials file), checks the result in place with strstr, and writes
 * with write(2), not stdio, so no stdio buffer is ever allocated.
 */
#include "hap.h"

#include <string.h>
#include <unistd.h>

static void say(const char *s) {
  ssize_t n = write(2, s, strlen(s));
  (void)n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    say("usage: memory_scan <config_json>\n");
    return 2;
  }
  hap_pool *pool = NULL;
  char *err = NULL, *result = NULL;
  hap_status st = hap_pool_open(argv[1], &pool, &err);
  if (st != HAP_STATUS_OK) {
    /* Error JSON never holds a token. */
    say("hap_pool_open failed: ");
    say(err ? err : "(no error)");
    say("\n");
    hap_free(err);
    return 1;
  }
  st = hap_resolve_token(pool, NULL, &result, &err);
  int refreshed = st == HAP_STATUS_OK && result != NULL && strstr(result, "\"refreshed\":true") != NULL;
  if (st != HAP_STATUS_OK) {
    say("hap_resolve_token failed: ");
    say(err ? err : "(no error)");
    say("\n");
  }
  hap_free(result);
  hap_free(err);
  if (!refreshed) {
    say("the resolve did not refresh\n");
    return 1;
  }

  char buf[16];
  if (write(1, "open\n", 5) != 5 || read(0, buf, 1) != 1) return 1;
  hap_pool_free(pool);
  if (write(1, "ready\n", 6) != 6) return 1;
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
