/* redq/scale.c: action scaling and clipping. */
#include "scale.h"

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

void redq__scale_to_env(float *out, const float *a, const float *low, const float *high, int n,
                        int scaling, int clip)
{
    for (int j = 0; j < n; j++) {
        float x = clip ? clampf(a[j], -1.0f, 1.0f) : a[j];
        out[j] = scaling ? low[j] + (high[j] - low[j]) * (x + 1.0f) * 0.5f : x;
    }
}

void redq__scale_from_env(float *out, const float *e, const float *low, const float *high, int n,
                          int scaling)
{
    for (int j = 0; j < n; j++) {
        float x = clampf(e[j], low[j], high[j]);
        out[j] = scaling ? clampf(2.0f * (x - low[j]) / (high[j] - low[j]) - 1.0f, -1.0f, 1.0f) : x;
    }
}
