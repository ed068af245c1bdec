/* clients/mujoco/env.c: the environment wrapper of redq-mujoco (see env.h).
 *
 * One table row per task holds everything that differs between Hopper and HalfCheetah:
 * the embedded model, the frame skip, the reward weights, the reset noise, the health
 * check and the velocity clip of the observation. The rest (load, reset, step, reward,
 * observation) is one code path. The rules are those of Gymnasium's v4 tasks.
 */
#include "env.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mujoco/mujoco.h>

/* The MJCF files, linked into the program as they are (Makefile: ld -r -b binary). */
extern const char _binary_clients_mujoco_models_hopper_xml_start[],
    _binary_clients_mujoco_models_hopper_xml_end[];
extern const char _binary_clients_mujoco_models_halfcheetah_xml_start[],
    _binary_clients_mujoco_models_halfcheetah_xml_end[];

typedef struct {
    const char *name;
    const char *xml, *xml_end; /* the embedded model */
    int frame_skip;            /* physics steps per environment step */
    double ctrl_cost;          /* weight of |a|^2 in the reward */
    double healthy_reward;     /* per step; 0 for a task that cannot fall */
    double reset_noise;        /* qpos += U(-n, n); qvel += U(-n, n) or n N(0, 1) */
    int qvel_noise_gaussian;   /* HalfCheetah draws the velocity noise from a normal */
    double qvel_clip;          /* |qvel| bound in the observation; 0 = none */
    /* Health (terminates when violated; used when healthy_reward > 0): */
    double min_z;              /* torso height qpos[1] must stay above it */
    double max_angle;          /* |torso pitch qpos[2]| must stay below it */
    double state_bound;        /* |every qpos but x and z, every qvel| below it */
} loco_task;

/* Gymnasium Hopper-v4 and HalfCheetah-v4 defaults (their reward and reset arguments). */
static const loco_task tasks[] = {
    {"hopper", _binary_clients_mujoco_models_hopper_xml_start,
     _binary_clients_mujoco_models_hopper_xml_end, 4, 1e-3, 1.0, 5e-3, 0, 10.0, 0.7, 0.2,
     100.0},
    {"halfcheetah", _binary_clients_mujoco_models_halfcheetah_xml_start,
     _binary_clients_mujoco_models_halfcheetah_xml_end, 5, 0.1, 0.0, 0.1, 1, 0.0, 0.0, 0.0,
     0.0},
};
#define NTASKS (sizeof tasks / sizeof tasks[0])

const char *const loco_task_names[] = {"hopper", "halfcheetah", NULL};

struct loco_env {
    const loco_task *task;
    mjModel *m;
    mjData *d;
    uint64_t rng;  /* splitmix64 state: the reset noise */
    int steps;     /* environment steps in this episode */
};

/* ---- the environment's generator (splitmix64: small, and enough for reset noise) ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) /* [0, 1) */
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static double rng_normal(uint64_t *s) /* Box-Muller; one draw of the pair is enough here */
{
    double u = 1.0 - rng_uniform(s); /* (0, 1]: log is finite */
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * rng_uniform(s));
}

/* ---- loading ---- */

/* MuJoCo loads MJCF from a file name; a virtual file system holds the embedded text, so
 * that the program runs from anywhere without its source tree. */
static mjModel *load_embedded(const loco_task *t, rqd_err *err)
{
    int size = (int)(t->xml_end - t->xml);
    char fname[64], msg[500] = "";
    mjModel *m = NULL;
    mjVFS *vfs = malloc(sizeof *vfs); /* ~2 MB of name slots: never on the stack */

    if (vfs == NULL) {
        rqd_err_set(err, RQD_ENOMEM, "", "out of memory for the model's file system");
        return NULL;
    }
    mj_defaultVFS(vfs);
    snprintf(fname, sizeof fname, "%s.xml", t->name);
    if (mj_makeEmptyFileVFS(vfs, fname, size) != 0) {
        rqd_err_set(err, RQD_EINTERNAL, "", "MuJoCo could not hold the %s model", t->name);
        goto out;
    }
    memcpy(vfs->filedata[mj_findFileVFS(vfs, fname)], t->xml, (size_t)size);
    m = mj_loadXML(fname, vfs, msg, sizeof msg);
    if (m == NULL)
        rqd_err_set(err, RQD_EINTERNAL, "", "MuJoCo refused the %s model: %s", t->name, msg);
out:
    mj_deleteVFS(vfs);
    free(vfs);
    return m;
}

