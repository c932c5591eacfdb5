#ifndef CKSTORE_CPOSTGRES_SHIM_H
#define CKSTORE_CPOSTGRES_SHIM_H
// libpq, PostgreSQL's C client library (Debian: libpq-dev; pkg-config libpq).
#include <libpq-fe.h>
#endif
