/* common/rqd_limits.h: every hard limit of redqd, each with its reason (STYLE R16).
 *
 * docs/operations.md lists them. A request past one is invalid_argument (413 for the
 * body size) and the error names the limit. Raising one is a recompile; those with a
 * flag say so.
 */
#ifndef RQD_LIMITS_H
#define RQD_LIMITS_H

/* Observation length. 4096 covers image-free robotics (Humanoid is 376) with room to
 * spare; the first critic layer is [S+A][N][H] floats, 4096*10*4096*4 B = 640 MiB at the
 * extremes, which RQD_MAX_AGENT_BYTES then refuses. */
#define RQD_MAX_OBS_DIM 4096

/* Action length. MuJoCo's largest (Humanoid) is 17; 256 is far past any control task. */
#define RQD_MAX_ACT_DIM 256

/* Hidden layers and their width. REDQ uses 2 x 256; 8 x 4096 is far past any use. */
#define RQD_MAX_HIDDEN_LAYERS 8
#define RQD_MAX_HIDDEN_WIDTH 4096

/* Ensemble members. REDQ uses 10; at 64 one [N][H][H] block is 256 MiB at H=1024. */
#define RQD_MAX_ENSEMBLE 64

/* Batch size of an update. The paper's 256; 8192 bounds the activation scratch. */
#define RQD_MAX_BATCH 8192

/* Replay capacity in transitions. Memory grows with the data, not with this number,
 * so the cap only bounds what one agent may eventually hold. */
#define RQD_MAX_BUFFER 100000000LL

/* n of the n-step return. Tianshou's examples use 1 to 5; 100 bounds the per-stream
 * pending queue. */
#define RQD_MAX_NSTEP 100

/* Bytes one agent's networks, optimiser state and update scratch may need (checked at
 * creation, before allocating): 4 GiB keeps a typo such as hidden [40960] from taking
 * the server down, while REDQ's defaults need about 20 MiB. */
#define RQD_MAX_AGENT_BYTES (4ULL << 30)

/* Updates one train call may ask for (API.md: 1 <= k <= 100000). */
#define RQD_MAX_TRAIN_UPDATES 100000

/* Environment streams (env_id) whose n-step queues an agent keeps at once. Each holds
 * at most estimation_step - 1 transitions; 65536 bounds a client that invents ids (or
 * abandons episodes). A new stream past it flushes the one idle the longest, as if its
 * episode had been truncated: nothing is refused after it was stored. */
#define RQD_MAX_STREAMS 65536

/* Longest env_id string. */
#define RQD_MAX_ENV_ID 128

#endif
