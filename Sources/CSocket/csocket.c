#define _GNU_SOURCE
#include "csocket.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netdb.h>
#include <stdio.h>

static int fill_address(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof a->sun_path) return -ENAMETOOLONG;
    memcpy(a->sun_path, path, n);
    return 0;
}

int amp_unix_listen(const char *path, int backlog, unsigned int mode) {
    struct sockaddr_un a;
    int r = fill_address(&a, path);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    /* umask is process-wide (other threads), so chmod after bind; the caller keeps the
     * socket in a 0700 directory, which closes the window in between. */
    r = bind(fd, (struct sockaddr *)&a, sizeof a);
    int saved = errno;
    if (r < 0) { close(fd); return -saved; }
    if (chmod(path, mode) < 0) { saved = errno; close(fd); unlink(path); return -saved; }
    if (listen(fd, backlog) < 0) { saved = errno; close(fd); unlink(path); return -saved; }
    return fd;
}

int amp_unix_connect(const char *path) {
    struct sockaddr_un a;
    int r = fill_address(&a, path);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    do { r = connect(fd, (struct sockaddr *)&a, sizeof a); } while (r < 0 && errno == EINTR);
    if (r < 0) { int saved = errno; close(fd); return -saved; }
    return fd;
}

int amp_unix_accept(int listen_fd) {
    int fd;
    do { fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int amp_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred c;
    socklen_t len = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return -errno;
    *pid = c.pid;
    *uid = c.uid;
    *gid = c.gid;
    return 0;
}

int amp_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void amp_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t r;
    do { r = write(fd, &one, sizeof one); } while (r < 0 && errno == EINTR);
}

void amp_eventfd_drain(int fd) {
    uint64_t v;
    ssize_t r;
    do { r = read(fd, &v, sizeof v); } while (r < 0 && errno == EINTR);
}

int amp_poll2(int fd1, short events1, short *revents1, int fd2, short events2, short *revents2, int timeout_ms) {
    struct pollfd p[2] = {{fd1, events1, 0}, {fd2, events2, 0}};
    int r;
    do { r = poll(p, 2, timeout_ms); } while (r < 0 && errno == EINTR);
    if (revents1) *revents1 = p[0].revents;
    if (revents2) *revents2 = p[1].revents;
    return r;
}

int amp_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

#include <malloc.h>

void amp_release_free_memory(void) { malloc_trim(0); }

void amp_limit_malloc_arenas(int n) {
    mallopt(M_ARENA_MAX, n);
    /* A fixed mmap threshold: without it glibc raises the threshold after freeing a large
       block, so later large buffers (a client's 1 MiB message) come from the heap, fragment
       it and keep the resident size up after they are freed. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

int amp_enable_passcred(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
}

long amp_recv_with_pid(int fd, void *buffer, size_t length, pid_t *sender) {
    struct iovec iov = { buffer, length };
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(struct ucred))]; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    *sender = -1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            *sender = cred.pid;
        }
    }
    return (long)n;
}

int amp_tcp_listen(const char *host, int port, int backlog) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    char service[16];
    if (port < 1 || port > 65535) return -EINVAL;
    snprintf(service, sizeof service, "%d", port);
    int r = getaddrinfo(host, service, &hints, &res);
    if (r != 0 || res == NULL) return -EADDRNOTAVAIL;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) { int saved = errno; freeaddrinfo(res); return -saved; }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        freeaddrinfo(res);
        return -saved;
    }
    freeaddrinfo(res);
    return fd;
}
