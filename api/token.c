/* api/token.c: the bearer token: read from --token-file at start and on SIGHUP (main
 * thread), compared against a request's Authorization header (HTTP threads) under
 * token_mu, so that a reload never shows a request half a token. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* "Bearer <token>" (the scheme in any case, RFC 9110 11.1), compared in constant time:
 * the time taken does not depend on where the two differ. */
int api__token_ok(api_server *s, const char *auth)
{
    char tok[256]; /* a copy, so that SIGHUP may replace s->token meanwhile; wiped after */
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    pthread_mutex_lock(&s->token_mu);
    memcpy(tok, s->token, sizeof tok);
    pthread_mutex_unlock(&s->token_mu);
    const char *given = auth + 7;
    size_t n = strnlen(tok, sizeof tok), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(tok[i] ^ (i < m ? given[i] : 0));
    explicit_bzero(tok, sizeof tok);
    return diff == 0;
}

int api_reload_token(api_server *s, rqd_err *err)
{
    char line[512] = "";
    if (s->o.token_file == NULL || s->o.token_file[0] == '\0')
        return RQD_OK;
    FILE *f = fopen(s->o.token_file, "r");
    if (f == NULL)
        return rqd_err_set(err, RQD_EINVAL, "token_file", "cannot read the token file %s: %s",
                           s->o.token_file, strerror(errno));
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    fclose(f);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n == 0 || n >= sizeof s->token)
        return rqd_err_set(err, RQD_EINVAL, "token_file", "the token file %s must hold a token "
                           "of 1 to %zu characters on its first line", s->o.token_file,
                           sizeof s->token - 1);
    pthread_mutex_lock(&s->token_mu);
    memcpy(s->token, line, n + 1);
    s->have_token = 1;
    pthread_mutex_unlock(&s->token_mu);
    return RQD_OK;
}
