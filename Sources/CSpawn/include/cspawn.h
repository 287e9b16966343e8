#ifndef AMP_CSPAWN_H
#define AMP_CSPAWN_H

#include <sys/types.h>
#include <stddef.h>

/// What the child does between fork and exec. Everything here is async-signal-safe.
typedef struct {
    /// Absolute path of the program.
    const char *path;
    /// NULL-terminated argument vector (argv[0] included).
    char *const *argv;
    /// NULL-terminated environment.
    char *const *envp;
    /// Working directory, or NULL to keep the parent's.
    const char *cwd;
    /// Descriptors that become 0, 1 and 2 in the child; -1 means /dev/null.
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// Signal the kernel sends the child when the forking thread dies (PR_SET_PDEATHSIG); 0: none.
    int death_signal;
    /// Non-zero: the child leads a new process group (terminal Ctrl+C reaches the parent only).
    int new_process_group;
    /// Non-zero: drop to uid/gid/groups before exec (the parent runs as root).
    int switch_user;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
} amp_spawn_options;

/// Forks and execs. On success returns 0 and stores the PID. On failure returns an errno
/// value; `*failed_step` names the step in the child that failed (or "fork"), and no child
/// remains (a child that failed before exec has been reaped).
int amp_spawn(const amp_spawn_options *options, pid_t *pid_out, const char **failed_step);

/// pidfd_open(2), or -1 with errno set (ENOSYS on kernels before 5.3).
int amp_pidfd_open(pid_t pid);

/// pidfd_send_signal(2), or -1 with errno set.
int amp_pidfd_send_signal(int pidfd, int sig);

/// pipe2(fds, O_CLOEXEC).
int amp_pipe_cloexec(int fds[2]);

#endif
