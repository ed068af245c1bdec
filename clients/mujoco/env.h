/* clients/mujoco/env.h: the locomotion tasks of redq-mujoco on MuJoCo's C API.
 *
 * Two planar tasks in the spirit of Gymnasium's Hopper-v4 and HalfCheetah-v4, on models
 * written for this project (clients/mujoco/models/, embedded in the program):
 *
 *   task         obs  act  reward per step (dt = timestep x frame_skip)            ends
 *   hopper        11    3  dx/dt + 1 (healthy) - 1e-3 |a|^2, dt = 0.008 s         falls, 1000 steps
 *   halfcheetah   17    6  dx/dt - 0.1 |a|^2,               dt = 0.05 s           1000 steps
 *
 * The observation is the joint positions without the x position (so that the policy
 * cannot depend on how far it has run), then the joint velocities (Hopper's clipped to
 * [-10, 10]). Hopper is healthy while its torso is higher than 0.7, tilted less than
 * 0.2 rad, and every state value but x and z is within +-100; it terminates when it is
 * not. Actions are motor commands in [-1, 1] (clipped; the control cost uses the action
 * as given).
 *
 * Everything random (the reset noise) comes from the environment's own generator,
 * seeded at creation: one seed and one action sequence give the same observations bit
 * for bit (MuJoCo's stepping is deterministic on one thread).
 */
#ifndef REDQ_MUJOCO_ENV_H
#define REDQ_MUJOCO_ENV_H

#include <stdint.h>

#include "../../common/rqd_err.h"

#define LOCO_MAX_STEPS 1000 /* the time limit of both tasks (truncation, not termination) */

typedef struct loco_env loco_env; /* opaque: one MuJoCo model and its data */

/* The task names loco_env_new accepts, NULL-terminated: "hopper", "halfcheetah". */
extern const char *const loco_task_names[];

/* Loads the task's model and seeds its generator; reset before the first step.
 * RQD_EINVAL for an unknown task, RQD_EINTERNAL if MuJoCo refuses the model. */
int loco_env_new(const char *task, uint64_t seed, loco_env **out, rqd_err *err);
void loco_env_free(loco_env *e); /* NULL is a no-op */

int loco_env_obs_dim(const loco_env *e);
int loco_env_act_dim(const loco_env *e);
/* The action box (the motors' control ranges): act_dim values each. */
void loco_env_action_box(const loco_env *e, double *low, double *high);

/* A new episode from the initial pose plus the task's reset noise; writes obs_dim values. */
void loco_env_reset(loco_env *e, double *obs);

/* One environment step (frame_skip physics steps) under action (act_dim values).
 * Writes the next observation, sets *terminated (Hopper fell) and *truncated (the
 * 1000th step of an episode that did not terminate), and returns the reward. */
double loco_env_step(loco_env *e, const double *action, double *obs, int *terminated,
                     int *truncated);

/* The x position of the torso: what the reward's velocity term differentiates. */
double loco_env_x(const loco_env *e);

/* The loaded MuJoCo model, borrowed (for rendering, or to check the model's facts). */
struct mjModel_;
const struct mjModel_ *loco_env_model(const loco_env *e);

#endif
