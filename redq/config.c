/* redq/config.c: the agent hyperparameter table (STYLE R15): Tianshou's names, API.md's
 * defaults and bounds, JSON in and out, and validation that names the offending key.
 *
 * One table drives parsing, PATCH (the 'mut' column), validation of single values and
 * the JSON rendering, so a new setting is one row plus, for a structured value, one case.
 */
#include "redq.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../common/rqd_json.h"

enum {
    T_INT,      /* int field, integral JSON number */
    T_LL,       /* long long field */
    T_NUM,      /* double field, finite in float32 */
    T_BOOL,     /* int field, JSON boolean */
    T_HIDDEN,   /* hidden_sizes */
    T_ALPHA,    /* number or "auto" */
    T_TMODE,    /* "min" | "mean" */
    T_NOISE,    /* null | {"type": "gaussian", "sigma": s} */
    T_BOUND,    /* "clip" | null */
    T_SCHED,    /* null | {"type": "linear", "total_updates": K} */
    T_TRAINING, /* "async" | "sync" | "manual" | "paused" */
    T_SEED,     /* integer in [0, 2^53) */
    T_OPT_LL,   /* null (stored as 0) | long long field */
    T_OPT_NUM,  /* null (stored as 0) | double field */
};

/* Bounds: value must satisfy lo (<, or <= when lo_incl) value (<, <=) hi. */
typedef struct {
    const char *name;
    int type;
    size_t off;
    double lo, hi;
    int lo_incl, hi_incl;
    int mut; /* may change by PATCH while the agent runs */
} setting;

#define OFF(f) offsetof(redq_config, f)
#define BIG 9007199254740992.0 /* 2^53 */

static const setting settings[] = {
    /* name                 type        field                     lo     hi     lo<= hi<= mut */
    {"hidden_sizes",        T_HIDDEN,   OFF(hidden),              1, RQD_MAX_HIDDEN_WIDTH, 1, 1, 0},
    {"ensemble_size",       T_INT,      OFF(ensemble_size),       1, RQD_MAX_ENSEMBLE, 1, 1, 0},
    {"subset_size",         T_INT,      OFF(subset_size),         1, RQD_MAX_ENSEMBLE, 1, 1, 0},
    {"tau",                 T_NUM,      OFF(tau),                 0, 1, 0, 1, 0},
    {"gamma",               T_NUM,      OFF(gamma),               0, 1, 1, 1, 0},
    {"alpha",               T_ALPHA,    OFF(alpha),               0, 1e6, 1, 1, 0},
    {"target_entropy",      T_NUM,      OFF(target_entropy),      -1e6, 1e6, 1, 1, 0},
    {"alpha_lr",            T_NUM,      OFF(alpha_lr),            0, 1e3, 0, 1, 1},
    {"estimation_step",     T_INT,      OFF(estimation_step),     1, RQD_MAX_NSTEP, 1, 1, 0},
    {"actor_delay",         T_INT,      OFF(actor_delay),         1, 1e9, 1, 1, 0},
    {"update_per_step",     T_NUM,      OFF(update_per_step),     0, 1e4, 1, 1, 1},
    {"target_mode",         T_TMODE,    OFF(target_mode),         0, 0, 0, 0, 0},
    {"exploration_noise",   T_NOISE,    OFF(noise_sigma),         0, 1e6, 1, 1, 1},
    {"deterministic_eval",  T_BOOL,     OFF(deterministic_eval),  0, 0, 0, 0, 1},
    {"action_scaling",      T_BOOL,     OFF(action_scaling),      0, 0, 0, 0, 0},
    {"action_bound_method", T_BOUND,    OFF(bound_clip),          0, 0, 0, 0, 0},
    {"actor_lr",            T_NUM,      OFF(actor_lr),            0, 1e3, 0, 1, 1},
    {"critic_lr",           T_NUM,      OFF(critic_lr),           0, 1e3, 0, 1, 1},
    {"lr_scheduler",        T_SCHED,    OFF(lr_total_updates),    1, BIG, 1, 0, 1},
    {"batch_size",          T_INT,      OFF(batch_size),          1, RQD_MAX_BATCH, 1, 1, 0},
    {"buffer_size",         T_LL,       OFF(buffer_size),         1, (double)RQD_MAX_BUFFER, 1, 1, 0},
    {"start_timesteps",     T_LL,       OFF(start_timesteps),     0, BIG, 1, 0, 0},
    {"training",            T_TRAINING, OFF(training),            0, 0, 0, 0, 1},
    {"checkpoint_every",    T_LL,       OFF(checkpoint_every),    0, BIG, 1, 0, 1},
    {"keep_checkpoints",    T_INT,      OFF(keep_checkpoints),    1, 1e6, 1, 1, 1},
    {"max_pending_updates", T_NUM,      OFF(max_pending_updates), 1, 1e12, 1, 1, 1},
    {"history_keep_rows",   T_OPT_LL,   OFF(history_keep_rows),   1, BIG, 1, 0, 1},
    {"history_keep_days",   T_OPT_NUM,  OFF(history_keep_days),   0, 1e6, 0, 1, 1},
    {"history_thin",        T_INT,      OFF(history_thin),        0, 1e6, 1, 1, 1},
    {"seed",                T_SEED,     OFF(seed),                0, BIG, 1, 0, 0},
    {NULL, 0, 0, 0, 0, 0, 0, 0},
};

