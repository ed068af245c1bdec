/* common/rqd_limits.h: every limit of redqd, each with its reason (STYLE R16).
 *
 * docs/operations.md lists them. A request past one is invalid_argument (413 for the
 * body size) and the error names the limit and its flag. The RQD_MAX_* constants are
 * ceilings: some size arrays on the stack, so raising one is a recompile. An operator
 * lowers them at run time through rqd_limits (daemon flags --max-obs-dim and so on),
 * whose defaults are the ceilings.
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

/* The shape of a JSON request body, checked by api/json_scan.c before any tree is built.
 * cJSON spends about 80 bytes of heap on every value, so a 16 MiB body of "0," would
 * be 640 MiB of tree; these bound every tree to about 1.5 MiB. Arrays longer than
 * RQD_MAX_JSON_ARRAY (a batch of observations, the rows of a post) are read one
 * element at a time, each element a tree of its own.
 * - nesting: the deepest body (transitions[].obs[]) is 4 levels;
 * - fields in one object: a config has 26;
 * - elements of an array that no route bounds otherwise: the largest obs_dim;
 * - values (numbers, strings, literals, arrays, objects) in one tree: an agent's
 *   create body with act_dim 256 has about 600, a transition row 2*obs_dim + act_dim
 *   + 7, at most 8455;
 * - characters of a number: cJSON reads at most 63 and would fail past them. */
#define RQD_MAX_JSON_DEPTH 16
#define RQD_MAX_JSON_MEMBERS 64
#define RQD_MAX_JSON_ARRAY RQD_MAX_OBS_DIM
#define RQD_MAX_JSON_VALUES 16384
#define RQD_MAX_JSON_NUMBER 63

/* Query parameters in one URL. libmicrohttpd keeps each in its 32 KiB per-connection
 * pool and, once that is full, leaves the connection without an answer; no route takes
 * more than three, so past 64 the request is refused (414) before MHD stores any. */
#define RQD_MAX_QUERY_PARAMS 64

/* Characters of a batch_id (API.md: 1 to 128 of [A-Za-z0-9_.:-]). */
#define RQD_MAX_BATCH_ID 128

/* Nodes of a cluster (--peers) and the length of a node's name. A cluster-wide list asks
 * every other node at once, each on one connection of the peer thread (api/cluster.c):
 * past a few dozen nodes one answer would merge megabytes and the design's router map
 * is the better tool (docs/scaling.md). A node name is an HAProxy backend suffix and a
 * map value, so it keeps to an agent name's characters and length. */
#define RQD_MAX_PEERS 64
#define RQD_MAX_NODE_NAME 64

/* Every counter (env_steps, updates, policy_version, ...) stays at or below 2^53 - 1: JSON
 * numbers are exact only that far (API.md), and no sum of counters can overflow. A
 * checkpoint with a counter past it is refused, and an add, update or version bump that
 * would pass it is refused instead (at 10^6 updates/s it takes 285 years to get there). */
#define RQD_MAX_COUNTER ((1LL << 53) - 1)

/* 1 when a counter at 'have' may grow by n (>= 0) and stay within RQD_MAX_COUNTER. */
static inline int rqd_count_room(long long have, long long n)
{
    return have >= 0 && n >= 0 && n <= RQD_MAX_COUNTER - have;
}

/* The stored replay buffer is a ring (daemon/prune.c, issue 10).
 * - A replay head is stored every max(RQD_HEAD_EVERY_MIN, buffer_size / 8) transitions:
 *   a restart then replays at most about buffer_size * 9/8 of them (plus what came since
 *   the last pruning), and an agent keeps about ten heads. Below 256 a small buffer
 *   would store a head every few posts for nothing.
 * - A head larger than RQD_MAX_HEAD_BYTES (65536 env streams each holding up to 99
 *   pending transitions can make one of gigabytes) is not stored: the agent keeps its
 *   transitions until a smaller one is, which the log says.
 * - One pruning job deletes at most RQD_PRUNE_ROWS rows of a table (about 10 ms of the
 *   writer at 2.5 us a row, measured in docs/BENCHMARKS.md); an agent has one job in
 *   flight, and jobs come every RQD_PRUNE_TICK_MS while it has work left, so pruning
 *   keeps up with about 40 000 transitions/s per agent. */
