/* tests/env/pendulum.c: Pendulum-v1 dynamics (see pendulum.h). */
#include "pendulum.h"

#include <math.h>

#define MAX_SPEED 8.0
#define MAX_TORQUE 2.0
#define DT 0.05
#define G 10.0
#define MASS 1.0
#define LEN 1.0

static double uniform(pendulum *e, double lo, double hi)
{
    e->rng = e->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(e->rng >> 11) / 9007199254740992.0;
}

static double clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

static double angle_normalize(double x)
{
    double r = fmod(x + M_PI, 2.0 * M_PI); /* Python's % is never negative here */
    if (r < 0.0)
        r += 2.0 * M_PI;
    return r - M_PI;
}

static void observe(const pendulum *e, float obs[PENDULUM_OBS])
{
    obs[0] = (float)cos(e->th);
    obs[1] = (float)sin(e->th);
    obs[2] = (float)e->thdot;
}

void pendulum_seed(pendulum *e, uint64_t seed)
{
    e->rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    e->th = e->thdot = 0.0;
    e->steps = 0;
}

void pendulum_reset(pendulum *e, float obs[PENDULUM_OBS])
{
    e->th = uniform(e, -M_PI, M_PI);
    e->thdot = uniform(e, -1.0, 1.0);
    e->steps = 0;
    observe(e, obs);
}

float pendulum_step(pendulum *e, float u_in, float obs[PENDULUM_OBS], int *truncated)
{
    double u = clip(u_in, -MAX_TORQUE, MAX_TORQUE);
    double th = e->th, thdot = e->thdot;
    double cost = angle_normalize(th) * angle_normalize(th) + 0.1 * thdot * thdot + 0.001 * u * u;
    double newthdot = thdot + (3.0 * G / (2.0 * LEN) * sin(th) + 3.0 / (MASS * LEN * LEN) * u) * DT;
    newthdot = clip(newthdot, -MAX_SPEED, MAX_SPEED);
    e->th = th + newthdot * DT;
    e->thdot = newthdot;
    e->steps++;
    *truncated = e->steps >= PENDULUM_MAX_STEPS;
    observe(e, obs);
    return (float)-cost;
}
