#ifndef AMP_CLIBPQ_SHIM_H
#define AMP_CLIBPQ_SHIM_H
/* libpq, the PostgreSQL client library: https://www.postgresql.org/docs/15/libpq.html */
#include <libpq-fe.h>
#endif
