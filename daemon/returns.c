/* daemon/returns.c: returns from transitions (returns.h). */
#include "returns.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_limits.h"
#include "internal.h"

struct rqd_rstream {
    char env_id[136];       /* "" for the default stream */
    double ret;
    long long length;       /* 0: no episode under way (the stream leaves the table) */
    char started_at[32];
    long long used;         /* the table's clock at its last post */
    int existed;            /* plan copies: the table has this stream */
};

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of id, or of the empty slot where it would go (cap > 0). */
static int slot_of(rqd_rstream *const *slots, int cap, const char *id)
{
    int i = (int)(hash_of(id) & (uint64_t)(cap - 1));
    while (slots[i] && strcmp(slots[i]->env_id, id) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static rqd_rstream *find(const rqd_returns *t, const char *id)
{
    return t->cap ? t->slots[slot_of(t->slots, t->cap, id)] : NULL;
}

/* Linear probing's deletion: the entries after it that hash at or before it move up. */
static void remove_at(rqd_returns *t, int i)
{
    free(t->slots[i]);
    t->slots[i] = NULL;
    t->n--;
    for (int j = (i + 1) & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
        int home = (int)(hash_of(t->slots[j]->env_id) & (uint64_t)(t->cap - 1));
        /* Does home lie cyclically in (i, j]? Then the entry stays. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

static void insert(rqd_returns *t, rqd_rstream *s)
{
    t->slots[slot_of(t->slots, t->cap, s->env_id)] = s;
    t->n++;
}

int rqd_returns_load(rqd_returns *t, store *s, int64_t agent, rqd_err *err)
{
    store_stream_row *rows = NULL;
    rqd_returns_plan p;
    int n = 0, rc = store_stream_list(s, agent, &rows, &n, err);
    if (rc < 0)
        return rc;
    memset(&p, 0, sizeof p);
    /* As a plan of new streams, so that the table grows the one way it always does. */
    int cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    if ((p.fresh = calloc((size_t)(n ? n : 1), sizeof *p.fresh)) == NULL ||
        (p.grown = calloc((size_t)cap, sizeof *p.grown)) == NULL)
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory loading transition streams");
    p.grown_cap = cap;
    for (int i = 0; rc == RQD_OK && i < n; i++) {
        rqd_rstream *x = calloc(1, sizeof *x);
        if (x == NULL) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory loading transition streams");
            break;
        }
        snprintf(x->env_id, sizeof x->env_id, "%s", rows[i].env_id);
        x->ret = rows[i].ret;
        x->length = rows[i].length;
        snprintf(x->started_at, sizeof x->started_at, "%s", rows[i].started_at);
        p.fresh[p.n_fresh++] = x;
    }
    free(rows);
    if (rc < 0) {
        rqd_returns_plan_free(&p);
        return rc;
    }
    rqd_returns_apply(t, &p);
    return RQD_OK;
}

void rqd_returns_free(rqd_returns *t)
{
    for (int i = 0; i < t->cap; i++)
        free(t->slots[i]);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

void rqd_returns_plan_free(rqd_returns_plan *p)
{
    for (int i = 0; i < p->n_after; i++)
        free(p->after[i]);
    for (int i = 0; i < p->n_fresh; i++)
        free(p->fresh[i]);
    free(p->after);
    free(p->fresh);
    free(p->evicted);
    free(p->ended);
    free(p->grown);
    memset(p, 0, sizeof *p);
}

typedef struct {
    const store_transition *tr;
    int i;
} item;

static const char *id_of(const store_transition *t)
{
    return t->env_id ? t->env_id : "";
}

static int by_stream(const void *x, const void *y)
{
    const item *a = x, *b = y;
    int c = strcmp(id_of(a->tr), id_of(b->tr));
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

static int by_id(const void *key, const void *elem)
{
    return strcmp(key, (*(rqd_rstream *const *)elem)->env_id);
}

static int by_use(const void *x, const void *y)
{
    const rqd_rstream *a = *(rqd_rstream *const *)x, *b = *(rqd_rstream *const *)y;
    return (a->used > b->used) - (a->used < b->used);
}

static int by_end(const void *x, const void *y)
{
    const store_episode_row *a = x, *b = y; /* .abandoned holds the ending index meanwhile */
    return (a->abandoned > b->abandoned) - (a->abandoned < b->abandoned);
}

int rqd_returns_prepare(const rqd_returns *t, const store_transition *tr, int n, const char *now,
                     rqd_returns_plan *p, rqd_err *err)
{
    item *items = malloc(sizeof *items * (size_t)(n > 0 ? n : 1));
    int rc = RQD_OK, n_new = 0;

    memset(p, 0, sizeof *p);
    p->ended = calloc((size_t)(n > 0 ? n : 1), sizeof *p->ended);
    p->after = calloc((size_t)(n > 0 ? n : 1), sizeof *p->after);
    if (items == NULL || p->ended == NULL || p->after == NULL)
        goto oom;
    for (int i = 0; i < n; i++)
        items[i] = (item){&tr[i], i};
    qsort(items, (size_t)n, sizeof *items, by_stream);

    /* Each stream's transitions in order: its episodes that end, what it holds after. */
    for (int g = 0; g < n;) {
        const char *id = id_of(items[g].tr);
        const rqd_rstream *old = find(t, id);
        rqd_rstream *x = calloc(1, sizeof *x);
        if (x == NULL)
            goto oom;
        if (old)
            *x = *old;
        else
            snprintf(x->env_id, sizeof x->env_id, "%s", id);
        x->existed = old != NULL;
        x->used = t->clock + 1;
        p->after[p->n_after++] = x;
        for (; g < n && strcmp(id_of(items[g].tr), id) == 0; g++) {
            const store_transition *y = items[g].tr;
            if (x->length == 0) {
                x->ret = 0;
                snprintf(x->started_at, sizeof x->started_at, "%s", now);
            }
            x->ret += y->reward;
            x->length++;
            if (y->terminated || y->truncated) {
                store_episode_row *e = &p->ended[p->n_ended++];
                rqd__episode_id(e->id);
                e->mode = STORE_EP_EXPLORE;
                e->ret = x->ret;
                e->length = x->length;
                snprintf(e->started_at, sizeof e->started_at, "%s", x->started_at);
                snprintf(e->ended_at, sizeof e->ended_at, "%s", now);
                e->source = STORE_SRC_TRANSITIONS;
                snprintf(e->env_id, sizeof e->env_id, "%s", id);
                e->abandoned = items[g].i; /* the post's order, until sorted below */
                x->length = 0;
            }
        }
        n_new += !x->existed && x->length > 0;
    }
    qsort(p->ended, (size_t)p->n_ended, sizeof *p->ended, by_end);
    for (int i = 0; i < p->n_ended; i++)
        p->ended[i].abandoned = 0;

    /* Past RQD_MAX_STREAMS, the streams idle the longest give way (their episode so far
     * is dropped), never one this post uses. */
    int n_gone = 0;
    for (int i = 0; i < p->n_after; i++)
        n_gone += p->after[i]->existed && p->after[i]->length == 0;
    int excess = t->n - n_gone + n_new - RQD_MAX_STREAMS;
    if (excess > 0) {
        rqd_rstream **idle = malloc(sizeof *idle * (size_t)(t->n ? t->n : 1));
        int k = 0;
        if (idle == NULL)
            goto oom;
        for (int i = 0; i < t->cap; i++) /* p->after is in env_id order (by_stream) */
            if (t->slots[i] && !bsearch(t->slots[i]->env_id, p->after, (size_t)p->n_after,
                                        sizeof *p->after, by_id))
                idle[k++] = t->slots[i];
        qsort(idle, (size_t)k, sizeof *idle, by_use);
        p->evicted = idle;
        p->n_evicted = excess < k ? excess : k;
    }
    /* The table's room: at most half full. */
    int after = t->n - n_gone - p->n_evicted + n_new;
    if (2 * after + 2 > t->cap) {
        int cap = t->cap ? t->cap : 16;
        while (cap < 2 * after + 2)
            cap *= 2;
        if ((p->grown = calloc((size_t)cap, sizeof *p->grown)) == NULL)
            goto oom;
        p->grown_cap = cap;
    }
    free(items);
    return RQD_OK;
oom:
    free(items);
    rqd_returns_plan_free(p);
    return rqd_err_set(err, rc ? rc : RQD_ENOMEM, "", "out of memory adding up returns");
}

int rqd_returns_write(store *s, int64_t agent, const rqd_returns_plan *p, rqd_err *err)
{
    int rc = RQD_OK;
    for (int i = 0; rc == RQD_OK && i < p->n_ended; i++)
        rc = store_episode_put(s, agent, &p->ended[i], 0, 0, err);
    for (int i = 0; rc == RQD_OK && i < p->n_after; i++) {
        const rqd_rstream *x = p->after[i];
        if (x->length > 0) {
            store_stream_row row = {"", x->ret, x->length, ""};
            snprintf(row.env_id, sizeof row.env_id, "%s", x->env_id);
            snprintf(row.started_at, sizeof row.started_at, "%s", x->started_at);
            rc = store_stream_put(s, agent, &row, err);
        } else if (x->existed) {
            rc = store_stream_delete(s, agent, x->env_id, err);
        }
    }
    for (int i = 0; rc == RQD_OK && i < p->n_evicted; i++)
        rc = store_stream_delete(s, agent, p->evicted[i]->env_id, err);
    return rc;
}

void rqd_returns_apply(rqd_returns *t, rqd_returns_plan *p)
{
    /* Out first: the ended streams and those that give way. */
    for (int i = 0; i < p->n_evicted; i++)
        remove_at(t, slot_of(t->slots, t->cap, p->evicted[i]->env_id));
    for (int i = 0; i < p->n_after; i++) {
        rqd_rstream *x = p->after[i];
        if (x->existed && x->length == 0)
            remove_at(t, slot_of(t->slots, t->cap, x->env_id));
    }
    if (p->grown) { /* rehash into the room made by the plan */
        rqd_rstream **old = t->slots;
        int old_cap = t->cap;
        t->slots = p->grown;
        t->cap = p->grown_cap;
        t->n = 0;
        p->grown = NULL;
        for (int i = 0; i < old_cap; i++)
            if (old[i])
                insert(t, old[i]);
        free(old);
    }
    for (int i = 0; i < p->n_after; i++) {
        rqd_rstream *x = p->after[i];
        if (x->length == 0)
            continue; /* freed with the plan */
        if (x->existed) {
            rqd_rstream *cur = find(t, x->env_id);
            *cur = *x; /* the copy goes with the plan */
        } else {
            insert(t, x);
            p->after[i] = NULL;
        }
    }
    for (int i = 0; i < p->n_fresh; i++) {
        insert(t, p->fresh[i]);
        p->fresh[i] = NULL;
    }
    p->n_fresh = 0;
    for (int i = 0; i < p->n_after; i++)
        if (p->after[i] == NULL) { /* compact: the plan frees only what it still owns */
            p->after[i] = p->after[--p->n_after];
            i--;
        }
    t->clock++;
    rqd_returns_plan_free(p);
}