#define RQD_HEAD_EVERY_MIN 256
#define RQD_MAX_HEAD_BYTES (64LL << 20)
#define RQD_PRUNE_ROWS 4096
#define RQD_PRUNE_TICK_MS 100
/* Batch ids are kept at least this many posts and this long (API.md, added). */
#define RQD_BATCH_KEEP_POSTS 100000
#define RQD_BATCH_KEEP_SECONDS 86400
/* History retention and batch ids are looked at every this many seconds per agent (and at
 * once after a PATCH); a look that finds nothing costs a few index lookups. */
#define RQD_HISTORY_CHECK_SECONDS 10
/* Free pages the file keeps for new rows before returning more to the file system, and
 * the most returned by one step (files in auto_vacuum = INCREMENTAL mode): at least 8 MiB
 * (2048 pages of 4 KiB) or an eighth of the file, so that the steady churn of a ring
 * (deleted pages taken again by new rows within seconds) never shrinks and regrows it. */
#define RQD_VACUUM_KEEP_PAGES 2048
#define RQD_VACUUM_STEP_PAGES 4096

/* Defaults of the limits that are not array sizes; their flags may raise them. */
#define RQD_DEFAULT_TRANSITIONS_PER_POST 65536 /* API.md; the body limit bounds it too */
#define RQD_DEFAULT_OBS_PER_ACT 4096           /* API.md; one act's scratch is this x obs */
#define RQD_DEFAULT_OPEN_EPISODES 10000        /* API.md; each holds its pending transition */
/* Bytes a new agent's learner state (a checkpoint without the buffer) may have: the
 * default of --max-import, which sets it, since a state past what an import takes could
 * be checkpointed but never imported again. hidden_sizes [2048, 2048, 2048] with 10
 * critics is 1379 MiB, past it; REDQ's defaults are 11 MiB. */
#define RQD_DEFAULT_STATE_BYTES (1LL << 30)

/* Largest magnitude of an observation, reward or action bound (API.md --max-abs-value):
 * with inputs below 1e9, no sum or square an update forms can overflow float32. */
#define RQD_DEFAULT_MAX_ABS_VALUE 1e9

/* The limits an operator sets (flags of the same names), checked when a request would
 * create something. Stored agents are reloaded whatever the limits are now. */
typedef struct rqd_limits {
    int obs_dim;                /* <= RQD_MAX_OBS_DIM */
    int act_dim;                /* <= RQD_MAX_ACT_DIM */
    int hidden_layers;          /* <= RQD_MAX_HIDDEN_LAYERS */
    int hidden_width;           /* <= RQD_MAX_HIDDEN_WIDTH */
    int ensemble;               /* <= RQD_MAX_ENSEMBLE */
    int batch;                  /* <= RQD_MAX_BATCH */
    long long buffer;           /* <= RQD_MAX_BUFFER */
    long long agent_bytes;      /* <= RQD_MAX_AGENT_BYTES */
    int transitions_per_post;
    int obs_per_act;
    int open_episodes;
    double max_abs_value;       /* obs, rewards, action bounds: |x| <= this */
    long long state_bytes;      /* learner state (redq_state_bytes) <= this (--max-import) */
} rqd_limits;

#define RQD_LIMITS_DEFAULT                                                                  \
    ((rqd_limits){RQD_MAX_OBS_DIM, RQD_MAX_ACT_DIM, RQD_MAX_HIDDEN_LAYERS,                  \
                  RQD_MAX_HIDDEN_WIDTH, RQD_MAX_ENSEMBLE, RQD_MAX_BATCH, RQD_MAX_BUFFER,    \
                  (long long)RQD_MAX_AGENT_BYTES, RQD_DEFAULT_TRANSITIONS_PER_POST,        \
                  RQD_DEFAULT_OBS_PER_ACT, RQD_DEFAULT_OPEN_EPISODES,                    \
                  RQD_DEFAULT_MAX_ABS_VALUE, RQD_DEFAULT_STATE_BYTES})

#endif