static const char *const training_names[] = {"async", "sync", "manual", "paused"};

const char *redq_training_name(int training) { return training_names[training & 3]; }

void redq_config_default(redq_config *c, int act_dim)
{
    memset(c, 0, sizeof *c);
    c->hidden[0] = c->hidden[1] = 256;
    c->n_hidden = 2;
    c->ensemble_size = 10;
    c->subset_size = 2;
    c->tau = 0.005;
    c->gamma = 0.99;
    c->alpha_auto = 0;
    c->alpha = 0.2;
    c->target_entropy = -(double)act_dim;
    c->alpha_lr = 3e-4;
    c->estimation_step = 1;
    c->actor_delay = 20;
    c->update_per_step = 20;
    c->target_mode = REDQ_TARGET_MIN;
    c->noise_sigma = -1.0;
    c->deterministic_eval = 1;
    c->action_scaling = 1;
    c->bound_clip = 1;
    c->actor_lr = 3e-4;
    c->critic_lr = 3e-4;
    c->lr_total_updates = 0;
    c->batch_size = 256;
    c->buffer_size = 1000000;
    c->start_timesteps = 5000;
    c->training = REDQ_TRAIN_ASYNC;
    c->checkpoint_every = 10000;
    c->keep_checkpoints = 5;
    c->max_pending_updates = 100000;
    c->history_keep_rows = 0; /* null: keep everything */
    c->history_keep_days = 0;
    c->history_thin = 10;
    c->seed = 0;
}

static int in_range(const setting *s, double v)
{
    if (s->lo_incl ? v < s->lo : v <= s->lo)
        return 0;
    if (s->hi_incl ? v > s->hi : v >= s->hi)
        return 0;
    return 1;
}

static int range_error(rqd_err *err, const char *field, const setting *s)
{
    return rqd_err_set(err, RQD_EINVAL, field, "%s must be in %c%.17g, %.17g%c", field,
                       s->lo_incl ? '[' : '(', s->lo, s->hi, s->hi_incl ? ']' : ')');
}

/* A finite number (in float32) from item, or an error naming field. */
static int get_number(const cJSON *item, const char *field, double *out, rqd_err *err)
{
    if (!cJSON_IsNumber(item))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a number", field);
    double v = item->valuedouble;
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a finite float32 number", field);
    *out = v;
    return RQD_OK;
}

static int get_integer(const cJSON *item, const char *field, double *out, rqd_err *err)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) ||
        item->valuedouble != floor(item->valuedouble) || fabs(item->valuedouble) > BIG)
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be an integer", field);
    *out = item->valuedouble;
    return RQD_OK;
}

