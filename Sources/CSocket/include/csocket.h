#ifndef AMP_CSOCKET_H
#define AMP_CSOCKET_H

#include <sys/types.h>
#include <stddef.h>

/// Creates a listening Unix stream socket at `path` (SOCK_CLOEXEC | SOCK_NONBLOCK) and
/// chmods it to `mode` before listening (keep it in a 0700 directory). Returns the fd, or -errno
/// (-ENAMETOOLONG when the path does not fit sockaddr_un).
int amp_unix_listen(const char *path, int backlog, unsigned int mode);

/// Connects a Unix stream socket (SOCK_CLOEXEC, blocking) to `path`. Returns the fd or -errno.
int amp_unix_connect(const char *path);

/// accept4(SOCK_CLOEXEC | SOCK_NONBLOCK). Returns the fd or -errno.
int amp_unix_accept(int listen_fd);

/* A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) on the numeric address
 * host:port, IPv4 or IPv6; -errno on failure. Accept with amp_unix_accept. */
int amp_tcp_listen(const char *host, int port, int backlog);

/// The peer's credentials (SO_PEERCRED). Returns 0 or -errno.
int amp_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). Returns the fd or -errno.
int amp_eventfd(void);

/// Adds 1 to an eventfd (wakes a poll on it).
void amp_eventfd_signal(int fd);

/// Reads and resets an eventfd.
void amp_eventfd_drain(int fd);

/// poll(2) on up to two descriptors with the given event masks; -1 fds are ignored.
/// Returns poll's result; revents are stored.
int amp_poll2(int fd1, short events1, short *revents1, int fd2, short events2, short *revents2, int timeout_ms);

/// Sets or clears O_NONBLOCK.
int amp_set_nonblocking(int fd, int on);

/// malloc_trim(0): returns freed heap memory of all arenas to the system (after a burst of
/// connections, each served by a thread of its own).
void amp_release_free_memory(void);

/// mallopt(M_ARENA_MAX, n): bounds glibc's per-thread malloc arenas, so a server with a
/// thread per connection does not keep one arena (and its high-water mark) per thread; and a
/// fixed M_MMAP_THRESHOLD of 128 KiB, so large buffers are always mapped and returned on free.
void amp_limit_malloc_arenas(int n);

/// Enables SO_PASSCRED on a socket.
int amp_enable_passcred(int fd);

/// recvmsg(2) without blocking; stores the sender's PID from SCM_CREDENTIALS (or -1).
long amp_recv_with_pid(int fd, void *buffer, size_t length, pid_t *sender);

#endif
