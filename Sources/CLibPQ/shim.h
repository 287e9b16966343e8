#ifndef AMP_CLIBPQ_SHIM_H
#define AMP_CLIBPQ_SHIM_H
/* libpq, the PostgreSQL client library: https://www.postgresql.org/docs/15/libpq.html
 * Only its declarations: amp loads libpq.so.5 at first use (dlopen), because linking it
 * would load its TLS/GSSAPI/LDAP dependencies into every start of ampd and ampctl (measured:
 * about 5 ms and 5 MiB), while the hot paths speak the wire protocol themselves. */
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#endif
