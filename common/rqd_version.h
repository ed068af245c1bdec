/* common/rqd_version.h: the daemon's version, in --version, --help and GET /v1/health. */
#ifndef RQD_VERSION_H
#define RQD_VERSION_H

#define REDQD_VERSION "0.1.0"

#endif
