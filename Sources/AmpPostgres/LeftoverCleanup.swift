#if canImport(Glibc)
import Glibc
#endif
import CSpawn
import ChildProcess
import Logging
import SystemSupport
import ThreadSupport

/// Deals with what a previous run left behind in a data directory and socket directory.
enum LeftoverCleanup {
    /// Stops a leftover postmaster that serves `dataDirectory` and removes stale lock files.
    ///
    /// A live process is signalled only when ``ProcessInspector`` identifies it as a postmaster
    /// of this data directory, through a pidfd opened *before* the check so the signal cannot
    /// reach a process that took over the PID in between. It gets a fast shutdown (SIGINT), then
    /// an immediate shutdown (SIGQUIT), then SIGKILL.
    static func run(dataDirectory: String, socketLockFile: String?, stopTimeout: Duration, logger: Logger) async throws(PostgresError) {
        let pidFile = dataDirectory + "/postmaster.pid"
        if let text = FileSystem.readText(pidFile) {
            if let parsed = PostmasterPidFile.parse(text) {
                try await handle(pid: parsed.pid, lockFile: pidFile, dataDirectory: dataDirectory, stopTimeout: stopTimeout, logger: logger)
            } else {
                logger.notice("removing unreadable lock file", metadata: ["file": "\(pidFile)"])
                try FileSystem.remove(pidFile)
            }
        }
        if let socketLockFile, let text = FileSystem.readText(socketLockFile) {
            if let parsed = PostmasterPidFile.parse(text) {
                try await handle(pid: parsed.pid, lockFile: socketLockFile, dataDirectory: dataDirectory, stopTimeout: stopTimeout, logger: logger)
            } else {
                try FileSystem.remove(socketLockFile)
            }
        }
    }

    private static func handle(pid: pid_t, lockFile: String, dataDirectory: String, stopTimeout: Duration, logger: Logger) async throws(PostgresError) {
        let pidfd = amp_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        switch ProcessInspector.identify(pid: pid, dataDirectory: dataDirectory) {
        case .gone:
            logger.notice("removing stale lock file: its process is gone", metadata: ["file": "\(lockFile)", "pid": "\(pid)"])
            try FileSystem.remove(lockFile)
        case .unrelated(let description):
            logger.notice(
                "removing stale lock file: its PID now belongs to an unrelated process, which is left alone",
                metadata: ["file": "\(lockFile)", "pid": "\(pid)", "process": "\(description)"])
            try FileSystem.remove(lockFile)
        case .postmaster(let executable):
            guard pidfd >= 0 else {
                throw PostgresError(
                    .orphanNotStopped,
                    "a leftover PostgreSQL (PID \(pid)) still serves \(dataDirectory), and this kernel has no pidfd "
                        + "to signal it safely; stop it with `kill -INT \(pid)` and start again")
            }
            logger.warning(
                "stopping a leftover PostgreSQL server of this data directory (fast shutdown)",
                metadata: ["pid": "\(pid)", "executable": "\(executable)"])
            for (signal, wait) in [(SIGINT, stopTimeout), (SIGQUIT, Duration.seconds(5)), (SIGKILL, Duration.seconds(5))] {
                if amp_pidfd_send_signal(pidfd, signal) != 0 && errno == ESRCH { break }
                if await waitForExit(pidfd: pidfd, timeout: wait) { break }
                logger.warning("leftover PostgreSQL did not stop after \(signalName(signal))", metadata: ["pid": "\(pid)"])
            }
            guard await waitForExit(pidfd: pidfd, timeout: .zero) else {
                throw PostgresError(
                    .orphanNotStopped,
                    "a leftover PostgreSQL (PID \(pid)) serving \(dataDirectory) does not stop; find out why (`ps -o stat,cmd -p \(pid)`)")
            }
            // A fast shutdown removes the lock file; a killed server leaves it behind.
            if FileSystem.exists(lockFile) {
                logger.notice("removing the lock file left by the stopped server", metadata: ["file": "\(lockFile)"])
                try FileSystem.remove(lockFile)
            }
        }
    }

    /// Waits until the process behind `pidfd` exits (the descriptor becomes readable).
    static func waitForExit(pidfd: Int32, timeout: Duration) async -> Bool {
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return await runOnThread(name: "amp-pidfd") {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            var rc: Int32
            repeat { rc = poll(&fds, 1, ms) } while rc < 0 && errno == EINTR
            return rc > 0
        }
    }
}
