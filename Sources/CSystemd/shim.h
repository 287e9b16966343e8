#ifndef AMP_CSYSTEMD_SHIM_H
#define AMP_CSYSTEMD_SHIM_H
/* libsystemd: sd_notify(3) and sd_journal_sendv(3). Swift cannot call the variadic
 * sd_notifyf/sd_journal_send, so callers build their strings in Swift. */
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
