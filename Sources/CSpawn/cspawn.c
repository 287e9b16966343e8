#define _GNU_SOURCE
#include "cspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Index into this table is what the child writes to the error pipe. */
static const char *const steps[] = {
    "fork", "pipe", "open /dev/null", "dup2", "setpgid", "prctl(PR_SET_PDEATHSIG)",
    "setgroups", "setgid", "setuid", "chdir", "execve", "parent exited",
};

struct child_report { int step; int err; };

static void report_and_exit(int fd, int step) {
    struct child_report r = { step, errno };
    ssize_t ignored = write(fd, &r, sizeof r);
    (void)ignored;
    _exit(127);
}

static int move_fd(int from, int to, int errfd) {
    if (from == to) {
        /* Clear close-on-exec: the descriptor must survive exec. */
        int flags = fcntl(from, F_GETFD);
        if (flags >= 0) fcntl(from, F_SETFD, flags & ~FD_CLOEXEC);
        return 0;
    }
    if (dup2(from, to) < 0) report_and_exit(errfd, 3);
    return 0;
}

/* Whether the child no longer needs the report pipe: it has exited, or it has exec'd (its
 * executable is no longer this process's). Another thread's fork between our pipe2() and our
 * close of the write end can hand that write end to a second child until it execs; the EOF
 * the report pipe relies on then comes late, so the wait also looks at the child itself. */
static int child_past_fork(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) return 1;
    char path[64], mine[4096], theirs[4096];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t a = readlink("/proc/self/exe", mine, sizeof mine);
    ssize_t b = readlink(path, theirs, sizeof theirs);
    if (a <= 0 || b <= 0) return 0;
    return a != b || memcmp(mine, theirs, (size_t)a) != 0;
}

int amp_spawn(const amp_spawn_options *o, pid_t *pid_out, const char **failed_step) {
    int pipefd[2];
    *failed_step = NULL;
    if (pipe2(pipefd, O_CLOEXEC) != 0) { *failed_step = steps[1]; return errno; }

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]); close(pipefd[1]);
        *failed_step = steps[0];
        return e;
    }
    if (pid == 0) {
        int errfd = pipefd[1];
        /* Dispositions set to SIG_IGN and the blocked mask survive exec: reset both. */
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int s = 1; s < NSIG; s++) {
            if (s == SIGKILL || s == SIGSTOP) continue;
            signal(s, SIG_DFL);
        }
        if (o->new_process_group && setpgid(0, 0) != 0) report_and_exit(errfd, 4);
        if (o->death_signal) {
            if (prctl(PR_SET_PDEATHSIG, o->death_signal) != 0) report_and_exit(errfd, 5);
            /* The parent may have died between fork and prctl. */
            if (getppid() != parent) { errno = ESRCH; report_and_exit(errfd, 11); }
        }
        int nullfd = -1;
        if (o->stdin_fd < 0 || o->stdout_fd < 0 || o->stderr_fd < 0) {
            nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (nullfd < 0) report_and_exit(errfd, 2);
        }
        /* Move the targets out of 0..2 first so dup2 order cannot clobber them. */
        int in = o->stdin_fd < 0 ? nullfd : o->stdin_fd;
        int out = o->stdout_fd < 0 ? nullfd : o->stdout_fd;
        int err = o->stderr_fd < 0 ? nullfd : o->stderr_fd;
        int hi_in = fcntl(in, F_DUPFD_CLOEXEC, 10);
        int hi_out = fcntl(out, F_DUPFD_CLOEXEC, 10);
        int hi_err = fcntl(err, F_DUPFD_CLOEXEC, 10);
        if (hi_in < 0 || hi_out < 0 || hi_err < 0) report_and_exit(errfd, 3);
        move_fd(hi_in, 0, errfd);
        move_fd(hi_out, 1, errfd);
        move_fd(hi_err, 2, errfd);
        /* Nothing else leaks into the child: mark 3.. close-on-exec (Linux 5.11+), else loop. */
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            long max = sysconf(_SC_OPEN_MAX);
            if (max < 0 || max > 65536) max = 65536;
            for (int fd = 3; fd < max; fd++) {
                if (fd == errfd) continue;
                int flags = fcntl(fd, F_GETFD);
                if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
        }
        if (o->switch_user) {
            if (setgroups(o->ngroups, o->groups) != 0) report_and_exit(errfd, 6);
            if (setgid(o->gid) != 0) report_and_exit(errfd, 7);
            if (setuid(o->uid) != 0) report_and_exit(errfd, 8);
        }
        if (o->cwd && chdir(o->cwd) != 0) report_and_exit(errfd, 9);
        execve(o->path, o->argv, o->envp);
        report_and_exit(errfd, 10);
    }

    close(pipefd[1]);
    struct child_report r;
    ssize_t n = 0;
    for (;;) {
        struct pollfd p = { pipefd[0], POLLIN, 0 };
        int ready = poll(&p, 1, 200);
        if (ready < 0 && errno == EINTR) continue;
        if (ready != 0) {
            do { n = read(pipefd[0], &r, sizeof r); } while (n < 0 && errno == EINTR);
            break;
        }
        if (child_past_fork(pid)) {
            /* A report written before the child exited is in the pipe: read without waiting. */
            int flags = fcntl(pipefd[0], F_GETFL);
            if (flags >= 0) fcntl(pipefd[0], F_SETFL, flags | O_NONBLOCK);
            do { n = read(pipefd[0], &r, sizeof r); } while (n < 0 && errno == EINTR);
            break;
        }
    }
    close(pipefd[0]);
    if (n == (ssize_t)sizeof r) {
        /* The child failed before exec and has exited: reap it, report the step. */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *failed_step = (r.step >= 0 && r.step < (int)(sizeof steps / sizeof *steps)) ? steps[r.step] : "unknown";
        return r.err ? r.err : EIO;
    }
    *pid_out = pid;
    return 0;
}

int amp_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int amp_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int amp_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
