/* tests/env/pendulum.h: Gymnasium's Pendulum-v1 in C, for the learning tests.
 *
 * Same dynamics, reward, bounds, reset distribution and 200-step time limit as
 * gymnasium/envs/classic_control/pendulum.py (g = 10): obs (cos th, sin th, thdot),
 * one torque in [-2, 2]. The generator is the test's own (reset draws only). */
#ifndef TESTS_PENDULUM_H
#define TESTS_PENDULUM_H

#include <stdint.h>

#define PENDULUM_OBS 3
#define PENDULUM_ACT 1
#define PENDULUM_MAX_STEPS 200

typedef struct {
    double th, thdot;
    int steps;
    uint64_t rng;
} pendulum;

void pendulum_seed(pendulum *e, uint64_t seed);
void pendulum_reset(pendulum *e, float obs[PENDULUM_OBS]);
/* Applies torque u (clipped to [-2, 2]); returns the reward; sets *truncated at 200 steps
 * (Pendulum never terminates). */
float pendulum_step(pendulum *e, float u, float obs[PENDULUM_OBS], int *truncated);

#endif
