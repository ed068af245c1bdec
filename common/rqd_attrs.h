/* common/rqd_attrs.h: compiler attributes and the defensive-branch macros (STYLE R7). */
#ifndef RQD_ATTRS_H
#define RQD_ATTRS_H

#define RQD_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define RQD_NODISCARD __attribute__((warn_unused_result))
#define RQD_UNUSED(x) ((void)(x))

/* SQLite's ALWAYS()/NEVER(): a condition that should always (never) hold. Tests build
 * with assertions on, so a violated one fails loudly there; a release build keeps the
 * defensive branch and carries on. */
#include <assert.h>
#ifdef NDEBUG
#define ALWAYS(x) (x)
#define NEVER(x) (x)
#else
#define ALWAYS(x) ((x) ? 1 : (assert(0), 0))
#define NEVER(x) ((x) ? (assert(0), 1) : 0)
#endif

#endif
