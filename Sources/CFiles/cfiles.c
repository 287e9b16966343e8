#define _GNU_SOURCE
#include "cfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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
        struct stat st;
        if (fstat(in, &st) != 0) { result = errno; goto done; }
        off_t left = st.st_size;
        int use_range = 1;
        char buffer[65536];
        while (left > 0) {
            ssize_t n;
            if (use_range) {
                n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                    use_range = 0;
                    continue;
                }
            } else {
                n = read(in, buffer, sizeof buffer);
                if (n > 0) {
                    ssize_t off = 0;
                    while (off < n) {
                        ssize_t w = write(out, buffer + off, (size_t)(n - off));
                        if (w < 0) { if (errno == EINTR) continue; result = errno; goto done; }
                        off += w;
                    }
                }
            }
            if (n < 0) { if (errno == EINTR) continue; result = errno; goto done; }
            if (n == 0) break;
            left -= n;
        }
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
