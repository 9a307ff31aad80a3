/* Detokenized output with stop strings held back. */
#include "engine/textout.h"

#include "util/utf8.h"

#include <stdlib.h>
#include <string.h>

struct fitlm_textout {
    fitlm_detok_stream *ds;
    char **stop;
    size_t n_stop;
    char *held; /* not yet emitted: a possible start of a stop string */
    size_t n_held, cap_held;
    char *out; /* the last emission */
    size_t cap_out;
    bool stopped;
};

int fitlm_textout_check_stops(const char *const *stop, size_t n_stop, fitlm_error *err) {
    if (n_stop > FITLM_STOP_MAX) return fitlm_fail(err, "at most %d stop strings are allowed", FITLM_STOP_MAX);
    for (size_t i = 0; i < n_stop; i++) {
        if (!stop[i]) return fitlm_fail(err, "stop string %zu is missing", i);
        size_t n = strlen(stop[i]);
        if (n == 0) return fitlm_fail(err, "stop strings must not be empty");
        if (n > FITLM_STOP_MAX_BYTES)
            return fitlm_fail(err, "a stop string is %zu bytes; at most %d are allowed", n, FITLM_STOP_MAX_BYTES);
        if (!fitlm_utf8_valid(stop[i], n)) return fitlm_fail(err, "stop string %zu is not valid UTF-8", i);
    }
    return 0;
}

fitlm_textout *fitlm_textout_new(const fitlm_tokenizer *tok, const char *const *stop, size_t n_stop,
                                 fitlm_error *err) {
    if (fitlm_textout_check_stops(stop, n_stop, err)) return NULL;
    fitlm_textout *t = calloc(1, sizeof *t);
    if (!t) return fitlm_fail(err, "out of memory"), NULL;
    t->ds = fitlm_detok_stream_new(tok, false);
    t->stop = n_stop ? calloc(n_stop, sizeof *t->stop) : NULL;
    if (!t->ds || (n_stop && !t->stop)) goto oom;
    fitlm_detok_stream_continue(t->ds); /* the text continues the prompt */
    t->n_stop = n_stop;
    for (size_t i = 0; i < n_stop; i++)
        if (!(t->stop[i] = strdup(stop[i]))) goto oom;
    return t;
oom:
    fitlm_textout_free(t);
    fitlm_fail(err, "out of memory");
    return NULL;
}

void fitlm_textout_free(fitlm_textout *t) {
    if (!t) return;
    if (t->ds) fitlm_detok_stream_free(t->ds);
    for (size_t i = 0; i < t->n_stop; i++) free(t->stop[i]);
    free(t->stop);
    free(t->held);
    free(t->out);
    free(t);
}

static int reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return -1;
    *buf = b;
    *cap = c;
    return 0;
}

/* Emits held[0..n) and keeps held[n..] */
static void emit(fitlm_textout *t, size_t n, const char **text, size_t *len) {
    memcpy(t->out, t->held, n);
    memmove(t->held, t->held + n, t->n_held - n);
    t->n_held -= n;
    *text = t->out;
    *len = n;
}

int fitlm_textout_push(fitlm_textout *t, int32_t id, const char **text, size_t *len, bool *stopped,
                       fitlm_error *err) {
    *text = "";
    *len = 0;
    *stopped = t->stopped;
    if (t->stopped) return 0;
    const char *piece;
    size_t plen;
    if (fitlm_detok_stream_push(t->ds, id, &piece, &plen, err)) return -1;
    if (reserve(&t->held, &t->cap_held, t->n_held + plen + 1) || reserve(&t->out, &t->cap_out, t->n_held + plen + 1))
        return fitlm_fail(err, "out of memory");
    memcpy(t->held + t->n_held, piece, plen);
    t->n_held += plen;
    if (t->n_stop == 0) {
        emit(t, t->n_held, text, len);
        return 0;
    }
    /* the earliest complete match of any stop string */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        if (sl > t->n_held) continue;
        for (size_t p = 0; p + sl <= t->n_held && p < best; p++)
            if (!memcmp(t->held + p, t->stop[i], sl)) {
                best = p;
                break;
            }
    }
    if (best != SIZE_MAX) {
        t->n_held = best; /* drop the stop string and what follows it */
        emit(t, best, text, len);
        t->stopped = true;
        *stopped = true;
        return 0;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t keep = 0;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        size_t maxk = sl - 1 < t->n_held ? sl - 1 : t->n_held;
        for (size_t k = maxk; k > keep; k--)
            if (!memcmp(t->held + t->n_held - k, t->stop[i], k)) {
                keep = k;
                break;
            }
    }
    emit(t, t->n_held - keep, text, len);
    return 0;
}

void fitlm_textout_finish(fitlm_textout *t, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (t->stopped) return;
    const char *piece;
    size_t plen;
    fitlm_detok_stream_flush(t->ds, &piece, &plen);
    if (reserve(&t->held, &t->cap_held, t->n_held + plen + 1) || reserve(&t->out, &t->cap_out, t->n_held + plen + 1))
        return; /* out of memory: the held text is lost, never overrun */
    memcpy(t->held + t->n_held, piece, plen);
    t->n_held += plen;
    emit(t, t->n_held, text, len);
}