/* Object with exactly the keys "type" (== type_name) and number_key; returns the number. */
static int get_typed_object(const cJSON *item, const char *field, const char *type_name,
                            const char *number_key, int integral, double *out, rqd_err *err)
{
    char sub[64];
    const cJSON *ch;
    int have_type = 0, have_num = 0;

    if (!cJSON_IsObject(item))
        return rqd_err_set(err, RQD_EINVAL, field,
                           "%s must be null or {\"type\": \"%s\", \"%s\": ...}", field, type_name,
                           number_key);
    cJSON_ArrayForEach(ch, item)
    {
        snprintf(sub, sizeof sub, "%s.%s", field, ch->string);
        if (strcmp(ch->string, "type") == 0 && !have_type) {
            if (!cJSON_IsString(ch) || strcmp(ch->valuestring, type_name) != 0)
                return rqd_err_set(err, RQD_EINVAL, sub, "%s must be \"%s\"", sub, type_name);
            have_type = 1;
        } else if (strcmp(ch->string, number_key) == 0 && !have_num) {
            int rc = integral ? get_integer(ch, sub, out, err) : get_number(ch, sub, out, err);
            if (rc < 0)
                return rc;
            have_num = 1;
        } else {
            return rqd_err_set(err, RQD_EINVAL, sub, "%s: unknown or repeated field", sub);
        }
    }
    if (!have_type || !have_num)
        return rqd_err_set(err, RQD_EINVAL, field, "%s needs \"type\" and \"%s\"", field,
                           have_type ? number_key : "type");
    return RQD_OK;
}

