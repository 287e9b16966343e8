#define _GNU_SOURCE
#include "cfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int all_zero(const char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v) return 0;
    }
    for (; i < n; i++) if (p[i]) return 0;
    return 1;
}

int amp_copy_file(const char *src, const char *dst, mode_t mode, int *reflinked) {
    *reflinked = 0;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) { int e = errno; close(in); return e; }
    int result = 0;
    if (ioctl(out, FICLONE, in) == 0) {
        *reflinked = 1;
    } else {
        /* A sparse copy: blocks of zeros (a fresh cluster's WAL segment, empty pages) become
         * holes, so far less is written than read. */
        struct stat st;
        if (fstat(in, &st) != 0) { result = errno; goto done; }
        static __thread char buffer[1 << 16];
        off_t pos = 0;
        for (;;) {
            ssize_t n = read(in, buffer, sizeof buffer);
            if (n < 0) { if (errno == EINTR) continue; result = errno; goto done; }
            if (n == 0) break;
            if (!all_zero(buffer, (size_t)n)) {
                ssize_t off = 0;
                while (off < n) {
                    ssize_t w = pwrite(out, buffer + off, (size_t)(n - off), pos + off);
                    if (w < 0) { if (errno == EINTR) continue; result = errno; goto done; }
                    off += w;
                }
            }
            pos += n;
        }
        if (ftruncate(out, st.st_size) != 0) { result = errno; goto done; }
    }
done:
    if (close(out) != 0 && result == 0) result = errno;
    close(in);
    if (result != 0) unlink(dst);
    return result;
}

int amp_flock_exclusive(int fd) {
    int r;
    do { r = flock(fd, LOCK_EX); } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int amp_exchange(const char *a, const char *b) {
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0 ? 0 : errno;
}

int amp_can_reflink(const char *dir) {
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return 0;
    int a = openat(d, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    int b = openat(d, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    int ok = 0;
    if (a >= 0 && b >= 0) {
        static const char block[4096] = {1};
        if (write(a, block, sizeof block) == (ssize_t)sizeof block && fsync(a) == 0) ok = ioctl(b, FICLONE, a) == 0;
    }
    if (a >= 0) close(a);
    if (b >= 0) close(b);
    close(d);
    return ok;
}

int amp_syncfs(int fd) { return syncfs(fd); }