int loco_env_new(const char *task, uint64_t seed, loco_env **out, rqd_err *err)
{
    const loco_task *t = NULL;
    loco_env *e = NULL;

    *out = NULL;
    for (size_t i = 0; i < NTASKS; i++)
        if (strcmp(tasks[i].name, task) == 0)
            t = &tasks[i];
    if (t == NULL)
        return rqd_err_set(err, RQD_EINVAL, "env", "unknown task '%s' (hopper or halfcheetah)",
                           task);
    if ((e = calloc(1, sizeof *e)) == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    e->task = t;
    e->rng = seed;
    if ((e->m = load_embedded(t, err)) == NULL)
        goto fail;
    if ((e->d = mj_makeData(e->m)) == NULL) {
        rqd_err_set(err, RQD_ENOMEM, "", "MuJoCo could not allocate the %s data", t->name);
        goto fail;
    }
    *out = e;
    return RQD_OK;
fail:
    loco_env_free(e);
    return err->code;
}

void loco_env_free(loco_env *e)
{
    if (e == NULL)
        return;
    mj_deleteData(e->d);
    mj_deleteModel(e->m);
    free(e);
}

int loco_env_obs_dim(const loco_env *e)
{
    return e->m->nq - 1 + e->m->nv; /* all positions but x, all velocities */
}

int loco_env_act_dim(const loco_env *e)
{
    return e->m->nu;
}

void loco_env_action_box(const loco_env *e, double *low, double *high)
{
    for (int i = 0; i < e->m->nu; i++) {
        low[i] = e->m->actuator_ctrlrange[2 * i];
        high[i] = e->m->actuator_ctrlrange[2 * i + 1];
    }
}

double loco_env_x(const loco_env *e)
{
    return e->d->qpos[0];
}

const mjModel *loco_env_model(const loco_env *e)
{
    return e->m;
}

/* ---- episodes ---- */

static void observe(const loco_env *e, double *obs)
{
    const mjModel *m = e->m;
    const double clip = e->task->qvel_clip;
    int k = 0;

    for (int i = 1; i < m->nq; i++) /* qpos[0] is x: left out */
        obs[k++] = e->d->qpos[i];
    for (int i = 0; i < m->nv; i++) {
        double v = e->d->qvel[i];
        obs[k++] = clip > 0 ? fmin(fmax(v, -clip), clip) : v;
    }
}

void loco_env_reset(loco_env *e, double *obs)
{
    const loco_task *t = e->task;
    const double n = t->reset_noise;

    mj_resetData(e->m, e->d); /* qpos = qpos0 (the model's pose), qvel = 0 */
    for (int i = 0; i < e->m->nq; i++)
        e->d->qpos[i] += n * (2.0 * rng_uniform(&e->rng) - 1.0);
    for (int i = 0; i < e->m->nv; i++)
        e->d->qvel[i] = t->qvel_noise_gaussian ? n * rng_normal(&e->rng)
                                               : n * (2.0 * rng_uniform(&e->rng) - 1.0);
    mj_forward(e->m, e->d);
    e->steps = 0;
    observe(e, obs);
}

/* Hopper's health (Gymnasium's is_healthy): upright, high enough, nothing diverging. */
static int healthy(const loco_env *e)
{
    const loco_task *t = e->task;
    const mjData *d = e->d;

    if (!(d->qpos[1] > t->min_z) || !(fabs(d->qpos[2]) < t->max_angle))
        return 0;
    for (int i = 2; i < e->m->nq; i++)
        if (!(fabs(d->qpos[i]) < t->state_bound))
            return 0;
    for (int i = 0; i < e->m->nv; i++)
        if (!(fabs(d->qvel[i]) < t->state_bound))
            return 0;
    return 1;
}

double loco_env_step(loco_env *e, const double *action, double *obs, int *terminated,
                     int *truncated)
{
    const loco_task *t = e->task;
    const mjModel *m = e->m;
    double x0 = e->d->qpos[0], ctrl_sq = 0.0, reward;

    for (int i = 0; i < m->nu; i++) {
        const double lo = m->actuator_ctrlrange[2 * i], hi = m->actuator_ctrlrange[2 * i + 1];
        ctrl_sq += action[i] * action[i];
        e->d->ctrl[i] = fmin(fmax(action[i], lo), hi);
    }
    for (int k = 0; k < t->frame_skip; k++)
        mj_step(e->m, e->d);
    e->steps++;

    /* Gymnasium v4: the velocity is the x displacement over the environment step. */
    reward = (e->d->qpos[0] - x0) / (m->opt.timestep * t->frame_skip) - t->ctrl_cost * ctrl_sq;
    *terminated = 0;
    if (t->healthy_reward > 0) {
        reward += t->healthy_reward; /* paid on the falling step too, as Gymnasium does */
        *terminated = !healthy(e);
    }
    *truncated = !*terminated && e->steps >= LOCO_MAX_STEPS;
    observe(e, obs);
    return reward;
}