/* Parses one setting's JSON value into c. */
static int apply(const setting *s, const cJSON *item, const char *field, redq_config *c,
                 rqd_err *err)
{
    char *base = (char *)c + s->off;
    double v = 0;
    int rc;

    if ((s->type == T_OPT_LL || s->type == T_OPT_NUM) && cJSON_IsNull(item)) {
        if (s->type == T_OPT_LL)
            *(long long *)base = 0;
        else
            *(double *)base = 0;
        return RQD_OK;
    }
    switch (s->type) {
    case T_OPT_NUM:
        if ((rc = get_number(item, field, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, field, s);
        *(double *)base = v;
        return RQD_OK;
    case T_OPT_LL:
    case T_INT:
    case T_LL:
    case T_SEED:
        if ((rc = get_integer(item, field, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, field, s);
        if (s->type == T_INT)
            *(int *)base = (int)v;
        else if (s->type == T_LL || s->type == T_OPT_LL)
            *(long long *)base = (long long)v;
        else
            *(uint64_t *)base = (uint64_t)v;
        return RQD_OK;
    case T_NUM:
        if ((rc = get_number(item, field, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, field, s);
        *(double *)base = v;
        return RQD_OK;
    case T_BOOL:
        if (!cJSON_IsBool(item))
            return rqd_err_set(err, RQD_EINVAL, field, "%s must be true or false", field);
        *(int *)base = cJSON_IsTrue(item);
        return RQD_OK;
    case T_HIDDEN: {
        int n = cJSON_GetArraySize(item), i = 0;
        const cJSON *ch;
        if (!cJSON_IsArray(item) || n < 1 || n > RQD_MAX_HIDDEN_LAYERS)
            return rqd_err_set(err, RQD_EINVAL, field,
                               "%s must be a list of 1 to %d layer widths", field,
                               RQD_MAX_HIDDEN_LAYERS);
        cJSON_ArrayForEach(ch, item)
        {
            char sub[80];
            snprintf(sub, sizeof sub, "%s[%d]", field, i);
            if ((rc = get_integer(ch, sub, &v, err)) < 0)
                return rc;
            if (!in_range(s, v))
                return range_error(err, sub, s);
            c->hidden[i++] = (int)v;
        }
        c->n_hidden = n;
        return RQD_OK;
    }
    case T_ALPHA:
        if (cJSON_IsString(item) && strcmp(item->valuestring, "auto") == 0) {
            c->alpha_auto = 1;
            return RQD_OK;
        }
        if (!cJSON_IsNumber(item))
            return rqd_err_set(err, RQD_EINVAL, field, "%s must be a number >= 0 or \"auto\"",
                               field);
        if ((rc = get_number(item, field, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, field, s);
        c->alpha_auto = 0;
        c->alpha = v;
        return RQD_OK;
    case T_TMODE:
        if (cJSON_IsString(item) && strcmp(item->valuestring, "min") == 0)
            c->target_mode = REDQ_TARGET_MIN;
        else if (cJSON_IsString(item) && strcmp(item->valuestring, "mean") == 0)
            c->target_mode = REDQ_TARGET_MEAN;
        else
            return rqd_err_set(err, RQD_EINVAL, field, "%s must be \"min\" or \"mean\"", field);
        return RQD_OK;
    case T_NOISE:
        if (cJSON_IsNull(item)) {
            c->noise_sigma = -1.0;
            return RQD_OK;
        }
        if ((rc = get_typed_object(item, field, "gaussian", "sigma", 0, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, "exploration_noise.sigma", s);
        c->noise_sigma = v;
        return RQD_OK;
    case T_BOUND:
        if (cJSON_IsNull(item))
            c->bound_clip = 0;
        else if (cJSON_IsString(item) && strcmp(item->valuestring, "clip") == 0)
            c->bound_clip = 1;
        else
            return rqd_err_set(err, RQD_EINVAL, field, "%s must be \"clip\" or null", field);
        return RQD_OK;
    case T_SCHED:
        if (cJSON_IsNull(item)) {
            c->lr_total_updates = 0;
            return RQD_OK;
        }
        if ((rc = get_typed_object(item, field, "linear", "total_updates", 1, &v, err)) < 0)
            return rc;
        if (!in_range(s, v))
            return range_error(err, "lr_scheduler.total_updates", s);
        c->lr_total_updates = (long long)v;
        return RQD_OK;
    case T_TRAINING:
        for (int i = 0; i < 4; i++)
            if (cJSON_IsString(item) && strcmp(item->valuestring, training_names[i]) == 0) {
                c->training = i;
                return RQD_OK;
            }
        return rqd_err_set(err, RQD_EINVAL, field,
                           "%s must be \"async\", \"sync\", \"manual\" or \"paused\"", field);
    }
    return rqd_err_set(err, RQD_EINTERNAL, field, "unhandled setting type");
}

static const setting *find(const char *name)
{
    for (const setting *s = settings; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

/* Applies every key of obj onto c; only mutable keys when only_mut. */
static int apply_object(const cJSON *obj, const char *prefix, int only_mut, redq_config *c,
                        int *te_given, rqd_err *err)
{
    const cJSON *ch, *prev;
    char field[64];
    int rc;

    if (!cJSON_IsObject(obj))
        return rqd_err_set(err, RQD_EINVAL, prefix[0] ? "config" : "",
                           "%s must be a JSON object", prefix[0] ? "config" : "the body");
    cJSON_ArrayForEach(ch, obj)
    {
        snprintf(field, sizeof field, "%s%s", prefix, ch->string);
        for (prev = obj->child; prev != ch; prev = prev->next)
            if (strcmp(prev->string, ch->string) == 0)
                return rqd_err_set(err, RQD_EINVAL, field, "%s is given twice", field);
        const setting *s = find(ch->string);
        if (s == NULL)
            return rqd_err_set(err, RQD_EINVAL, field, "unknown field %s", field);
        if (only_mut && !s->mut)
            return rqd_err_set(err, RQD_EINVAL, field,
                               "%s is fixed at creation and cannot be changed", field);
        if ((rc = apply(s, ch, field, c, err)) < 0)
            return rc;
        if (te_given && s->type == T_NUM && s->off == OFF(target_entropy))
            *te_given = 1;
    }
    return RQD_OK;
}

int redq_config_validate(const redq_config *c, rqd_err *err)
{
    if (c->n_hidden < 1 || c->n_hidden > RQD_MAX_HIDDEN_LAYERS)
        return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes", "needs 1 to %d layers",
                           RQD_MAX_HIDDEN_LAYERS);
    for (int i = 0; i < c->n_hidden; i++)
        if (c->hidden[i] < 1 || c->hidden[i] > RQD_MAX_HIDDEN_WIDTH)
            return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes",
                               "layer widths must be in [1, %d]", RQD_MAX_HIDDEN_WIDTH);
    for (const setting *s = settings; s->name; s++) {
        const char *base = (const char *)c + s->off;
        double v;
        char field[64];
        snprintf(field, sizeof field, "config.%s", s->name);
        switch (s->type) {
        case T_INT: v = *(const int *)base; break;
        case T_LL: v = (double)*(const long long *)base; break;
        case T_NUM: v = *(const double *)base; break;
        case T_SEED: v = (double)*(const uint64_t *)base; break;
        case T_ALPHA: if (c->alpha_auto) continue; v = c->alpha; break;
        case T_NOISE: if (c->noise_sigma < 0) continue; v = c->noise_sigma; break;
        case T_SCHED: if (c->lr_total_updates == 0) continue; v = (double)c->lr_total_updates; break;
        case T_TRAINING: if (c->training < 0 || c->training > 3) return range_error(err, field, s); continue;
        case T_OPT_LL: if (*(const long long *)base == 0) continue; v = (double)*(const long long *)base; break;
        case T_OPT_NUM: if (*(const double *)base == 0) continue; v = *(const double *)base; break;
        default: continue;
        }
        if (!isfinite(v) || !in_range(s, v))
            return range_error(err, field, s);
    }
    if (c->subset_size > c->ensemble_size)
        return rqd_err_set(err, RQD_EINVAL, "config.subset_size",
                           "config.subset_size (%d) must not exceed config.ensemble_size (%d)",
                           c->subset_size, c->ensemble_size);
    if (c->buffer_size < c->batch_size)
        return rqd_err_set(err, RQD_EINVAL, "config.buffer_size",
                           "config.buffer_size (%lld) must be at least config.batch_size (%d)",
                           c->buffer_size, c->batch_size);
    double need = c->update_per_step > 1.0 ? c->update_per_step : 1.0;
    if (c->max_pending_updates < need)
        return rqd_err_set(err, RQD_EINVAL, "config.max_pending_updates",
                           "config.max_pending_updates (%g) must be at least max(1, "
                           "update_per_step) = %g",
                           c->max_pending_updates, need);
    return RQD_OK;
}

int redq_config_from_json(const cJSON *obj, int act_dim, redq_config *out, rqd_err *err)
{
    redq_config c;
    int te_given = 0, rc;

    redq_config_default(&c, act_dim);
    if (obj != NULL && !cJSON_IsNull(obj) &&
        (rc = apply_object(obj, "config.", 0, &c, &te_given, err)) < 0)
        return rc;
    if ((rc = redq_config_validate(&c, err)) < 0)
        return rc;
    *out = c;
    return RQD_OK;
}

int redq_config_patch(const cJSON *obj, const char *prefix, redq_config *c, rqd_err *err)
{
    redq_config tmp = *c;
    int rc;

    if ((rc = apply_object(obj, prefix, 1, &tmp, NULL, err)) < 0)
        return rc;
    if ((rc = redq_config_validate(&tmp, err)) < 0) {
        /* The rule broken may involve a key of this patch: name it without the prefix
         * the validator uses when the patch is a top-level body. */
        if (prefix[0] == '\0' && strncmp(err->field, "config.", 7) == 0)
            memmove(err->field, err->field + 7, strlen(err->field + 7) + 1);
        return rc;
    }
    *c = tmp;
    return RQD_OK;
}

cJSON *redq_config_to_json(const redq_config *c)
{
    cJSON *o = cJSON_CreateObject(), *x;
    int ok = o != NULL;

    if (ok) {
        int hs[RQD_MAX_HIDDEN_LAYERS];
        memcpy(hs, c->hidden, sizeof hs);
        ok &= cJSON_AddItemToObject(o, "hidden_sizes", cJSON_CreateIntArray(hs, c->n_hidden));
    }
    ok = ok && rqd_json_add_int(o, "ensemble_size", c->ensemble_size);
    ok = ok && rqd_json_add_int(o, "subset_size", c->subset_size);
    ok = ok && cJSON_AddNumberToObject(o, "tau", c->tau);
    ok = ok && cJSON_AddNumberToObject(o, "gamma", c->gamma);
    ok = ok && (c->alpha_auto ? cJSON_AddStringToObject(o, "alpha", "auto")
                              : cJSON_AddNumberToObject(o, "alpha", c->alpha));
    ok = ok && cJSON_AddNumberToObject(o, "target_entropy", c->target_entropy);
    ok = ok && cJSON_AddNumberToObject(o, "alpha_lr", c->alpha_lr);
    ok = ok && rqd_json_add_int(o, "estimation_step", c->estimation_step);
    ok = ok && rqd_json_add_int(o, "actor_delay", c->actor_delay);
    ok = ok && cJSON_AddNumberToObject(o, "update_per_step", c->update_per_step);
    ok = ok && cJSON_AddStringToObject(o, "target_mode",
                                       c->target_mode == REDQ_TARGET_MEAN ? "mean" : "min");
    if (ok && c->noise_sigma >= 0) {
        ok = (x = cJSON_AddObjectToObject(o, "exploration_noise")) != NULL &&
             cJSON_AddStringToObject(x, "type", "gaussian") &&
             cJSON_AddNumberToObject(x, "sigma", c->noise_sigma);
    } else {
        ok = ok && cJSON_AddNullToObject(o, "exploration_noise");
    }
    ok = ok && cJSON_AddBoolToObject(o, "deterministic_eval", c->deterministic_eval);
    ok = ok && cJSON_AddBoolToObject(o, "action_scaling", c->action_scaling);
    ok = ok && (c->bound_clip ? cJSON_AddStringToObject(o, "action_bound_method", "clip")
                              : cJSON_AddNullToObject(o, "action_bound_method"));
    ok = ok && cJSON_AddNumberToObject(o, "actor_lr", c->actor_lr);
    ok = ok && cJSON_AddNumberToObject(o, "critic_lr", c->critic_lr);
    if (ok && c->lr_total_updates > 0) {
        ok = (x = cJSON_AddObjectToObject(o, "lr_scheduler")) != NULL &&
             cJSON_AddStringToObject(x, "type", "linear") &&
             rqd_json_add_int(x, "total_updates", c->lr_total_updates);
    } else {
        ok = ok && cJSON_AddNullToObject(o, "lr_scheduler");
    }
    ok = ok && rqd_json_add_int(o, "batch_size", c->batch_size);
    ok = ok && rqd_json_add_int(o, "buffer_size", c->buffer_size);
    ok = ok && rqd_json_add_int(o, "start_timesteps", c->start_timesteps);
    ok = ok && cJSON_AddStringToObject(o, "training", training_names[c->training & 3]);
    ok = ok && rqd_json_add_int(o, "checkpoint_every", c->checkpoint_every);
    ok = ok && rqd_json_add_int(o, "keep_checkpoints", c->keep_checkpoints);
    ok = ok && rqd_json_add_number(o, "max_pending_updates", c->max_pending_updates);
    ok = ok && (c->history_keep_rows > 0
                    ? rqd_json_add_int(o, "history_keep_rows", c->history_keep_rows) != NULL
                    : cJSON_AddNullToObject(o, "history_keep_rows") != NULL);
    ok = ok && (c->history_keep_days > 0
                    ? cJSON_AddNumberToObject(o, "history_keep_days", c->history_keep_days) != NULL
                    : cJSON_AddNullToObject(o, "history_keep_days") != NULL);
    ok = ok && rqd_json_add_int(o, "history_thin", c->history_thin);
    ok = ok && rqd_json_add_int(o, "seed", (long long)c->seed);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
