#ifndef AMP_CFILES_H
#define AMP_CFILES_H

#include <sys/types.h>

/// Copies the regular file `src` to the new file `dst` (created with `mode`, O_EXCL): a
/// reflink (FICLONE) where the file system shares extents, else a sparse copy (blocks of
/// zeros become holes). Returns 0, or an errno value. `*reflinked` is set to 1 when the copy is a reflink.
int amp_copy_file(const char *src, const char *dst, mode_t mode, int *reflinked);

/// Whether the file system of directory `dir` shares extents (reflinks): a one-block file is
/// cloned (FICLONE) into a second one; both are removed again. Returns 1 or 0.
int amp_can_reflink(const char *dir);

/// flock(2) LOCK_EX on `fd`, blocking. Returns 0 or an errno value.
int amp_flock_exclusive(int fd);

/// Swaps the names `a` and `b` atomically (renameat2(2) RENAME_EXCHANGE): both must exist on
/// the same file system. Returns 0 or an errno value.
int amp_exchange(const char *a, const char *b);

/// syncfs(2) on the file system holding the open descriptor `fd` (0, or -1 with errno).
int amp_syncfs(int fd);

#endif
