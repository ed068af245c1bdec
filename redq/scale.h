/* redq/scale.h: actions between the environment's scale and the network's [-1, 1]
 * (REDQ.md "Actions and their scale"). */
#ifndef REDQ_SCALE_H
#define REDQ_SCALE_H

/* Network action a (n values) to the environment's: clipped to [-1, 1] first when clip,
 * then low + (high - low) (a + 1) / 2 when scaling. out may equal a. */
void redq__scale_to_env(float *out, const float *a, const float *low, const float *high, int n,
                        int scaling, int clip);

/* Environment action e to what the critics see: clipped into [low, high] (API.md), then
 * mapped to [-1, 1] when scaling. out may equal e. */
void redq__scale_from_env(float *out, const float *e, const float *low, const float *high, int n,
                          int scaling);

#endif
